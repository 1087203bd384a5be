//! Two lb nodes sharing one service with VRRP, as a user runs them:
//! - DR (seed 000's layout doubled) and NAT (seed 001's, with a sync group
//!   moving the client-side VIP and the real servers' gateway together): a
//!   long download through the VIP survives `kill -9` of the master (link
//!   down: node loss) and its return, byte for byte; `ab` across the same
//!   failover prints its failed requests.
//! - Seed 002's day: under `ab`, `lb vrrp handoff`, stop, start,
//!   `lb vrrp resume`: no failed request.
//! - Every kind of bad advert is ignored, counted by reason in
//!   `lb status --json` (`vrrp[i].rejected`), and changes no state.
//! - Two masters after a partition heals: one steps down, the fence and
//!   notify hooks run.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lb_tests::agent::{RealServer, VirtualServer, VrrpInstanceConfig, VrrpSyncGroupConfig};
use lb_tests::client::{curl, url, AbReport};
use lb_tests::topology::Forwarding;
use lb_tests::vrrp::topology::{node_addr, real_addr, Layout, GATEWAY, VIP};
use lb_tests::vrrp::traffic::{ab_during, sha256, Download, Pinger};
use lb_tests::vrrp::{Cluster, Kind, NodeSpec, HA_FILE_BYTES};

const HIGH: u8 = 150;
const LOW: u8 = 100;
/// keepalived's crash takeover at 1 s adverts (3 x 1 + 156/256 s) and the
/// lateness allowed (see vrrp_interop.rs).
const CRASH_TAKEOVER: f64 = 3.61;
const LATE: f64 = 0.3;

fn instance(name: &str, dev: &str, vrid: u8, priority: u8, vip: &str) -> VrrpInstanceConfig {
    VrrpInstanceConfig {
        auth_pass: Some("1111".into()),
        state: if priority == HIGH { "master" } else { "backup" }.into(),
        ..VrrpInstanceConfig::new(name, dev, vrid, priority, &[vip])
    }
}

/// `web`: VIP:80/tcp over every real server of `layout`, weight 1.
fn web(layout: Layout, reals: &[IpAddr]) -> VirtualServer {
    let forwarding = match layout {
        Layout::Nat { .. } => Forwarding::Nat,
        _ => Forwarding::Dr,
    };
    VirtualServer {
        name: "web".into(),
        address: IpAddr::V4(VIP),
        port: 80,
        protocol: "tcp".into(),
        forwarding,
        real_servers: reals
            .iter()
            .map(|&address| RealServer {
                address,
                port: (forwarding == Forwarding::Nat).then_some(80),
                weight: 1,
            })
            .collect(),
        sorry_server: None,
        health_check: None,
    }
}

fn real_addrs(layout: Layout) -> Vec<IpAddr> {
    let n = match layout {
        Layout::Dr { reals } | Layout::Nat { reals } => reals,
        Layout::Plain => 0,
    };
    (0..n).map(|i| IpAddr::V4(real_addr(layout, i))).collect()
}

/// Two lb nodes balancing `web`. DR: one instance with the VIP. NAT: a
/// sync group of the VIP (eth0) and the real servers' gateway (eth1).
fn lb_pair(layout: Layout) -> Cluster {
    let node = |priority| {
        let service = web(layout, &real_addrs(layout));
        match layout {
            Layout::Nat { .. } => NodeSpec {
                services: vec![service],
                interfaces: vec!["eth0".into(), "eth1".into()],
                sync_groups: vec![VrrpSyncGroupConfig {
                    name: "NAT".into(),
                    instances: vec!["VI_CLIENT".into(), "VI_SERVERS".into()],
                    notify: None,
                }],
                ..NodeSpec::new(
                    Kind::Lb,
                    vec![
                        instance("VI_CLIENT", "eth0", 51, priority, &format!("{VIP}/24")),
                        instance("VI_SERVERS", "eth1", 52, priority, &format!("{GATEWAY}/24")),
                    ],
                )
            },
            _ => NodeSpec {
                services: vec![service],
                interfaces: vec!["eth0".into()],
                ..NodeSpec::new(
                    Kind::Lb,
                    vec![instance(
                        "VI_CLIENT",
                        "eth0",
                        51,
                        priority,
                        &format!("{VIP}/24"),
                    )],
                )
            },
        }
    };
    Cluster::new(layout, vec![node(HIGH), node(LOW)]).unwrap()
}

