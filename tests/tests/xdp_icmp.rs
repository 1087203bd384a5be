//! BPF_PROG_TEST_RUN fixtures of ICMP error delivery (`lb-ebpf/src/icmp.rs`)
//! on the real XDP object, in the fixture world of `common/xdp_world.rs`.
//!
//! - A router on the client's path answers a real server's reply (VIP:port
//!   -> client) with "fragmentation needed" / "packet too big": the error
//!   must reach the real server that owns the flow (flow table, then
//!   Maglev), DR unchanged but for the MACs, NAT with the outer destination
//!   and the quoted source translated to the real server.
//! - A NAT real server's error about a client's packet must reach the
//!   client translated to the VIP, and only from the server side.
//! - Quotes lb cannot read go to the kernel untouched.
//!
//! Expected frames are built from scratch by `lb_tests::packet` (outer IPv4
//! header and ICMP checksums, the quoted IPv4 header checksum), so the
//! program's incremental updates are compared with full recomputations;
//! the quoted TCP/UDP checksum is expected as it came (lb, like IPVS,
//! leaves it). Needs root, as `xdp_fixtures.rs`.

#[path = "common/xdp_world.rs"]
mod xdp_world;

use std::net::SocketAddr;

use lb_common::{event, verdict, Flow, FlowKey, PROTO_TCP, PROTO_UDP};
use lb_tests::packet::{
    verify_checksums, Frame, Transport, CLIENT_MAC, ETH_HLEN, IPV4_HLEN, IPV6_HLEN, TCP_HLEN,
};
use xdp_world::*;

/// A router on the client's path (a neighbour on the client side).
const ROUTER: &str = "192.168.253.1";
const ROUTER6: &str = "2001:db8:253::1";
/// A client behind that router.
const FAR: &str = "10.7.0.9";
const FAR6: &str = "2001:db8:77::9";
/// The MTU the router's next link has.
const MTU: u16 = 1280;

/// ICMP types and codes used here.
const V4_UNREACH: u8 = 3;
const V4_FRAG_NEEDED: u8 = 4;
const V4_PORT_UNREACH: u8 = 3;
const V6_UNREACH: u8 = 1;
const V6_PORT_UNREACH: u8 = 4;
const V6_TOO_BIG: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Client,
    Server,
}

/// The IP packet (no Ethernet header) of a TCP or UDP frame.
fn ip_packet(tcp: bool, src: &str, dst: &str) -> Vec<u8> {
    let f = if tcp {
        Frame::tcp(src, dst)
    } else {
        Frame::udp(src, dst)
    };
    f.build()[ETH_HLEN..].to_vec()
}

/// An ICMP error from `from` to `to` quoting `quote`; `mtu` goes into the
/// header's last word (frag-needed and packet-too-big carry it there).
fn icmp_error(from: &str, to: &str, ty: u8, code: u8, mtu: u16, quote: &[u8]) -> Frame {
    let mut f = Frame::icmp(&sockaddr(from, 0), &sockaddr(to, 0), ty, code).payload(quote);
    let m = mtu.to_be_bytes();
    f.transport = Transport::Icmp {
        ty,
        code,
        rest: [0, 0, m[0], m[1]],
    };
    f
}

/// Bracketed for IPv6, as socket addresses are written.
fn host(a: &str) -> String {
    if a.contains(':') {
        format!("[{a}]")
    } else {
        a.to_string()
    }
}

fn sockaddr(a: &str, port: u16) -> String {
    format!("{}:{port}", host(a))
}

/// The quote as lb should leave it: `translated` (the quoted packet built
/// afresh with the real server's or the VIP's address:port, so its IPv4
/// header checksum is a full recomputation) carrying the transport checksum
/// of `original` (left untouched).
fn expected_quote(original: &[u8], translated: &[u8], tcp: bool) -> Vec<u8> {
    let l4 = if original[0] >> 4 == 4 {
        usize::from(original[0] & 0x0f) * 4
    } else {
        IPV6_HLEN
    };
    let check = l4 + if tcp { 16 } else { 6 };
    let mut q = translated.to_vec();
    q[check..check + 2].copy_from_slice(&original[check..check + 2]);
    q
}

/// Whether the quoted IPv4 header checksum of an ICMP error frame holds.
fn quoted_ipv4_header_ok(frame: &[u8]) -> bool {
    let outer = usize::from(frame[ETH_HLEN] & 0x0f) * 4;
    let q = &frame[ETH_HLEN + outer + 8..];
    let hlen = usize::from(q[0] & 0x0f) * 4;
    lb_common::csum::checksum(&q[..hlen]) == 0
}

