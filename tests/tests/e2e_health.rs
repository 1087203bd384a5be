//! Health checks and live reload end to end (issue 3), on seed 001's NAT
//! layout: real `lb run`, nginx real servers, curl and ab from the client's
//! namespace, and what a user checks: which server answers, ab's failure
//! count, the real servers' own access logs, `lb status`, the metrics
//! endpoint and the agent's log.
//!
//! - every real server down: the sorry server answers, and the real
//!   servers take traffic again once their checks pass `rise` times;
//!   without a sorry server the packets are dropped and counted; each
//!   transition is logged once, not per packet;
//! - reload under ab load (with `lb reload` and with SIGHUP) adding a real
//!   server, removing one and changing a weight: no failed request, the new
//!   server gets requests, the removed one none;
//! - an invalid file: `lb reload` fails with `lb check`'s message, traffic
//!   and `lb status` unaffected;
//! - a server that accepts TCP and never answers HTTP goes down by timeout
//!   while the others' checks keep their pace.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lb_tests::agent::{metric, real_server, scrape_metrics, HealthCheck, LbConfig};
use lb_tests::client::{ab_for, curl, AbReport};
use lb_tests::nginx::{check_shares, Nginx};
use lb_tests::process::{wait_until, ChildGuard};
use lb_tests::scenario::Web;
use lb_tests::topology::{Forwarding, Topology};

/// Checks fast enough that a test sees several cycles in a few seconds.
const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(300);
const RISE: u32 = 2;
const FALL: u32 = 2;
/// Room for a loaded 2-core machine on top of what the checks need.
const MARGIN: Duration = Duration::from_millis(1500);

fn metrics_addr() -> SocketAddr {
    "127.0.0.1:9469".parse().unwrap()
}

/// HTTP checks on every real server of the default service, and metrics.
fn with_checks(_: &Topology, config: &mut LbConfig) {
    config.metrics_listen = Some(metrics_addr());
    config.services[0].health_check = Some(HealthCheck::http(INTERVAL, TIMEOUT, RISE, FALL));
}

/// How many log lines contain `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn addr_of(web: &Web, i: usize) -> String {
    web.topo.reals[i].addr.to_string()
}

