//! Forwarding: NAT and DR in both directions, ICMP errors, the sorry server
//! and the no-backend drop, as one table over the seed 001 world.

use super::*;

#[test]
pub(crate) fn forwarding_fixtures() {
    let lb = world();
    let mut t = Vec::new();
    use verdict::{DROP, PASS, REDIRECT, TX};

    // NAT requests: which backend is predicted from the ring and the flow
    // hash; the output is built from scratch.
    for sport in [40000u16, 40001, 40002, 51515] {
        let f = Frame::tcp(&format!("{CLIENT}:{sport}"), &format!("{VIP}:80"));
        let key = flow_key(
            &format!("{CLIENT}:{sport}"),
            &format!("{VIP}:80"),
            PROTO_TCP,
        );
        let b = lb.backends[&lb.predict(WEB, &key)];
        t.push(case(
            format!("NAT IPv4 TCP from port {sport} -> {b}"),
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            None,
        ));
    }
    let syn = Frame::tcp(&format!("{CLIENT}:40100"), &format!("{VIP}:80")).tcp_flags(0x02);
    let key = flow_key(&format!("{CLIENT}:40100"), &format!("{VIP}:80"), PROTO_TCP);
    t.push(case(
        "NAT IPv4 TCP SYN",
        Side::Client,
        syn.build(),
        REDIRECT,
        Expect::Frame(nat_out(&syn, lb.backends[&lb.predict(WEB, &key)])),
        None,
    ));
    for (sport, payload) in [(33000u16, &b"query"[..]), (33001, b"odd"), (33002, b"")] {
        let f = Frame::udp(&format!("{CLIENT}:{sport}"), &format!("{VIP}:53")).payload(payload);
        let key = flow_key(
            &format!("{CLIENT}:{sport}"),
            &format!("{VIP}:53"),
            PROTO_UDP,
        );
        let b = lb.backends[&lb.predict(DNS, &key)];
        t.push(case(
            format!("NAT IPv4 UDP {} byte payload -> {b}", payload.len()),
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            None,
        ));
    }
    {
        let f = Frame::udp(&format!("{CLIENT}:33010"), &format!("{VIP}:53")).udp_no_checksum();
        let key = flow_key(&format!("{CLIENT}:33010"), &format!("{VIP}:53"), PROTO_UDP);
        let b = lb.backends[&lb.predict(DNS, &key)];
        t.push(case(
            "NAT IPv4 UDP without checksum keeps checksum 0",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            None,
        ));
    }
    for sport in [40000u16, 40007] {
        let c = format!("[{CLIENT6}]:{sport}");
        let v = format!("[{VIP6}]:80");
        let f = Frame::tcp(&c, &v);
        let b = lb.backends[&lb.predict(WEB6, &flow_key(&c, &v, PROTO_TCP))];
        t.push(case(
            format!("NAT IPv6 TCP from port {sport} -> {b}"),
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            None,
        ));
    }
    {
        let f = Frame::udp(&format!("[{CLIENT6}]:33000"), &format!("[{VIP6}]:53"));
        t.push(case(
            "NAT IPv6 UDP",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, sock("[2001:db8:14::121]:5353"))),
            None,
        ));
        let f =
            Frame::udp(&format!("[{CLIENT6}]:33001"), &format!("[{VIP6}]:53")).udp_no_checksum();
        t.push(case(
            "NAT IPv6 UDP with checksum 0: stays 0 (not updated into a wrong value)",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, sock("[2001:db8:14::121]:5353"))),
            None,
        ));
    }

    // NAT replies: source real:port -> VIP:port, routed to the client.
    let reply = |from: &str, to: &str, vip: &str, tcp: bool| {
        let f = if tcp {
            Frame::tcp(from, to)
        } else {
            Frame::udp(from, to)
        };
        let f = f.macs(server_mac(122), ETH1_MAC);
        let out = f
            .clone()
            .src(vip)
            .ttl(63)
            .macs(ETH0_MAC, CLIENT_MAC)
            .build();
        (f.build(), out)
    };
    let (i, o) = reply(
        "172.16.14.122:8080",
        "192.168.253.1:40000",
        "192.168.253.120:80",
        true,
    );
    t.push(case(
        "NAT reply IPv4 TCP (port 8080 -> 80)",
        Side::Server,
        i,
        REDIRECT,
        Expect::Frame(o),
        Some(event::NAT_REPLY),
    ));
    let (i, o) = reply(
        "172.16.14.121:80",
        "192.168.253.1:40001",
        "192.168.253.120:80",
        true,
    );
    t.push(case(
        "NAT reply IPv4 TCP (same port)",
        Side::Server,
        i,
        REDIRECT,
        Expect::Frame(o),
        Some(event::NAT_REPLY),
    ));
    let (i, o) = reply(
        "172.16.14.121:5353",
        "192.168.253.1:33000",
        "192.168.253.120:53",
        false,
    );
    t.push(case(
        "NAT reply IPv4 UDP",
        Side::Server,
        i,
        REDIRECT,
        Expect::Frame(o),
        Some(event::NAT_REPLY),
    ));
    let (i, o) = reply(
        "[2001:db8:14::122]:8080",
        "[2001:db8:253::1]:40000",
        "[2001:db8:253::120]:80",
        true,
    );
    t.push(case(
        "NAT reply IPv6 TCP",
        Side::Server,
        i,
        REDIRECT,
        Expect::Frame(o),
        Some(event::NAT_REPLY),
    ));
    let (i, o) = reply(
        "[2001:db8:14::121]:5353",
        "[2001:db8:253::1]:33000",
        "[2001:db8:253::120]:53",
        false,
    );
    t.push(case(
        "NAT reply IPv6 UDP",
        Side::Server,
        i,
        REDIRECT,
        Expect::Frame(o),
        Some(event::NAT_REPLY),
    ));
    {
        let f = Frame::tcp("172.16.14.122:8080", "192.168.253.1:40000").ttl(1);
        t.push(case(
            "NAT reply with TTL 1: to the kernel unchanged",
            Side::Server,
            f.build(),
            PASS,
            Expect::Unchanged,
            Some(event::TTL_EXPIRED),
        ));
        // The balancer's own connection to a real server's service port
        // (a health check): the answer is for this host, not a NAT reply.
        let f =
            Frame::tcp("172.16.14.121:80", "172.16.14.120:41000").macs(server_mac(121), ETH1_MAC);
        t.push(case(
            "real server answering the balancer itself: not a reply",
            Side::Server,
            f.build(),
            PASS,
            Expect::Unchanged,
            None,
        ));
        let f = Frame::tcp("[2001:db8:14::121]:80", "[2001:db8:14::120]:41000")
            .macs(server_mac(121), ETH1_MAC);
        t.push(case(
            "real server answering the balancer itself over IPv6: not a reply",
            Side::Server,
            f.build(),
            PASS,
            Expect::Unchanged,
            None,
        ));
        let f = Frame::tcp("172.16.14.122:9999", "192.168.253.1:40000");
        t.push(case(
            "packet from a real server's other port: not a reply",
            Side::Server,
            f.build(),
            PASS,
            Expect::Unchanged,
            None,
        ));
    }

    // DR: MACs rewritten, IP packet untouched, back out of eth0 (XDP_TX).
    for sport in [50000u16, 50001, 50002] {
        let c = format!("{CLIENT}:{sport}");
        let v = "192.168.253.130:389";
        let f = Frame::tcp(&c, v);
        let b = lb.backends[&lb.predict(LDAP, &flow_key(&c, v, PROTO_TCP))];
        let out = f.clone().macs(ETH0_MAC, neighbour_mac(b.ip())).build();
        t.push(case(
            format!("DR IPv4 -> {b}"),
            Side::Client,
            f.build(),
            TX,
            Expect::Frame(out),
            None,
        ));
    }
    {
        let f = Frame::tcp(&format!("[{CLIENT6}]:50000"), "[2001:db8:253::130]:389");
        let out = f.clone().macs(ETH0_MAC, dr_mac(10)).build();
        t.push(case(
            "DR IPv6",
            Side::Client,
            f.build(),
            TX,
            Expect::Frame(out),
            None,
        ));
        let f = Frame::tcp(&format!("{CLIENT}:50010"), "192.168.253.130:389").ttl(1);
        let b = lb.backends[&lb.predict(
            LDAP,
            &flow_key(&format!("{CLIENT}:50010"), "192.168.253.130:389", PROTO_TCP),
        )];
        let out = f.clone().macs(ETH0_MAC, neighbour_mac(b.ip())).build();
        t.push(case(
            "DR with TTL 1: IP untouched, forwarded",
            Side::Client,
            f.build(),
            TX,
            Expect::Frame(out),
            None,
        ));
        let f = Frame::tcp(&format!("{CLIENT}:50000"), "192.168.253.131:389");
        t.push(case(
            "DR real server without neighbour entry: dropped",
            Side::Client,
            f.build(),
            DROP,
            Expect::Unchanged,
            Some(event::NEIGH_MISS),
        ));
    }

    // Options, VLAN, TTL, no backend, sorry server, unresolved next hop.
    {
        let c = format!("{CLIENT}:40200");
        let f = Frame::tcp(&c, &format!("{VIP}:80")).ipv4_options(&[0x94, 0x04, 0, 0]); // router alert
        let b = lb.backends[&lb.predict(WEB, &flow_key(&c, &format!("{VIP}:80"), PROTO_TCP))];
        t.push(case(
            "NAT IPv4 with options: forwarded, options kept",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            Some(event::IP_OPTIONS),
        ));
        let f = Frame::tcp(&c, &format!("{VIP}:80")).ipv4_options(&[1; 40]); // IHL 15
        t.push(case(
            "NAT IPv4 with 40 bytes of options (IHL 15)",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            Some(event::IP_OPTIONS),
        ));
    }
    {
        let c = format!("{CLIENT}:40300");
        let f = Frame::tcp(&c, &format!("{VIP}:80")).vlan(100);
        let b = lb.backends[&lb.predict(WEB, &flow_key(&c, &format!("{VIP}:80"), PROTO_TCP))];
        let rewritten = f.clone().dst(&b.to_string()).build();
        t.push(case(
            "VLAN-tagged NAT request routed to another device: rewritten, to the kernel (its VLAN devices tag the egress)",
            Side::Client,
            f.build(),
            PASS,
            Expect::Frame(rewritten),
            None,
        ));
        let c = format!("{CLIENT}:50100");
        let f = Frame::tcp(&c, "192.168.253.130:389").vlan(100);
        let b = lb.backends[&lb.predict(LDAP, &flow_key(&c, "192.168.253.130:389", PROTO_TCP))];
        let out = f.clone().macs(ETH0_MAC, neighbour_mac(b.ip())).build();
        t.push(case(
            "VLAN-tagged DR request: tag kept, sent back on the same link",
            Side::Client,
            f.build(),
            TX,
            Expect::Frame(out),
            None,
        ));
    }
    {
        let f = Frame::tcp(&format!("{CLIENT}:40400"), &format!("{VIP}:80")).ttl(1);
        t.push(case(
            "NAT request with TTL 1: to the kernel unchanged (time exceeded)",
            Side::Client,
            f.build(),
            PASS,
            Expect::Unchanged,
            Some(event::TTL_EXPIRED),
        ));
        let f = Frame::tcp(&format!("[{CLIENT6}]:40400"), &format!("[{VIP6}]:80")).ttl(1);
        t.push(case(
            "NAT IPv6 request with hop limit 1",
            Side::Client,
            f.build(),
            PASS,
            Expect::Unchanged,
            Some(event::TTL_EXPIRED),
        ));
        let f = Frame::tcp(&format!("{CLIENT}:40401"), &format!("{VIP}:80")).ttl(2);
        let b = lb.backends[&lb.predict(
            WEB,
            &flow_key(&format!("{CLIENT}:40401"), &format!("{VIP}:80"), PROTO_TCP),
        )];
        t.push(case(
            "NAT request with TTL 2: forwarded with TTL 1",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, b)),
            None,
        ));
    }
    {
        let f = Frame::tcp(&format!("{CLIENT}:40500"), &format!("{VIP}:81"));
        t.push(case(
            "service without real servers: dropped",
            Side::Client,
            f.build(),
            DROP,
            Expect::Unchanged,
            Some(event::NO_BACKEND),
        ));
        let f = Frame::tcp(&format!("{CLIENT}:40500"), &format!("{VIP}:82"));
        t.push(case(
            "service without real servers: sorry server",
            Side::Client,
            f.build(),
            REDIRECT,
            Expect::Frame(nat_out(&f, sock("172.16.14.123:80"))),
            None,
        ));
        let f = Frame::tcp(&format!("{CLIENT}:40500"), &format!("{VIP}:83"));
        let rewritten = f.clone().dst("172.16.14.124:80").build();
        t.push(case(
            "NAT next hop without neighbour entry: rewritten, to the kernel",
            Side::Client,
            f.build(),
            PASS,
            Expect::Frame(rewritten),
            Some(event::NEIGH_MISS),
        ));
        let f = Frame::tcp(&format!("{CLIENT}:40500"), &format!("{VIP}:84"));
        let rewritten = f.clone().dst("10.99.0.1:80").build();
        t.push(case(
            "NAT backend without a route: rewritten, to the kernel",
            Side::Client,
            f.build(),
            PASS,
            Expect::Frame(rewritten),
            Some(event::FIB_MISS),
        ));
    }

    run_table(&lb, &t);

    // Counters of the requests above: every forwarded request packet counts
    // in_packets on its service, a new flow counts conns.
    let web = lb.counters(names::SERVICE_STATS, WEB);
    assert!(
        web.conns >= 8 && web.in_packets >= web.conns,
        "WEB counters {web:?}"
    );
    let sorry = lb.counters(names::BACKEND_STATS, 10);
    assert_eq!(
        (sorry.conns, sorry.in_packets),
        (1, 1),
        "sorry server counters"
    );
    let b2 = lb.counters(names::BACKEND_STATS, 2);
    assert_eq!(b2.out_packets, 1, "replies counted on backend 2: {b2:?}");
    assert!(b2.out_bytes > 0);
    assert_eq!(lb.counters(names::SERVICE_STATS, EMPTY).in_packets, 0);
}
