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

/// An established flow's packet finds its service by the id in its flow
/// entry (`SERVICES_BY_ID`), not by a `SERVICES` lookup. The id must not
/// carry a flow to another VIP after a reload gave it away: here even the
/// backend id is reused by the new service, so only the slot's VIP stops
/// the stale flow.
#[test]
pub(crate) fn a_service_id_given_to_another_vip_never_takes_a_stale_flow() {
    let mut lb = world();
    let (svc, old_port, new_port) = (40, 93, 94);
    lb.backend(60, svc, "172.16.14.121:8080", true);
    let old_vip = format!("{VIP}:{old_port}");
    lb.service(svc, &old_vip, PROTO_TCP, SVC_F_NAT, &[60], NO_BACKEND);
    assert_eq!(kernel_choice(&lb, 30600, old_port, &[60]), 60);

    // A reload removes the service and gives id 40 and backend id 60 to a
    // service on another port (the agent reuses freed ids).
    lb.remove_service(svc, &old_vip, PROTO_TCP);
    lb.backend(60, svc, "172.16.14.123:8080", true);
    lb.service(
        svc,
        &format!("{VIP}:{new_port}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[60],
        NO_BACKEND,
    );
    let key = flow_key(&format!("{CLIENT}:30600"), &old_vip, PROTO_TCP);
    assert_eq!(
        lb.flow(&key),
        Some(Flow {
            backend_id: 60,
            service_id: svc
        }),
        "the stale entry is still in the table"
    );
    let f = Frame::tcp(&format!("{CLIENT}:30600"), &old_vip)
        .tcp_flags(TCP_ACK | TCP_PSH)
        .build();
    let (action, out) = lb.run(lb.net.eth0, &f);
    assert_eq!(
        verdict_name(action),
        verdict_name(verdict::PASS),
        "a packet for the removed VIP:port was forwarded by its stale flow"
    );
    assert_eq!(out, f, "passed, but not untouched");

    // The old VIP:port comes back under a new id: the stale entry names
    // id 40, which is no longer this VIP's, so the flow is scheduled again.
    lb.backend(61, 41, "172.16.14.122:8080", true);
    lb.service(41, &old_vip, PROTO_TCP, SVC_F_NAT, &[61], NO_BACKEND);
    let rescheduled = lb.events()[event::FLOW_RESCHEDULED as usize];
    assert_eq!(kernel_choice(&lb, 30600, old_port, &[60, 61]), 61);
    assert_eq!(
        lb.events()[event::FLOW_RESCHEDULED as usize],
        rescheduled + 1
    );
    assert_eq!(
        lb.flow(&key),
        Some(Flow {
            backend_id: 61,
            service_id: 41
        })
    );
}

/// While the agent rewrites a service's slot (or after any slot that does
/// not match), its flows are decided from `SERVICES`, as before the slots
/// existed: an established flow stays on its real server.
#[test]
pub(crate) fn a_flow_whose_slot_does_not_match_is_decided_by_services() {
    let mut lb = world();
    let (svc, port) = (42, 95);
    lb.backend(62, svc, "172.16.14.121:8080", true);
    lb.backend(63, svc, "172.16.14.122:8080", true);
    let vip = format!("{VIP}:{port}");
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[62], NO_BACKEND);
    assert_eq!(kernel_choice(&lb, 30700, port, &[62, 63]), 62);
    // 62 drained: new flows go to 63, the established one stays.
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[63], NO_BACKEND);
    lb.set_slot(svc, Default::default());
    let rescheduled = lb.events()[event::FLOW_RESCHEDULED as usize];
    assert_eq!(kernel_choice(&lb, 30700, port, &[62, 63]), 62);
    assert_eq!(
        lb.events()[event::FLOW_RESCHEDULED as usize],
        rescheduled,
        "an established flow was rescheduled because its slot was empty"
    );
    assert_eq!(kernel_choice(&lb, 30701, port, &[62, 63]), 63);
}

