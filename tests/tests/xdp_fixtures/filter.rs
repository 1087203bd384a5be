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
    lb.filter_set(&endpoint(&vip, PROTO_TCP));
    lb.filter_set(&endpoint("172.16.14.121:8081", PROTO_TCP));
    assert_eq!(kernel_choice(&lb, 30602, port, &[52]), 52);
    let (_, out) = lb.run(lb.net.eth1, &reply);
    assert_ne!(out, reply, "the reply was not translated");
}
