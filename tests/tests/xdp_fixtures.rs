//! BPF_PROG_TEST_RUN fixtures of the real XDP object (`lb_userspace::EBPF_OBJECT`).
//!
//! Each test loads the object, fills its maps with `lb_common` types as the
//! agent would, and runs frames through the program: tables of (what, input
//! frame, expected verdict, expected output frame, expected event), in the
//! manner of Katran's tests. Expected frames are built from scratch by
//! `lb_tests::packet`, so the program's incremental checksum updates are
//! compared with full recomputations.
//!
//! `bpf_fib_lookup` inside a test run answers from the network namespace of
//! the ingress device named in the run's context (`xdp_md.ingress_ifindex`,
//! passed through `ctx_in`). Each test therefore moves its thread into a
//! private namespace with the seed 001 balancer's two interfaces (veth),
//! addresses, permanent neighbour entries and forwarding on; the kernel's
//! real routing decides where a packet goes. Needs root (CAP_SYS_ADMIN,
//! CAP_BPF, CAP_NET_ADMIN) and `ip` (iproute2).

#[path = "common/xdp_world.rs"]
mod xdp_world;

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, SocketAddr},
};

use lb_common::{
    event, names, verdict, Flow, NO_BACKEND, PROTO_TCP, PROTO_UDP, SVC_F_DR, SVC_F_NAT,
};
use lb_tests::packet::{
    verify_checksums, Frame, Mac, CLIENT_MAC, ETH_P_8021Q, TCP_ACK, TCP_PSH, TCP_SYN,
};
use xdp_world::*;

// ---------------------------------------------------------------------------
// Fixture tables.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

enum Expect {
    /// Output equals input (the rule for every PASS of a frame that is not
    /// a rewritten NAT packet).
    Unchanged,
    Frame(Vec<u8>),
}

struct Case {
    what: String,
    ingress: Side,
    input: Vec<u8>,
    verdict: u32,
    output: Expect,
    /// An event this packet must count (exactly once).
    event: Option<u32>,
}

