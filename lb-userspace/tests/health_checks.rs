//! Health checks against real servers on loopback: nginx (HTTP, TCP),
//! slapd (LDAP bind + search), commands (exec), a server that accepts
//! and never answers; and the Monitor's cadence, rise/fall and reload
//! behaviour as the agent will see them (transitions and status).
//!
//! Needs nginx-light and slapd installed; runs as any user that may start
//! them (root here). Intervals are 100-200 ms to keep it fast; time bounds
//! carry the 5% jitter plus a margin for a loaded 2-core machine.

mod health_support;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use health_support::{Nginx, Silent, Slapd, TempDir, LDAP_SUFFIX, ROOT_DN, ROOT_PASSWORD};
use lb_userspace::{
    config::{CheckKind, ExecCheck, HealthCheck, HttpCheck, LdapBind, LdapCheck, Secret},
    health::{check_once, Health, Monitor, Target, TargetKey, Transition},
};
use tokio::sync::mpsc::UnboundedReceiver;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Slack for scheduling on a busy machine, on top of the 5% jitter.
const MARGIN: Duration = Duration::from_millis(120);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn check(kind: CheckKind, interval: u64, timeout: u64, rise: u32, fall: u32) -> HealthCheck {
    HealthCheck {
        kind,
        interval: ms(interval),
        timeout: ms(timeout),
        rise,
        fall,
        port: None,
    }
}

fn target(service: &str, addr: SocketAddr, check: HealthCheck) -> Target {
    Target {
        key: TargetKey {
            service: service.into(),
            address: addr.ip(),
            port: addr.port(),
        },
        check,
    }
}

fn http_good() -> HttpCheck {
    HttpCheck {
        host: Some("good.example".into()),
        expect_body: Some("nginx-ok".into()),
        ..HttpCheck::default()
    }
}

