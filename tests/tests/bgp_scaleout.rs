//! Scale-out behind ECMP (issue 13), as a user runs it: three lb nodes,
//! each announcing the VIPs through its own BIRD 2 to a router running
//! FRR, which spreads the client's flows over them (see `lb_tests::bgp`).
//!
//! In order: the spread over all nodes; `lb drain` under `ab`; one node
//! losing every real server of one service; `kill -9` of an agent; a node
//! lost altogether; a long download and `ab` across a node joining and
//! another leaving.

use std::time::{Duration, Instant};

use lb_tests::bgp::{node_addr, router, Cluster, VIP_API, VIP_WEB};
use lb_tests::client::{ab, curl, url};
use lb_tests::vrrp::traffic::{ab_during, sha256, write_pattern, Download};

/// The longest the router may take to act on an announcement or a
/// withdrawal lb made (BIRD scans its kernel table every second, BGP
/// updates are sent at once).
const ROUTE_CHANGE: Duration = Duration::from_secs(10);

fn web(path: &str) -> String {
    url(VIP_WEB.into(), 80, path)
}

fn conns(c: &Cluster) -> Vec<u64> {
    c.nodes
        .iter()
        .flatten()
        .map(|n| n.conns().expect("lb status"))
        .collect()
}

#[test]
fn flows_from_many_client_ports_spread_over_every_node() {
    let c = Cluster::new(3).expect("building the scale-out rig");
    assert_eq!(
        curl(&c.client, &web("/"))
            .expect("one request through the VIP")
            .trim_end()
            .len(),
        "realserver1".len()
    );
    let before = conns(&c);
    let report = ab(&c.client, &web("/"), 900, 10).expect("ab through the VIP");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.complete, 900);
    let after = conns(&c);
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    println!("new connections per node for 900 requests: {per_node:?}");
    // Every request is a new connection scheduled by exactly one node;
    // a few more flow entries come from the last packets of connections
    // whose entry was replaced (a handful, never a second node's share).
    let total: u64 = per_node.iter().sum();
    assert!(
        (900..=945).contains(&total),
        "{total} connections for 900 requests: {per_node:?}"
    );
    for (i, n) in per_node.iter().enumerate() {
        // An even spread is 300 each; ECMP hashing is uneven on small
        // samples, but a node with under a sixth gets no real share.
        assert!(
            *n >= 150,
            "node{} got {n} of 900 connections: {per_node:?}",
            i + 1
        );
    }
    // What lb status shows a user.
    let text = c.node(0).lb(&c.bin, &["status"]).expect("lb status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Announce (routes in table 200 proto 252 dev lo): ANNOUNCING"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{VIP_WEB}")) && text.contains("announced"),
        "{text}"
    );
}

