//! `SERVICE_INDEX`: a new flow finds its service through the index and its
//! `SERVICES_BY_ID` slot, without the `SERVICES` hash lookup, wherever one
//! service alone has its index entry; everywhere else (two services on one
//! entry, an entry that names another VIP's slot) `SERVICES` decides, as
//! before the index existed. A ring pick that belongs to another service
//! (a slot read while the agent rewrote it) is dropped, never forwarded.

use aya::maps::{HashMap, MapData};
use lb_common::{service_index, EndpointKey, Service};

use super::*;

/// A new TCP flow from `sport` to the VIP's `port`: its verdict and the
/// real server it went to (by rewritten destination address), if any.
fn new_flow(lb: &Lb, sport: u16, port: u16) -> (u32, Option<IpAddr>) {
    let f = Frame::tcp(&format!("{CLIENT}:{sport}"), &format!("{VIP}:{port}"))
        .tcp_flags(TCP_SYN)
        .build();
    let (action, out) = lb.run(lb.net.eth0, &f);
    let dst = (action == verdict::REDIRECT)
        .then(|| IpAddr::from(<[u8; 4]>::try_from(&out[30..34]).expect("an IPv4 header")));
    (action, dst)
}

fn addr(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("an address"))
}

/// Two ports of the VIP whose TCP keys share an index entry (the index is
/// a hash: found by search).
fn colliding_ports() -> (u16, u16) {
    let key = |p: u16| endpoint(&format!("{VIP}:{p}"), PROTO_TCP);
    let first = 2_000;
    let e = service_index(&key(first));
    let second = (first + 1..u16::MAX)
        .find(|p| service_index(&key(*p)) == e)
        .expect("a port on the same entry");
    (first, second)
}

/// The service's `SERVICES` entry alone removed (its slot and index entry
/// left), which the agent never does: only the index can find it then.
fn remove_from_services(lb: &mut Lb, key: &EndpointKey) {
    let mut m: HashMap<&mut MapData, EndpointKey, Service> =
        HashMap::try_from(lb.ebpf.map_mut(names::SERVICES).unwrap()).unwrap();
    m.remove(key).unwrap();
}

#[test]
fn a_new_flow_finds_its_service_through_the_index() {
    let mut lb = world();
    let (svc, port) = (43, 96);
    lb.backend(64, svc, "172.16.14.121:8080", true);
    let vip = format!("{VIP}:{port}");
    lb.service(svc, &vip, PROTO_TCP, SVC_F_NAT, &[64], NO_BACKEND);
    let key = endpoint(&vip, PROTO_TCP);
    assert_eq!(lb.index.value(service_index(&key)), svc + 1);
    remove_from_services(&mut lb, &key);
    assert_eq!(
        new_flow(&lb, 30_900, port),
        (verdict::REDIRECT, addr("172.16.14.121")),
        "a new flow was not scheduled through the index"
    );
    // With the entry zeroed, only SERVICES could say, and it does not
    // have the service any more: not ours.
    lb.set_index_entry(service_index(&key), 0);
    assert_eq!(new_flow(&lb, 30_901, port), (verdict::PASS, None));
}

#[test]
fn services_sharing_an_index_entry_are_found_by_the_hash_lookup() {
    let mut lb = world();
    let (a, b) = colliding_ports();
    lb.backend(65, 44, "172.16.14.121:8080", true);
    lb.backend(66, 45, "172.16.14.122:8080", true);
    lb.service(
        44,
        &format!("{VIP}:{a}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[65],
        NO_BACKEND,
    );
    lb.service(
        45,
        &format!("{VIP}:{b}"),
        PROTO_TCP,
        SVC_F_NAT,
        &[66],
        NO_BACKEND,
    );
    let entry = service_index(&endpoint(&format!("{VIP}:{a}"), PROTO_TCP));
    assert_eq!(lb.index.value(entry), 0, "two services on one entry");
    for sport in 31_000..31_020 {
        assert_eq!(new_flow(&lb, sport, a).1, addr("172.16.14.121"), "port {a}");
        assert_eq!(new_flow(&lb, sport, b).1, addr("172.16.14.122"), "port {b}");
    }
    // One left: the entry names it again, and it is still found.
    lb.remove_service(44, &format!("{VIP}:{a}"), PROTO_TCP);
    assert_eq!(lb.index.value(entry), 45 + 1);
    assert_eq!(new_flow(&lb, 31_100, b).1, addr("172.16.14.122"));
    assert_eq!(new_flow(&lb, 31_101, a), (verdict::PASS, None));
}

#[test]
fn an_index_entry_that_names_another_vip_is_decided_by_services() {
    let mut lb = world();
    lb.backend(67, 46, "172.16.14.121:8080", true);
    lb.backend(68, 47, "172.16.14.123:8080", true);
    lb.service(
        46,
        &format!("{VIP}:97"),
        PROTO_TCP,
        SVC_F_NAT,
        &[67],
        NO_BACKEND,
    );
    lb.service(
        47,
        &format!("{VIP}:98"),
        PROTO_TCP,
        SVC_F_NAT,
        &[68],
        NO_BACKEND,
    );
    // A stale entry for :98 pointing at the slot of :97.
    let entry = service_index(&endpoint(&format!("{VIP}:98"), PROTO_TCP));
    lb.set_index_entry(entry, 46 + 1);
    for sport in 31_200..31_220 {
        assert_eq!(new_flow(&lb, sport, 98).1, addr("172.16.14.123"));
    }
}

#[test]
fn a_ring_pick_of_another_service_is_dropped_not_forwarded() {
    let mut lb = world();
    // Backend 69 belongs to service 49; service 48's ring names it (what a
    // reader could mix from two versions of a slot being rewritten).
    lb.backend(69, 49, "172.16.14.122:8080", true);
    lb.service(
        48,
        &format!("{VIP}:99"),
        PROTO_TCP,
        SVC_F_NAT,
        &[69],
        NO_BACKEND,
    );
    let before = lb.events()[event::NO_BACKEND as usize];
    assert_eq!(new_flow(&lb, 31_300, 99), (verdict::DROP, None));
    assert_eq!(lb.events()[event::NO_BACKEND as usize], before + 1);
}
