//! LVS-NAT as in seed 001, with `lb` in place of IPVS: the client reaches
//! every real server through the VIP, ab sees no failure, shares follow the
//! weights (counted in the real servers' own logs), UDP and IPv6 work, a
//! weight-0 server gets nothing new, the balancer's own addresses answer.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use lb_tests::agent::VirtualServer;
use lb_tests::client::{ab, curl, url};
use lb_tests::forwarding_checks as checks;
use lb_tests::nginx::{check_shares, Nginx};
use lb_tests::scenario::Web;
use lb_tests::topology::Forwarding;
use lb_tests::udp;

#[test]
fn nat_curl_through_vip_reaches_each_real_server() {
    let web = Web::start(Forwarding::Nat, &[1, 1, 1]);
    let seen = checks::every_real_server_answers(&web);
    // NAT keeps the client's address: the servers log the client, not lb.
    let from_client: usize = web
        .nginx
        .iter()
        .map(|n| n.requests_from(&web.topo.client.addr.to_string()).unwrap())
        .sum();
    assert_eq!(from_client, seen.values().sum::<usize>());
    web.finish();
}

#[test]
fn nat_ab_equal_weights_no_failures_even_shares() {
    checks::shares_follow_weights(Forwarding::Nat, &[1, 1, 1]);
}

#[test]
fn nat_ab_weights_1_2_3_shares_follow_weights() {
    checks::shares_follow_weights(Forwarding::Nat, &[1, 2, 3]);
}

#[test]
fn nat_udp_echo_through_vip() {
    const PORT: u16 = 7000;
    const DATAGRAMS: usize = 60;
    let web = Web::start_with(Forwarding::Nat, &[1, 1, 1], |topo| {
        vec![VirtualServer::for_topology(
            topo,
            "echo",
            IpAddr::V4(topo.vip),
            PORT,
            "udp",
            &[1, 1, 1],
        )]
    });
    let _echo: Vec<_> = web
        .topo
        .reals
        .iter()
        .map(|h| udp::echo_server(&h.ns, &h.name, PORT).unwrap())
        .collect();
    // Each socket is connected to VIP:PORT, so a reply arrives only when
    // its source was translated back to the VIP.
    let vip = SocketAddr::new(IpAddr::V4(web.topo.vip), PORT);
    let replies = udp::echo_requests(&web.topo.client.ns, vip, DATAGRAMS).unwrap();
    let mut servers = BTreeSet::new();
    for (i, reply) in replies.iter().enumerate() {
        let reply = reply
            .as_deref()
            .unwrap_or_else(|| panic!("no reply to datagram {i}; lb log:\n{}", web.agent.log()));
        let (server, echoed) = reply.split_once(' ').expect("reply is '<server> <line>'");
        assert_eq!(echoed, format!("hello {i}"));
        servers.insert(server.to_string());
    }
    assert_eq!(servers.len(), 3, "UDP flows reached only {servers:?}");
    web.finish();
}

#[test]
fn nat_ipv6_vip_reaches_each_real_server() {
    let web = Web::start_with(Forwarding::Nat, &[1, 1, 1], |topo| {
        vec![VirtualServer::for_topology(
            topo,
            "web6",
            IpAddr::V6(topo.vip6.unwrap()),
            80,
            "tcp",
            &[1, 1, 1],
        )]
    });
    let vip6 = url(IpAddr::V6(web.topo.vip6.unwrap()), 80, "/");
    let seen = web.curl_until(&vip6, 3, 100);
    assert_eq!(seen.len(), 3, "answers through the IPv6 VIP: {seen:?}");
    let report = ab(&web.topo.client.ns, &vip6, 600, 10).unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.complete, 600, "{report:?}");
    let from_client: usize = web
        .nginx
        .iter()
        .map(|n| {
            n.requests_from(&web.topo.client.addr6.unwrap().to_string())
                .unwrap()
        })
        .sum();
    assert_eq!(from_client, 600 + seen.values().sum::<usize>());
    web.finish();
}

#[test]
fn nat_weight_zero_gets_no_new_flows() {
    let weights = [1, 1, 0];
    let web = Web::start(Forwarding::Nat, &weights);
    let counts = checks::weight_zero_gets_no_new_flows(&web, &weights);
    check_shares(&counts, &weights, checks::TOLERANCE).unwrap();
    web.finish();
}