#[test]
fn drain_under_ab_fails_no_request_and_the_node_gets_no_new_flows() {
    let c = Cluster::new(3).expect("building the scale-out rig");
    let all: Vec<_> = (0..3).map(node_addr).collect();
    let (report, drained) = ab_during(&c.client, &web("/"), 8, 8, Duration::from_secs(2), || {
        let started = Instant::now();
        let out = c
            .node(0)
            .lb(&c.bin, &["drain", "--wait", "--timeout", "30"])
            .expect("lb drain");
        (started.elapsed(), out)
    });
    let report = report.expect("ab");
    let (took, out) = drained;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("lb drain --wait took {took:?}:\n{stdout}");
    assert!(
        out.status.success(),
        "lb drain --wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("drained: safe to stop"), "{stdout}");
    println!("ab across the drain: {report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.complete > 100, "{report:?}");
    // The router has withdrawn node1 from both VIPs.
    for vip in [VIP_WEB, VIP_API] {
        c.wait_next_hops(vip, &all[1..], ROUTE_CHANGE)
            .expect("node1 withdrawn");
    }
    assert_eq!(
        c.node(0).announce_routes().unwrap().trim(),
        "",
        "routes left in table 200"
    );
    // Drained: new flows go elsewhere.
    let before = conns(&c);
    let r = ab(&c.client, &web("/"), 300, 10).expect("ab after the drain");
    assert_eq!(r.failed, 0, "{r:?}");
    let after = conns(&c);
    assert_eq!(
        after[0], before[0],
        "a drained node got new flows: {before:?} -> {after:?}"
    );
    let json = c.node(0).status_json().unwrap();
    assert_eq!(json["announce"]["drain"], "drained", "{json}");
    assert_eq!(json["announce"]["vips"][0]["reason"], "draining", "{json}");
    // And back.
    let out = c.node(0).lb(&c.bin, &["undrain"]).expect("lb undrain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_next_hops(VIP_WEB, &all, ROUTE_CHANGE)
        .expect("node1 announced again");
}

#[test]
fn a_node_that_sees_every_real_server_of_a_service_down_withdraws_that_vip_only() {
    let c = Cluster::new(3).expect("building the scale-out rig");
    let all: Vec<_> = (0..3).map(node_addr).collect();
    c.block_api(1, true).unwrap();
    let took = c
        .wait_next_hops(VIP_API, &[all[0], all[2]], ROUTE_CHANGE)
        .expect("node2 withdraws the api VIP");
    println!("api VIP withdrawn by node2 {took:?} after its checks started failing");
    // The other VIP keeps all three paths, and node2 says why.
    assert_eq!(c.next_hops(VIP_WEB), all);
    let json = c.node(1).status_json().unwrap();
    let vips = json["announce"]["vips"].as_array().unwrap();
    let api = vips
        .iter()
        .find(|v| v["address"] == VIP_API.to_string())
        .unwrap();
    assert_eq!(api["announced"], false, "{json}");
    assert_eq!(api["reason"], "no_real_server_up", "{json}");
    assert!(c.node(1).announced(VIP_WEB).unwrap());
    let r = ab(&c.client, &url(VIP_API.into(), 80, "/"), 300, 10).expect("ab to the api VIP");
    assert_eq!(r.failed, 0, "{r:?}");
    // Checks pass again: announced again.
    c.block_api(1, false).unwrap();
    c.wait_next_hops(VIP_API, &all, ROUTE_CHANGE)
        .expect("node2 announces the api VIP again");
    // A route deleted by hand (or a flush) is put back within the
    // announcer's resync period.
    c.node(1)
        .ns
        .ip(&[
            "route",
            "del",
            &format!("{VIP_WEB}/32"),
            "table",
            "200",
            "proto",
            "252",
        ])
        .expect("deleting node2's route by hand");
    c.wait_next_hops(VIP_WEB, &[all[0], all[2]], ROUTE_CHANGE)
        .expect("the router follows the deletion");
    let back = c
        .wait_next_hops(VIP_WEB, &all, ROUTE_CHANGE)
        .expect("lb puts the deleted route back");
    println!("a route deleted by hand was back in the router after {back:?}");
    // `[announce] addresses` narrowed by `lb reload`: node2 withdraws the
    // VIP it no longer lists, and only that one.
    let config = c.node_config(c.node(1)).replace(
        "[announce]\n",
        &format!("[announce]\naddresses = [\"{VIP_WEB}\"]\n"),
    );
    std::fs::write(c.node(1).dir.join("lb.toml"), config).unwrap();
    let out = c.node(1).lb(&c.bin, &["reload"]).expect("lb reload");
    assert!(
        out.status.success(),
        "lb reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_next_hops(VIP_API, &[all[0], all[2]], ROUTE_CHANGE)
        .expect("node2 withdraws the VIP removed from [announce] addresses");
    assert_eq!(c.next_hops(VIP_WEB), all);
}

#[test]
fn kill_9_of_an_agent_withdraws_nothing_and_xdp_keeps_forwarding() {
    let c = Cluster::new(3).expect("building the scale-out rig");
    let all: Vec<_> = (0..3).map(node_addr).collect();
    let routes = c.node(1).announce_routes().unwrap();
    c.node(1).kill_agent().expect("kill -9");
    // Longer than BGP's hold time: a withdrawal would have happened.
    std::thread::sleep(Duration::from_secs(router::HOLD_SECS + 2));
    assert_eq!(
        c.node(1).announce_routes().unwrap(),
        routes,
        "the routes changed"
    );
    assert_eq!(c.next_hops(VIP_WEB), all, "the router withdrew a node");
    // A third of the flows still reach node2, whose kernel would drop
    // them (the VIP is not local there, forwarding is off): only its XDP
    // program can forward them.
    let r = ab(&c.client, &web("/"), 600, 10).expect("ab after kill -9");
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(r.complete, 600);
    // `lb unload` takes the announcements away with the data plane.
    let out = c.node(1).unload(&c.bin).expect("lb unload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lb unload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("removed 2 announced routes from table 200"),
        "{stdout}"
    );
    assert_eq!(c.node(1).announce_routes().unwrap().trim(), "");
    c.wait_next_hops(VIP_WEB, &[all[0], all[2]], ROUTE_CHANGE)
        .expect("the router withdraws node2 after lb unload");
}

#[test]
fn a_node_lost_altogether_is_withdrawn_by_bfd() {
    let c = Cluster::new(3).expect("building the scale-out rig");
    let all: Vec<_> = (0..3).map(node_addr).collect();
    let (report, took) = ab_during(&c.client, &web("/"), 12, 8, Duration::from_secs(2), || {
        c.node(2)
            .ns
            .ip(&["link", "set", "eth0", "down"])
            .expect("link down");
        c.wait_next_hops(VIP_WEB, &all[..2], Duration::from_secs(20))
    });
    let took = took.expect("the router withdraws the lost node");
    let report = report.expect("ab");
    println!(
        "node3 lost: withdrawn by the router {:.2} s after its link went down (BFD {} ms x {}, \
         BGP hold time {} s); ab across it: {} complete, {} failed {}",
        took.as_secs_f64(),
        router::BFD_INTERVAL_MS,
        router::BFD_MULTIPLIER,
        router::HOLD_SECS,
        report.complete,
        report.failed,
        report.failed_kinds
    );
    // BFD declares the node down after 300 ms; the hold time (3 s) would
    // be the fallback, so this fails if BFD does not do its job.
    assert!(
        took <= Duration::from_millis(1500),
        "withdrawn only after {took:?}: BFD did not detect the loss"
    );
    // After the withdrawal nothing fails.
    let r = ab(&c.client, &web("/"), 300, 10).expect("ab after the withdrawal");
    assert_eq!(r.failed, 0, "{r:?}");
}

#[test]
fn a_long_download_and_ab_survive_a_node_joining_and_another_leaving() {
    const FILE_BYTES: usize = 3 << 20;
    let mut c = Cluster::new(3).expect("building the scale-out rig");
    let dir = lb_tests::tempdir::TempDir::new("bgp-download").unwrap();
    for (_, nginx) in &c.reals {
        write_pattern(&nginx.www().join("long.bin"), FILE_BYTES).unwrap();
    }
    let expected = sha256(&c.reals[0].1.www().join("long.bin")).unwrap();
    // /slow/ is rate-limited by nginx: about 12 s for 3 MiB.
    let download = Download::start(
        &c.client,
        &web("/slow/long.bin"),
        dir.join("long.bin"),
        Duration::from_secs(60),
    )
    .expect("starting the download");
    // ab in the background while a node joins and another leaves.
    let ab = c
        .client
        .command("ab")
        .args([
            "-q", "-r", "-s", "10", "-t", "14", "-n", "10000000", "-c", "8",
        ])
        .arg(web("/"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting ab");
    std::thread::sleep(Duration::from_secs(2));
    let joined = c.add_node().expect("adding node4");
    let four: Vec<_> = (0..4).map(node_addr).collect();
    let t_join = c
        .wait_next_hops(VIP_WEB, &four, Duration::from_secs(30))
        .expect("the router uses node4");
    std::thread::sleep(Duration::from_secs(2));
    c.node(0).stop_agent().expect("stopping node1's agent");
    let t_leave = c
        .wait_next_hops(VIP_WEB, &four[1..], ROUTE_CHANGE)
        .expect("the router drops node1");
    let changes = (joined, t_join, t_leave);
    let out = ab.wait_with_output().expect("ab");
    let report = lb_tests::client::parse_ab(&String::from_utf8_lossy(&out.stdout));
    let report = report.expect("ab");
    println!(
        "node{} joined (in the router {:?} after it started), node1 left ({:?}); ab: {report:?}",
        changes.0 + 1,
        changes.1,
        changes.2
    );
    assert_eq!(report.failed, 0, "{report:?}");
    // The new node took its share of the new flows.
    let joined_conns = c.node(changes.0).conns().expect("lb status on node4");
    assert!(
        joined_conns > 100,
        "node4 scheduled only {joined_conns} connections"
    );
    let got = download
        .finish(Duration::from_secs(60))
        .expect("the download");
    assert!(got.success, "the download failed: {}", got.error);
    assert_eq!(got.bytes, FILE_BYTES as u64);
    assert_eq!(got.sha256, expected, "the file changed on the way");
}

#[test]
fn frr_as_the_nodes_daemon_announces_and_withdraws_the_same_way() {
    // examples/bgp/frr-node.conf's setup: zebra imports table 200, bgpd
    // redistributes it. Cluster::with_daemon waits until the router has
    // both VIPs through all three nodes.
    let c = Cluster::with_daemon(3, lb_tests::bgp::node::Daemon::Frr)
        .expect("building the rig with FRR on the nodes");
    let all: Vec<_> = (0..3).map(node_addr).collect();
    let before = conns(&c);
    let r = ab(&c.client, &web("/"), 600, 10).expect("ab through the VIP");
    assert_eq!(r.failed, 0, "{r:?}");
    let after = conns(&c);
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        assert!(
            a - b >= 100,
            "node{} got {} of 600: {before:?} -> {after:?}",
            i + 1,
            a - b
        );
    }
    // One node's view of a dead service: that VIP only.
    c.block_api(2, true).unwrap();
    c.wait_next_hops(VIP_API, &all[..2], ROUTE_CHANGE)
        .expect("node3 withdraws the api VIP through FRR");
    assert_eq!(c.next_hops(VIP_WEB), all);
    // Drain: everything from that node.
    let out = c.node(0).lb(&c.bin, &["drain"]).expect("lb drain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_next_hops(VIP_WEB, &all[1..], ROUTE_CHANGE)
        .expect("node1 withdrawn through FRR");
}