/// Starts both nodes and waits for node1 to hold every address.
fn elect(c: &Cluster, addrs: &[IpAddr]) {
    c.start_all().unwrap();
    c.wait_state(0, "VI_CLIENT", "MASTER", Duration::from_secs(6))
        .unwrap();
    for &a in addrs {
        c.wait_holders(a, &[0], Duration::from_secs(2)).unwrap();
    }
    c.wait_state(1, "VI_CLIENT", "BACKUP", Duration::from_secs(1))
        .unwrap();
}

fn expected_digest(c: &Cluster) -> String {
    sha256(&c.dir.join("ha.bin")).unwrap()
}

fn print_ab(what: &str, r: &AbReport) {
    println!(
        "{what}: ab completed {} requests, failed {} {}, non-2xx {}, {:.0} req/s, p99 {} ms",
        r.complete, r.failed, r.failed_kinds, r.non_2xx, r.requests_per_sec, r.p99_ms
    );
}

/// The download and ab across kill -9 (link down) of the master and its
/// return, for `layout`.
fn download_and_ab_survive_crash_and_return(layout: Layout) {
    let c = lb_pair(layout);
    let mut addrs = vec![IpAddr::V4(VIP)];
    if matches!(layout, Layout::Nat { .. }) {
        addrs.push(IpAddr::V4(GATEWAY));
    }
    elect(&c, &addrs);
    let client = &c.topo.client.ns;
    let body = curl(client, &url(IpAddr::V4(VIP), 80, "/")).unwrap();
    assert!(body.starts_with("realserver"), "{body}");

    let out = c.dir.join("download.bin");
    let download = Download::start(
        client,
        &url(IpAddr::V4(VIP), 80, "/slow/ha.bin"),
        out,
        Duration::from_secs(60),
    )
    .unwrap();
    let pinger = Pinger::start(client, &VIP.to_string(), c.dir.join("ping.txt")).unwrap();
    let vip_url = url(IpAddr::V4(VIP), 80, "/");
    let (report, takeover) = ab_during(client, &vip_url, 12, 4, Duration::from_secs(1), || {
        assert!(download.bytes() > 0, "the download has not started");
        let dead = c.crash(0).unwrap();
        c.wait_state(1, "VI_CLIENT", "MASTER", Duration::from_secs(5))
            .unwrap();
        // node1 may still have them on its dead links: lb drops them when
        // it sees the link go down, if it lives long enough to.
        for &a in &addrs {
            c.wait_held_by(1, a, Duration::from_secs(1)).unwrap();
        }
        let takeover = dead.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        c.recover(0).unwrap();
        c.wait_state(0, "VI_CLIENT", "MASTER", Duration::from_secs(6))
            .unwrap();
        for &a in &addrs {
            c.wait_holders(a, &[0], Duration::from_secs(2)).unwrap();
        }
        takeover
    });
    println!(
        "kill -9 + link down -> node2 MASTER with every address: {:.3} s",
        takeover.as_secs_f64()
    );
    assert!(
        takeover.as_secs_f64() <= CRASH_TAKEOVER + LATE,
        "takeover took {takeover:?}\n{}",
        c.report()
    );
    let ping = pinger.finish().unwrap();
    println!(
        "client's longest ping gap (10 ms pings to the VIP): {:.3} s",
        ping.longest_gap.as_secs_f64()
    );
    // The client is cut off from the kill to the new master's gratuitous
    // ARP: at most keepalived's 3.61 s, and the return costs nothing.
    assert!(
        ping.longest_gap.as_secs_f64() <= CRASH_TAKEOVER + LATE,
        "{ping:?}\n{}",
        c.report()
    );
    let report = report.unwrap();
    print_ab("across the crash and return", &report);

    let got = download.finish(Duration::from_secs(40)).unwrap();
    assert!(
        got.success && got.bytes == HA_FILE_BYTES as u64,
        "download through the VIP: {got:?}\n{}",
        c.report()
    );
    assert_eq!(
        got.sha256,
        expected_digest(&c),
        "the downloaded bytes differ"
    );
    assert_eq!(report.non_2xx, 0, "{report:?}");
    assert_eq!(
        report.failed,
        0,
        "ab saw failed requests across the failover: {report:?}\n{}",
        c.report()
    );
}

