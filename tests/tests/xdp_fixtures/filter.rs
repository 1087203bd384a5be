//! The endpoint filter (`ENDPOINT_FILTER`) is asked before the hash maps.

use super::*;

/// The program asks `ENDPOINT_FILTER` before `SERVICES` and `REVERSE_NAT`:
/// with the key's bit clear, a packet for the service (and a reply from its
/// real server) passes untouched; set again, it is forwarded. This is what
/// makes the agent's ordering (bit before key) necessary, and what lets a
/// packet that is not ours leave without a hash lookup.
#[test]
pub(crate) fn the_endpoint_filter_is_asked_before_the_maps() {
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
    lb.filter_set(&endpoint(&vip, PROTO_TCP), lb_common::AddrRole::Dst);
    lb.filter_set(
        &endpoint("172.16.14.121:8081", PROTO_TCP),
        lb_common::AddrRole::Src,
    );
    assert_eq!(kernel_choice(&lb, 30602, port, &[52]), 52);
    let (_, out) = lb.run(lb.net.eth1, &reply);
    assert_ne!(out, reply, "the reply was not translated");
}

/// The address test comes before everything: with the endpoint bits set
/// but the VIP's destination bit and the real server's source bit
/// cleared, a request to the service and its real server's reply pass
/// untouched and uncounted, before any lookup (they are "not ours by
/// address"). An ICMP error to the VIP never takes that shortcut. Set
/// again, the service forwards. This is why the agent sets address bits
/// before it inserts a key.
#[test]
pub(crate) fn packets_not_ours_by_address_pass_first_and_uncounted() {
    use lb_common::{addr_filter_bit, AddrRole};
    let mut lb = world();
    let (svc, port) = (34, 95);
    lb.backend(53, svc, "172.16.14.122:8082", true);
    let vip = format!("{VIP}:{port}");
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[53], NO_BACKEND);
    lb.reverse_nat(53, svc, &vip, PROTO_TCP);
    assert_eq!(kernel_choice(&lb, 30700, port, &[53]), 53);

    let request = Frame::tcp(&format!("{CLIENT}:30701"), &vip).build();
    let reply = Frame::tcp("172.16.14.122:8082", &format!("{CLIENT}:30700")).build();
    assert!(!lb.first_test_passes(&request) && !lb.first_test_passes(&reply));
    let (v, r) = (
        endpoint(&vip, PROTO_TCP),
        endpoint("172.16.14.122:8082", PROTO_TCP),
    );
    let dst_bit = addr_filter_bit(AddrRole::Dst, v.family, &v.addr);
    let src_bit = addr_filter_bit(AddrRole::Src, r.family, &r.addr);
    lb.filter_bit(dst_bit, false);
    lb.filter_bit(src_bit, false);
    for (what, f, ingress) in [
        ("request", &request, lb.net.eth0),
        ("reply", &reply, lb.net.eth1),
    ] {
        let before = lb.verdicts();
        let (action, out) = lb.run(ingress, f);
        assert_eq!(action, verdict::PASS, "{what}: {}", verdict_name(action));
        assert_eq!(&out, f, "{what} changed");
        assert_eq!(lb.verdicts(), before, "{what} was counted");
    }
    // ICMP is never passed by address: a "fragmentation needed" about the
    // flow's reply (quoting VIP:port -> client) still reaches the kernel's
    // full path and is counted.
    let quoted = Frame::tcp(&vip, &format!("{CLIENT}:30700")).build();
    let icmp = Frame::icmp(&format!("{CLIENT}:0"), &format!("{VIP}:0"), 3, 4)
        .payload(&quoted[14..14 + 28])
        .build();
    assert!(!lb.first_test_passes(&icmp));
    let before = lb.verdicts();
    let (action, _) = lb.run(lb.net.eth0, &icmp);
    assert_eq!(
        lb.verdicts()[action as usize],
        before[action as usize] + 1,
        "ICMP to the VIP not counted"
    );

    lb.filter_bit(dst_bit, true);
    lb.filter_bit(src_bit, true);
    assert_eq!(kernel_choice(&lb, 30702, port, &[53]), 53);
    let (_, out) = lb.run(lb.net.eth1, &reply);
    assert_ne!(out, reply, "the reply was not translated");
}
