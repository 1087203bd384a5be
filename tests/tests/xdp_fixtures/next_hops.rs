//! Next hops: the per-CPU cache follows the kernel.

use super::*;

/// The per-CPU next-hop cache of requests (`NEXT_HOPS`): what the kernel
/// says is seen at once when it matters for correctness (a failed lookup is
/// never cached, a packet longer than any the cached lookup checked asks
/// again, a reused backend id is a different real server), and within
/// `NEXT_HOP_TTL_NS` otherwise (a real server's new MAC, its neighbour entry
/// gone).
#[test]
pub(crate) fn next_hops_follow_the_kernel() {
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