/// The next transition of `key` (others are skipped), or a panic after
/// `within`.
async fn next_transition(
    rx: &mut UnboundedReceiver<Transition>,
    key: &TargetKey,
    within: Duration,
) -> Transition {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(t)) if &t.key == key => return t,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("transition channel closed"),
            Err(_) => panic!("no transition of {key} within {within:?}"),
        }
    }
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_follows_nginx_down_and_up() {
    let mut nginx = blocking(Nginx::start);
    let (interval, rise, fall) = (150, 2, 3);
    let t = target(
        "web",
        nginx.addr,
        check(CheckKind::Http(http_good()), interval, 100, rise, fall),
    );
    let key = t.key.clone();
    let (mut mon, mut rx) = Monitor::new();
    mon.update([t]);
    // Before its first result the server serves (start-up rule).
    assert!(mon.status(&key).unwrap().state.serves());

    let up = next_transition(&mut rx, &key, ms(1000)).await;
    assert_eq!((up.from, up.to), (Health::Unknown, Health::Up));
    let st = mon.status(&key).unwrap();
    let last = st.last.expect("a check has run");
    assert_eq!(last.outcome, Ok(()));
    assert!(last.latency < ms(100), "latency {:?}", last.latency);

    // Stopped: withdrawn after `fall` failed checks, not sooner.
    let stopped = Instant::now();
    blocking(|| nginx.stop());
    let down = next_transition(&mut rx, &key, ms(3000)).await;
    let took = stopped.elapsed();
    assert_eq!((down.from, down.to), (Health::Up, Health::Down));
    assert!(down.reason.contains("refused"), "reason: {}", down.reason);
    let i = ms(interval);
    assert!(
        took >= (i * (fall - 1)).mul_f64(0.95) && took <= (i * fall).mul_f64(1.05) + MARGIN,
        "down {took:?} after the stop; fall {fall} x interval {i:?}"
    );
    let st = mon.status(&key).unwrap();
    assert_eq!(st.state, Health::Down);
    assert!(st.failed_checks >= u64::from(fall));
    assert!(st.last.unwrap().outcome.unwrap_err().contains("refused"));

    // Back: restored after `rise` good checks.
    blocking(|| nginx.restart());
    let started = Instant::now();
    let back = next_transition(&mut rx, &key, ms(3000)).await;
    let took = started.elapsed();
    assert_eq!((back.from, back.to), (Health::Down, Health::Up));
    assert!(
        took >= (i * (rise - 1)).mul_f64(0.95) && took <= (i * rise).mul_f64(1.05) + MARGIN,
        "up {took:?} after the restart; rise {rise} x interval {i:?}"
    );
    assert_eq!(mon.status(&key).unwrap().transitions, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_outcomes() {
    let nginx = blocking(Nginx::start);
    let run = |c: HttpCheck| {
        let t = target(
            "web",
            nginx.addr,
            check(CheckKind::Http(c), 1000, 500, 1, 1),
        );
        async move { check_once(&t).await.outcome }
    };
    assert_eq!(run(http_good()).await, Ok(()));
    // The Host header is sent: another host gets nginx's default server.
    let wrong_host = run(HttpCheck {
        host: Some("other.example".into()),
        ..http_good()
    })
    .await;
    assert_eq!(wrong_host, Err("http status 421, expected 200".into()));
    let broken = run(HttpCheck {
        path: "/broken".into(),
        expect_body: None,
        ..http_good()
    })
    .await;
    assert_eq!(broken, Err("http status 503, expected 200".into()));
    let broken_expected = run(HttpCheck {
        path: "/broken".into(),
        expect_status: vec![200, 503],
        expect_body: Some("broken".into()),
        ..http_good()
    })
    .await;
    assert_eq!(broken_expected, Ok(()));
    let body = run(HttpCheck {
        expect_body: Some("welcome".into()),
        ..http_good()
    })
    .await
    .unwrap_err();
    assert!(body.contains("does not contain \"welcome\""), "{body}");

    // `port` checks another port than the real server's own.
    let mut c = check(CheckKind::Tcp, 1000, 500, 1, 1);
    c.port = Some(nginx.addr.port());
    let other_port = SocketAddr::new(LOCALHOST, 1);
    assert_eq!(
        check_once(&target("web", other_port, c)).await.outcome,
        Ok(())
    );
    let refused = check_once(&target(
        "web",
        other_port,
        check(CheckKind::Tcp, 1000, 500, 1, 1),
    ))
    .await
    .outcome
    .unwrap_err();
    assert!(
        refused.starts_with("tcp connect to 127.0.0.1:1 failed"),
        "{refused}"
    );
}

/// A check as the observer saw it: target, when it ended, outcome, latency.
type Seen = (TargetKey, Instant, Result<(), String>, Duration);

/// A server that accepts and never answers is withdrawn by the timeout,
/// while a healthy server's checks keep their cadence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_server_times_out_without_delaying_others() {
    let silent = Silent::start();
    let nginx = blocking(Nginx::start);
    let interval = ms(200);
    let timeout = ms(100);

    let checks: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (mut mon, mut rx) = Monitor::new();
    let log = checks.clone();
    mon.set_observer(Arc::new(move |k, r| {
        log.lock()
            .unwrap()
            .push((k.clone(), Instant::now(), r.outcome.clone(), r.latency));
    }));
    // Ten hung targets against one healthy one.
    let mut targets: Vec<Target> = (0..10)
        .map(|n| {
            target(
                &format!("hung{n}"),
                silent.addr,
                check(CheckKind::Http(HttpCheck::default()), 200, 100, 2, 2),
            )
        })
        .collect();
    let healthy = target(
        "healthy",
        nginx.addr,
        check(CheckKind::Http(http_good()), 200, 100, 2, 2),
    );
    let healthy_key = healthy.key.clone();
    targets.push(healthy);
    mon.update(targets);

    let hung_key = TargetKey {
        service: "hung0".into(),
        address: silent.addr.ip(),
        port: silent.addr.port(),
    };
    let down = next_transition(&mut rx, &hung_key, ms(1000)).await;
    assert_eq!(down.to, Health::Down);
    assert_eq!(down.reason, "http check timed out after 100ms");
    tokio::time::sleep(ms(2000)).await;
    drop(mon);

    let log = checks.lock().unwrap();
    for (k, _, outcome, latency) in log.iter().filter(|c| c.0.service.starts_with("hung")) {
        assert!(outcome.is_err(), "{k}: {outcome:?}");
        assert!(
            *latency >= timeout && *latency < timeout + MARGIN,
            "{k}: a timed-out check took {latency:?}"
        );
    }
    let healthy_at: Vec<Instant> = log
        .iter()
        .filter(|c| c.0 == healthy_key)
        .inspect(|c| assert_eq!(c.2, Ok(()), "healthy server failed"))
        .map(|c| c.1)
        .collect();
    assert!(
        healthy_at.len() >= 10,
        "{} checks of the healthy server in about 2.2 s at {interval:?}",
        healthy_at.len()
    );
    for w in healthy_at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= interval.mul_f64(0.95) - ms(30) && gap <= interval.mul_f64(1.05) + ms(30),
            "healthy server's checks {gap:?} apart, interval {interval:?}"
        );
    }
}

