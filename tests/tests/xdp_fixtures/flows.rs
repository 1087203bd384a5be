//! Flows: the kernel's choice against the host's hash, SYNs rescheduled by
//! the ring, flows sticking to their backend until it leaves.

use super::*;

/// The 5-tuple's backend as the kernel chose it: the destination of the
/// rewritten frame, mapped back to the backend id.
pub(crate) fn kernel_choice(lb: &Lb, sport: u16, vip_port: u16, candidates: &[u32]) -> u32 {
    kernel_choice_of(lb, sport, vip_port, candidates, TCP_ACK | TCP_PSH)
}

/// Like `kernel_choice`, for a segment with TCP `flags`.
pub(crate) fn kernel_choice_of(
    lb: &Lb,
    sport: u16,
    vip_port: u16,
    candidates: &[u32],
    flags: u8,
) -> u32 {
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
pub(crate) fn a_syn_on_a_port_with_a_flow_entry_is_scheduled_by_the_ring() {
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

#[test]
pub(crate) fn kernel_flow_hash_equals_host_flow_hash() {
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
pub(crate) fn flows_stick_to_their_backend_until_it_leaves() {
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
