//! Health checks against real servers on loopback: nginx (HTTP, TCP),
//! slapd (LDAP bind + search), commands (exec), a server that accepts
//! and never answers; and the Monitor's cadence, rise/fall and reload
//! behaviour as the agent will see them (transitions and status).
//!
//! Needs nginx-light and slapd installed; runs as any user that may start
//! them (root here). Intervals are 100-200 ms to keep it fast; time bounds
//! carry the 5% jitter plus a margin for a loaded 2-core machine.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lb_tests::{
    nginx::LocalNginx as Nginx,
    slapd::{Slapd, LDAP_SUFFIX, ROOT_DN, ROOT_PASSWORD},
    sockets::Silent,
};
use lb_userspace::{
    config::{CheckKind, ExecCheck, HealthCheck, HttpCheck, LdapBind, LdapCheck, Secret},
    health::{check_once, Health, Monitor, Target, TargetKey, Transition},
};
use tokio::sync::mpsc::UnboundedReceiver;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Slack for scheduling on a busy machine (2 cores shared with other
/// builds and tests: stalls of 100-300 ms were seen), on top of the 5%
/// jitter.
const MARGIN: Duration = Duration::from_millis(250);

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
        check: check.into(),
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
    let mut nginx = blocking(|| Nginx::start().unwrap());
    // Timeouts close to the interval: on a loaded machine a healthy
    // answer may take tens of milliseconds; a refused connection fails at
    // once whatever the timeout.
    let (interval, rise, fall) = (200, 2, 3);
    let t = target(
        "web",
        nginx.addr,
        check(CheckKind::Http(http_good()), interval, 190, rise, fall),
    );
    let key = t.key.clone();
    let (mut mon, mut rx) = Monitor::new();
    // Every check's end and outcome, to explain a failed time bound.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    mon.set_observer(Arc::new(move |k, r| {
        log.lock()
            .unwrap()
            .push((k.clone(), Instant::now(), r.outcome_text(), r.latency))
    }));
    mon.update([t]);
    // Before its first result the server serves (start-up rule).
    assert!(mon.status(&key).unwrap().state.serves());

    let up = next_transition(&mut rx, &key, ms(3000)).await;
    assert_eq!((up.from, up.to), (Health::Unknown, Health::Up));
    let st = mon.status(&key).unwrap();
    let last = st.last.expect("a check has run");
    assert_eq!(last.outcome, Ok(()));
    assert!(
        last.latency < ms(190),
        "a success within the timeout: {:?}",
        last.latency
    );

    // Stopped: withdrawn after `fall` failed checks, not sooner.
    // The port closes somewhere between these two instants.
    let stopping = Instant::now();
    blocking(|| nginx.stop().unwrap());
    let closed = Instant::now();
    let down = next_transition(&mut rx, &key, ms(3000)).await;
    assert_eq!((down.from, down.to), (Health::Up, Health::Down));
    assert!(down.reason.contains("refused"), "reason: {}", down.reason);
    let i = ms(interval);
    let (earliest, latest) = (stopping.elapsed(), closed.elapsed());
    let around_stop: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.1 >= stopping - i)
        .map(|c| {
            let at = c.1.saturating_duration_since(stopping).as_millis();
            format!("+{at}ms {:?} in {:?}", c.2, c.3)
        })
        .collect();
    assert!(
        earliest >= (i * (fall - 1)).mul_f64(0.95) && latest <= (i * fall).mul_f64(1.05) + MARGIN,
        "down {latest:?} after nginx stopped ({earliest:?} after the stop began); \
         fall {fall} x interval {i:?}; checks since the stop began: {around_stop:#?}"
    );
    let st = mon.status(&key).unwrap();
    assert_eq!(st.state, Health::Down);
    assert!(st.failed_checks >= u64::from(fall));
    assert!(st
        .last
        .unwrap()
        .outcome_text()
        .unwrap_err()
        .contains("refused"));

    // Back: restored after `rise` good checks.
    blocking(|| nginx.restart().unwrap());
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
    let nginx = blocking(|| Nginx::start().unwrap());
    let run = |c: HttpCheck| {
        let t = target(
            "web",
            nginx.addr,
            check(CheckKind::Http(c), 3000, 2000, 1, 1),
        );
        async move { check_once(&t).await.outcome_text() }
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
    let mut c = check(CheckKind::Tcp, 3000, 2000, 1, 1);
    c.port = Some(nginx.addr.port());
    let other_port = SocketAddr::new(LOCALHOST, 1);
    assert_eq!(
        check_once(&target("web", other_port, c)).await.outcome,
        Ok(())
    );
    let refused = check_once(&target(
        "web",
        other_port,
        check(CheckKind::Tcp, 3000, 2000, 1, 1),
    ))
    .await
    .outcome_text()
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
    let silent = Silent::start().unwrap();
    let nginx = blocking(|| Nginx::start().unwrap());
    let interval = ms(200);
    let timeout = ms(100);

    let checks: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (mut mon, mut rx) = Monitor::new();
    let log = checks.clone();
    mon.set_observer(Arc::new(move |k, r| {
        log.lock()
            .unwrap()
            .push((k.clone(), Instant::now(), r.outcome_text(), r.latency));
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
    // Its own timeout is generous: under load a healthy answer may be
    // slow, and that is not what this test is about.
    let healthy = target(
        "healthy",
        nginx.addr,
        check(CheckKind::Http(http_good()), 200, 190, 2, 2),
    );
    let healthy_key = healthy.key.clone();
    targets.push(healthy);
    mon.update(targets);

    let hung_key = TargetKey {
        service: "hung0".into(),
        address: silent.addr.ip(),
        port: silent.addr.port(),
    };
    let down = next_transition(&mut rx, &hung_key, ms(3000)).await;
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
    let healthy: Vec<&Seen> = log.iter().filter(|c| c.0 == healthy_key).collect();
    let failed: Vec<_> = healthy.iter().filter_map(|c| c.2.as_ref().err()).collect();
    assert!(
        failed.len() * 5 <= healthy.len(),
        "the healthy server failed {failed:?}"
    );
    let healthy_at: Vec<Instant> = healthy.iter().map(|c| c.1).collect();
    assert!(
        healthy_at.len() >= 9,
        "{} checks of the healthy server in about 2.2 s at {interval:?}",
        healthy_at.len()
    );
    // Were the healthy server's checks queued behind the hung ones, every
    // gap would lag by a timeout (100 ms) or more, ten hung targets deep.
    // Most gaps are the interval (within the jitter), and so is the
    // median: a machine stalling the whole process now and then moves
    // single gaps, not these.
    let mut gaps: Vec<Duration> = healthy_at.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let on_time = gaps
        .iter()
        .filter(|g| {
            **g >= interval.mul_f64(0.95) - ms(30) && **g <= interval.mul_f64(1.05) + ms(30)
        })
        .count();
    assert!(
        on_time * 10 >= gaps.len() * 7,
        "healthy server's checks late: {gaps:?}, interval {interval:?}"
    );
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= interval.mul_f64(0.9) && median <= interval.mul_f64(1.1),
        "healthy server's median gap {median:?}, interval {interval:?}: {gaps:?}"
    );
}

fn ldap(bind: Option<(&str, &str)>, base: &str, filter: &str) -> CheckKind {
    CheckKind::Ldap(LdapCheck {
        bind: bind.map(|(dn, pw)| LdapBind {
            dn: dn.into(),
            password: Secret::new(pw),
        }),
        base: base.into(),
        filter: filter.into(),
        ..LdapCheck::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_check_binds_and_searches_slapd() {
    let mut slapd = blocking(|| Slapd::start().unwrap());
    let once = |kind: CheckKind| {
        let t = target("ldap", slapd.addr, check(kind, 3000, 2000, 1, 1));
        async move { check_once(&t).await.outcome_text() }
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
    let (interval, fall) = (300, 2);
    let t_good = target("ldap", slapd.addr, check(good, interval, 290, 2, fall));
    let t_wrong = target(
        "ldap-wrong",
        slapd.addr,
        check(wrong, interval, 290, 2, fall),
    );
    let (good_key, wrong_key) = (t_good.key.clone(), t_wrong.key.clone());
    let (mut mon, mut rx) = Monitor::new();
    mon.update([t_good, t_wrong]);
    let up = next_transition(&mut rx, &good_key, ms(3000)).await;
    assert_eq!(up.to, Health::Up);
    let st = mon.status(&wrong_key).unwrap();
    let st = if st.state == Health::Down {
        st
    } else {
        next_transition(&mut rx, &wrong_key, ms(3000)).await;
        mon.status(&wrong_key).unwrap()
    };
    assert_eq!(st.state, Health::Down);
    let why = st.last.unwrap().outcome_text().unwrap_err();
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
        let t = target("misc", addr, check(kind, 3000, timeout, 1, 1));
        async move { check_once(&t).await }
    };
    assert_eq!(once(exec(&["true"]), 2000).await.outcome, Ok(()));
    let e = once(exec(&["false"]), 2000)
        .await
        .outcome_text()
        .unwrap_err();
    assert_eq!(e, "exec \"false\": exit status: 1");
    let e = once(
        exec(&["sh", "-c", "echo 'db is read-only' >&2; exit 3"]),
        2000,
    )
    .await
    .outcome_text()
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
    assert_eq!(once(placeholders, 2000).await.outcome, Ok(()));
    let e = once(exec(&["/nonexistent/check"]), 2000)
        .await
        .outcome_text()
        .unwrap_err();
    assert!(e.contains("failed to start"), "{e}");

    // A hanging command is cut at the timeout and killed with its
    // children (the shell's `sleep` too). The sleep's length is unique to
    // this process, to find it among other processes.
    let needle = format!("sleep 7.{}", std::process::id());
    let sleeper = format!("{needle}; true");
    let r = once(exec(&["sh", "-c", &sleeper]), 200).await;
    assert_eq!(
        r.outcome_text(),
        Err("exec check timed out after 200ms".into())
    );
    assert!(r.latency < ms(200) + MARGIN, "took {:?}", r.latency);
    tokio::time::sleep(ms(100)).await;
    assert_eq!(processes_with(&needle), Vec::<String>::new());
}

/// Peak resident memory of this process since the last
/// [`reset_peak_rss`], in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// proc(5): writing 5 to clear_refs resets VmHWM to the current RSS.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// Live members of process group `pgid` ("pid state cmdline"); zombies
/// are dead and left out (init may reap them late).
fn live_group_members(pgid: i32) -> Vec<String> {
    let mut live = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces and ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            live.push(format!(
                "{} {} {}",
                e.file_name().to_string_lossy(),
                fields[0],
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    live
}

/// Waits (up to 2 s: SIGKILL is asynchronous) until group `pgid` has no
/// live member; panics listing them otherwise.
async fn assert_group_gone(pgid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let live = live_group_members(pgid);
        if live.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: process group {pgid} still has live members: {live:?}"
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// The shell's pid the script wrote (= its process group: the check puts
/// the command in a group of its own).
fn read_pgid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the check script did not write {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_check_output_is_bounded() {
    let addr = SocketAddr::new(LOCALHOST, 4242);
    let once = |kind: CheckKind| {
        let t = target("misc", addr, check(kind, 30_000, 20_000, 1, 1));
        async move { check_once(&t).await }
    };
    // 100 MB on stdout (and 1 MB on stderr): the check succeeds, and the
    // agent's memory does not grow by it (it did by the whole output).
    reset_peak_rss();
    let before = peak_rss_kib();
    let r = once(exec(&[
        "sh",
        "-c",
        "head -c 100000000 /dev/zero; head -c 1000000 /dev/zero >&2",
    ]))
    .await;
    assert_eq!(r.outcome, Ok(()));
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 20 * 1024,
        "peak RSS grew by {grown} KiB while a check printed 100 MB"
    );
    // A failure after a flood still quotes the command's last words.
    let r = once(exec(&[
        "sh",
        "-c",
        "yes filler | head -c 50000000; yes noise | head -c 50000000 >&2; printf '\\ndisk full\\n' >&2; exit 1",
    ]))
    .await;
    let e = r.outcome_text().unwrap_err();
    assert!(e.ends_with("exit status: 1: disk full"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_check_leaves_no_process_behind() {
    let addr = SocketAddr::new(LOCALHOST, 4242);
    let dir = lb_tests::tempdir::TempDir::new("exec").unwrap();
    let once = |script: String, timeout: u64| {
        let t = target(
            "misc",
            addr,
            check(exec(&["sh", "-c", &script]), 30_000, timeout, 1, 1),
        );
        async move { check_once(&t).await }
    };

    // A successful check that starts background children: one still
    // holding the check's stdout, one detached from it. The check ends
    // when the script does (not when the children close the pipe), and
    // the children are gone with their group.
    let pidfile = dir.path().join("ok.pgid");
    let script = format!(
        "echo $$ > {}; sleep 1000 & sleep 1001 >/dev/null 2>&1 & echo started; exit 0",
        pidfile.display()
    );
    let r = once(script, 3000).await;
    assert_eq!(r.outcome, Ok(()));
    assert!(r.latency < ms(1000), "took {:?}", r.latency);
    assert_group_gone(read_pgid(&pidfile), "after a successful check").await;

    // The same after a failed one.
    let pidfile = dir.path().join("failed.pgid");
    let script = format!(
        "echo $$ > {}; sleep 1000 >/dev/null 2>&1 & exit 4",
        pidfile.display()
    );
    let r = once(script, 3000).await;
    assert_eq!(r.outcome_text(), Err("exec \"sh\": exit status: 4".into()));
    assert_group_gone(read_pgid(&pidfile), "after a failed check").await;

    // A hanging check is killed at its timeout with its children (the
    // one it waits for and one in the background).
    let pidfile = dir.path().join("hang.pgid");
    let script = format!(
        "echo $$ > {}; sleep 1000 & sleep 1002; true",
        pidfile.display()
    );
    let r = once(script, 300).await;
    assert_eq!(
        r.outcome_text(),
        Err("exec check timed out after 300ms".into())
    );
    assert!(r.latency < ms(300) + MARGIN, "took {:?}", r.latency);
    assert_group_gone(read_pgid(&pidfile), "after a timeout").await;
}

/// An HTTP server on loopback answering 200 and 503 in turn.
async fn flapping_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0u64.. {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let status = if n % 2 == 0 {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                }
                let resp =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A server alternating between success and failure moves no more often
/// than rise/fall allow: with rise = fall = 3, not at all after its first
/// result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_server_does_not_flap_the_service() {
    let addr = flapping_server().await;
    let (rise, fall) = (3, 3);
    let flap = target(
        "flap",
        addr,
        check(CheckKind::Http(HttpCheck::default()), 100, 90, rise, fall),
    );
    let key = flap.key.clone();
    let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
    let (mut mon, mut rx) = Monitor::new();
    let log = seen.clone();
    mon.set_observer(Arc::new(move |_, r| {
        log.lock().unwrap().push(r.outcome.is_ok())
    }));
    let reader = mon.reader();
    mon.update([flap]);
    tokio::time::sleep(ms(2000)).await;
    drop(mon);
    tokio::time::sleep(ms(50)).await;

    let results = seen.lock().unwrap().clone();
    let st = reader.get(&key).unwrap();
    assert!(results.len() >= 12, "only {} checks", results.len());
    let alternations = results.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        alternations * 10 >= (results.len() - 1) * 8,
        "the server should flap: {results:?}"
    );
    let mut transitions = Vec::new();
    while let Ok(t) = rx.try_recv() {
        transitions.push((t.from, t.to));
    }
    // What rise/fall allow for exactly these results (a check slowed past
    // its timeout by a loaded machine is a failure too).
    let mut model = lb_userspace::health::state::Tracker::new(rise, fall);
    let allowed = results
        .iter()
        .filter(|ok| model.record(**ok).is_some())
        .count();
    assert_eq!(
        transitions.len(),
        allowed,
        "{transitions:?} for {results:?}"
    );
    assert_eq!(st.transitions as usize, allowed);
    assert!(allowed <= 1 + (results.len() - 1) / 3);
    if alternations == results.len() - 1 {
        assert_eq!(transitions, [(Health::Unknown, Health::Up)]);
    }
}

/// Reload keeps the state of targets that stay, starts new ones, drops
/// removed ones; a changed check keeps the state reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_state() {
    let a = SocketAddr::new(LOCALHOST, 1001);
    let b = SocketAddr::new(LOCALHOST, 1002);
    let c = SocketAddr::new(LOCALHOST, 1003);
    let stays = target("svc", a, check(exec(&["true"]), 200, 190, 2, 2));
    let stays_key = stays.key.clone();
    let (mut mon, mut rx) = Monitor::new();
    mon.update([stays.clone()]);
    let t = next_transition(&mut rx, &stays_key, ms(3000)).await;
    assert_eq!((t.from, t.to), (Health::Unknown, Health::Up));

    // Reload: that target stays (same key and check), a failing one and
    // a kind-none one arrive.
    let ok = target("svc", b, check(exec(&["false"]), 200, 190, 2, 2));
    let none = target("svc", c, HealthCheck::none());
    mon.update([stays.clone(), ok.clone(), none.clone()]);
    let st = mon.status(&stays_key).unwrap();
    assert_eq!((st.state, st.transitions), (Health::Up, 1), "state kept");
    assert_eq!(mon.status(&none.key).unwrap().state, Health::Up);
    let t = next_transition(&mut rx, &ok.key, ms(3000)).await;
    assert_eq!((t.from, t.to), (Health::Unknown, Health::Down));

    // Its check changes to one that fails: its state is kept (Up) and it
    // falls after `fall` failures.
    let mut failing = stays.clone();
    std::sync::Arc::make_mut(&mut failing.check).kind = exec(&["false"]);
    let changed = Instant::now();
    mon.update([failing, none.clone()]);
    assert_eq!(mon.status(&stays_key).unwrap().state, Health::Up);
    assert!(mon.status(&ok.key).is_none(), "removed target is gone");
    let t = next_transition(&mut rx, &stays_key, ms(3000)).await;
    assert_eq!((t.from, t.to), (Health::Up, Health::Down));
    assert!(changed.elapsed() >= ms(190), "fall 2 needs two checks");
    assert_eq!(mon.status(&none.key).unwrap().transitions, 0);
    assert!(
        mon.snapshot()
            .iter()
            .map(|(k, _)| k)
            .eq([&stays_key, &none.key]),
        "snapshot lists the current targets"
    );
}