fn wait_all(web: &Web, reals: std::ops::Range<usize>, state: &str, limit: Duration) {
    for i in reals {
        web.agent
            .wait_health(&addr_of(web, i), state, limit)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

fn metrics(web: &Web) -> String {
    scrape_metrics(&web.topo.balancer.ns, metrics_addr()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Health checks of real server `i` counted by the metrics endpoint with
/// `result` ("ok" | "failed").
fn checks(web: &Web, text: &str, i: usize, result: &str) -> f64 {
    let series = format!(
        "lb_health_check_duration_seconds_count{{service=\"web\",real_server=\"{}:80\",result=\"{result}\"}}",
        addr_of(web, i)
    );
    metric(text, &series).unwrap_or(0.0)
}

/// curl through the VIP `n` times; the bodies, trimmed.
fn curl_vip(web: &Web, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            curl(&web.topo.client.ns, &web.vip_url())
                .unwrap_or_else(|e| panic!("{e:#}\nlb log:\n{}", web.agent.log()))
                .trim()
                .to_string()
        })
        .collect()
}

/// Stops the nginx of every real server (SIGTERM: master and workers go).
fn stop_real_servers(web: &mut Web) {
    web.nginx.clear();
}

/// Starts nginx again on real servers 0..n, each with its own name.
fn start_real_servers(web: &mut Web, n: usize) {
    for h in &web.topo.reals[..n] {
        web.nginx
            .push(Nginx::start(&h.ns, &h.name).expect("restarting nginx"));
    }
}

#[test]
fn all_real_servers_down_the_sorry_server_answers_until_they_rise() {
    // Real servers 1-3; the fourth host is the sorry server, in its own
    // namespace and not a real server of the service.
    let mut web = Web::start_configured(Forwarding::Nat, 4, |topo, config| {
        with_checks(topo, config);
        let vs = &mut config.services[0];
        vs.real_servers.truncate(3);
        vs.sorry_server = Some(SocketAddr::new(IpAddr::V4(topo.reals[3].addr), 80));
    });
    drop(web.nginx.pop());
    let sorry = Nginx::start(&web.topo.reals[3].ns, "sorry").expect("starting the sorry nginx");
    wait_all(&web, 0..3, "up", Duration::from_secs(10));
    let answers = curl_vip(&web, 12);
    assert!(
        answers.iter().all(|a| a.starts_with("realserver")),
        "with every real server up, the sorry server answered: {answers:?}"
    );

    stop_real_servers(&mut web);
    let stopped = Instant::now();
    wait_all(&web, 0..3, "down", Duration::from_secs(10));
    eprintln!(
        "every real server down {:?} after the stop",
        stopped.elapsed()
    );
    let before = sorry.requests();
    let answers = curl_vip(&web, 10);
    assert!(
        answers.iter().all(|a| a == "sorry"),
        "with every real server down, not every answer came from the sorry server: {answers:?}"
    );
    assert_eq!(sorry.requests() - before, 10, "the sorry server's own log");
    let status = web.agent.status_json().unwrap();
    let sorry_addr = web.topo.reals[3].addr.to_string();
    let entry = real_server(&status, &sorry_addr)
        .unwrap_or_else(|| panic!("lb status does not list the sorry server: {status}"));
    assert_eq!(entry["sorry"], true, "{status}");

    start_real_servers(&mut web, 3);
    let restarted = Instant::now();
    wait_all(&web, 0..3, "up", Duration::from_secs(10));
    let back = restarted.elapsed();
    eprintln!("every real server up again {back:?} after the restart");
    let sorry_before = sorry.requests();
    let answers = curl_vip(&web, 30);
    assert!(
        answers.iter().all(|a| a.starts_with("realserver")),
        "after the real servers rose, the sorry server still answered: {answers:?}"
    );
    let distinct: std::collections::BTreeSet<_> = answers.iter().collect();
    assert!(
        distinct.len() >= 2,
        "only {distinct:?} answered after the rise"
    );
    assert_eq!(
        sorry.requests(),
        sorry_before,
        "the sorry server got requests"
    );

    let log = web.agent.log();
    assert_eq!(
        lines_with(
            &log,
            "no real server is up: new flows go to the sorry server"
        ),
        1,
        "the sorry-server transition should be logged once:\n{log}"
    );
    assert_eq!(
        lines_with(&log, "a real server is up again"),
        1,
        "the way back should be logged once:\n{log}"
    );
    drop(sorry);
    web.finish();
}

#[test]
fn all_real_servers_down_without_sorry_server_packets_are_dropped_and_counted() {
    let mut web = Web::start_configured(Forwarding::Nat, 3, with_checks);
    wait_all(&web, 0..3, "up", Duration::from_secs(10));
    curl_vip(&web, 3);

    stop_real_servers(&mut web);
    wait_all(&web, 0..3, "down", Duration::from_secs(10));
    let s0 = web.agent.status_json().unwrap();
    let m0 = metrics(&web);
    let dropped = "lb_xdp_events_total{event=\"no_backend\"}";
    // Sending the requests is what makes drops: each curl's SYN and its
    // retransmission within the time limit.
    const TRIES: u64 = 5;
    for i in 0..TRIES {
        let r = web
            .topo
            .client
            .ns
            .exec(&["curl", "-sS", "--max-time", "2", &web.vip_url()]);
        assert!(
            r.is_err(),
            "request {i} got an answer with every real server down: {r:?}"
        );
    }
    let s1 = web.agent.status_json().unwrap();
    let m1 = metrics(&web);
    let (e0, e1) = (
        s0["events"]["no_backend"].as_u64().unwrap(),
        s1["events"]["no_backend"].as_u64().unwrap(),
    );
    let (d0, d1) = (
        s0["verdicts"]["drop"].as_u64().unwrap(),
        s1["verdicts"]["drop"].as_u64().unwrap(),
    );
    eprintln!("no_backend {e0} -> {e1}, drop verdicts {d0} -> {d1}");
    assert!(
        e1 >= e0 + TRIES,
        "lb status: no_backend went from {e0} to {e1} over {TRIES} refused requests"
    );
    assert!(d1 >= d0 + TRIES, "lb status: drops went from {d0} to {d1}");
    let (p0, p1) = (metric(&m0, dropped), metric(&m1, dropped));
    assert!(
        p1.unwrap_or(0.0) >= p0.unwrap_or(0.0) + TRIES as f64,
        "metrics: {dropped} went from {p0:?} to {p1:?}"
    );

    start_real_servers(&mut web, 3);
    wait_all(&web, 0..3, "up", Duration::from_secs(10));
    let answers = curl_vip(&web, 10);
    assert!(
        answers.iter().all(|a| a.starts_with("realserver")),
        "{answers:?}"
    );
    let log = web.agent.log();
    assert_eq!(
        lines_with(&log, "no real server is up and no sorry_server"),
        1,
        "{} packets dropped: the transition should be logged once, not per packet:\n{log}",
        e1 - e0
    );
    assert_eq!(
        lines_with(&log, "a real server is up again"),
        1,
        "the way back should be logged once:\n{log}"
    );
    web.finish();
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Command,
    Sighup,
}

/// ab runs through the VIP while the config changes from real servers 1-3
/// (weights 1, 1, 1) to 1, 3 and 4 (weights 1, 2, 1): server 2 removed,
/// server 4 added, server 3's weight doubled.
fn reload_under_load(via: Via) {
    const SECONDS: u32 = 8;
    let mut web = Web::start_configured(Forwarding::Nat, 4, |_, config| {
        config.services[0].real_servers.truncate(3);
    });
    let url = web.vip_url();
    let mut next = web.config.clone();
    let mut all = lb_tests::agent::VirtualServer::tcp(&web.topo, 80, &[1, 1, 2, 1]);
    all.real_servers.remove(1);
    next.services = vec![all];
    let (removed, added) = (addr_of(&web, 1), addr_of(&web, 3));
    // nginx's own readiness probe is in its log already.
    let at_start = web.counts();
    let web_ref = &web;
    let (report, before, after_reload, applied) = std::thread::scope(|scope| {
        let load = scope.spawn(|| ab_for(&web_ref.topo.client.ns, &url, SECONDS, 20));
        std::thread::sleep(Duration::from_millis(2500));
        let before = web_ref.counts();
        let asked = Instant::now();
        match via {
            Via::Command => {
                let out = web_ref.agent.reload_command(&next).unwrap();
                assert!(
                    out.status.success(),
                    "lb reload failed: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    web_ref.agent.log()
                );
                eprintln!("lb reload: {}", String::from_utf8_lossy(&out.stdout).trim());
            }
            Via::Sighup => web_ref.agent.reload(&next).unwrap(),
        }
        assert!(
            wait_until(Duration::from_secs(5), || {
                web_ref.agent.status_json().is_ok_and(|s| {
                    real_server(&s, &removed).is_none() && real_server(&s, &added).is_some()
                })
            }),
            "lb status does not show the new real servers 5 s after the reload:\n{}",
            web_ref.agent.log()
        );
        let applied = asked.elapsed();
        // Requests already on server 2 when it left finish there.
        std::thread::sleep(Duration::from_millis(500));
        let after_reload = web_ref.counts();
        let report: AbReport = load
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e:#}\nlb log:\n{}", web_ref.agent.log()));
        (report, before, after_reload, applied)
    });
    web.config = next;
    let end = web.counts();
    eprintln!(
        "{via:?}: reload applied in {applied:?}; ab {report:?}; requests per server before \
         {before:?}, at the reload {after_reload:?}, at the end {end:?}"
    );
    assert!(report.complete > 1000, "too few requests: {report:?}");
    assert_eq!(
        report.failed, 0,
        "requests failed across the reload: {report:?}"
    );
    assert_eq!(report.non_2xx, 0, "{report:?}");
    let since: Vec<usize> = end.iter().zip(&after_reload).map(|(e, a)| e - a).collect();
    assert_eq!(
        since[1], 0,
        "the removed real server got requests after the reload: {since:?}"
    );
    assert!(
        since[3] > 0,
        "the added real server got no requests: {since:?}"
    );
    assert_eq!(
        before[3], at_start[3],
        "server 4 served before it was added: {before:?}"
    );
    // Every new connection is scheduled by the new table, even on a client
    // port whose earlier connection left a flow-table entry.
    check_shares(&since, &[1, 0, 2, 1], 0.25)
        .unwrap_or_else(|e| panic!("{e:#}\nrequests since the reload: {since:?}"));
    web.finish();
}

#[test]
fn reload_with_lb_reload_under_ab_adds_removes_and_reweighs_without_failures() {
    reload_under_load(Via::Command);
}

#[test]
fn reload_with_sighup_under_ab_adds_removes_and_reweighs_without_failures() {
    reload_under_load(Via::Sighup);
}

/// `lb status --json` without what moves by itself: counters, flows,
/// times and the last check's latency.
fn settled(mut status: serde_json::Value) -> serde_json::Value {
    let obj = status.as_object_mut().unwrap();
    obj.remove("verdicts");
    obj.remove("events");
    // How old the flow counts are: changes with every request, like flows.
    obj.remove("flows_counted_ago_ms");
    for s in obj["services"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("stats");
        for r in s["real_servers"].as_array_mut().unwrap() {
            let r = r.as_object_mut().unwrap();
            r.remove("stats");
            r.remove("flows");
            if let Some(h) = r.get_mut("health").and_then(|h| h.as_object_mut()) {
                h.remove("for_secs");
                h.remove("last");
            }
        }
    }
    status
}

#[test]
fn reload_with_an_invalid_file_is_rejected_like_lb_check_and_changes_nothing() {
    let web = Web::start_configured(Forwarding::Nat, 3, with_checks);
    wait_all(&web, 0..3, "up", Duration::from_secs(10));
    let before = settled(web.agent.status_json().unwrap());

    let url = web.vip_url();
    std::thread::scope(|scope| {
        let load = scope.spawn(|| ab_for(&web.topo.client.ns, &url, 6, 10));
        std::thread::sleep(Duration::from_millis(1500));

        // Valid TOML, invalid config: a weight the schema refuses.
        let mut bad = web.config.clone();
        bad.services[0].real_servers[1].weight = 100_000;
        let out = web.agent.reload_command(&bad).unwrap();
        let reload_err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "lb reload accepted an invalid file");
        let check = web.agent.check_own_config().unwrap();
        assert!(
            !check.status.success(),
            "lb check accepted the invalid file"
        );
        let check_err = String::from_utf8_lossy(&check.stderr).to_string();
        let message = check_err.trim().trim_start_matches("lb: ");
        assert!(!message.is_empty(), "lb check printed no message");
        assert!(
        reload_err.contains(message),
        "lb reload's message differs from lb check's:\nreload: {reload_err}\ncheck: {check_err}"
    );
        eprintln!("lb reload: {}", reload_err.trim());
        // The same file through SIGHUP: refused too, the agent keeps running.
        web.agent.reload(&bad).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || {
                lines_with(&web.agent.log(), "reload rejected") >= 2
            }),
            "no rejection logged after SIGHUP:\n{}",
            web.agent.log()
        );

        let report = load
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e:#}\nlb log:\n{}", web.agent.log()));
        eprintln!("ab across the rejected reloads: {report:?}");
        assert!(report.complete > 500, "{report:?}");
        assert_eq!(report.failed, 0, "{report:?}");
        assert_eq!(report.non_2xx, 0, "{report:?}");
    });
    let after = settled(web.agent.status_json().unwrap());
    assert_eq!(before, after, "lb status changed across a rejected reload");
    web.finish();
}

