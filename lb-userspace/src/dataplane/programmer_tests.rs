//! Host tests of the reconciler against an in-memory copy of the maps that
//! checks, after every single write, what a packet could see at that moment.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use lb_common::{
    Backend, EndpointKey, ReverseNat, Service, BACKEND_F_ACTIVE, NO_BACKEND, SVC_F_DR, SVC_F_NAT,
};

use super::*;
use crate::config::{
    AgentConfig, Config, Forwarding, Protocol, RealServer, Scheduler, VirtualServer, XdpMode,
};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Backend(u32, Backend),
    Ring(u32, usize),
    SetService(EndpointKey, Service),
    RemoveService(EndpointKey),
    SetReverse(EndpointKey),
    RemoveReverse(EndpointKey),
    ResetServiceStats(u32),
    ResetBackendStats(u32),
}

#[derive(Default)]
struct FakeMaps {
    services: HashMap<EndpointKey, Service>,
    backends: HashMap<u32, Backend>,
    ring: Vec<u32>,
    reverse: HashMap<EndpointKey, ReverseNat>,
    ops: Vec<Op>,
}

impl FakeMaps {
    fn new(slots: u32) -> Self {
        Self {
            ring: vec![NO_BACKEND; slots as usize],
            ..Default::default()
        }
    }

    /// What the XDP program relies on, at any instant: every slot of every
    /// live table names an active backend of that service, live tables do
    /// not overlap, fallbacks are active, reverse NAT points at live ids.
    fn check(&self) {
        let mut used = vec![false; self.ring.len()];
        for (key, s) in &self.services {
            for slot in s.ring_offset..s.ring_offset + s.ring_size {
                assert!(
                    !used[slot as usize],
                    "slot {slot} shared by two live tables"
                );
                used[slot as usize] = true;
                let id = self.ring[slot as usize];
                let b = self
                    .backends
                    .get(&id)
                    .unwrap_or_else(|| panic!("{key:?}: slot {slot} names unwritten backend {id}"));
                assert!(
                    b.flags & BACKEND_F_ACTIVE != 0,
                    "slot {slot} names inactive backend {id} after {:?}",
                    self.ops.last()
                );
                assert_eq!(
                    b.service_id, s.id,
                    "slot {slot}: backend {id} of another service"
                );
            }
            if s.fallback_backend != NO_BACKEND {
                let b = self.backends[&s.fallback_backend];
                assert!(b.flags & BACKEND_F_ACTIVE != 0, "inactive fallback");
            }
        }
        for r in self.reverse.values() {
            assert!(self.backends.contains_key(&r.backend_id));
        }
    }

    fn service(&self, addr: &str, protocol: Protocol) -> Service {
        self.services[&endpoint_key(addr.parse().unwrap(), protocol)]
    }

    fn table(&self, s: &Service) -> Vec<u32> {
        self.ring[s.ring_offset as usize..(s.ring_offset + s.ring_size) as usize].to_vec()
    }

    fn writes(&self) -> usize {
        self.ops.len()
    }
}

impl MapWriter for FakeMaps {
    fn set_backend(&mut self, id: u32, value: &Backend) -> Result<(), MapWriteError> {
        self.ops.push(Op::Backend(id, *value));
        self.backends.insert(id, *value);
        self.check();
        Ok(())
    }
    fn write_ring(&mut self, offset: u32, table: &[u32]) -> Result<(), MapWriteError> {
        self.ops.push(Op::Ring(offset, table.len()));
        // Slot by slot, checking in between, as the kernel map sees it.
        for (i, id) in table.iter().enumerate() {
            self.ring[offset as usize + i] = *id;
            if i % 3 == 0 {
                self.check();
            }
        }
        self.check();
        Ok(())
    }
    fn set_service(&mut self, key: &EndpointKey, value: &Service) -> Result<(), MapWriteError> {
        self.ops.push(Op::SetService(*key, *value));
        self.services.insert(*key, *value);
        self.check();
        Ok(())
    }
    fn remove_service(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        self.ops.push(Op::RemoveService(*key));
        self.services
            .remove(key)
            .expect("removing a service that is not there");
        self.check();
        Ok(())
    }
    fn set_reverse_nat(
        &mut self,
        key: &EndpointKey,
        value: &ReverseNat,
    ) -> Result<(), MapWriteError> {
        self.ops.push(Op::SetReverse(*key));
        self.reverse.insert(*key, *value);
        self.check();
        Ok(())
    }
    fn remove_reverse_nat(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        self.ops.push(Op::RemoveReverse(*key));
        self.reverse
            .remove(key)
            .expect("removing a reverse NAT entry that is not there");
        self.check();
        Ok(())
    }
    fn reset_service_stats(&mut self, id: u32) -> Result<(), MapWriteError> {
        self.ops.push(Op::ResetServiceStats(id));
        Ok(())
    }
    fn reset_backend_stats(&mut self, id: u32) -> Result<(), MapWriteError> {
        self.ops.push(Op::ResetBackendStats(id));
        Ok(())
    }
}