fn ldap(bind: Option<(&str, &str)>, base: &str, filter: &str) -> CheckKind {
    CheckKind::Ldap(LdapCheck {
        bind: bind.map(|(dn, pw)| LdapBind {
            dn: dn.into(),
            password: Secret::new(pw),
        }),
        base: base.into(),
        filter: filter.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_check_binds_and_searches_slapd() {
    let mut slapd = blocking(Slapd::start);
    let once = |kind: CheckKind| {
        let t = target("ldap", slapd.addr, check(kind, 1000, 500, 1, 1));
        async move { check_once(&t).await.outcome }
    };
    // Defaults: anonymous bind, root DSE.
    assert_eq!(once(CheckKind::Ldap(LdapCheck::default())).await, Ok(()));
    let good = ldap(
        Some((ROOT_DN, ROOT_PASSWORD)),
        LDAP_SUFFIX,
        "(objectClass=person)",
    );
    assert_eq!(once(good.clone()).await, Ok(()));
    // Anonymous subtree search over several entries: the size limit stops
    // it after one entry, which is healthy.
    assert_eq!(
        once(ldap(None, LDAP_SUFFIX, "(objectClass=*)")).await,
        Ok(())
    );
    let wrong = ldap(Some((ROOT_DN, "wrong")), LDAP_SUFFIX, "(objectClass=*)");
    let e = once(wrong.clone()).await.unwrap_err();
    assert!(
        e.starts_with("ldap bind failed: invalidCredentials (49)"),
        "{e}"
    );
    let e = once(ldap(None, "dc=nope,dc=org", "(objectClass=*)"))
        .await
        .unwrap_err();
    assert!(
        e.contains("search") && e.contains("noSuchObject (32)"),
        "{e}"
    );
    let e = once(ldap(None, LDAP_SUFFIX, "(cn=nobody)"))
        .await
        .unwrap_err();
    assert!(e.contains("found no entry"), "{e}");

    // Through the monitor: bind + search keeps it up, a wrong password
    // takes it down with the reason, stopping slapd takes it down.
    let (interval, fall) = (150, 2);
    let t_good = target("ldap", slapd.addr, check(good, interval, 100, 2, fall));
    let t_wrong = target(
        "ldap-wrong",
        slapd.addr,
        check(wrong, interval, 100, 2, fall),
    );
    let (good_key, wrong_key) = (t_good.key.clone(), t_wrong.key.clone());
    let (mut mon, mut rx) = Monitor::new();
    mon.update([t_good, t_wrong]);
    let up = next_transition(&mut rx, &good_key, ms(1000)).await;
    assert_eq!(up.to, Health::Up);
    let st = mon.status(&wrong_key).unwrap();
    let st = if st.state == Health::Down {
        st
    } else {
        next_transition(&mut rx, &wrong_key, ms(1000)).await;
        mon.status(&wrong_key).unwrap()
    };
    assert_eq!(st.state, Health::Down);
    let why = st.last.unwrap().outcome.unwrap_err();
    assert!(why.contains("invalidCredentials (49)"), "{why}");

    tokio::time::sleep(ms(3 * interval)).await;
    assert_eq!(mon.status(&good_key).unwrap().state, Health::Up);
    let stopped = Instant::now();
    blocking(|| slapd.stop());
    let down = next_transition(&mut rx, &good_key, ms(2000)).await;
    assert_eq!((down.from, down.to), (Health::Up, Health::Down));
    assert!(down.reason.starts_with("ldap connect"), "{}", down.reason);
    assert!(
        stopped.elapsed() <= (ms(interval) * fall).mul_f64(1.05) + MARGIN,
        "down {:?} after slapd stopped",
        stopped.elapsed()
    );
}

fn exec(argv: &[&str]) -> CheckKind {
    CheckKind::Exec(ExecCheck {
        command: argv.iter().map(|s| s.to_string()).collect(),
    })
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_check_runs_commands_with_a_timeout() {
    let addr = SocketAddr::new(LOCALHOST, 4242);
    let once = |kind: CheckKind, timeout: u64| {
        let t = target("misc", addr, check(kind, 1000, timeout, 1, 1));
        async move { check_once(&t).await }
    };
    assert_eq!(once(exec(&["true"]), 500).await.outcome, Ok(()));
    let e = once(exec(&["false"]), 500).await.outcome.unwrap_err();
    assert_eq!(e, "exec \"false\": exit status: 1");
    let e = once(
        exec(&["sh", "-c", "echo 'db is read-only' >&2; exit 3"]),
        500,
    )
    .await
    .outcome
    .unwrap_err();
    assert!(e.ends_with("exit status: 3: db is read-only"), "{e}");
    // Placeholders become the real server's address and port.
    let placeholders = exec(&[
        "sh",
        "-c",
        "test \"$0\" = 127.0.0.1 && test \"$1\" = 4242",
        "{address}",
        "{port}",
    ]);
    assert_eq!(once(placeholders, 500).await.outcome, Ok(()));
    let e = once(exec(&["/nonexistent/check"]), 500)
        .await
        .outcome
        .unwrap_err();
    assert!(e.contains("failed to start"), "{e}");

    // A hanging command is cut at the timeout and killed with its
    // children (the shell's `sleep` too).
    let r = once(exec(&["sh", "-c", "sleep 7.5309; true"]), 200).await;
    assert_eq!(r.outcome, Err("exec check timed out after 200ms".into()));
    assert!(r.latency < ms(200) + MARGIN, "took {:?}", r.latency);
    tokio::time::sleep(ms(100)).await;
    assert_eq!(processes_with("sleep 7.5309"), Vec::<String>::new());
}

/// A server alternating between success and failure never moves with
/// rise = fall = 2; reload keeps the state of targets that stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_and_reload() {
    let dir = TempDir::new("flap");
    let counter = dir.path().join("n");
    // Succeeds on even runs, fails on odd ones.
    let flap_script = format!(
        "n=$(cat {0} 2>/dev/null || echo 0); echo $((n + 1)) > {0}; [ $((n % 2)) -eq 0 ]",
        counter.display()
    );
    let a = SocketAddr::new(LOCALHOST, 1001);
    let b = SocketAddr::new(LOCALHOST, 1002);
    let c = SocketAddr::new(LOCALHOST, 1003);
    let flap = target(
        "flap",
        a,
        check(exec(&["sh", "-c", &flap_script]), 100, 80, 2, 2),
    );
    let flap_key = flap.key.clone();
    let (mut mon, mut rx) = Monitor::new();
    mon.update([flap.clone()]);
    tokio::time::sleep(ms(1600)).await;
    let st = mon.status(&flap_key).unwrap();
    assert!(st.checks >= 12, "only {} checks", st.checks);
    assert!(st.failed_checks >= st.checks / 2 - 1);
    assert_eq!(
        (st.state, st.transitions),
        (Health::Up, 1),
        "only Unknown -> Up"
    );
    let first = rx.try_recv().unwrap();
    assert_eq!((first.from, first.to), (Health::Unknown, Health::Up));
    assert!(rx.try_recv().is_err(), "no more transitions");

    // Reload: the flapping target stays (same key and check), a failing
    // one and a kind-none one arrive.
    let ok = target("svc", b, check(exec(&["false"]), 100, 80, 2, 2));
    let none = target("svc", c, HealthCheck::none());
    mon.update([flap.clone(), ok.clone(), none.clone()]);
    let st = mon.status(&flap_key).unwrap();
    assert_eq!((st.state, st.transitions), (Health::Up, 1), "state kept");
    assert_eq!(mon.status(&none.key).unwrap().state, Health::Up);
    let t = next_transition(&mut rx, &ok.key, ms(1000)).await;
    assert_eq!((t.from, t.to), (Health::Unknown, Health::Down));

    // The flapping target's check changes to one that fails: its state
    // is kept (Up) and it falls after `fall` failures.
    let mut failing = flap.clone();
    failing.check.kind = exec(&["false"]);
    let changed = Instant::now();
    mon.update([failing, none.clone()]);
    assert_eq!(mon.status(&flap_key).unwrap().state, Health::Up);
    assert!(mon.status(&ok.key).is_none(), "removed target is gone");
    let t = next_transition(&mut rx, &flap_key, ms(1000)).await;
    assert_eq!((t.from, t.to), (Health::Up, Health::Down));
    assert!(changed.elapsed() >= ms(95), "fall 2 needs two checks");
    assert_eq!(mon.status(&none.key).unwrap().transitions, 0);
    assert!(
        mon.snapshot()
            .iter()
            .map(|(k, _)| k)
            .eq([&flap_key, &none.key]),
        "snapshot lists the current targets"
    );
}
