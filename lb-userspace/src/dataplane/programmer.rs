//! The reconciler: turns a [`Config`] (plus, later, health state) into the
//! contents of `SERVICES`, `BACKENDS`, `MAGLEV_RING` and `REVERSE_NAT`, and
//! on every later call writes only what changed.
//!
//! Ids and identity:
//! - A service is identified by (VIP, port, protocol); its id indexes
//!   `SERVICE_STATS` and stays while the service exists.
//! - A backend is one real server *in one service*, identified by
//!   (service, address, port); its id indexes `BACKENDS`/`BACKEND_STATS` and
//!   stays while the real server is in the service (weight and health
//!   changes keep it, so flows and counters survive them).
//!
//! Every change is ordered so that a packet, whatever moment it reads the
//! maps, sees a consistent state:
//! 1. new backends and backends becoming active are written (ACTIVE set),
//!    and reverse-NAT entries are added, before any table refers to them;
//! 2. a changed Maglev table is written into a *free* ring range, then the
//!    service value is replaced in one update (the atomic swap);
//! 3. only then are removed or down backends' ACTIVE flags cleared (so their
//!    flows are chosen again from the new table);
//! 4. last, old ring ranges and the ids of removed backends and services go
//!    back to their allocators: nothing the program can read refers to them.
//!
//! A real server removed from a service that stays drains for [`LINGER`]:
//! it leaves the Maglev table at once (no new flow goes to it: the data
//! plane schedules every TCP SYN by the table, even on a reused flow-table
//! entry) but its backend stays ACTIVE, so connections it already carries
//! finish on it instead of being chosen again and reset by a server that
//! never saw them (IPVS keeps a removed destination's connections the same
//! way). Its NAT reverse entry lingers as long, so its replies still come
//! from the VIP. [`Programmer::expire`] ends both and frees the id, which
//! stays reserved meanwhile. A real server that goes down is different:
//! its flows are chosen again at once (it cannot answer them anyway).
//!
//! Everything that can fail for a reason the user can fix (capacity of the
//! maps sized at start-up, a real server shared by two NAT services) is
//! checked before the first write, so a rejected apply leaves the data plane
//! as it was. A map write the kernel refuses after that point (out of
//! memory, or a bug) leaves the maps partly updated: `lb run` stops when it
//! happens at start-up; on a reload it is logged, and restarting the agent
//! rebuilds everything.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_common::{
    Backend, EndpointKey, ReverseNat, Service, BACKEND_F_ACTIVE, NO_BACKEND, SVC_F_DR, SVC_F_NAT,
};

use super::{
    ids::IdAllocator,
    keys::{addr_words, endpoint_key, family},
    maps::{MapWriteError, MapWriter},
    ring::{RingAllocator, RingRange},
};
use crate::{
    config::{Config, Forwarding, Protocol, Scheduler},
    maglev,
};

/// How long a removed NAT real server's replies are still rewritten.
pub const LINGER: Duration = Duration::from_secs(30);

/// Builds a Maglev table: `maglev::build_table` in the agent; tests pass a
/// simpler one so they exercise the programmer alone.
pub type TableBuilder = fn(&[maglev::Entry], u32) -> Vec<u32>;

/// (VIP, port, protocol): what identifies a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl ServiceKey {
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    pub fn endpoint(&self) -> EndpointKey {
        endpoint_key(self.socket(), self.protocol)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{proto} {}", self.socket())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(
        "the config has {needed} new virtual services but only {available} more fit in the \
         maps sized at start-up (capacity {capacity}): restart `lb run` to resize them"
    )]
    ServiceCapacity {
        needed: usize,
        available: u32,
        capacity: u32,
    },
    #[error(
        "the config has {needed} new real server entries but only {available} more fit in the \
         maps sized at start-up (capacity {capacity}): restart `lb run` to resize them"
    )]
    BackendCapacity {
        needed: usize,
        available: u32,
        capacity: u32,
    },
    #[error(
        "virtual service {service} needs {needed} Maglev ring slots but the largest free range \
         has {largest} (ring of {slots} slots sized at start-up): use a smaller \
         maglev_table_size or restart `lb run` to resize the ring"
    )]
    RingFull {
        service: ServiceKey,
        needed: u32,
        largest: u32,
        slots: u32,
    },
    #[error(
        "real server {real} ({proto}) is in NAT services {first} and {second}: its replies could \
         not be told apart; give each NAT service its own real server port"
    )]
    ReverseNatConflict {
        real: SocketAddr,
        proto: &'static str,
        first: ServiceKey,
        second: ServiceKey,
    },
    #[error("virtual service {0} appears twice in the config")]
    DuplicateService(ServiceKey),
    #[error("the Maglev builder returned {got} slots for a table of {expected}")]
    TableSize { got: usize, expected: u32 },
    #[error(transparent)]
    Map(#[from] MapWriteError),
}