/// Weighted round robin: slot i goes to the entry whose cumulative weight
/// range holds i mod total. Deterministic and weight-true, enough to test
/// the programmer without the real Maglev.
fn simple_table(entries: &[maglev::Entry], size: u32) -> Vec<u32> {
    let total: u32 = entries.iter().map(|e| e.weight).sum();
    (0..size)
        .map(|i| {
            let mut x = i % total;
            for e in entries {
                if x < e.weight {
                    return e.id;
                }
                x -= e.weight;
            }
            unreachable!()
        })
        .collect()
}

const SLOTS: u32 = 4 * 13;

fn programmer() -> Programmer {
    Programmer::with_table_builder(8, 32, SLOTS, simple_table)
}

fn real(addr: &str, weight: u32) -> RealServer {
    let a: SocketAddr = addr.parse().unwrap();
    RealServer {
        address: a.ip(),
        port: a.port(),
        weight,
        health_check: Default::default(),
    }
}

fn service(name: &str, vip: &str, fwd: Forwarding, reals: Vec<RealServer>) -> VirtualServer {
    let v: SocketAddr = vip.parse().unwrap();
    VirtualServer {
        name: name.into(),
        address: v.ip(),
        port: v.port(),
        protocol: Protocol::Tcp,
        forwarding: fwd,
        scheduler: Scheduler::Maglev,
        maglev_table_size: 13,
        sorry_server: None,
        health_check: Default::default(),
        real_servers: reals,
    }
}

fn config(services: Vec<VirtualServer>) -> Config {
    Config {
        sources: Default::default(),
        agent: AgentConfig {
            interfaces: vec!["eth0".into()],
            xdp_mode: XdpMode::Auto,
            flow_table_size: 1024,
            control_socket: PathBuf::from("/run/lb/lb.sock"),
            metrics_listen: None,
            control_group: None,
            ebpf_log: crate::config::EbpfLog::Off,
        },
        virtual_servers: services,
        vrrp_instances: Vec::new(),
        vrrp_sync_groups: Vec::new(),
        announce: None,
    }
}

fn web(reals: Vec<RealServer>) -> VirtualServer {
    service("web", "192.168.253.120:80", Forwarding::Nat, reals)
}

fn three() -> Vec<RealServer> {
    vec![
        real("172.16.14.121:80", 1),
        real("172.16.14.122:80", 1),
        real("172.16.14.123:80", 1),
    ]
}

fn backend_id(p: &Programmer, addr: &str) -> u32 {
    let a: SocketAddr = addr.parse().unwrap();
    p.services()
        .iter()
        .flat_map(|s| s.backends.iter())
        .find(|b| b.address == a)
        .unwrap_or_else(|| panic!("{addr} not installed"))
        .id
}

#[test]
fn first_apply_installs_services_backends_table_and_reverse_nat() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let cfg = config(vec![web(three())]);
    let summary = p.apply(&cfg, &mut maps).unwrap();
    assert_eq!(summary.services_added, 1);
    assert_eq!(summary.backends_added, 3);
    assert_eq!(summary.tables_built, 1);

    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert_eq!(svc.flags, SVC_F_NAT);
    assert_eq!(svc.ring_size, 13);
    assert_eq!(svc.fallback_backend, NO_BACKEND);
    let table = maps.table(&svc);
    for addr in ["172.16.14.121:80", "172.16.14.122:80", "172.16.14.123:80"] {
        let id = backend_id(&p, addr);
        assert!(table.contains(&id), "{addr} not in the table");
        let b = maps.backends[&id];
        assert_eq!(b.flags, BACKEND_F_ACTIVE);
        assert_eq!(b.service_id, svc.id);
        assert_eq!(u16::from_be(b.port_be), 80);
        let r = maps.reverse[&endpoint_key(addr.parse().unwrap(), Protocol::Tcp)];
        assert_eq!(r.backend_id, id);
        assert_eq!(r.service_id, svc.id);
        assert_eq!(u16::from_be(r.vip_port_be), 80);
        assert_eq!(
            r.vip,
            endpoint_key("192.168.253.120:80".parse().unwrap(), Protocol::Tcp).addr
        );
    }
    // The table is written before the service points at it.
    let ring_at = maps
        .ops
        .iter()
        .position(|o| matches!(o, Op::Ring(..)))
        .unwrap();
    let svc_at = maps
        .ops
        .iter()
        .position(|o| matches!(o, Op::SetService(..)))
        .unwrap();
    assert!(ring_at < svc_at);
}