#[test]
fn a_server_that_accepts_but_never_answers_goes_down_by_timeout_alone() {
    let mut web = Web::start_configured(Forwarding::Nat, 3, with_checks);
    wait_all(&web, 0..3, "up", Duration::from_secs(10));

    // Real server 2 now accepts connections and reads requests forever.
    drop(web.nginx.remove(1));
    let r2 = &web.topo.reals[1].ns;
    let mut socat = r2.command("socat");
    socat
        .args(["TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:sleep 600"])
        .stdin(Stdio::null());
    let _hang = ChildGuard::spawn("socat holding connections", &mut socat).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            r2.exec(&["ss", "-Htln", "( sport = :80 )"])
                .is_ok_and(|o| !o.trim().is_empty())
        }),
        "socat does not listen on port 80"
    );
    let replaced = Instant::now();
    let m0 = metrics(&web);
    let took = web
        .agent
        .wait_health(&addr_of(&web, 1), "down", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // Up to one interval before the first hanging check starts, then
    // `fall` checks each ended by the timeout.
    let bound = INTERVAL * FALL + TIMEOUT + MARGIN;
    eprintln!("the hanging server went down {took:?} after it stopped answering");
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
    let status = web.agent.status_json().unwrap();
    let last = real_server(&status, &addr_of(&web, 1)).unwrap()["health"]["last"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains("timed out"),
        "lb status should show the timeout as the last error, shows {last:?}"
    );
    for i in [0, 2] {
        assert_eq!(web.agent.health_of(&addr_of(&web, i)).unwrap(), "up");
    }

    // The other servers' checks keep their pace while every check of
    // server 2 hangs until its timeout.
    let since = replaced.elapsed() + Duration::from_secs(3);
    std::thread::sleep(Duration::from_secs(3));
    let m1 = metrics(&web);
    let expected = since.as_secs_f64() / INTERVAL.as_secs_f64();
    for (i, result) in [(0, "ok"), (2, "ok"), (1, "failed")] {
        let n = checks(&web, &m1, i, result) - checks(&web, &m0, i, result);
        eprintln!("server {}: {n} {result} checks in {since:?}", i + 1);
        assert!(
            n >= (expected * 0.6).floor(),
            "server {} had {n} {result} checks in {since:?}, about {expected:.0} expected",
            i + 1
        );
    }
    let text = web.agent.status_text().unwrap();
    assert!(text.contains("timed out"), "{text}");
    let answers = curl_vip(&web, 20);
    assert!(
        answers
            .iter()
            .all(|a| a == "realserver1" || a == "realserver3"),
        "{answers:?}"
    );
    web.finish();
}
