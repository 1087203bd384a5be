//! The programmer's view of maps a previous agent filled, rebuilt from
//! what they hold (`Programmer::adopt`, which documents the rules): one
//! step per map.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::SocketAddr,
    time::Instant,
};

use lb_common::{Backend, EndpointKey, ReverseNat, Service, BACKEND_F_ACTIVE, SVC_F_DR};

use super::{
    plan::{Desired, Role},
    ring_range_of, InstalledBackend, InstalledService, Linger, ServiceKey, LINGER,
};
use crate::{
    config::{Forwarding, Protocol, Scheduler},
    dataplane::{keys::words_addr, ring::RingRange},
};

/// Why the pinned maps cannot be taken over: they contradict themselves
/// (a previous agent's bug, or maps written by hand), so nothing built
/// from them could be trusted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("service with protocol {0} in SERVICES")]
    Protocol(u8),
    #[error("service {key} has id {id} twice or out of range")]
    ServiceId { key: ServiceKey, id: u32 },
    #[error("the Maglev ranges of the pinned services overlap")]
    RingOverlap,
}

/// The pinned `SERVICES`, indexed.
pub(super) struct Services {
    pub installed: HashMap<ServiceKey, InstalledService>,
    pub by_id: HashMap<u32, ServiceKey>,
    /// The Maglev ranges in use.
    pub ranges: Vec<RingRange>,
}

/// Every service of `SERVICES`, with no backends yet.
pub(super) fn services(
    max_services: u32,
    services: &[(EndpointKey, Service)],
) -> Result<Services, AdoptError> {
    let mut installed: HashMap<ServiceKey, InstalledService> = HashMap::new();
    let mut by_id: HashMap<u32, ServiceKey> = HashMap::new();
    let mut ranges = Vec::new();
    for (k, v) in services {
        let protocol = match k.proto {
            lb_common::PROTO_TCP => Protocol::Tcp,
            lb_common::PROTO_UDP => Protocol::Udp,
            p => return Err(AdoptError::Protocol(p)),
        };
        let key = ServiceKey {
            address: words_addr(k.addr, k.family),
            port: u16::from_be(k.port_be),
            protocol,
        };
        if v.id >= max_services || by_id.insert(v.id, key).is_some() {
            return Err(AdoptError::ServiceId { key, id: v.id });
        }
        let ring = ring_range_of(v);
        ranges.extend(ring);
        installed.insert(
            key,
            InstalledService {
                id: v.id,
                position: None,
                name: String::new(),
                forwarding: if v.flags & SVC_F_DR != 0 {
                    Forwarding::Dr
                } else {
                    Forwarding::Nat
                },
                scheduler: Scheduler::Maglev,
                table_size: v.ring_size,
                value: *v,
                ring,
                ring_inputs: None,
                backends: BTreeMap::new(),
            },
        );
    }
    Ok(Services {
        installed,
        by_id,
        ranges,
    })
}

/// Give each service its backends from `BACKENDS`; the backend ids in use.
pub(super) fn backends(
    max_backends: u32,
    installed: &mut HashMap<ServiceKey, InstalledService>,
    by_id: &HashMap<u32, ServiceKey>,
    backends: &[(u32, Backend)],
    reverse_nat: &[(EndpointKey, ReverseNat)],
) -> BTreeSet<u32> {
    let reverse_ids: HashSet<u32> = reverse_nat.iter().map(|(_, r)| r.backend_id).collect();
    let mut used_backends = BTreeSet::new();
    for (id, b) in backends {
        let active = b.flags & BACKEND_F_ACTIVE != 0;
        if *id >= max_backends {
            continue;
        }
        if active {
            // Even when no service claims it (a crash mid-apply), flows
            // may still use it: never hand its id to another server.
            used_backends.insert(*id);
        }
        let Some(key) = by_id.get(&b.service_id) else {
            continue;
        };
        let s = installed.get_mut(key).expect("indexed above");
        let addr = SocketAddr::new(words_addr(b.addr, b.family), u16::from_be(b.port_be));
        let is_sorry = s.value.fallback_backend == *id;
        let candidate = InstalledBackend {
            id: *id,
            desired: Desired {
                position: None,
                weight: 0,
                role: if is_sorry { Role::Sorry } else { Role::Real },
                up: active,
            },
            value: *b,
        };
        // Two slots for one server: the live one is active, or named
        // by the fallback or the reverse NAT; the other is a leftover.
        let rank = |c: &InstalledBackend| {
            (
                c.value.flags & BACKEND_F_ACTIVE != 0,
                c.desired.role.is_sorry() || reverse_ids.contains(&c.id),
            )
        };
        let keep = match s.backends.get(&addr) {
            Some(old) => rank(&candidate) > rank(old),
            None => true,
        };
        if keep {
            s.backends.insert(addr, candidate);
        }
    }
    for s in installed.values() {
        used_backends.extend(s.backends.values().map(|b| b.id));
    }
    used_backends
}

/// The reverse-NAT entries a service owns, and the others, which linger
/// (their backend ids stay in `used_backends` until they end).
pub(super) fn reverse_nat(
    installed: &HashMap<ServiceKey, InstalledService>,
    reverse_nat: &[(EndpointKey, ReverseNat)],
    used_backends: &mut BTreeSet<u32>,
) -> (
    HashMap<EndpointKey, ReverseNat>,
    HashMap<EndpointKey, Linger>,
) {
    let owned: HashSet<u32> = installed
        .values()
        .flat_map(|s| s.backends.values().map(|b| b.id))
        .collect();
    let mut reverse = HashMap::new();
    let mut lingering = HashMap::new();
    let until = Instant::now() + LINGER;
    for (k, r) in reverse_nat {
        if owned.contains(&r.backend_id) {
            reverse.insert(*k, *r);
        } else {
            used_backends.insert(r.backend_id);
            lingering.insert(
                *k,
                Linger {
                    backend_id: r.backend_id,
                    until,
                },
            );
        }
    }
    (reverse, lingering)
}