#[test]
fn applying_the_same_config_again_writes_nothing() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let cfg = config(vec![web(three())]);
    p.apply(&cfg, &mut maps).unwrap();
    let before = maps.writes();
    let summary = p.apply(&cfg, &mut maps).unwrap();
    assert!(summary.is_empty(), "{summary:?}");
    assert_eq!(
        maps.writes(),
        before,
        "extra writes: {:?}",
        &maps.ops[before..]
    );
}

#[test]
fn weight_change_builds_a_new_table_in_another_range_and_keeps_ids() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    let ids_before: Vec<u32> = p.services()[0].backends.iter().map(|b| b.id).collect();
    let old = maps.service("192.168.253.120:80", Protocol::Tcp);

    let mut reals = three();
    reals[2].weight = 3;
    let summary = p.apply(&config(vec![web(reals)]), &mut maps).unwrap();
    assert_eq!(summary.tables_built, 1);
    assert_eq!(summary.backends_updated, 1);
    assert_eq!(summary.backends_added + summary.backends_removed, 0);
    let new = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert_ne!(
        new.ring_offset, old.ring_offset,
        "rewrote the live range in place"
    );
    assert_eq!(new.id, old.id);
    let ids_after: Vec<u32> = p.services()[0].backends.iter().map(|b| b.id).collect();
    assert_eq!(ids_before, ids_after);
    let heavy = backend_id(&p, "172.16.14.123:80");
    let share = maps.table(&new).iter().filter(|&&id| id == heavy).count();
    assert!(share > 13 / 2, "weight 3 of 5 got {share} of 13 slots");

    // The old range is free again: rebuilding many times never fills the ring.
    for w in 1..20 {
        let mut reals = three();
        reals[0].weight = w;
        p.apply(&config(vec![web(reals)]), &mut maps).unwrap();
    }
}

#[test]
fn removed_real_server_leaves_the_table_at_once_and_is_deactivated_and_freed_after_its_drain() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    let gone = backend_id(&p, "172.16.14.123:80");
    let start = maps.writes();

    let summary = p
        .apply(&config(vec![web(three()[..2].to_vec())]), &mut maps)
        .unwrap();
    assert_eq!(summary.backends_removed, 1);
    assert_ne!(
        maps.backends[&gone].flags & BACKEND_F_ACTIVE,
        0,
        "deactivated before its drain ended"
    );
    assert_eq!(p.expire(Instant::now(), &mut maps).unwrap(), 0);
    p.expire(Instant::now() + LINGER, &mut maps).unwrap();
    let ops = &maps.ops[start..];
    let swap = ops
        .iter()
        .position(|o| matches!(o, Op::SetService(..)))
        .unwrap();
    let deact = ops
        .iter()
        .position(
            |o| matches!(o, Op::Backend(id, b) if *id == gone && b.flags & BACKEND_F_ACTIVE == 0),
        )
        .expect("removed backend never deactivated");
    assert!(
        swap < deact,
        "deactivated before the table without it was live: {ops:?}"
    );
    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert!(!maps.table(&svc).contains(&gone));

    // Its id is reusable now, but only after every never-used id.
    let mut more = three()[..2].to_vec();
    more.push(real("172.16.14.124:80", 1));
    p.apply(&config(vec![web(more)]), &mut maps).unwrap();
    assert_ne!(backend_id(&p, "172.16.14.124:80"), gone);
}

#[test]
fn weight_zero_stays_active_but_gets_no_slots() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let mut reals = three();
    reals[1].weight = 0;
    p.apply(&config(vec![web(reals)]), &mut maps).unwrap();
    let drained = backend_id(&p, "172.16.14.122:80");
    assert_eq!(maps.backends[&drained].flags, BACKEND_F_ACTIVE);
    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert!(!maps.table(&svc).contains(&drained));
    assert!(maps.reverse.contains_key(&endpoint_key(
        "172.16.14.122:80".parse().unwrap(),
        Protocol::Tcp
    )));
}