/// What one real server entry of a service should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Desired {
    /// Index in the config (display order).
    position: usize,
    weight: u32,
    /// Listed as a real server (not only as the sorry server).
    is_real: bool,
    is_sorry: bool,
    /// Health (always true until health checks exist).
    up: bool,
}

impl Desired {
    /// May carry flows: a real server that is up, or the sorry server
    /// (whose flows must survive real servers coming back).
    fn active(&self) -> bool {
        (self.is_real && self.up) || self.is_sorry
    }

    /// Gets new flows from the Maglev table.
    fn in_ring(&self) -> bool {
        self.is_real && self.up && self.weight > 0
    }
}

#[derive(Clone, Debug)]
struct InstalledBackend {
    id: u32,
    desired: Desired,
    value: Backend,
}

#[derive(Clone, Debug)]
struct InstalledService {
    id: u32,
    position: usize,
    name: String,
    forwarding: Forwarding,
    scheduler: Scheduler,
    table_size: u32,
    value: Service,
    ring: Option<RingRange>,
    /// What the installed table was built from: (real server, weight) of
    /// every in-ring backend, sorted, plus the table size.
    ring_inputs: (Vec<(SocketAddr, u32)>, u32),
    backends: BTreeMap<SocketAddr, InstalledBackend>,
}

/// One installed service, for status and metrics.
#[derive(Clone, Debug)]
pub struct ServiceView {
    pub key: ServiceKey,
    pub id: u32,
    pub name: String,
    pub forwarding: Forwarding,
    pub scheduler: Scheduler,
    /// Slots of its live Maglev table; 0 = no real server takes new flows.
    pub ring_size: u32,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug)]
pub struct BackendView {
    pub address: SocketAddr,
    pub id: u32,
    pub weight: u32,
    pub is_real: bool,
    pub is_sorry: bool,
    pub up: bool,
    pub active: bool,
    pub in_ring: bool,
}

/// What an apply changed, for the log line and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub services_added: usize,
    pub services_removed: usize,
    pub services_updated: usize,
    pub backends_added: usize,
    pub backends_removed: usize,
    pub backends_updated: usize,
    pub tables_built: usize,
}

impl ApplySummary {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for ApplySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "services +{} -{} ~{}, real servers +{} -{} ~{}, maglev tables built {}",
            self.services_added,
            self.services_removed,
            self.services_updated,
            self.backends_added,
            self.backends_removed,
            self.backends_updated,
            self.tables_built
        )
    }
}

/// The installed state and the allocators; see the module doc.
pub struct Programmer {
    services: HashMap<ServiceKey, InstalledService>,
    reverse_nat: HashMap<EndpointKey, ReverseNat>,
    /// Reverse-NAT entries of removed real servers still in the map, with
    /// the backend id they keep reserved and when they go.
    lingering: HashMap<EndpointKey, (u32, Instant)>,
    /// Backends of real servers removed from a service that stays, still
    /// ACTIVE so their flows finish: the value to write when the drain
    /// ends (ACTIVE cleared) and when that is.
    draining: HashMap<u32, (Backend, Instant)>,
    service_ids: IdAllocator,
    backend_ids: IdAllocator,
    ring: RingAllocator,
    build_table: TableBuilder,
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn ring_range_of(value: &Service) -> Option<RingRange> {
    (value.ring_size > 0).then_some(RingRange {
        offset: value.ring_offset,
        len: value.ring_size,
    })
}

impl Programmer {
    /// An empty data plane whose maps hold `max_services` services,
    /// `max_backends` backends and `ring_slots` Maglev slots.
    pub fn new(max_services: u32, max_backends: u32, ring_slots: u32) -> Self {
        Self::with_table_builder(max_services, max_backends, ring_slots, maglev::build_table)
    }