#[test]
fn nat_balancer_own_addresses_work_while_attached() {
    let web = Web::start(Forwarding::Nat, &[1, 1, 1]);
    // The balancer serves port 80 on every address of its own: VIP traffic
    // must still go to the real servers, the rest to this nginx.
    let own = Nginx::start(&web.topo.balancer.ns, "balancer").unwrap();
    let client = &web.topo.client.ns;
    for addr in [web.topo.balancer.addr.to_string(), web.topo.vip.to_string()] {
        client
            .exec(&["ping", "-c", "2", "-W", "2", &addr])
            .unwrap_or_else(|e| panic!("ping {addr} while lb is attached: {e:#}"));
    }
    let body = curl(client, &url(IpAddr::V4(web.topo.balancer.addr), 80, "/")).unwrap();
    assert_eq!(body.trim(), "balancer");
    let ipv6 = curl(
        client,
        &url(IpAddr::V6(web.topo.balancer.addr6.unwrap()), 80, "/"),
    )
    .unwrap();
    assert_eq!(ipv6.trim(), "balancer");
    // From the server side too: the gateway address answers.
    let rs = &web.topo.reals[0].ns;
    rs.exec(&["ping", "-c", "2", "-W", "2", "172.16.14.120"])
        .unwrap();
    let body = curl(rs, "http://172.16.14.120/").unwrap();
    assert_eq!(body.trim(), "balancer");
    let seen = web.curl_until(&web.vip_url(), 3, 60);
    assert!(
        !seen.contains_key("balancer"),
        "VIP traffic reached the balancer's own nginx: {seen:?}"
    );
    drop(own);
    web.finish();
}

/// Weight 0 drains: an established slow download from the drained server
/// completes while new flows go elsewhere. Needs the weight changed while
/// `lb run` keeps running (a restart would drop the flow table): the test
/// rewrites the config and sends SIGHUP, as an operator would.
#[test]
fn nat_drained_server_finishes_existing_download() {
    use lb_tests::nginx::BIG_FILE_BYTES;
    use lb_tests::process::{wait_until, ChildGuard};
    use std::time::Duration;

    let mut web = Web::start(Forwarding::Nat, &[1, 1, 1]);
    let out = web.dir.join("big.bin");
    // 4 MiB at 256 KiB/s: about 16 s, long enough to drain mid-transfer.
    let mut download = web.topo.client.ns.command("curl");
    download
        .args(["-sS", "-g", "-o"])
        .arg(&out)
        .arg(url(IpAddr::V4(web.topo.vip), 80, "/slow/big.bin"))
        .stdin(std::process::Stdio::null());
    let mut download = ChildGuard::spawn("slow download", &mut download).unwrap();
    let mut serving = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            serving = web.topo.reals.iter().position(|h| {
                h.ns.exec(&["ss", "-Htn", "state", "established", "( sport = :80 )"])
                    .map(|o| !o.trim().is_empty())
                    .unwrap_or(false)
            });
            serving.is_some()
        }),
        "the download reached no real server"
    );
    let drained = serving.unwrap();
    let mut weights = [1, 1, 1];
    weights[drained] = 0;
    web.config.services = vec![VirtualServer::tcp(&web.topo, 80, &weights)];
    web.agent.reload(&web.config).unwrap();
    let drained_addr = web.topo.reals[drained].addr.to_string();
    assert!(
        wait_until(Duration::from_secs(5), || {
            web.agent.status_json().is_ok_and(|s| {
                s["services"][0]["real_servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["address"] == drained_addr.as_str() && r["weight"] == 0)
            })
        }),
        "lb status does not show weight 0 after SIGHUP:\n{}",
        web.agent.log()
    );

    let before = web.counts();
    let report = ab(&web.topo.client.ns, &web.vip_url(), 600, 10).unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    let counts: Vec<usize> = web
        .counts()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(
        counts[drained], 0,
        "the drained server got new requests: {counts:?}"
    );

    assert!(
        wait_until(Duration::from_secs(30), || download.try_wait().is_some()),
        "the download from the drained server did not finish"
    );
    let status = download.try_wait().unwrap();
    assert!(
        status.success(),
        "curl of the drained server's file: {status}"
    );
    let len = std::fs::metadata(&out).unwrap().len();
    assert_eq!(len, BIG_FILE_BYTES as u64, "download truncated");
    web.finish();
}