#[test]
fn all_weights_zero_means_empty_ring_and_the_sorry_server_as_fallback() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let reals: Vec<_> = three()
        .into_iter()
        .map(|r| RealServer { weight: 0, ..r })
        .collect();
    p.apply(&config(vec![web(reals.clone())]), &mut maps)
        .unwrap();
    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert_eq!(svc.ring_size, 0);
    assert_eq!(svc.fallback_backend, NO_BACKEND);

    let mut vs = web(reals);
    vs.sorry_server = Some("172.16.14.99:80".parse().unwrap());
    p.apply(&config(vec![vs]), &mut maps).unwrap();
    let sorry = backend_id(&p, "172.16.14.99:80");
    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert_eq!(svc.ring_size, 0);
    assert_eq!(svc.fallback_backend, sorry);
    assert_eq!(maps.backends[&sorry].flags, BACKEND_F_ACTIVE);
}

#[test]
fn down_real_server_is_inactive_out_of_the_table_and_keeps_its_id() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let cfg = config(vec![web(three())]);
    p.apply(&cfg, &mut maps).unwrap();
    let sick: SocketAddr = "172.16.14.121:80".parse().unwrap();
    let id = backend_id(&p, "172.16.14.121:80");
    p.apply_with_health(&cfg, &mut maps, &|_, a| a != sick)
        .unwrap();
    assert_eq!(maps.backends[&id].flags & BACKEND_F_ACTIVE, 0);
    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert!(!maps.table(&svc).contains(&id));
    assert_eq!(backend_id(&p, "172.16.14.121:80"), id);
    let view = &p.services()[0].backends[0];
    assert!(!view.up && !view.active && !view.in_ring);

    // Back up: active first, then in the table.
    p.apply(&cfg, &mut maps).unwrap();
    let svc = maps.service("192.168.253.120:80", Protocol::Tcp);
    assert!(maps.table(&svc).contains(&id));
}

#[test]
fn removed_service_disappears_and_its_backends_are_deactivated() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let dns = VirtualServer {
        protocol: Protocol::Udp,
        ..service(
            "dns",
            "192.168.253.120:53",
            Forwarding::Dr,
            vec![real("192.168.253.10:53", 1)],
        )
    };
    p.apply(&config(vec![web(three()), dns.clone()]), &mut maps)
        .unwrap();
    assert_eq!(maps.services.len(), 2);
    assert_eq!(
        maps.service("192.168.253.120:53", Protocol::Udp).flags,
        SVC_F_DR
    );
    // DR real servers get no reverse NAT entry.
    assert_eq!(maps.reverse.len(), 3);
    let dns_backend = backend_id(&p, "192.168.253.10:53");

    let summary = p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    assert_eq!(summary.services_removed, 1);
    assert_eq!(maps.services.len(), 1);
    assert_eq!(maps.backends[&dns_backend].flags & BACKEND_F_ACTIVE, 0);
    assert_eq!(p.dr_neighbours(), Vec::<std::net::IpAddr>::new());
}

#[test]
fn forwarding_change_from_nat_to_dr_drops_the_reverse_entries() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    let mut vs = web(three());
    vs.forwarding = Forwarding::Dr;
    p.apply(&config(vec![vs]), &mut maps).unwrap();
    assert_eq!(maps.reverse.len(), 3, "replies in flight lose their VIP");
    p.expire(Instant::now() + LINGER, &mut maps).unwrap();
    assert!(maps.reverse.is_empty());
    assert_eq!(
        maps.service("192.168.253.120:80", Protocol::Tcp).flags,
        SVC_F_DR
    );
    assert_eq!(p.dr_neighbours().len(), 3);
}