    pub fn with_table_builder(
        max_services: u32,
        max_backends: u32,
        ring_slots: u32,
        build_table: TableBuilder,
    ) -> Self {
        Self {
            services: HashMap::new(),
            reverse_nat: HashMap::new(),
            lingering: HashMap::new(),
            draining: HashMap::new(),
            service_ids: IdAllocator::new(max_services),
            backend_ids: IdAllocator::new(max_backends),
            ring: RingAllocator::new(ring_slots),
            build_table,
        }
    }

    /// The installed state of maps a previous agent filled (a restart that
    /// adopts pinned maps), from what they hold: `services` and
    /// `reverse_nat` are the whole maps, `backends` every `BACKENDS` slot
    /// ever written. Ids and ring ranges in use stay in use, so the next
    /// apply writes only what differs and established flows keep their
    /// real servers.
    ///
    /// What the maps do not record (names, weights, what each table was
    /// built from) is unknown, so the next apply rebuilds every Maglev
    /// table once: with the same real servers and weights it is the same
    /// table (Maglev is deterministic in its inputs), swapped in atomically.
    /// A slot of a removed real server looks like a down one here; the next
    /// apply removes it again. A reverse-NAT entry no service owns lingers
    /// like one of a removed real server.
    pub fn adopt(
        max_services: u32,
        max_backends: u32,
        ring_slots: u32,
        services: &[(EndpointKey, Service)],
        backends: &[(u32, Backend)],
        reverse_nat: &[(EndpointKey, ReverseNat)],
    ) -> Result<Self, String> {
        let mut installed: HashMap<ServiceKey, InstalledService> = HashMap::new();
        let mut by_id: HashMap<u32, ServiceKey> = HashMap::new();
        let mut ranges = Vec::new();
        for (k, v) in services {
            let protocol = match k.proto {
                lb_common::PROTO_TCP => Protocol::Tcp,
                lb_common::PROTO_UDP => Protocol::Udp,
                p => return Err(format!("service with protocol {p} in SERVICES")),
            };
            let key = ServiceKey {
                address: super::keys::words_addr(k.addr, k.family),
                port: u16::from_be(k.port_be),
                protocol,
            };
            if v.id >= max_services || by_id.insert(v.id, key).is_some() {
                return Err(format!(
                    "service {key} has id {} twice or out of range",
                    v.id
                ));
            }
            let ring = ring_range_of(v);
            ranges.extend(ring);
            installed.insert(
                key,
                InstalledService {
                    id: v.id,
                    position: usize::MAX,
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
                    // Never equal to real inputs: forces one rebuild.
                    ring_inputs: (Vec::new(), u32::MAX),
                    backends: BTreeMap::new(),
                },
            );
        }
        let reverse_ids: HashSet<u32> = reverse_nat.iter().map(|(_, r)| r.backend_id).collect();
        let mut used_backends = std::collections::BTreeSet::new();
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
            let addr = SocketAddr::new(
                super::keys::words_addr(b.addr, b.family),
                u16::from_be(b.port_be),
            );
            let is_sorry = s.value.fallback_backend == *id;
            let candidate = InstalledBackend {
                id: *id,
                desired: Desired {
                    position: usize::MAX,
                    weight: 0,
                    is_real: !is_sorry,
                    is_sorry,
                    up: active,
                },
                value: *b,
            };
            // Two slots for one server: the live one is active, or named
            // by the fallback or the reverse NAT; the other is a leftover.
            let rank = |c: &InstalledBackend| {
                (
                    c.value.flags & BACKEND_F_ACTIVE != 0,
                    c.desired.is_sorry || reverse_ids.contains(&c.id),
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
                lingering.insert(*k, (r.backend_id, until));
            }
        }
        let used_services = by_id.keys().copied().collect();
        let ring = RingAllocator::with_used(ring_slots, &ranges)
            .ok_or("the Maglev ranges of the pinned services overlap")?;
        Ok(Self {
            services: installed,
            reverse_nat: reverse,
            lingering,
            draining: HashMap::new(),
            service_ids: IdAllocator::with_used(max_services, &used_services),
            backend_ids: IdAllocator::with_used(max_backends, &used_backends),
            ring,
            build_table: maglev::build_table,
        })
    }

