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
//! An apply is planned first (`plan.rs`: pure, the desired state and every
//! check, nothing written), then committed (`commit.rs`: one method per
//! step above).
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

use lb_common::{Backend, EndpointKey, ReverseNat, Service};

use self::plan::{Desired, RingInputs};
use super::{
    ids::IdAllocator,
    keys::endpoint_key,
    maps::{MapWriteError, MapWriter},
    ring::{RingAllocator, RingRange},
};
use crate::{
    config::{Config, Forwarding, Protocol, Scheduler},
    maglev,
};

mod adopt;
pub use adopt::AdoptError;
mod commit;
mod plan;

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
        write!(f, "{} {}", self.protocol, self.socket())
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

#[derive(Clone, Debug)]
struct InstalledBackend {
    id: u32,
    desired: Desired,
    value: Backend,
}

#[derive(Clone, Debug)]
struct InstalledService {
    id: u32,
    /// Index in the config; unknown for an adopted service.
    position: Option<usize>,
    name: String,
    forwarding: Forwarding,
    scheduler: Scheduler,
    table_size: u32,
    value: Service,
    ring: Option<RingRange>,
    /// What the installed table was built from; unknown for an adopted
    /// service, which forces one rebuild.
    ring_inputs: Option<RingInputs>,
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

/// A reverse-NAT entry whose real server left: it keeps its backend id
/// reserved until it goes.
#[derive(Clone, Copy, Debug)]
struct Linger {
    backend_id: u32,
    until: Instant,
}

/// A backend draining its flows: the value to write when the drain ends
/// (ACTIVE cleared) and when that is.
#[derive(Clone, Copy, Debug)]
struct Drain {
    value: Backend,
    until: Instant,
}

/// The installed state and the allocators; see the module doc.
pub struct Programmer {
    services: HashMap<ServiceKey, InstalledService>,
    reverse_nat: HashMap<EndpointKey, ReverseNat>,
    /// Reverse-NAT entries of removed real servers still in the map.
    lingering: HashMap<EndpointKey, Linger>,
    /// Backends of real servers removed from a service that stays, still
    /// ACTIVE so their flows finish, by backend id.
    draining: HashMap<u32, Drain>,
    service_ids: IdAllocator,
    backend_ids: IdAllocator,
    ring: RingAllocator,
    build_table: TableBuilder,
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
    ) -> Result<Self, adopt::AdoptError> {
        let adopt::Services {
            mut installed,
            by_id,
            ranges,
        } = adopt::services(max_services, services)?;
        let mut used_backends =
            adopt::backends(max_backends, &mut installed, &by_id, backends, reverse_nat);
        let (reverse, lingering) = adopt::reverse_nat(&installed, reverse_nat, &mut used_backends);
        let used_services = by_id.keys().copied().collect();
        let ring =
            RingAllocator::with_used(ring_slots, &ranges).ok_or(adopt::AdoptError::RingOverlap)?;
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
        let installed = plan::Installed {
            services: &self.services,
            service_ids: &self.service_ids,
            backend_ids: &self.backend_ids,
            ring: &self.ring,
        };
        let plan = plan::plan(config, &installed, is_up)?;
        self.commit(&plan, maps)
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
            .filter(|(_, d)| d.until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &drained {
            maps.set_backend(*id, &self.draining[id].value)?;
            self.draining.remove(id);
            if !self.lingering.values().any(|l| l.backend_id == *id) {
                self.backend_ids.free(*id);
            }
        }
        let due: Vec<EndpointKey> = self
            .lingering
            .iter()
            .filter(|(_, l)| l.until <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in &due {
            maps.remove_reverse_nat(key)?;
            let linger = self.lingering.remove(key).expect("collected above");
            if !self.draining.contains_key(&linger.backend_id) {
                self.backend_ids.free(linger.backend_id);
            }
        }
        Ok(drained.len() + due.len())
    }

    /// The installed services in config order.
    pub fn services(&self) -> Vec<ServiceView> {
        let mut list: Vec<(&ServiceKey, &InstalledService)> = self.services.iter().collect();
        // Adopted services (no position yet) last, as they come.
        list.sort_by_key(|(_, s)| (s.position.is_none(), s.position));
        list.into_iter()
            .map(|(key, s)| {
                let mut backends: Vec<&InstalledBackend> = s.backends.values().collect();
                backends.sort_by_key(|b| (b.desired.position.is_none(), b.desired.position));
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
                            is_real: b.desired.role.is_real(),
                            is_sorry: b.desired.role.is_sorry(),
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
