//! Direct routing with forwarding off: next hops from the agent's copy of
//! the neighbour table.

use super::*;

/// Seed 000 never turns forwarding on, and IPVS DR does not need it; the
/// kernel's FIB then refuses every lookup ("forwarding disabled"). DR takes
/// its next hop from the agent's copy of the neighbour table instead; NAT
/// still needs forwarding (and says so in `fib_miss`).
#[test]
pub(crate) fn dr_works_with_forwarding_off() {
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