    /// Make the maps match `config`, every real server healthy.
    pub fn apply(
        &mut self,
        config: &Config,
        maps: &mut dyn MapWriter,
    ) -> Result<ApplySummary, ProgramError> {
        self.apply_with_health(config, maps, &|_, _| true)
    }

    /// Make the maps match `config`, where `is_up(service, real server)`
    /// says whether a real server passes its health checks. A down real
    /// server keeps its id and counters but is inactive and out of the table.
    pub fn apply_with_health(
        &mut self,
        config: &Config,
        maps: &mut dyn MapWriter,
        is_up: &dyn Fn(&ServiceKey, SocketAddr) -> bool,
    ) -> Result<ApplySummary, ProgramError> {
        // ---- Desired state, and every check that can reject it. ----
        let mut desired: HashMap<ServiceKey, (usize, BTreeMap<SocketAddr, Desired>)> =
            HashMap::new();
        let mut order: Vec<ServiceKey> = Vec::new();
        for (position, vs) in config.virtual_servers.iter().enumerate() {
            let key = ServiceKey {
                address: vs.address,
                port: vs.port,
                protocol: vs.protocol,
            };
            let mut backends = BTreeMap::new();
            for (i, rs) in vs.real_servers.iter().enumerate() {
                let addr = SocketAddr::new(rs.address, rs.port);
                backends.insert(
                    addr,
                    Desired {
                        position: i,
                        weight: rs.weight,
                        is_real: true,
                        is_sorry: false,
                        up: is_up(&key, addr),
                    },
                );
            }
            if let Some(sorry) = vs.sorry_server {
                let n = backends.len();
                backends
                    .entry(sorry)
                    .and_modify(|d| d.is_sorry = true)
                    .or_insert(Desired {
                        position: n,
                        weight: 0,
                        is_real: false,
                        is_sorry: true,
                        up: true,
                    });
            }
            if desired.insert(key, (position, backends)).is_some() {
                return Err(ProgramError::DuplicateService(key));
            }
            order.push(key);
        }
        let vs_of = |key: &ServiceKey| {
            config
                .virtual_servers
                .iter()
                .find(|vs| {
                    vs.address == key.address && vs.port == key.port && vs.protocol == key.protocol
                })
                .expect("desired services come from the config")
        };

        let mut reverse_owner: HashMap<EndpointKey, ServiceKey> = HashMap::new();
        for key in &order {
            if vs_of(key).forwarding != Forwarding::Nat {
                continue;
            }
            for addr in desired[key].1.keys() {
                let rkey = endpoint_key(*addr, key.protocol);
                if let Some(first) = reverse_owner.insert(rkey, *key) {
                    return Err(ProgramError::ReverseNatConflict {
                        real: *addr,
                        proto: proto_name(key.protocol),
                        first,
                        second: *key,
                    });
                }
            }
        }

        let new_services = order
            .iter()
            .filter(|k| !self.services.contains_key(k))
            .count();
        if new_services > self.service_ids.available() as usize {
            return Err(ProgramError::ServiceCapacity {
                needed: new_services,
                available: self.service_ids.available(),
                capacity: self.service_ids.capacity(),
            });
        }
        let new_backends: usize = order
            .iter()
            .map(|k| {
                let installed = self.services.get(k);
                desired[k]
                    .1
                    .keys()
                    .filter(|a| installed.is_none_or(|s| !s.backends.contains_key(a)))
                    .count()
            })
            .sum();
        if new_backends > self.backend_ids.available() as usize {
            return Err(ProgramError::BackendCapacity {
                needed: new_backends,
                available: self.backend_ids.available(),
                capacity: self.backend_ids.capacity(),
            });
        }

        let ring_inputs = |key: &ServiceKey| -> (Vec<(SocketAddr, u32)>, u32) {
            let entries = desired[key]
                .1
                .iter()
                .filter(|(_, d)| d.in_ring())
                .map(|(a, d)| (*a, d.weight))
                .collect();
            (entries, vs_of(key).maglev_table_size)
        };
        let needs_table = |key: &ServiceKey, inputs: &(Vec<(SocketAddr, u32)>, u32)| {
            self.services
                .get(key)
                .is_none_or(|s| s.ring_inputs != *inputs)
        };
        // Dry run of the ring allocations: old ranges are only freed at the
        // end, exactly as below.
        let mut trial = self.ring.clone();
        for key in &order {
            let inputs = ring_inputs(key);
            if needs_table(key, &inputs) && !inputs.0.is_empty() {
                trial.allocate(inputs.1).ok_or(ProgramError::RingFull {
                    service: *key,
                    needed: inputs.1,
                    largest: trial.largest_free(),
                    slots: trial.slots(),
                })?;
            }
        }

        // ---- From here on nothing the user can fix fails. ----
        let mut summary = ApplySummary::default();
        let mut free_ranges: Vec<RingRange> = Vec::new();
        let mut free_backend_ids: Vec<u32> = Vec::new();
        let mut free_service_ids: Vec<u32> = Vec::new();
        // Backends to write with ACTIVE cleared once the tables no longer
        // name them (step 3).
        let mut deactivate: Vec<(u32, Backend)> = Vec::new();
        // Removed real servers whose flows drain (see the module doc), with
        // the value they get when the drain ends.
        let mut drain: Vec<(u32, Backend)> = Vec::new();

        let mut next: HashMap<ServiceKey, InstalledService> = HashMap::new();
        for key in &order {
            let vs = vs_of(key);
            let (position, want) = &desired[key];
            let old = self.services.remove(key);
            let id = match &old {
                Some(s) => s.id,
                None => {
                    let id = self.service_ids.allocate().expect("capacity checked");
                    maps.reset_service_stats(id)?;
                    summary.services_added += 1;
                    id
                }
            };
            let mut old_backends = old.as_ref().map(|s| s.backends.clone()).unwrap_or_default();
            let mut backends = BTreeMap::new();
            // Step 1: backends that are new or stay/become active.
            for (addr, d) in want {
                let prev = old_backends.remove(addr);
                let bid = match &prev {
                    Some(b) => b.id,
                    None => {
                        let bid = self.backend_ids.allocate().expect("capacity checked");
                        maps.reset_backend_stats(bid)?;
                        summary.backends_added += 1;
                        bid
                    }
                };
                let value = Backend {
                    addr: addr_words(addr.ip()),
                    port_be: addr.port().to_be(),
                    family: family(addr.ip()),
                    flags: if d.active() { BACKEND_F_ACTIVE } else { 0 },
                    service_id: id,
                };
                match &prev {
                    None => maps.set_backend(bid, &value)?,
                    Some(p) if p.value != value => {
                        if d.active() {
                            maps.set_backend(bid, &value)?;
                        } else {
                            deactivate.push((bid, value));
                        }
                    }
                    Some(_) => {}
                }
                if prev.as_ref().is_some_and(|p| {
                    let o = p.desired;
                    (o.weight, o.up, o.is_real, o.is_sorry)
                        != (d.weight, d.up, d.is_real, d.is_sorry)
                }) {
                    summary.backends_updated += 1;
                }
                backends.insert(
                    *addr,
                    InstalledBackend {
                        id: bid,
                        desired: *d,
                        value,
                    },
                );
            }
            // Real servers that left the service: out of the table in step 2;
            // an active one drains (inactive and its id freed when `expire`
            // ends the drain), a down one is inactive already.
            for (_, gone) in old_backends {
                let inactive = Backend {
                    flags: gone.value.flags & !BACKEND_F_ACTIVE,
                    ..gone.value
                };
                if gone.value.flags & BACKEND_F_ACTIVE != 0 {
                    drain.push((gone.id, inactive));
                } else {
                    deactivate.push((gone.id, inactive));
                    free_backend_ids.push(gone.id);
                }
                summary.backends_removed += 1;
            }
            let service = InstalledService {
                id,
                position: *position,
                name: vs.name.clone(),
                forwarding: vs.forwarding,
                scheduler: vs.scheduler,
                table_size: vs.maglev_table_size,
                value: old.as_ref().map(|s| s.value).unwrap_or_default(),
                ring: old.as_ref().and_then(|s| s.ring),
                ring_inputs: old
                    .as_ref()
                    .map(|s| s.ring_inputs.clone())
                    .unwrap_or_default(),
                backends,
            };
            if old.as_ref().is_some_and(|o| {
                o.name != service.name
                    || o.forwarding != service.forwarding
                    || o.table_size != service.table_size
                    || o.position != service.position
            }) {
                summary.services_updated += 1;
            }
            next.insert(*key, service);
        }

        // Step 1 (continued): reverse NAT entries that are new or changed.
        let mut want_reverse: HashMap<EndpointKey, ReverseNat> = HashMap::new();
        for (rkey, skey) in &reverse_owner {
            let s = &next[skey];
            let real = s
                .backends
                .iter()
                .find(|(a, _)| endpoint_key(**a, skey.protocol) == *rkey)
                .expect("reverse NAT keys come from the backends");
            want_reverse.insert(
                *rkey,
                ReverseNat {
                    vip: addr_words(skey.address),
                    vip_port_be: skey.port.to_be(),
                    _pad: 0,
                    service_id: s.id,
                    backend_id: real.1.id,
                },
            );
        }
        for (rkey, value) in &want_reverse {
            if self.reverse_nat.get(rkey) != Some(value) {
                maps.set_reverse_nat(rkey, value)?;
            }
            // Back before its linger ended: the entry now names the new id.
            if let Some((old_id, _)) = self.lingering.remove(rkey) {
                free_backend_ids.push(old_id);
            }
        }

        // Step 2: removed services leave SERVICES first (their VIP packets
        // go to the kernel), then every changed table is written into a free
        // range and swapped in with one service update.
        for (key, gone) in self.services.drain() {
            maps.remove_service(&key.endpoint())?;
            free_ranges.extend(gone.ring);
            free_service_ids.push(gone.id);
            summary.services_removed += 1;
            for b in gone.backends.values() {
                deactivate.push((
                    b.id,
                    Backend {
                        flags: b.value.flags & !BACKEND_F_ACTIVE,
                        ..b.value
                    },
                ));
                free_backend_ids.push(b.id);
                summary.backends_removed += 1;
            }
            // No packet reaches a removed service's backends any more: the
            // drain of its earlier removed real servers ends now too.
            let ended: Vec<u32> = self
                .draining
                .iter()
                .filter(|(_, (v, _))| v.service_id == gone.id)
                .map(|(id, _)| *id)
                .collect();
            for id in ended {
                let (value, _) = self.draining.remove(&id).expect("collected above");
                deactivate.push((id, value));
                free_backend_ids.push(id);
            }
        }
        for key in &order {
            let inputs = ring_inputs(key);
            let s = next.get_mut(key).expect("built above");
            if s.ring_inputs != inputs {
                free_ranges.extend(s.ring.take());
                if !inputs.0.is_empty() {
                    let range = self.ring.allocate(inputs.1).expect("ring space checked");
                    let entries: Vec<maglev::Entry> = inputs
                        .0
                        .iter()
                        .map(|(addr, weight)| maglev::Entry {
                            id: s.backends[addr].id,
                            addr: addr.ip(),
                            port: addr.port(),
                            weight: *weight,
                        })
                        .collect();
                    let table = (self.build_table)(&entries, inputs.1);
                    if table.len() != inputs.1 as usize {
                        return Err(ProgramError::TableSize {
                            got: table.len(),
                            expected: inputs.1,
                        });
                    }
                    maps.write_ring(range.offset, &table)?;
                    s.ring = Some(range);
                    summary.tables_built += 1;
                }
                s.ring_inputs = inputs;
            }
            let fallback = s
                .backends
                .values()
                .find(|b| b.desired.is_sorry)
                .map_or(NO_BACKEND, |b| b.id);
            let value = Service {
                id: s.id,
                flags: match s.forwarding {
                    Forwarding::Nat => SVC_F_NAT,
                    Forwarding::Dr => SVC_F_DR,
                },
                ring_offset: s.ring.map_or(0, |r| r.offset),
                ring_size: s.ring.map_or(0, |r| r.len),
                fallback_backend: fallback,
                _pad: 0,
            };
            if value != s.value {
                maps.set_service(&key.endpoint(), &value)?;
                s.value = value;
            }
            debug_assert_eq!(ring_range_of(&s.value), s.ring);
        }

        // Step 3: nothing new is scheduled to these any more; their flows
        // are chosen again.
        for (bid, value) in &deactivate {
            maps.set_backend(*bid, value)?;
        }
        let now = Instant::now();
        for (bid, value) in drain {
            self.draining.insert(bid, (value, now + LINGER));
        }
        let mut reserved: HashSet<u32> = HashSet::new();
        for (rkey, value) in &self.reverse_nat {
            if !want_reverse.contains_key(rkey) {
                self.lingering
                    .insert(*rkey, (value.backend_id, now + LINGER));
                reserved.insert(value.backend_id);
            }
        }

        // Step 4: no map value refers to these any more.
        for range in free_ranges {
            self.ring.free(range);
        }
        for id in free_backend_ids {
            // A draining id is freed when its drain ends (`expire`).
            if !reserved.contains(&id) && !self.draining.contains_key(&id) {
                self.backend_ids.free(id);
            }
        }
        for id in free_service_ids {
            self.service_ids.free(id);
        }
        self.services = next;
        self.reverse_nat = want_reverse;
        Ok(summary)
    }