struct Case {
    what: String,
    side: Side,
    input: Vec<u8>,
    verdict: u32,
    /// `None`: the frame must come out as it went in.
    output: Option<Vec<u8>>,
    event: Option<u32>,
}

fn run_table(lb: &Lb, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let ingress = match c.side {
            Side::Client => lb.net.eth0,
            Side::Server => lb.net.eth1,
        };
        let before = lb.events();
        let (action, out) = lb.run(ingress, &c.input);
        let after = lb.events();
        let mut why = Vec::new();
        if action != c.verdict {
            why.push(format!(
                "verdict {} (expected {})",
                verdict::NAMES.get(action as usize).unwrap_or(&"?"),
                verdict::NAMES[c.verdict as usize]
            ));
        }
        let expected = c.output.as_ref().unwrap_or(&c.input);
        if &out != expected {
            why.push(format!(
                "output differs\n  got:      {}\n  expected: {}",
                hex(&out),
                hex(expected)
            ));
        }
        if c.output.is_some() {
            if let Err(e) = verify_checksums(&out) {
                why.push(format!("output checksum wrong: {e}"));
            }
            if out[12..14] == [0x08, 0x00] && !quoted_ipv4_header_ok(&out) {
                why.push("quoted IPv4 header checksum wrong".into());
            }
        }
        // Exactly the expected event, and no other.
        for (e, name) in event::NAMES.iter().enumerate() {
            let want = u64::from(c.event == Some(e as u32));
            let got = after[e] - before[e];
            if got != want {
                why.push(format!(
                    "event {name} counted {got} times (expected {want})"
                ));
            }
        }
        if !why.is_empty() {
            failures.push(format!("- {}: {}", c.what, why.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} ICMP fixtures failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes a flow-table entry as the program would have for a request.
fn set_flow(lb: &mut Lb, key: FlowKey, backend_id: u32, service_id: u32) {
    lb.set_flow(
        &key,
        Flow {
            backend_id,
            service_id,
        },
    );
}

/// A frag-needed / packet-too-big from the router about the reply
/// `vip:vport -> far:cport` of a NAT service whose flow belongs to
/// `backend`: the case and what it must become.
#[allow(clippy::too_many_arguments)]
fn nat_to_real(
    what: &str,
    tcp: bool,
    vip: &str,
    vport: u16,
    far: &str,
    cport: u16,
    backend: SocketAddr,
) -> Case {
    let is6 = vip.contains(':');
    let (router, ty, code) = if is6 {
        (ROUTER6, V6_TOO_BIG, 0)
    } else {
        (ROUTER, V4_UNREACH, V4_FRAG_NEEDED)
    };
    let reply = ip_packet(tcp, &sockaddr(vip, vport), &sockaddr(far, cport));
    let input = icmp_error(router, vip, ty, code, MTU, &reply).build();
    let real_reply = ip_packet(tcp, &backend.to_string(), &sockaddr(far, cport));
    let out = icmp_error(
        router,
        &backend.ip().to_string(),
        ty,
        code,
        MTU,
        &expected_quote(&reply, &real_reply, tcp),
    )
    .ttl(63)
    .macs(ETH1_MAC, neighbour_mac(backend.ip()))
    .build();
    Case {
        what: what.into(),
        side: Side::Client,
        input,
        verdict: verdict::REDIRECT,
        output: Some(out),
        event: Some(event::ICMP_TO_REAL),
    }
}

/// The same for a DR service: sent on to the real server's MAC, unchanged.
fn dr_to_real(what: &str, vip: &str, far: &str, backend: SocketAddr) -> Case {
    let is6 = vip.contains(':');
    let (router, ty, code) = if is6 {
        (ROUTER6, V6_TOO_BIG, 0)
    } else {
        (ROUTER, V4_UNREACH, V4_FRAG_NEEDED)
    };
    let reply = ip_packet(true, &sockaddr(vip, 389), &sockaddr(far, 40000));
    let f = icmp_error(router, vip, ty, code, MTU, &reply);
    let input = f.build();
    let out = f.macs(ETH0_MAC, neighbour_mac(backend.ip())).build();
    Case {
        what: what.into(),
        side: Side::Client,
        input,
        verdict: verdict::TX,
        output: Some(out),
        event: Some(event::ICMP_TO_REAL),
    }
}

#[test]
fn path_mtu_errors_reach_the_real_server_of_the_flow() {
    let mut lb = world();
    let mut t = Vec::new();

    // No flow entry: Maglev decides, as for the flow's next request.
    for (tcp, vip, vport, far, svc, proto) in [
        (true, VIP, 80, FAR, WEB, PROTO_TCP),
        (false, VIP, 53, FAR, DNS, PROTO_UDP),
        (true, VIP6, 80, FAR6, WEB6, PROTO_TCP),
        (false, VIP6, 53, FAR6, DNS6, PROTO_UDP),
    ] {
        let key = flow_key(&sockaddr(far, 40000), &sockaddr(vip, vport), proto);
        let b = lb.predict(svc, &key);
        t.push(nat_to_real(
            &format!("NAT {vip}:{vport} frag-needed/too-big, Maglev -> backend {b}"),
            tcp,
            vip,
            vport,
            far,
            40000,
            lb.backends[&b],
        ));
    }
    // A flow entry naming another real server than Maglev would: it wins.
    for (vip, far, svc, candidates) in [(VIP, FAR, WEB, [1, 2, 3]), (VIP6, FAR6, WEB6, [6, 7, 7])] {
        let key = flow_key(&sockaddr(far, 40001), &sockaddr(vip, 80), PROTO_TCP);
        let maglev = lb.predict(svc, &key);
        let other = *candidates.iter().find(|b| **b != maglev).unwrap();
        set_flow(&mut lb, key, other, svc);
        t.push(nat_to_real(
            &format!("NAT {vip}:80 frag-needed/too-big, flow table -> backend {other}"),
            true,
            vip,
            80,
            far,
            40001,
            lb.backends[&other],
        ));
    }
    // DR: v4 by Maglev and by the flow table, v6 (one real server).
    let key = flow_key(&sockaddr(FAR, 40000), "192.168.253.130:389", PROTO_TCP);
    let b = lb.predict(LDAP, &key);
    t.push(dr_to_real(
        &format!("DR frag-needed, Maglev -> backend {b}"),
        "192.168.253.130",
        FAR,
        lb.backends[&b],
    ));
    t.push(dr_to_real(
        "DR IPv6 packet too big",
        "2001:db8:253::130",
        FAR6,
        lb.backends[&14],
    ));
    run_table(&lb, &t);

    let other = if b == 8 { 9 } else { 8 };
    set_flow(&mut lb, key, other, LDAP);
    run_table(
        &lb,
        &[dr_to_real(
            &format!("DR frag-needed, flow table -> backend {other}"),
            "192.168.253.130",
            FAR,
            lb.backends[&other],
        )],
    );

    // An error never opens a flow.
    let key = flow_key(&sockaddr(FAR, 40000), &sockaddr(VIP, 80), PROTO_TCP);
    assert_eq!(lb.flow(&key), None, "an ICMP error created a flow entry");
}

#[test]
fn real_servers_errors_reach_nat_clients_as_the_vips() {
    let lb = world();
    let mut t = Vec::new();
    // (real server, error sender, client, VIP, VIP port, tcp)
    for (real, sender, client, vip, vport, tcp, what) in [
        (
            "172.16.14.121:5353",
            "172.16.14.121",
            CLIENT,
            VIP,
            53,
            false,
            "port unreachable from the real server",
        ),
        (
            "172.16.14.122:8080",
            "172.16.14.1",
            CLIENT,
            VIP,
            80,
            true,
            "unreachable from a router behind the balancer",
        ),
        (
            "[2001:db8:14::121]:80",
            "2001:db8:14::121",
            CLIENT6,
            VIP6,
            80,
            true,
            "ICMPv6 port unreachable from the real server",
        ),
    ] {
        let is6 = vip.contains(':');
        let (ty, code) = if is6 {
            (V6_UNREACH, V6_PORT_UNREACH)
        } else {
            (V4_UNREACH, V4_PORT_UNREACH)
        };
        let request = ip_packet(tcp, &sockaddr(client, 40000), real);
        let input = icmp_error(sender, client, ty, code, 0, &request)
            .macs(server_mac(121), ETH1_MAC)
            .build();
        let seen = ip_packet(tcp, &sockaddr(client, 40000), &sockaddr(vip, vport));
        let out = icmp_error(
            vip,
            client,
            ty,
            code,
            0,
            &expected_quote(&request, &seen, tcp),
        )
        .ttl(63)
        .macs(ETH0_MAC, CLIENT_MAC)
        .build();
        t.push(Case {
            what: what.into(),
            side: Side::Server,
            input: input.clone(),
            verdict: verdict::REDIRECT,
            output: Some(out),
            event: Some(event::ICMP_FROM_REAL),
        });
        // The same from the client side: forged, no reflector.
        t.push(Case {
            what: format!("{what}, arriving on the client side"),
            side: Side::Client,
            input,
            verdict: verdict::PASS,
            output: None,
            event: Some(event::REPLY_WRONG_INGRESS),
        });
    }
    // About the balancer's own connection to a real server (a health
    // check): the balancer's business.
    let request = ip_packet(true, "172.16.14.120:50000", "172.16.14.121:80");
    t.push(Case {
        what: "unreachable about the balancer's own health check".into(),
        side: Side::Server,
        input: icmp_error("172.16.14.121", "172.16.14.120", 3, 3, 0, &request)
            .macs(server_mac(121), ETH1_MAC)
            .build(),
        verdict: verdict::PASS,
        output: None,
        event: None,
    });
    run_table(&lb, &t);
}

#[test]
fn quotes_lb_cannot_use_pass_untouched() {
    let lb = world();
    let reply = ip_packet(true, &sockaddr(VIP, 80), &sockaddr(FAR, 40000));
    let err =
        |quote: &[u8]| icmp_error(ROUTER, VIP, V4_UNREACH, V4_FRAG_NEEDED, MTU, quote).build();
    let pass = |what: &str, input: Vec<u8>, event: Option<u32>| Case {
        what: what.into(),
        side: Side::Client,
        input,
        verdict: verdict::PASS,
        output: None,
        event,
    };
    let mut t = vec![
        pass(
            "quote cut before the ports",
            err(&reply[..IPV4_HLEN + 2]),
            None,
        ),
        pass(
            "quote of the IP header only",
            err(&reply[..IPV4_HLEN]),
            None,
        ),
        pass("empty quote", err(&[]), None),
    ];
    // Quoted version is not 4.
    let mut bad = reply.clone();
    bad[0] = 0x65;
    t.push(pass("quoted version 6 in ICMPv4", err(&bad), None));
    // IHL below 5.
    let mut bad = reply.clone();
    bad[0] = 0x44;
    t.push(pass("quoted IHL 4", err(&bad), None));
    // A later fragment: no ports in it.
    let frag = Frame::tcp(&sockaddr(VIP, 80), &sockaddr(FAR, 40000))
        .ipv4_fragment(false, 64)
        .build()[ETH_HLEN..]
        .to_vec();
    t.push(pass("quoted later fragment", err(&frag), None));
    // ICMP about ICMP (an error about the VIP's echo reply).
    let echo = Frame::icmp(&sockaddr(VIP, 0), &sockaddr(FAR, 0), 0, 0).build()[ETH_HLEN..].to_vec();
    t.push(pass("error about an ICMP echo reply", err(&echo), None));
    // Addressed to another host than the quote's sender.
    t.push(pass(
        "error to the balancer's own address quoting a VIP reply",
        icmp_error(
            ROUTER,
            "192.168.253.254",
            V4_UNREACH,
            V4_FRAG_NEEDED,
            MTU,
            &reply,
        )
        .build(),
        None,
    ));
    // No real server, no sorry server: the kernel's, counted.
    let empty = ip_packet(true, &sockaddr(VIP, 81), &sockaddr(FAR, 40000));
    t.push(pass(
        "error about a service with no real server",
        err(&empty),
        Some(event::ICMP_VIP),
    ));
    // Not an error at all.
    t.push(pass(
        "echo request to the VIP",
        Frame::icmp(&sockaddr(ROUTER, 0), &sockaddr(VIP, 0), 8, 0).build(),
        None,
    ));
    // IPv6: an extension header in the quote is not walked.
    let ext = Frame::tcp(&sockaddr(VIP6, 80), &sockaddr(FAR6, 40000))
        .ipv6_ext(60, &[0; 6])
        .build()[ETH_HLEN..]
        .to_vec();
    t.push(pass(
        "quote with an IPv6 destination-options header",
        icmp_error(ROUTER6, VIP6, V6_TOO_BIG, 0, MTU, &ext).build(),
        None,
    ));
    let reply6 = ip_packet(true, &sockaddr(VIP6, 80), &sockaddr(FAR6, 40000));
    t.push(pass(
        "IPv6 quote cut before the ports",
        icmp_error(ROUTER6, VIP6, V6_TOO_BIG, 0, MTU, &reply6[..IPV6_HLEN + 3]).build(),
        None,
    ));
    // The ports in link-layer padding after a short IP packet.
    let mut padded = err(&reply[..IPV4_HLEN]);
    padded.extend_from_slice(&reply[IPV4_HLEN..IPV4_HLEN + TCP_HLEN]);
    t.push(pass("quoted ports only in the link padding", padded, None));
    // NAT TTL 1: the kernel's (it sends nothing about an error).
    t.push(pass(
        "NAT error with TTL 1",
        icmp_error(ROUTER, VIP, V4_UNREACH, V4_FRAG_NEEDED, MTU, &reply)
            .ttl(1)
            .build(),
        Some(event::TTL_EXPIRED),
    ));
    run_table(&lb, &t);
}

#[test]
fn ip_options_in_the_quote_are_skipped() {
    let lb = world();
    let key = flow_key(&sockaddr(FAR, 40002), &sockaddr(VIP, 80), PROTO_TCP);
    let b = lb.backends[&lb.predict(WEB, &key)];
    let opts = [1, 1, 1, 0]; // NOP NOP NOP EOL
    let reply = Frame::tcp(&sockaddr(VIP, 80), &sockaddr(FAR, 40002))
        .ipv4_options(&opts)
        .build()[ETH_HLEN..]
        .to_vec();
    let real_reply = Frame::tcp(&b.to_string(), &sockaddr(FAR, 40002))
        .ipv4_options(&opts)
        .build()[ETH_HLEN..]
        .to_vec();
    let input = icmp_error(ROUTER, VIP, V4_UNREACH, V4_FRAG_NEEDED, MTU, &reply).build();
    let out = icmp_error(
        ROUTER,
        &b.ip().to_string(),
        V4_UNREACH,
        V4_FRAG_NEEDED,
        MTU,
        &expected_quote(&reply, &real_reply, true),
    )
    .ttl(63)
    .macs(ETH1_MAC, neighbour_mac(b.ip()))
    .build();
    run_table(
        &lb,
        &[Case {
            what: "frag-needed quoting a reply with IPv4 options".into(),
            side: Side::Client,
            input,
            verdict: verdict::REDIRECT,
            output: Some(out),
            event: Some(event::ICMP_TO_REAL),
        }],
    );
}

#[test]
fn tagged_errors_follow_the_rules_of_tagged_flows() {
    let lb = world();
    let mut t = Vec::new();
    // NAT, tagged, towards another device: translated, then the kernel's
    // VLAN device forwards it (TTL and MACs as they came).
    let key = flow_key(&sockaddr(FAR, 40003), &sockaddr(VIP, 80), PROTO_TCP);
    let b = lb.backends[&lb.predict(WEB, &key)];
    let reply = ip_packet(true, &sockaddr(VIP, 80), &sockaddr(FAR, 40003));
    let real_reply = ip_packet(true, &b.to_string(), &sockaddr(FAR, 40003));
    t.push(Case {
        what: "NAT frag-needed, 802.1Q tagged".into(),
        side: Side::Client,
        input: icmp_error(ROUTER, VIP, V4_UNREACH, V4_FRAG_NEEDED, MTU, &reply)
            .vlan(10)
            .build(),
        verdict: verdict::PASS,
        output: Some(
            icmp_error(
                ROUTER,
                &b.ip().to_string(),
                V4_UNREACH,
                V4_FRAG_NEEDED,
                MTU,
                &expected_quote(&reply, &real_reply, true),
            )
            .vlan(10)
            .build(),
        ),
        event: Some(event::ICMP_TO_REAL),
    });
    // DR, tagged: back out of the link it came from, tag kept.
    let key = flow_key(&sockaddr(FAR, 40000), "192.168.253.130:389", PROTO_TCP);
    let dr = lb.backends[&lb.predict(LDAP, &key)];
    let dr_reply = ip_packet(true, "192.168.253.130:389", &sockaddr(FAR, 40000));
    let f = icmp_error(
        ROUTER,
        "192.168.253.130",
        V4_UNREACH,
        V4_FRAG_NEEDED,
        MTU,
        &dr_reply,
    )
    .vlan(10);
    t.push(Case {
        what: "DR frag-needed, 802.1Q tagged".into(),
        side: Side::Client,
        input: f.build(),
        verdict: verdict::TX,
        output: Some(f.macs(ETH0_MAC, neighbour_mac(dr.ip())).build()),
        event: Some(event::ICMP_TO_REAL),
    });
    // A real server's error, tagged on the device whose route names the
    // real server untagged: from another network, as for tagged replies.
    let request = ip_packet(false, &sockaddr(CLIENT, 40000), "172.16.14.121:5353");
    t.push(Case {
        what: "real server's unreachable, tagged on its untagged link".into(),
        side: Side::Server,
        input: icmp_error(
            "172.16.14.121",
            CLIENT,
            V4_UNREACH,
            V4_PORT_UNREACH,
            0,
            &request,
        )
        .macs(server_mac(121), ETH1_MAC)
        .vlan(10)
        .build(),
        verdict: verdict::PASS,
        output: None,
        event: Some(event::REPLY_WRONG_INGRESS),
    });
    run_table(&lb, &t);
}
