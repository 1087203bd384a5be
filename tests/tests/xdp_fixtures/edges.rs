//! Edges: forged replies from the wrong side, VLAN-tagged replies.

use super::*;

/// Reverse NAT is stateless, so "from a real server's address:port" alone
/// proves nothing: a packet forged with that source on the client side
/// must not come out rewritten to the VIP (an open reflector past
/// netfilter and rp_filter). Only what arrives where the balancer's route
/// to that real server leaves is a reply.
#[test]
pub(crate) fn forged_replies_from_the_wrong_side_pass_untouched() {
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
pub(crate) fn tagged_replies_go_through_the_kernel() {
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