#[test]
fn dr_download_and_ab_survive_master_kill_and_return() {
    download_and_ab_survive_crash_and_return(Layout::Dr { reals: 2 });
}

#[test]
fn nat_sync_group_download_and_ab_survive_master_kill_and_return() {
    download_and_ab_survive_crash_and_return(Layout::Nat { reals: 2 });
}

/// Seed 002's daily reboot of one node, without a service stop.
#[test]
fn seed002_handoff_stop_start_resume_under_ab_loses_nothing() {
    let layout = Layout::Dr { reals: 2 };
    let c = lb_pair(layout);
    let vip = IpAddr::V4(VIP);
    elect(&c, &[vip]);
    let client = &c.topo.client.ns;
    let (report, ()) = ab_during(
        client,
        &url(vip, 80, "/"),
        10,
        4,
        Duration::from_secs(1),
        || {
            let t = Instant::now();
            let out = c.nodes[0].vrrp_command(&["handoff"]).unwrap();
            assert!(out.status.success(), "lb vrrp handoff: {out:?}");
            c.wait_holders(vip, &[1], Duration::from_secs(2)).unwrap();
            println!(
                "handoff -> VIP on node2: {:.3} s",
                t.elapsed().as_secs_f64()
            );
            let v = c.lb_vrrp(0, "VI_CLIENT").unwrap();
            assert_eq!(v["state"], "backup", "{v}");
            assert_eq!(v["handed_off"], true, "{v}");
            // Stays backup although its priority is higher.
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(c.holders(vip), vec![1]);
            c.stop(0).unwrap();
            assert_eq!(c.holders(vip), vec![1], "the stop moved the VIP");
            c.start(0).unwrap();
            let out = c.nodes[0].vrrp_command(&["resume"]).unwrap();
            assert!(out.status.success(), "lb vrrp resume: {out:?}");
            c.wait_state(0, "VI_CLIENT", "MASTER", Duration::from_secs(6))
                .unwrap();
            c.wait_holders(vip, &[0], Duration::from_secs(2)).unwrap();
        },
    );
    let report = report.unwrap();
    print_ab("seed 002's day", &report);
    assert_eq!(
        (report.failed, report.non_2xx),
        (0, 0),
        "{report:?}\n{}",
        c.report()
    );
}

fn pyvrrp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/pyvrrp.py")
}