#[test]
fn real_server_in_two_nat_services_is_rejected_before_any_write() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let other = service("other", "192.168.253.121:80", Forwarding::Nat, three());
    let err = p
        .apply(&config(vec![web(three()), other]), &mut maps)
        .unwrap_err();
    assert!(
        matches!(err, ProgramError::ReverseNatConflict { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("172.16.14.121:80"), "{err}");
    assert_eq!(maps.writes(), 0);
}

#[test]
fn ring_too_small_is_rejected_before_any_write() {
    let mut p = Programmer::with_table_builder(8, 32, 20, simple_table);
    let mut maps = FakeMaps::new(20);
    let second = service(
        "b",
        "192.168.253.121:80",
        Forwarding::Dr,
        vec![real("10.0.0.1:80", 1)],
    );
    let err = p
        .apply(&config(vec![web(three()), second]), &mut maps)
        .unwrap_err();
    assert!(matches!(err, ProgramError::RingFull { .. }), "{err}");
    assert!(err.to_string().contains("maglev_table_size"), "{err}");
    assert_eq!(maps.writes(), 0);
}

#[test]
fn too_many_real_servers_for_the_maps_is_rejected_before_any_write() {
    let mut p = Programmer::with_table_builder(8, 2, SLOTS, simple_table);
    let mut maps = FakeMaps::new(SLOTS);
    let err = p.apply(&config(vec![web(three())]), &mut maps).unwrap_err();
    assert!(
        matches!(err, ProgramError::BackendCapacity { needed: 3, .. }),
        "{err}"
    );
    assert_eq!(maps.writes(), 0);
}

#[test]
fn real_server_moving_between_nat_services_keeps_a_reverse_entry() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    let b = |reals| service("b", "192.168.253.121:80", Forwarding::Nat, reals);
    p.apply(&config(vec![web(three()), b(vec![])]), &mut maps)
        .unwrap();
    let moved = real("172.16.14.123:80", 1);
    p.apply(
        &config(vec![web(three()[..2].to_vec()), b(vec![moved])]),
        &mut maps,
    )
    .unwrap();
    let key = endpoint_key("172.16.14.123:80".parse().unwrap(), Protocol::Tcp);
    let r = maps
        .reverse
        .get(&key)
        .expect("reverse entry deleted by the old service");
    assert_eq!(u16::from_be(r.vip_port_be), 80);
    assert_eq!(
        r.service_id,
        maps.service("192.168.253.121:80", Protocol::Tcp).id
    );
}

#[test]
fn removed_nat_real_server_drains_and_keeps_its_reverse_entry_and_id_until_the_linger_ends() {
    // Room for exactly three backends: the lingering id must stay reserved.
    let mut p = Programmer::with_table_builder(8, 3, SLOTS, simple_table);
    let mut maps = FakeMaps::new(SLOTS);
    p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    let gone = backend_id(&p, "172.16.14.123:80");
    let key = endpoint_key("172.16.14.123:80".parse().unwrap(), Protocol::Tcp);

    p.apply(&config(vec![web(three()[..2].to_vec())]), &mut maps)
        .unwrap();
    assert_eq!(
        maps.reverse[&key].backend_id, gone,
        "reply rewriting stopped at once"
    );
    assert_ne!(
        maps.backends[&gone].flags & BACKEND_F_ACTIVE,
        0,
        "its established flows were cut at once"
    );
    assert!(
        !maps
            .table(&maps.service("192.168.253.120:80", Protocol::Tcp))
            .contains(&gone),
        "a removed real server is still in the table"
    );
    let mut other = three()[..2].to_vec();
    other.push(real("172.16.14.124:80", 1));
    let err = p
        .apply(&config(vec![web(other.clone())]), &mut maps)
        .unwrap_err();
    assert!(matches!(err, ProgramError::BackendCapacity { .. }), "{err}");

    assert_eq!(
        p.expire(Instant::now(), &mut maps).unwrap(),
        0,
        "expired early"
    );
    assert_eq!(
        p.expire(Instant::now() + LINGER + Duration::from_secs(1), &mut maps)
            .unwrap(),
        2,
        "the drain and the reverse entry end together"
    );
    assert!(!maps.reverse.contains_key(&key));
    assert_eq!(maps.backends[&gone].flags & BACKEND_F_ACTIVE, 0);
    p.apply(&config(vec![web(other)]), &mut maps).unwrap();
    assert_eq!(
        backend_id(&p, "172.16.14.124:80"),
        gone,
        "id not freed by expiry"
    );
}

#[test]
fn real_server_back_within_the_linger_gets_a_fresh_entry_that_does_not_expire() {
    let mut p = programmer();
    let mut maps = FakeMaps::new(SLOTS);
    p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    let first = backend_id(&p, "172.16.14.123:80");
    p.apply(&config(vec![web(three()[..2].to_vec())]), &mut maps)
        .unwrap();
    p.apply(&config(vec![web(three())]), &mut maps).unwrap();
    let back = backend_id(&p, "172.16.14.123:80");
    assert_ne!(back, first, "the draining id was handed out again");
    let key = endpoint_key("172.16.14.123:80".parse().unwrap(), Protocol::Tcp);
    assert_eq!(maps.reverse[&key].backend_id, back);
    assert_eq!(
        p.expire(Instant::now() + LINGER + Duration::from_secs(1), &mut maps)
            .unwrap(),
        1,
        "only the old id's drain ends"
    );
    assert_eq!(maps.reverse[&key].backend_id, back);
    assert_eq!(maps.backends[&first].flags & BACKEND_F_ACTIVE, 0);
    assert_ne!(maps.backends[&back].flags & BACKEND_F_ACTIVE, 0);
}