/// IPv4 flows live in `FLOWS_V4`, IPv6 flows in `FLOWS`, each in the set
/// and under the tag the host computes (`lb_common::flow_table`); the
/// Maglev choice of both is the host's `flow_hash` of the full tuple
/// (checked for IPv4 over 300 ports above).
#[test]
pub(crate) fn ipv4_and_ipv6_flows_are_recorded_in_the_table_of_their_family() {
    let lb = world();
    let (c, v) = (format!("{CLIENT}:30800"), format!("{VIP}:80"));
    let f = Frame::tcp(&c, &v).tcp_flags(TCP_SYN).build();
    assert_eq!(lb.run(lb.net.eth0, &f).0, verdict::REDIRECT);
    let key = flow_key(&c, &v, PROTO_TCP);
    let k4 = key.narrow().expect("an IPv4 key");
    let expected = Flow {
        backend_id: lb.predict(WEB, &key),
        service_id: WEB,
    };
    assert_eq!(lb.flow_v4(&k4), Some(expected), "not in FLOWS_V4");
    assert_eq!(lb.flow_v6(&key), None, "an IPv4 flow in the IPv6 table");

    let (c6, v6) = (format!("[{CLIENT6}]:30800"), format!("[{VIP6}]:80"));
    let f = Frame::tcp(&c6, &v6).tcp_flags(TCP_SYN).build();
    assert_eq!(lb.run(lb.net.eth0, &f).0, verdict::REDIRECT);
    let key6 = flow_key(&c6, &v6, PROTO_TCP);
    assert_eq!(
        lb.flow_v6(&key6),
        Some(Flow {
            backend_id: lb.predict(WEB6, &key6),
            service_id: WEB6
        }),
        "not in FLOWS"
    );
    // The IPv4 form of an IPv6 tuple (its first words) is not there.
    let truncated = lb_common::FlowKeyV4 {
        src: key6.src[0],
        dst: key6.dst[0],
        src_port_be: key6.src_port_be,
        dst_port_be: key6.dst_port_be,
        proto: key6.proto,
        _pad: [0; 3],
    };
    assert_eq!(lb.flow_v4(&truncated), None, "an IPv6 flow in FLOWS_V4");
}

/// A set holds four flows, most recently used first (`lb_common::flow_table`):
/// a fifth flow in the same set forgets the set's least recently used flow,
/// whose next packet the ring schedules again (to the same real server: the
/// service did not change) and records anew, forgetting the next one.
#[test]
pub(crate) fn a_full_set_forgets_its_least_recently_used_flow() {
    let lb = world();
    let v = format!("{VIP}:80");
    let key = |port: u16| flow_key(&format!("{CLIENT}:{port}"), &v, PROTO_TCP);
    // Five client ports whose flows share one set (about one port in
    // `FLOW_SETS` does).
    let set = flow_set_of(&key(31_000));
    let ports: Vec<u16> = (31_000u16..)
        .filter(|p| flow_set_of(&key(*p)) == set)
        .take(5)
        .collect();
    let send = |port: u16, flags: u8| {
        let f = Frame::tcp(&format!("{CLIENT}:{port}"), &v)
            .tcp_flags(flags)
            .build();
        assert_eq!(lb.run(lb.net.eth0, &f).0, verdict::REDIRECT, "port {port}");
    };
    let recorded = |port: u16| lb.flow(&key(port));
    let expected = |port: u16| {
        Some(Flow {
            backend_id: lb.predict(WEB, &key(port)),
            service_id: WEB,
        })
    };
    for &p in &ports[..4] {
        send(p, TCP_SYN);
    }
    // The first flow is used again: the second is now the least recent.
    send(ports[0], TCP_ACK);
    send(ports[4], TCP_SYN);
    assert_eq!(recorded(ports[1]), None, "the least recent flow was kept");
    for &p in [ports[0], ports[2], ports[3], ports[4]].iter() {
        assert_eq!(recorded(p), expected(p), "port {p} was forgotten");
    }
    // The forgotten flow's next segment goes where the ring says, and is
    // recorded again in place of the least recent one, the third.
    assert_eq!(
        kernel_choice(
            &lb,
            ports[1],
            80,
            &lb.backends.keys().copied().collect::<Vec<_>>()
        ),
        expected(ports[1]).unwrap().backend_id
    );
    assert_eq!(recorded(ports[1]), expected(ports[1]));
    assert_eq!(recorded(ports[2]), None, "the least recent flow was kept");
}