/// Sends adverts from node2's namespace with `tools/pyvrrp.py` (a copy in
/// tests/data): 3 adverts 100 ms apart, priority 200, plus `args`.
fn send(c: &Cluster, args: &[&str]) {
    let py = pyvrrp();
    let mut cmd = c.topo.nodes[1].ns.command("python3");
    cmd.arg(&py)
        .args(["send", "--prio", "200", "--count", "3", "--adv", "0.1"]);
    cmd.args(args);
    let out = cmd.output().expect("running pyvrrp.py");
    assert!(
        out.status.success(),
        "pyvrrp.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn counters(c: &Cluster, instance: &str) -> serde_json::Value {
    c.lb_vrrp(0, instance).unwrap()
}

/// One lb node, master of a v2 PASS instance (VRID 51) and a v3 one
/// (VRID 53); a stranger on the segment sends adverts with one defect
/// each at priority 200, which would take mastership if accepted.
#[test]
fn bad_adverts_are_ignored_and_counted_by_reason() {
    let vip = format!("{VIP}/24");
    let v3_vip = "192.168.253.130/24";
    let v2 = VrrpInstanceConfig {
        auth_pass: Some("1111".into()),
        ..VrrpInstanceConfig::new("VI_2", "eth0", 51, 100, &[&vip])
    };
    let v3 = VrrpInstanceConfig {
        version: 3,
        ..VrrpInstanceConfig::new("VI_3", "eth0", 53, 100, &[v3_vip])
    };
    // node2 runs no VRRP: its namespace is where the stranger sends from.
    let c = Cluster::new(
        Layout::Plain,
        vec![
            NodeSpec::new(Kind::Lb, vec![v2, v3]),
            NodeSpec::new(Kind::Lb, vec![]),
        ],
    )
    .unwrap();
    c.start(0).unwrap();
    for name in ["VI_2", "VI_3"] {
        c.wait_state(0, name, "MASTER", Duration::from_secs(6))
            .unwrap();
    }
    let v2_base = [
        "--version",
        "2",
        "--adv-field",
        "1",
        "--auth-pass",
        "1111",
        "--vip",
        &VIP.to_string(),
    ]
    .map(String::from);
    let v3_ip = "192.168.253.130";
    let v3_base = [
        "--version",
        "3",
        "--vrid",
        "53",
        "--adv-field",
        "100",
        "--vip",
        v3_ip,
    ]
    .map(String::from);
    // (instance, what, reason lb counts it under, pyvrrp arguments)
    let probes: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (
            "VI_2",
            "wrong password",
            "auth",
            with(&v2_base, &["--auth-pass", "2222"]),
        ),
        (
            "VI_2",
            "auth type 0",
            "auth",
            with(&v2_base, &["--auth-type", "0"]),
        ),
        ("VI_2", "TTL 64", "ttl", with(&v2_base, &["--ttl", "64"])),
        (
            "VI_2",
            "bad checksum",
            "checksum",
            with(&v2_base, &["--checksum", "bad"]),
        ),
        (
            "VI_2",
            "other VRID (52)",
            "vrid",
            with(&v2_base, &["--vrid", "52"]),
        ),
        (
            "VI_2",
            "v3 advert to a v2 instance",
            "version",
            [
                "--version",
                "3",
                "--adv-field",
                "100",
                "--vrid",
                "51",
                "--vip",
                &VIP.to_string(),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "VI_2",
            "advert interval 2 s vs 1 s",
            "interval",
            with(&v2_base, &["--adv-field", "2"]),
        ),
        (
            "VI_2",
            "extra address (count 2)",
            "address_count",
            with(&v2_base, &["--vip", "192.168.253.11"]),
        ),
        (
            "VI_2",
            "other address",
            "addresses",
            vec![
                "--version",
                "2",
                "--adv-field",
                "1",
                "--auth-pass",
                "1111",
                "--vip",
                "192.168.253.99",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        ),
        (
            "VI_2",
            "short packet (10 bytes)",
            "length",
            with(&v2_base, &["--truncate", "10"]),
        ),
        (
            "VI_3",
            "v3 checksum without pseudo-header",
            "checksum",
            with(&v3_base, &["--checksum", "v3-nopseudo"]),
        ),
        (
            "VI_3",
            "v3 bad checksum",
            "checksum",
            with(&v3_base, &["--checksum", "bad"]),
        ),
        ("VI_3", "v3 TTL 64", "ttl", with(&v3_base, &["--ttl", "64"])),
    ];
    let mut table = String::new();
    for (inst, what, reason, args) in &probes {
        let before = counters(&c, inst);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        send(&c, &args);
        let counted = |v: &serde_json::Value| v["rejected"][reason].as_u64().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut after = counters(&c, inst);
        while counted(&after) < counted(&before) + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            after = counters(&c, inst);
        }
        table += &format!(
            "\n  {inst} {what}: rejected[{reason}] {} -> {}, state {}",
            counted(&before),
            counted(&after),
            after["state"]
        );
        assert_eq!(
            counted(&after),
            counted(&before) + 3,
            "{what}: 3 adverts not counted as {reason:?}: {after}\n{}",
            c.report()
        );
        assert_eq!(
            after["state"], "master",
            "{what} changed the state: {after}"
        );
        assert_eq!(
            after["adverts_received"], before["adverts_received"],
            "{what} was accepted: {after}"
        );
        assert_eq!(
            after["last_transition"]["at_unix_ms"], before["last_transition"]["at_unix_ms"],
            "{what} made a transition: {after}"
        );
    }
    println!("bad adverts:{table}");
    assert_eq!(c.holders(IpAddr::V4(VIP)), vec![0]);

    // The same stranger with a correct advert is obeyed: the probes above
    // reached lb and were refused for their defect alone.
    send(&c, &v2_base.iter().map(String::as_str).collect::<Vec<_>>());
    c.wait_state(0, "VI_2", "BACKUP", Duration::from_secs(1))
        .unwrap();
    let v = counters(&c, "VI_2");
    assert!(v["adverts_received"].as_u64() >= Some(1), "{v}");
    assert_eq!(v["master"], node_addr(1).to_string(), "{v}");
}

fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

/// Both nodes master during a partition; when it heals, the lower one
/// steps down and the higher one, hearing another master, runs its fence
/// hook with the other's address. The partition heals node1's side first
/// so node1 surely hears node2's adverts before node2 yields (healed at
/// once, either could hear the other first, and a master that yields
/// before the other hears it never shows up as a conflict).
#[test]
fn partition_heals_one_master_steps_down_and_hooks_run() {
    let fast = |priority| VrrpInstanceConfig {
        version: 3,
        advert_interval: Duration::from_millis(100),
        ..VrrpInstanceConfig::new("VI_1", "eth0", 51, priority, &[&format!("{VIP}/24")])
    };
    let c = Cluster::new(
        Layout::Plain,
        vec![
            NodeSpec::new(Kind::Lb, vec![fast(HIGH)]),
            NodeSpec::new(Kind::Lb, vec![fast(LOW)]),
        ],
    )
    .unwrap();
    let vip = IpAddr::V4(VIP);
    c.start_all().unwrap();
    c.wait_state(0, "VI_1", "MASTER", Duration::from_secs(2))
        .unwrap();
    c.wait_state(1, "VI_1", "BACKUP", Duration::from_secs(1))
        .unwrap();

    c.topo.deafen(0, true).unwrap();
    c.topo.deafen(1, true).unwrap();
    c.wait_state(1, "VI_1", "MASTER", Duration::from_secs(2))
        .unwrap();
    c.wait_holders(vip, &[0, 1], Duration::from_secs(1))
        .unwrap();
    assert_eq!(c.state(0, "VI_1"), "MASTER");

    c.topo.deafen(0, false).unwrap();
    let fenced = lb_tests::process::wait_until(Duration::from_secs(2), || {
        c.nodes[0].fence_log().contains("INSTANCE VI_1")
    });
    assert!(
        fenced,
        "node1 heard another master and ran no fence hook\n{}",
        c.report()
    );
    c.topo.deafen(1, false).unwrap();
    c.wait_state(1, "VI_1", "BACKUP", Duration::from_secs(2))
        .unwrap();
    c.wait_holders(vip, &[0], Duration::from_secs(1)).unwrap();
    assert_eq!(c.state(0, "VI_1"), "MASTER", "{}", c.report());

    let fence = c.nodes[0].fence_log();
    assert!(
        fence.contains(&format!("INSTANCE VI_1 {}", node_addr(1))),
        "fence call on node1: {fence}"
    );
    let v = c.lb_vrrp(0, "VI_1").unwrap();
    assert!(v["master_conflicts"].as_u64() >= Some(1), "{v}");
    let log = c.nodes[1].notify_log();
    let master = log.rfind("INSTANCE VI_1 MASTER");
    let backup = log.rfind("INSTANCE VI_1 BACKUP");
    assert!(
        master.is_some() && backup > master,
        "node2's notify calls should end in BACKUP after its MASTER: {log}"
    );
    // Still one master a few adverts later.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.holders(vip), vec![0], "{}", c.report());
}
