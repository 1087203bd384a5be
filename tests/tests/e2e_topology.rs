//! The harness on its own, without `lb`: in both topologies the client
//! reaches every real server directly (the balancer only routes, in NAT),
//! over IPv4, IPv6 and UDP. When an `lb` test fails and this passes, the
//! fault is in `lb`, not in the namespaces.

use std::net::{IpAddr, SocketAddr};

use lb_tests::client::{ab, curl, url};
use lb_tests::nginx::Nginx;
use lb_tests::topology::{Forwarding, Topology};
use lb_tests::udp;

fn start_nginx(topo: &Topology) -> Vec<Nginx> {
    topo.reals
        .iter()
        .map(|h| Nginx::start(&h.ns, &h.name).expect("starting nginx"))
        .collect()
}

#[test]
fn nat_topology_routes_client_to_each_real_server() {
    let topo = Topology::new(Forwarding::Nat, 3).unwrap();
    let nginx = start_nginx(&topo);
    for (h, n) in topo.reals.iter().zip(&nginx) {
        let body = curl(&topo.client.ns, &url(IpAddr::V4(h.addr), 80, "/")).unwrap();
        assert_eq!(body.trim(), h.name);
        let body = curl(&topo.client.ns, &url(IpAddr::V6(h.addr6.unwrap()), 80, "/")).unwrap();
        assert_eq!(body.trim(), h.name);
        // The server sees the client's own address: routed, not proxied.
        assert_eq!(n.requests_from(&topo.client.addr.to_string()).unwrap(), 1);
    }
    let report = ab(
        &topo.client.ns,
        &url(IpAddr::V4(topo.reals[0].addr), 80, "/"),
        300,
        10,
    )
    .unwrap();
    assert_eq!(report.complete, 300);
    assert_eq!(report.failed, 0, "{report:?}");

    let real = &topo.reals[1];
    let _echo = udp::echo_server(&real.ns, &real.name, 7000).unwrap();
    let replies = udp::echo_requests(
        &topo.client.ns,
        SocketAddr::new(IpAddr::V4(real.addr), 7000),
        5,
    )
    .unwrap();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(
            r.as_deref(),
            Some(format!("realserver2 hello {i}").as_str())
        );
    }
}

#[test]
fn dr_topology_puts_client_and_real_servers_on_one_segment() {
    let topo = Topology::new(Forwarding::Dr, 3).unwrap();
    let _nginx = start_nginx(&topo);
    for h in &topo.reals {
        let body = curl(&topo.client.ns, &url(IpAddr::V4(h.addr), 80, "/")).unwrap();
        assert_eq!(body.trim(), h.name);
    }
    // Without lb the VIP is the balancer's own address: real servers hold
    // it on lo but never answer ARP for it.
    let neigh = topo
        .client
        .ns
        .exec(&["ping", "-c1", "-W2", &topo.vip.to_string()]);
    assert!(neigh.is_ok(), "VIP unreachable: {neigh:?}");
    let arp = topo
        .client
        .ns
        .ip(&["neigh", "show", &topo.vip.to_string()])
        .unwrap();
    let lb_mac = topo
        .balancer
        .ns
        .exec(&["cat", "/sys/class/net/eth0/address"])
        .unwrap();
    assert!(
        arp.contains(lb_mac.trim()),
        "VIP resolves to {arp}, balancer is {lb_mac}"
    );
}