    /// End the drains and delete the reverse-NAT entries whose time ended
    /// by `now` (a drained backend's remaining flows are chosen again), and
    /// free the backend ids nothing holds any more; returns how many
    /// backends and entries went. Called periodically.
    pub fn expire(
        &mut self,
        now: Instant,
        maps: &mut dyn MapWriter,
    ) -> Result<usize, ProgramError> {
        let drained: Vec<u32> = self
            .draining
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &drained {
            let (value, _) = self.draining[id];
            maps.set_backend(*id, &value)?;
            self.draining.remove(id);
            if !self.lingering.values().any(|(held, _)| held == id) {
                self.backend_ids.free(*id);
            }
        }
        let due: Vec<EndpointKey> = self
            .lingering
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in &due {
            maps.remove_reverse_nat(key)?;
            let (id, _) = self.lingering.remove(key).expect("collected above");
            if !self.draining.contains_key(&id) {
                self.backend_ids.free(id);
            }
        }
        Ok(drained.len() + due.len())
    }

    /// The installed services in config order.
    pub fn services(&self) -> Vec<ServiceView> {
        let mut list: Vec<(&ServiceKey, &InstalledService)> = self.services.iter().collect();
        list.sort_by_key(|(_, s)| s.position);
        list.into_iter()
            .map(|(key, s)| {
                let mut backends: Vec<&InstalledBackend> = s.backends.values().collect();
                backends.sort_by_key(|b| b.desired.position);
                ServiceView {
                    key: *key,
                    id: s.id,
                    name: s.name.clone(),
                    forwarding: s.forwarding,
                    scheduler: s.scheduler,
                    ring_size: s.value.ring_size,
                    backends: backends
                        .into_iter()
                        .map(|b| BackendView {
                            address: SocketAddr::new(
                                super::keys::words_addr(b.value.addr, b.value.family),
                                u16::from_be(b.value.port_be),
                            ),
                            id: b.id,
                            weight: b.desired.weight,
                            is_real: b.desired.is_real,
                            is_sorry: b.desired.is_sorry,
                            up: b.desired.up,
                            active: b.desired.active(),
                            in_ring: b.desired.in_ring(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Addresses of the real servers of DR services: the neighbours the
    /// agent must keep resolved.
    pub fn dr_neighbours(&self) -> Vec<IpAddr> {
        let set: HashSet<IpAddr> = self
            .services
            .values()
            .filter(|s| s.forwarding == Forwarding::Dr)
            .flat_map(|s| s.backends.keys().map(|a| a.ip()))
            .collect();
        let mut list: Vec<IpAddr> = set.into_iter().collect();
        list.sort();
        list
    }
}

#[cfg(test)]
#[path = "programmer_tests.rs"]
mod tests;
