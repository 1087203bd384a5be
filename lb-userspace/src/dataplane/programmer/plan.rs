//! The pure half of an apply: the desired state of every service, indexed
//! by key, and every check that can reject it (duplicate services, a real
//! server shared by two NAT services, map capacity, ring space), run
//! against what is installed without writing anything.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use lb_common::EndpointKey;

use super::{InstalledService, ProgramError, ServiceKey};
use crate::{
    config::{
        reverse_nat::{Claim, ReverseNatOwners},
        Config, Forwarding, VirtualServer,
    },
    dataplane::{ids::IdAllocator, keys::endpoint_key, ring::RingAllocator},
};

/// Why a backend is in its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Listed as a real server.
    Real,
    /// Listed only as the sorry server.
    Sorry,
    /// Listed as a real server and as the sorry server.
    RealAndSorry,
}

impl Role {
    pub(super) fn is_real(self) -> bool {
        matches!(self, Role::Real | Role::RealAndSorry)
    }

    pub(super) fn is_sorry(self) -> bool {
        matches!(self, Role::Sorry | Role::RealAndSorry)
    }
}

/// What one real server entry of a service should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Desired {
    /// Index in the config (display order); unknown for adopted entries.
    pub position: Option<usize>,
    pub weight: u32,
    pub role: Role,
    /// Passes its health checks.
    pub up: bool,
}

impl Desired {
    /// May carry flows: a real server that is up, or the sorry server
    /// (whose flows must survive real servers coming back).
    pub(super) fn active(&self) -> bool {
        (self.role.is_real() && self.up) || self.role.is_sorry()
    }

    /// Gets new flows from the Maglev table.
    pub(super) fn in_ring(&self) -> bool {
        self.role.is_real() && self.up && self.weight > 0
    }
}

/// What a Maglev table is built from: (real server, weight) of every
/// in-ring backend, sorted by address, and the table size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RingInputs {
    pub entries: Vec<(SocketAddr, u32)>,
    pub table_size: u32,
}

/// One service as the config wants it.
pub(super) struct DesiredService<'a> {
    pub key: ServiceKey,
    pub position: usize,
    pub config: &'a VirtualServer,
    pub backends: BTreeMap<SocketAddr, Desired>,
    pub ring: RingInputs,
}

/// The NAT service that owns a reverse-NAT entry, and its real server.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReverseOwner {
    pub service: ServiceKey,
    pub real: SocketAddr,
}

/// Everything an apply will install, already checked.
pub(super) struct Plan<'a> {
    /// In config order.
    pub services: Vec<DesiredService<'a>>,
    pub reverse_owners: HashMap<EndpointKey, ReverseOwner>,
}

/// What is installed now, as far as planning needs it.
pub(super) struct Installed<'i> {
    pub services: &'i HashMap<ServiceKey, InstalledService>,
    pub service_ids: &'i IdAllocator,
    pub backend_ids: &'i IdAllocator,
    pub ring: &'i RingAllocator,
}

impl Installed<'_> {
    /// The installed table of `service` is not the one `inputs` build.
    pub(super) fn needs_table(&self, service: &DesiredService) -> bool {
        self.services
            .get(&service.key)
            .is_none_or(|s| s.ring_inputs.as_ref() != Some(&service.ring))
    }
}

/// The desired state for `config`, checked against `installed`.
pub(super) fn plan<'a>(
    config: &'a Config,
    installed: &Installed,
    is_up: &dyn Fn(&ServiceKey, SocketAddr) -> bool,
) -> Result<Plan<'a>, ProgramError> {
    let services = desired_services(config, is_up)?;
    let reverse_owners = reverse_owners(&services)?;
    check_capacity(&services, installed)?;
    check_ring(&services, installed)?;
    Ok(Plan {
        services,
        reverse_owners,
    })
}