fn case(
    what: impl Into<String>,
    ingress: Side,
    input: Vec<u8>,
    verdict: u32,
    output: Expect,
    event: Option<u32>,
) -> Case {
    Case {
        what: what.into(),
        ingress,
        input,
        verdict,
        output,
        event,
    }
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Runs a table; reports every failing row, then fails.
fn run_table(lb: &Lb, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let ifindex = match c.ingress {
            Side::Client => lb.net.eth0,
            Side::Server => lb.net.eth1,
        };
        let before = lb.events();
        let verdicts_before = lb.verdicts();
        let (action, out) = lb.run(ifindex, &c.input);
        let after = lb.events();
        let mut why = Vec::new();
        if action != c.verdict {
            why.push(format!(
                "verdict {} (expected {})",
                verdict_name(action),
                verdict_name(c.verdict)
            ));
        }
        if lb.verdicts()[action.min(verdict::COUNT - 1) as usize]
            != verdicts_before[action.min(verdict::COUNT - 1) as usize] + 1
        {
            why.push("VERDICT_STATS did not count the verdict".into());
        }
        let expected = match &c.output {
            Expect::Unchanged => &c.input,
            Expect::Frame(f) => f,
        };
        if &out != expected {
            why.push(format!(
                "output differs\n  got:\n    {}\n  expected:\n    {}",
                hex(&out),
                hex(expected)
            ));
        }
        if let Expect::Frame(f) = &c.output {
            if let Err(e) = verify_checksums(&out) {
                why.push(format!("output checksum wrong: {e}"));
            }
            debug_assert!(verify_checksums(f).is_ok());
        }
        if let Some(e) = c.event {
            let d = after[e as usize] - before[e as usize];
            if d != 1 {
                why.push(format!(
                    "event {} counted {d} times (expected 1)",
                    event::NAMES[e as usize]
                ));
            }
        }
        if !why.is_empty() {
            failures.push(format!("- {}: {}", c.what, why.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn verdict_name(v: u32) -> &'static str {
    verdict::NAMES.get(v as usize).copied().unwrap_or("?")
}

#[test]
fn forwarding_fixtures() {
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

#[test]
fn malformed_and_foreign_frames_pass_untouched() {
    let lb = world();
    let mut t = Vec::new();
    use verdict::PASS;

    // Truncated at every length from the Ethernet header to one byte short
    // (BPF_PROG_TEST_RUN refuses frames under 14 bytes).
    let full = [
        (
            "IPv4 TCP",
            Frame::tcp(&format!("{CLIENT}:40000"), &format!("{VIP}:80")),
        ),
        (
            "IPv4 UDP",
            Frame::udp(&format!("{CLIENT}:40000"), &format!("{VIP}:53")),
        ),
        (
            "VLAN IPv4 TCP",
            Frame::tcp(&format!("{CLIENT}:40000"), &format!("{VIP}:80")).vlan(5),
        ),
        (
            "IPv4 TCP with options",
            Frame::tcp(&format!("{CLIENT}:40000"), &format!("{VIP}:80"))
                .ipv4_options(&[1, 1, 1, 1]),
        ),
        (
            "IPv6 TCP",
            Frame::tcp(&format!("[{CLIENT6}]:40000"), &format!("[{VIP6}]:80")),
        ),
        (
            "NAT reply",
            Frame::tcp("172.16.14.121:80", &format!("{CLIENT}:40000")),
        ),
    ];
    for (what, f) in &full {
        let bytes = f.build();
        for len in 14..bytes.len() {
            let ingress = if what.starts_with("NAT reply") {
                Side::Server
            } else {
                Side::Client
            };
            t.push(case(
                format!("{what} truncated to {len} of {} bytes", bytes.len()),
                ingress,
                bytes[..len].to_vec(),
                PASS,
                Expect::Unchanged,
                Some(event::TRUNCATED),
            ));
        }
    }

    let vip80 = || Frame::tcp(&format!("{CLIENT}:40000"), &format!("{VIP}:80"));
    for ihl in [0u8, 3, 4] {
        t.push(case(
            format!("IHL {ihl}"),
            Side::Client,
            vip80().ihl(ihl).build(),
            PASS,
            Expect::Unchanged,
            Some(event::MALFORMED),
        ));
    }
    t.push(case(
        "IHL 15 beyond the packet's total length",
        Side::Client,
        vip80().ihl(15).build(),
        PASS,
        Expect::Unchanged,
        Some(event::MALFORMED),
    ));
    {
        let mut b = vip80().build();
        b[14] = (b[14] & 0x0f) | 0x50;
        t.push(case(
            "IP version 5 under EtherType IPv4",
            Side::Client,
            b,
            PASS,
            Expect::Unchanged,
            Some(event::MALFORMED),
        ));
        let mut b = Frame::tcp(&format!("[{CLIENT6}]:40000"), &format!("[{VIP6}]:80")).build();
        b[14] = 0x40;
        t.push(case(
            "IP version 4 under EtherType IPv6",
            Side::Client,
            b,
            PASS,
            Expect::Unchanged,
            Some(event::MALFORMED),
        ));
        let mut b = vip80().build();
        b[16..18].copy_from_slice(&1000u16.to_be_bytes());
        t.push(case(
            "IPv4 total length beyond the frame",
            Side::Client,
            b,
            PASS,
            Expect::Unchanged,
            Some(event::TRUNCATED),
        ));
    }

    {
        // IP total length that ends inside the TCP header; the frame is
        // padded to its full size, as a link layer pads short frames.
        let mut b = vip80().build();
        b[16..18].copy_from_slice(&30u16.to_be_bytes());
        t.push(case(
            "IPv4 total length ending inside the TCP header",
            Side::Client,
            b,
            PASS,
            Expect::Unchanged,
            Some(event::TRUNCATED),
        ));
        let mut b = Frame::udp(&format!("[{CLIENT6}]:40000"), &format!("[{VIP6}]:53")).build();
        b[18..20].copy_from_slice(&4u16.to_be_bytes());
        t.push(case(
            "IPv6 payload length ending inside the UDP header",
            Side::Client,
            b,
            PASS,
            Expect::Unchanged,
            Some(event::TRUNCATED),
        ));
    }

    // Fragments for a VIP are not balanced (no ports in later fragments).
    t.push(case(
        "IPv4 first fragment (MF)",
        Side::Client,
        vip80().ipv4_fragment(true, 0).build(),
        PASS,
        Expect::Unchanged,
        Some(event::FRAGMENT),
    ));
    t.push(case(
        "IPv4 middle fragment",
        Side::Client,
        vip80().ipv4_fragment(true, 185).build(),
        PASS,
        Expect::Unchanged,
        Some(event::FRAGMENT),
    ));
    t.push(case(
        "IPv4 last fragment",
        Side::Client,
        vip80().ipv4_fragment(false, 370).build(),
        PASS,
        Expect::Unchanged,
        Some(event::FRAGMENT),
    ));
    t.push(case(
        "IPv4 UDP fragment",
        Side::Client,
        Frame::udp(&format!("{CLIENT}:40000"), &format!("{VIP}:53"))
            .ipv4_fragment(true, 0)
            .build(),
        PASS,
        Expect::Unchanged,
        Some(event::FRAGMENT),
    ));
    t.push(case(
        "IPv6 fragment",
        Side::Client,
        Frame::tcp(&format!("[{CLIENT6}]:40000"), &format!("[{VIP6}]:80"))
            .ipv6_fragment(true, 0)
            .build(),
        PASS,
        Expect::Unchanged,
        Some(event::FRAGMENT),
    ));
    t.push(case(
        "IPv6 hop-by-hop header before TCP to a VIP",
        Side::Client,
        Frame::tcp(&format!("[{CLIENT6}]:40000"), &format!("[{VIP6}]:80"))
            .ipv6_ext(0, &[1, 4, 0, 0, 0, 0])
            .build(),
        PASS,
        Expect::Unchanged,
        Some(event::MALFORMED),
    ));

    // Not IP, or not for a service.
    t.push(case(
        "ARP request for the VIP",
        Side::Client,
        Frame::arp_request(CLIENT.parse().unwrap(), VIP.parse().unwrap()).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "LLDP (unknown EtherType)",
        Side::Client,
        Frame::raw(0x88cc, &[0; 40]).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "802.1ad outer tag (not parsed)",
        Side::Client,
        Frame::raw(0x88a8, &[0; 46]).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    {
        let mut qinq = vip80().vlan(5).build();
        // Second 802.1Q tag: only one is parsed.
        qinq.splice(
            16..16,
            ETH_P_8021Q.to_be_bytes().iter().chain(&[0, 6]).copied(),
        );
        t.push(case(
            "two 802.1Q tags",
            Side::Client,
            qinq,
            PASS,
            Expect::Unchanged,
            None,
        ));
    }
    t.push(case(
        "VLAN-tagged ARP",
        Side::Client,
        Frame::arp_request(CLIENT.parse().unwrap(), VIP.parse().unwrap())
            .vlan(7)
            .build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "TCP to the balancer's own address (ssh)",
        Side::Client,
        Frame::tcp(&format!("{CLIENT}:40000"), "192.168.253.254:22").build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "TCP to the VIP on a port without service",
        Side::Client,
        Frame::tcp(&format!("{CLIENT}:40000"), &format!("{VIP}:443")).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "UDP to a TCP service's port",
        Side::Client,
        Frame::udp(&format!("{CLIENT}:40000"), &format!("{VIP}:80")).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "IPv6 TCP to the balancer",
        Side::Client,
        Frame::tcp(&format!("[{CLIENT6}]:40000"), "[2001:db8:253::254]:22").build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "GRE to the VIP",
        Side::Client,
        {
            let mut f = vip80();
            f.transport = lb_tests::packet::Transport::Other { proto: 47 };
            f.build()
        },
        PASS,
        Expect::Unchanged,
        None,
    ));

    // ICMP: always the kernel's; errors about a VIP flow are counted.
    t.push(case(
        "ping to the VIP",
        Side::Client,
        Frame::icmp(&format!("{CLIENT}:0"), &format!("{VIP}:0"), 8, 0).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    t.push(case(
        "ICMPv6 echo to the VIP",
        Side::Client,
        Frame::icmp(&format!("[{CLIENT6}]:0"), &format!("[{VIP6}]:0"), 128, 0).build(),
        PASS,
        Expect::Unchanged,
        None,
    ));
    {
        // The client's "port unreachable" about a reply VIP:80 -> client.
        let quoted = Frame::tcp(&format!("{VIP}:80"), &format!("{CLIENT}:40000")).build();
        let f = Frame::icmp(&format!("{CLIENT}:0"), &format!("{VIP}:0"), 3, 3)
            .payload(&quoted[14..14 + 28]);
        t.push(case(
            "ICMP unreachable quoting a VIP:80 reply",
            Side::Client,
            f.build(),
            PASS,
            Expect::Unchanged,
            Some(event::ICMP_VIP),
        ));
        let quoted = Frame::tcp(&format!("[{VIP6}]:80"), &format!("[{CLIENT6}]:40000")).build();
        let f = Frame::icmp(&format!("[{CLIENT6}]:0"), &format!("[{VIP6}]:0"), 2, 0)
            .payload(&quoted[14..14 + 48]);
        t.push(case(
            "ICMPv6 packet too big quoting a VIP:80 reply",
            Side::Client,
            f.build(),
            PASS,
            Expect::Unchanged,
            Some(event::ICMP_VIP),
        ));
        let quoted = Frame::tcp("192.168.253.254:22", &format!("{CLIENT}:40000")).build();
        let f = Frame::icmp(&format!("{CLIENT}:0"), "192.168.253.254:0", 3, 3)
            .payload(&quoted[14..14 + 28]);
        t.push(case(
            "ICMP unreachable about the host's own ssh",
            Side::Client,
            f.build(),
            PASS,
            Expect::Unchanged,
            None,
        ));
        let f = Frame::icmp(&format!("{CLIENT}:0"), &format!("{VIP}:0"), 3, 3)
            .payload(&quoted[14..14 + 10]);
        t.push(case(
            "ICMP error with a truncated quote",
            Side::Client,
            f.build(),
            PASS,
            Expect::Unchanged,
            None,
        ));
        let mut f = Frame::icmp(&format!("{CLIENT}:0"), &format!("{VIP}:0"), 3, 3)
            .payload(&quoted[14..14 + 28])
            .build();
        f.truncate(14 + 20 + 4);
        // IPv4 total length now exceeds the frame: truncated.
        t.push(case(
            "ICMP header cut short",
            Side::Client,
            f,
            PASS,
            Expect::Unchanged,
            Some(event::TRUNCATED),
        ));
    }

    run_table(&lb, &t);
    // None of this created flows or counted traffic on a service.
    for s in [WEB, DNS, WEB6] {
        let c = lb.counters(names::SERVICE_STATS, s);
        assert_eq!(
            c,
            lb_common::Counters::default(),
            "service {s} counted {c:?}"
        );
    }
}

/// The 5-tuple's backend as the kernel chose it: the destination of the
/// rewritten frame, mapped back to the backend id.
fn kernel_choice(lb: &Lb, sport: u16, vip_port: u16, candidates: &[u32]) -> u32 {
    kernel_choice_of(lb, sport, vip_port, candidates, TCP_ACK | TCP_PSH)
}

/// Like `kernel_choice`, for a segment with TCP `flags`.
fn kernel_choice_of(lb: &Lb, sport: u16, vip_port: u16, candidates: &[u32], flags: u8) -> u32 {
    let f = Frame::tcp(&format!("{CLIENT}:{sport}"), &format!("{VIP}:{vip_port}"))
        .tcp_flags(flags)
        .build();
    let (action, out) = lb.run(lb.net.eth0, &f);
    assert_eq!(
        action,
        verdict::REDIRECT,
        "port {sport}: {}",
        verdict_name(action)
    );
    let l3 = 14;
    let dst = std::net::Ipv4Addr::new(out[l3 + 16], out[l3 + 17], out[l3 + 18], out[l3 + 19]);
    let dport = u16::from_be_bytes([out[l3 + 22], out[l3 + 23]]);
    let got = SocketAddr::new(IpAddr::V4(dst), dport);
    let ids: Vec<u32> = lb
        .backends
        .iter()
        .filter(|(id, a)| **a == got && candidates.contains(id))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "port {sport} went to {got}, not to one of the backends {candidates:?}"
    );
    ids[0]
}

#[test]
fn a_syn_on_a_port_with_a_flow_entry_is_scheduled_by_the_ring() {
    let mut lb = world();
    let (svc, port) = (31, 92);
    let ids = [50, 51];
    lb.backend(50, svc, "172.16.14.121:8080", true);
    lb.backend(51, svc, "172.16.14.122:8080", true);
    let vip = format!("{VIP}:{port}");
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[50], NO_BACKEND);
    assert_eq!(kernel_choice(&lb, 30500, port, &ids), 50);

    // 50 drained (out of the ring, still active): its connection goes on,
    // but a new connection from the same client port (a SYN without ACK,
    // the port reused after the old connection closed) is a new flow.
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[51], NO_BACKEND);
    assert_eq!(kernel_choice(&lb, 30500, port, &ids), 50, "not sticky");
    let conns = lb.counters(names::SERVICE_STATS, svc).conns;
    assert_eq!(
        kernel_choice_of(&lb, 30500, port, &ids, TCP_SYN),
        51,
        "a SYN followed a stale flow entry to the drained backend"
    );
    assert_eq!(lb.counters(names::SERVICE_STATS, svc).conns, conns + 1);
    let key = flow_key(&format!("{CLIENT}:30500"), &vip, PROTO_TCP);
    assert_eq!(lb.flow(&key).map(|f| f.backend_id), Some(51));
    assert_eq!(
        kernel_choice(&lb, 30500, port, &ids),
        51,
        "the new connection's next segment left its backend"
    );
    // A SYN-ACK is no connection start: it follows the flow table.
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[50], NO_BACKEND);
    assert_eq!(
        kernel_choice_of(&lb, 30500, port, &ids, TCP_SYN | TCP_ACK),
        51
    );
}

/// The program asks `ENDPOINT_FILTER` before `SERVICES` and `REVERSE_NAT`:
/// with the key's bit clear, a packet for the service (and a reply from its
/// real server) passes untouched; set again, it is forwarded. This is what
/// makes the agent's ordering (bit before key) necessary, and what lets a
/// packet that is not ours leave without a hash lookup.
#[test]
fn the_endpoint_filter_is_asked_before_the_maps() {
    let mut lb = world();
    let (svc, port) = (33, 94);
    lb.backend(52, svc, "172.16.14.121:8081", true);
    let vip = format!("{VIP}:{port}");
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[52], NO_BACKEND);
    lb.reverse_nat(52, svc, &vip, PROTO_TCP);
    assert_eq!(kernel_choice(&lb, 30600, port, &[52]), 52);

    let request = Frame::tcp(&format!("{CLIENT}:30601"), &vip).build();
    let reply = Frame::tcp("172.16.14.121:8081", &format!("{CLIENT}:30600")).build();
    lb.filter_clear(&endpoint(&vip, PROTO_TCP));
    lb.filter_clear(&endpoint("172.16.14.121:8081", PROTO_TCP));
    for (what, f, ingress) in [
        ("request", &request, lb.net.eth0),
        ("reply", &reply, lb.net.eth1),
    ] {
        let (action, out) = lb.run(ingress, f);
        assert_eq!(action, verdict::PASS, "{what}: {}", verdict_name(action));
        assert_eq!(&out, f, "{what} changed");
    }
    lb.filter_set(&endpoint(&vip, PROTO_TCP));
    lb.filter_set(&endpoint("172.16.14.121:8081", PROTO_TCP));
    assert_eq!(kernel_choice(&lb, 30602, port, &[52]), 52);
    let (_, out) = lb.run(lb.net.eth1, &reply);
    assert_ne!(out, reply, "the reply was not translated");
}

#[test]
fn kernel_flow_hash_equals_host_flow_hash() {
    let mut lb = world();
    // A 13-slot ring with 13 distinct backends: every slot is observable.
    for i in 0..13u32 {
        lb.backend(
            100 + i,
            20,
            &format!("172.16.14.{}:{}", 121 + (i % 3), 9000 + i),
            true,
        );
    }
    let ring: Vec<u32> = (100..113).collect();
    lb.service(
        20,
        &format!("{VIP}:90"),
        PROTO_TCP,
        SVC_F_NAT,
        &ring,
        NO_BACKEND,
    );
    let mut slots_seen = std::collections::HashSet::new();
    for sport in 20000..20300u16 {
        let key = flow_key(
            &format!("{CLIENT}:{sport}"),
            &format!("{VIP}:90"),
            PROTO_TCP,
        );
        let predicted = lb.predict(20, &key);
        let got = kernel_choice(&lb, sport, 90, &ring);
        assert_eq!(
            got, predicted,
            "source port {sport}: kernel chose {got}, host predicts {predicted}"
        );
        let flow = lb
            .flow(&key)
            .unwrap_or_else(|| panic!("no FLOWS entry for port {sport}"));
        assert_eq!(
            flow,
            Flow {
                backend_id: got,
                service_id: 20
            }
        );
        slots_seen.insert(got);
    }
    assert_eq!(slots_seen.len(), 13, "300 flows should reach all 13 slots");
    let c = lb.counters(names::SERVICE_STATS, 20);
    assert_eq!(
        (c.conns, c.in_packets),
        (300, 300),
        "service counters {c:?}"
    );
}

#[test]
fn flows_stick_to_their_backend_until_it_leaves() {
    let mut lb = world();
    let svc = 30;
    let port = 91;
    let ids = [40, 41, 42];
    lb.backend(40, svc, "172.16.14.121:8080", true);
    lb.backend(41, svc, "172.16.14.122:8080", true);
    lb.backend(42, svc, "172.16.14.123:8080", true);
    lb.service(
        svc,
        &format!("{VIP}:{port}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[40, 41, 42, 40, 41, 42, 40],
        NO_BACKEND,
    );

    // Open flows until each backend has at least one.
    let mut flows: StdHashMap<u32, Vec<u16>> = StdHashMap::new();
    for sport in 30000..30100u16 {
        let b = kernel_choice(&lb, sport, port, &ids);
        flows.entry(b).or_default().push(sport);
    }
    assert_eq!(flows.len(), 3, "100 flows over 3 backends: {flows:?}");
    let conns = lb.counters(names::SERVICE_STATS, svc).conns;
    assert_eq!(conns, 100);

    // Weight 0 for 41 (drained): the new ring has no 41, 41 stays active.
    // Established flows stay where they are; new ones avoid 41.
    lb.service(
        svc,
        &format!("{VIP}:{port}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[40, 42, 40, 42, 40],
        NO_BACKEND,
    );
    for (b, ports) in &flows {
        for p in ports {
            assert_eq!(
                kernel_choice(&lb, *p, port, &ids),
                *b,
                "flow from port {p} left backend {b} after a ring change"
            );
        }
    }
    assert_eq!(
        lb.counters(names::SERVICE_STATS, svc).conns,
        100,
        "sticky packets are not new flows"
    );
    for sport in 31000..31050u16 {
        assert_ne!(
            kernel_choice(&lb, sport, port, &ids),
            41,
            "new flow from {sport} went to the drained backend"
        );
    }

    // 42 removed from the service (inactive): its flows are chosen again,
    // by the current ring, and count as new connections.
    let events_before = lb.events()[event::FLOW_RESCHEDULED as usize];
    let conns_before = lb.counters(names::SERVICE_STATS, svc).conns;
    lb.service(
        svc,
        &format!("{VIP}:{port}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[40, 40, 40],
        NO_BACKEND,
    );
    lb.backend(42, svc, "172.16.14.123:8080", false);
    let moved = &flows[&42];
    for p in moved {
        assert_eq!(
            kernel_choice(&lb, *p, port, &ids),
            40,
            "flow from {p} not rescheduled off inactive 42"
        );
        let key = flow_key(
            &format!("{CLIENT}:{p}"),
            &format!("{VIP}:{port}"),
            PROTO_TCP,
        );
        assert_eq!(
            lb.flow(&key).map(|f| f.backend_id),
            Some(40),
            "FLOWS not updated for {p}"
        );
    }
    assert_eq!(
        lb.events()[event::FLOW_RESCHEDULED as usize] - events_before,
        moved.len() as u64
    );
    assert_eq!(
        lb.counters(names::SERVICE_STATS, svc).conns - conns_before,
        moved.len() as u64
    );
    // The drained 41 still holds its flows.
    for p in &flows[&41] {
        assert_eq!(kernel_choice(&lb, *p, port, &ids), 41);
    }

    // A backend id reused by another service: flows recorded for it here
    // are chosen again rather than crossing services.
    lb.backend(41, 99, "172.16.14.122:8080", true);
    for p in &flows[&41] {
        assert_eq!(
            kernel_choice(&lb, *p, port, &ids),
            40,
            "flow from {p} followed backend 41 into another service"
        );
    }

    // No backend left at all: new and existing flows are dropped.
    lb.backend(40, svc, "172.16.14.121:8080", false);
    lb.service(
        svc,
        &format!("{VIP}:{port}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[],
        NO_BACKEND,
    );
    let f = Frame::tcp(&format!("{CLIENT}:30000"), &format!("{VIP}:{port}")).build();
    let (action, out) = lb.run(lb.net.eth0, &f);
    assert_eq!(action, verdict::DROP);
    assert_eq!(out, f);
}

/// The per-CPU next-hop cache of requests (`NEXT_HOPS`): what the kernel
/// says is seen at once when it matters for correctness (a failed lookup is
/// never cached, a packet longer than any the cached lookup checked asks
/// again, a reused backend id is a different real server), and within
/// `NEXT_HOP_TTL_NS` otherwise (a real server's new MAC, its neighbour entry
/// gone).
#[test]
fn next_hops_follow_the_kernel() {
    let mut lb = world();
    use verdict::{DROP, PASS, REDIRECT, TX};
    const CACHED_DR: u32 = 40;
    const CACHED_NAT: u32 = 41;
    lb.backend(50, CACHED_DR, "192.168.253.16:389", true);
    lb.service(
        CACHED_DR,
        "192.168.253.140:389",
        PROTO_TCP,
        SVC_F_DR,
        &[50],
        NO_BACKEND,
    );
    lb.backend(51, CACHED_NAT, "172.16.14.121:80", true);
    lb.service(
        CACHED_NAT,
        &format!("{VIP}:95"),
        PROTO_TCP,
        SVC_F_NAT,
        &[51],
        NO_BACKEND,
    );
    let dr = Frame::tcp(&format!("{CLIENT}:52000"), "192.168.253.140:389");
    let nat = Frame::tcp(&format!("{CLIENT}:52000"), &format!("{VIP}:95"));
    let nat_big = nat.clone().payload(&[0x5a; 1000]);
    let unresolved = Frame::tcp(&format!("{CLIENT}:52000"), &format!("{VIP}:83"));
    let dr_unresolved = Frame::tcp(&format!("{CLIENT}:52000"), "192.168.253.131:389");

    run_table(
        &lb,
        &[
            case(
                "DR request: next hop looked up (and cached)",
                Side::Client,
                dr.build(),
                TX,
                Expect::Frame(dr.clone().macs(ETH0_MAC, dr_mac(16)).build()),
                None,
            ),
            case(
                "NAT request, short packet: next hop looked up (and cached)",
                Side::Client,
                nat.build(),
                REDIRECT,
                Expect::Frame(nat_out(&nat, sock("172.16.14.121:80"))),
                None,
            ),
            case(
                "NAT real server without neighbour entry: to the kernel",
                Side::Client,
                unresolved.build(),
                PASS,
                Expect::Frame(unresolved.clone().dst("172.16.14.124:80").build()),
                Some(event::NEIGH_MISS),
            ),
            case(
                "DR real server without neighbour entry: dropped",
                Side::Client,
                dr_unresolved.build(),
                DROP,
                Expect::Unchanged,
                Some(event::NEIGH_MISS),
            ),
        ],
    );

    // The kernel resolves the missing neighbours, the server-side link's MTU
    // shrinks, and backend id 50 is given to another real server.
    ip(&format!(
        "neigh add 172.16.14.124 lladdr {} dev eth1 nud permanent",
        mac_str(server_mac(124))
    ));
    ip(&format!(
        "neigh add 192.168.253.12 lladdr {} dev eth0 nud permanent",
        mac_str(dr_mac(12))
    ));
    ip("link set eth1 mtu 600");
    lb.backend(50, CACHED_DR, "192.168.253.17:389", true);
    run_table(
        &lb,
        &[
            case(
                "NAT neighbour resolved since the last packet: used at once (misses are not cached)",
                Side::Client,
                unresolved.build(),
                REDIRECT,
                Expect::Frame(nat_out(&unresolved, sock("172.16.14.124:80"))),
                None,
            ),
            case(
                "DR neighbour resolved since the last packet: used at once",
                Side::Client,
                dr_unresolved.build(),
                TX,
                Expect::Frame(dr_unresolved.clone().macs(ETH0_MAC, dr_mac(12)).build()),
                None,
            ),
            case(
                "NAT request longer than the cached lookup checked, over the new MTU: to the kernel at once",
                Side::Client,
                nat_big.build(),
                PASS,
                Expect::Frame(nat_big.clone().dst("172.16.14.121:80").build()),
                Some(event::FIB_MISS),
            ),
            case(
                "NAT short request: still fits, forwarded",
                Side::Client,
                nat.build(),
                REDIRECT,
                Expect::Frame(nat_out(&nat, sock("172.16.14.121:80"))),
                None,
            ),
            case(
                "DR backend id reused for another real server: its own next hop at once",
                Side::Client,
                dr.build(),
                TX,
                Expect::Frame(dr.clone().macs(ETH0_MAC, dr_mac(17)).build()),
                None,
            ),
        ],
    );

    // A real server changes its MAC; another loses its neighbour entry.
    // Packets in between may still use the cached next hop; after the TTL
    // they must not.
    let new_mac: Mac = [0x02, 0, 0, 0, 0x09, 121];
    ip(&format!(
        "neigh replace 172.16.14.121 lladdr {} dev eth1 nud permanent",
        mac_str(new_mac)
    ));
    ip("neigh del 192.168.253.17 dev eth0");
    std::thread::sleep(std::time::Duration::from_nanos(
        3 * lb_common::NEXT_HOP_TTL_NS,
    ));
    run_table(
        &lb,
        &[
            case(
                "NAT real server with a new MAC: used once the cached next hop expired",
                Side::Client,
                nat.build(),
                REDIRECT,
                Expect::Frame(
                    nat.clone()
                        .dst("172.16.14.121:80")
                        .ttl(nat.ttl_value() - 1)
                        .macs(ETH1_MAC, new_mac)
                        .build(),
                ),
                None,
            ),
            case(
                "DR real server whose neighbour entry went away: dropped once the cached next hop expired",
                Side::Client,
                dr.build(),
                DROP,
                Expect::Unchanged,
                Some(event::NEIGH_MISS),
            ),
        ],
    );
}

/// Seed 000 never turns forwarding on, and IPVS DR does not need it; the
/// kernel's FIB then refuses every lookup ("forwarding disabled"). DR takes
/// its next hop from the agent's copy of the neighbour table instead; NAT
/// still needs forwarding (and says so in `fib_miss`).
#[test]
fn dr_works_with_forwarding_off() {
    let mut lb = world();
    use verdict::{DROP, PASS, TX};
    sysctl("net/ipv4/ip_forward", "0");
    sysctl("net/ipv6/conf/all/forwarding", "0");
    let c = format!("{CLIENT}:53000");
    let v = "192.168.253.130:389";
    let dr = Frame::tcp(&c, v);
    let b = lb.backends[&lb.predict(LDAP, &flow_key(&c, v, PROTO_TCP))];
    let dr6 = Frame::tcp(&format!("[{CLIENT6}]:53000"), "[2001:db8:253::130]:389");
    let nat = Frame::tcp(&format!("{CLIENT}:53000"), &format!("{VIP}:80"));
    let nat_key = flow_key(&format!("{CLIENT}:53000"), &format!("{VIP}:80"), PROTO_TCP);
    let nat_backend = lb.backends[&lb.predict(WEB, &nat_key)];

    run_table(
        &lb,
        &[case(
            "DR, forwarding off, the agent has no next hop yet: dropped",
            Side::Client,
            dr.build(),
            DROP,
            Expect::Unchanged,
            Some(event::NEIGH_MISS),
        )],
    );

    // The agent copies the resolved neighbour entries (device, its MAC,
    // the real server's MAC). A MAC unlike the kernel's table shows the
    // program used the copy.
    let agent_mac = |n: u8| [0x02, 0, 0, 0, 0x0a, n];
    for n in [16u8, 17] {
        lb.dr_next_hop(
            &format!("192.168.253.{n}"),
            lb.net.eth0,
            ETH0_MAC,
            agent_mac(n),
        );
    }
    lb.dr_next_hop("2001:db8:253::10", lb.net.eth0, ETH0_MAC, agent_mac(10));
    let n = match b.ip() {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(_) => unreachable!(),
    };
    run_table(
        &lb,
        &[
            case(
                format!("DR, forwarding off: next hop from DR_NEXT_HOPS -> {b}"),
                Side::Client,
                dr.build(),
                TX,
                Expect::Frame(dr.clone().macs(ETH0_MAC, agent_mac(n)).build()),
                None,
            ),
            case(
                "DR IPv6, forwarding off: next hop from DR_NEXT_HOPS",
                Side::Client,
                dr6.build(),
                TX,
                Expect::Frame(dr6.clone().macs(ETH0_MAC, agent_mac(10)).build()),
                None,
            ),
            case(
                "DR, forwarding off, real server the agent has no entry for: dropped",
                Side::Client,
                Frame::tcp(&c, "192.168.253.131:389").build(),
                DROP,
                Expect::Unchanged,
                Some(event::NEIGH_MISS),
            ),
            case(
                "NAT, forwarding off: rewritten, to the kernel (NAT needs forwarding)",
                Side::Client,
                nat.build(),
                PASS,
                Expect::Frame(nat.clone().dst(&nat_backend.to_string()).build()),
                Some(event::FIB_MISS),
            ),
        ],
    );

    // Forwarding back on: the kernel's FIB answers again (its neighbour
    // table, not the agent's copy), once the cached next hop expires.
    sysctl("net/ipv4/ip_forward", "1");
    std::thread::sleep(std::time::Duration::from_nanos(
        3 * lb_common::NEXT_HOP_TTL_NS,
    ));
    run_table(
        &lb,
        &[case(
            "DR, forwarding on: the kernel's neighbour table decides",
            Side::Client,
            dr.build(),
            TX,
            Expect::Frame(dr.clone().macs(ETH0_MAC, dr_mac(n)).build()),
            None,
        )],
    );
}

/// Reverse NAT is stateless, so "from a real server's address:port" alone
/// proves nothing: a packet forged with that source on the client side
/// must not come out rewritten to the VIP (an open reflector past
/// netfilter and rp_filter). Only what arrives where the balancer's route
/// to that real server leaves is a reply.
#[test]
fn forged_replies_from_the_wrong_side_pass_untouched() {
    let lb = world();
    use verdict::{PASS, REDIRECT};
    let forged = |from: &str, to: &str| Frame::tcp(from, to).macs(CLIENT_MAC, ETH0_MAC);
    let genuine =
        Frame::tcp("172.16.14.121:80", "192.168.253.1:40001").macs(server_mac(121), ETH1_MAC);
    let tagged = Frame::tcp("172.16.14.121:80", "192.168.253.1:40001")
        .macs(server_mac(121), ETH1_MAC)
        .vlan(14);
    run_table(
        &lb,
        &[
            case(
                "forged reply on the client side, to the client side",
                Side::Client,
                forged("172.16.14.121:80", "192.168.253.1:40000").build(),
                PASS,
                Expect::Unchanged,
                Some(event::REPLY_WRONG_INGRESS),
            ),
            case(
                "forged reply on the client side, to a third host behind the server side",
                Side::Client,
                forged("172.16.14.122:8080", "172.16.14.123:5000").build(),
                PASS,
                Expect::Unchanged,
                Some(event::REPLY_WRONG_INGRESS),
            ),
            case(
                "forged UDP reply on the client side",
                Side::Client,
                Frame::udp("172.16.14.121:5353", "192.168.253.1:33000")
                    .macs(CLIENT_MAC, ETH0_MAC)
                    .build(),
                PASS,
                Expect::Unchanged,
                Some(event::REPLY_WRONG_INGRESS),
            ),
            case(
                "forged IPv6 reply on the client side",
                Side::Client,
                forged("[2001:db8:14::121]:80", "[2001:db8:253::1]:40000").build(),
                PASS,
                Expect::Unchanged,
                Some(event::REPLY_WRONG_INGRESS),
            ),
            case(
                "genuine reply on the server side: still rewritten and sent",
                Side::Server,
                genuine.build(),
                REDIRECT,
                Expect::Frame(
                    genuine
                        .clone()
                        .src("192.168.253.120:80")
                        .ttl(63)
                        .macs(ETH0_MAC, CLIENT_MAC)
                        .build(),
                ),
                Some(event::NAT_REPLY),
            ),
            case(
                "802.1Q-tagged reply whose real server is routed untagged on that device: not a reply",
                Side::Server,
                tagged.build(),
                PASS,
                Expect::Unchanged,
                Some(event::REPLY_WRONG_INGRESS),
            ),
        ],
    );
    // Nothing above was counted as a reply, except the genuine one.
    let b1 = lb.counters(names::BACKEND_STATS, 1);
    assert_eq!(b1.out_packets, 1, "replies counted on backend 1: {b1:?}");
}

/// Real servers behind a VLAN device: their replies arrive tagged on the
/// trunk, which XDP cannot tie to the VLAN device the route names. They are
/// rewritten and handed to the kernel (its VLAN device, rp_filter and
/// netfilter judge), never sent on with TX/REDIRECT.
#[test]
fn tagged_replies_go_through_the_kernel() {
    let mut lb = world();
    // This kernel has no 8021q module: any device other than the trunk
    // stands in for the VLAN device (the program sees only its index).
    ip("link add eth1.14 type veth peer name eth1.14p");
    ip("link set eth1.14 up");
    ip("link set eth1.14p up");
    ip("addr add 10.14.0.120/24 dev eth1.14");
    ip(&format!(
        "neigh add 10.14.0.121 lladdr {} dev eth1.14 nud permanent",
        mac_str(server_mac(121))
    ));
    const VLAN_WEB: u32 = 30;
    lb.backend(60, VLAN_WEB, "10.14.0.121:80", true);
    lb.service(
        VLAN_WEB,
        &format!("{VIP}:96"),
        PROTO_TCP,
        SVC_F_NAT,
        &[60],
        NO_BACKEND,
    );
    lb.reverse_nat(60, VLAN_WEB, &format!("{VIP}:96"), PROTO_TCP);
    let reply = Frame::tcp("10.14.0.121:80", "192.168.253.1:40000")
        .macs(server_mac(121), ETH1_MAC)
        .vlan(14);
    run_table(
        &lb,
        &[
            case(
                "tagged reply of a real server behind a VLAN device: rewritten, to the kernel",
                Side::Server,
                reply.build(),
                verdict::PASS,
                Expect::Frame(reply.clone().src(&format!("{VIP}:96")).build()),
                Some(event::NAT_REPLY),
            ),
            case(
                "the same reply untagged (not from the VLAN the route names): untouched",
                Side::Server,
                Frame::tcp("10.14.0.121:80", "192.168.253.1:40000")
                    .macs(server_mac(121), ETH1_MAC)
                    .build(),
                verdict::PASS,
                Expect::Unchanged,
                Some(event::REPLY_WRONG_INGRESS),
            ),
        ],
    );
}
