//! Parsing: malformed, truncated and foreign frames pass untouched.

use super::*;

#[test]
pub(crate) fn malformed_and_foreign_frames_pass_untouched() {
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

    // ICMP: echo and errors about the host's own connections are the
    // kernel's; errors quoting a VIP flow are delivered (xdp_icmp.rs).
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
        // Errors quoting a VIP flow go to its real server: xdp_icmp.rs.
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