fn desired_services<'a>(
    config: &'a Config,
    is_up: &dyn Fn(&ServiceKey, SocketAddr) -> bool,
) -> Result<Vec<DesiredService<'a>>, ProgramError> {
    let mut seen = std::collections::HashSet::new();
    let mut services = Vec::with_capacity(config.virtual_servers.len());
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
                    position: Some(i),
                    weight: rs.weight,
                    role: Role::Real,
                    up: is_up(&key, addr),
                },
            );
        }
        if let Some(sorry) = vs.sorry_server {
            let n = backends.len();
            backends
                .entry(sorry)
                .and_modify(|d| d.role = Role::RealAndSorry)
                .or_insert(Desired {
                    position: Some(n),
                    weight: 0,
                    role: Role::Sorry,
                    up: true,
                });
        }
        if !seen.insert(key) {
            return Err(ProgramError::DuplicateService(key));
        }
        let ring = RingInputs {
            entries: backends
                .iter()
                .filter(|(_, d)| d.in_ring())
                .map(|(a, d)| (*a, d.weight))
                .collect(),
            table_size: vs.maglev_table_size,
        };
        services.push(DesiredService {
            key,
            position,
            config: vs,
            backends,
            ring,
        });
    }
    Ok(services)
}

/// Who owns each reverse-NAT entry, by the one rule `lb check` enforces
/// (`config::reverse_nat`); a config that breaks it is refused here too.
fn reverse_owners(
    services: &[DesiredService],
) -> Result<HashMap<EndpointKey, ReverseOwner>, ProgramError> {
    let mut rule: ReverseNatOwners<ServiceKey> = ReverseNatOwners::default();
    let mut owners: HashMap<EndpointKey, ReverseOwner> = HashMap::new();
    for s in services {
        if s.config.forwarding != Forwarding::Nat {
            continue;
        }
        for (addr, desired) in &s.backends {
            // One entry per address here: a sorry server that is also a
            // real server of the service is its real server.
            let claim = if desired.role.is_real() {
                Claim::RealServer
            } else {
                Claim::SorryServer
            };
            if let Err(first) = rule.claim(*addr, s.key.protocol, s.key, claim) {
                return Err(ProgramError::ReverseNatConflict {
                    real: *addr,
                    proto: s.key.protocol.name(),
                    first,
                    second: s.key,
                });
            }
            let owner = ReverseOwner {
                service: s.key,
                real: *addr,
            };
            owners.insert(endpoint_key(*addr, s.key.protocol), owner);
        }
    }
    Ok(owners)
}

fn check_capacity(services: &[DesiredService], installed: &Installed) -> Result<(), ProgramError> {
    let new_services = services
        .iter()
        .filter(|s| !installed.services.contains_key(&s.key))
        .count();
    if new_services > installed.service_ids.available() as usize {
        return Err(ProgramError::ServiceCapacity {
            needed: new_services,
            available: installed.service_ids.available(),
            capacity: installed.service_ids.capacity(),
        });
    }
    let new_backends: usize = services
        .iter()
        .map(|s| {
            let old = installed.services.get(&s.key);
            s.backends
                .keys()
                .filter(|a| old.is_none_or(|o| !o.backends.contains_key(a)))
                .count()
        })
        .sum();
    if new_backends > installed.backend_ids.available() as usize {
        return Err(ProgramError::BackendCapacity {
            needed: new_backends,
            available: installed.backend_ids.available(),
            capacity: installed.backend_ids.capacity(),
        });
    }
    Ok(())
}

/// Dry run of the ring allocations: old ranges are only freed once every
/// new table is live, so the new ones must fit beside them.
fn check_ring(services: &[DesiredService], installed: &Installed) -> Result<(), ProgramError> {
    let mut trial = installed.ring.clone();
    for s in services {
        if installed.needs_table(s) && !s.ring.entries.is_empty() {
            trial
                .allocate(s.ring.table_size)
                .ok_or(ProgramError::RingFull {
                    service: s.key,
                    needed: s.ring.table_size,
                    largest: trial.largest_free(),
                    slots: trial.slots(),
                })?;
        }
    }
    Ok(())
}
