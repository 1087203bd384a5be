//! Reading the data plane's counters back: per-CPU counters summed, flows
//! counted per backend by walking `FLOWS`, assembled into a [`Status`].
//!
//! Walking `FLOWS` costs two syscalls per entry (seconds for a full table
//! of a million flows), so the agent does it through a [`FlowCounter`]: a
//! handle of its own on the map, used without the agent's state lock, and
//! merges the [`FlowCounts`] into a [`snapshot_with_flows`] taken under it.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use lb_common::{event, verdict, Flow, FlowKey};

use super::pin::PinDir;
use super::{
    maps::{KernelMaps, MapOpenError, MapWriteError},
    programmer::{Programmer, ServiceView},
};
use crate::{
    config::{Config, Forwarding, Protocol, Scheduler},
    status::{RealServerStatus, ServiceStatus, Status},
};

/// Who a flow belongs to: the service it was scheduled in and its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowOwner {
    pub service_id: u32,
    pub backend_id: u32,
}

/// Flows per [`FlowOwner`], from one walk of `FLOWS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts(HashMap<FlowOwner, u64>);

impl FlowCounts {
    /// Count the flows `flows` yields.
    pub fn of(flows: impl IntoIterator<Item = Flow>) -> Self {
        let mut counts = HashMap::new();
        for flow in flows {
            let owner = FlowOwner {
                service_id: flow.service_id,
                backend_id: flow.backend_id,
            };
            *counts.entry(owner).or_insert(0) += 1;
        }
        Self(counts)
    }

    pub fn get(&self, owner: FlowOwner) -> u64 {
        self.0.get(&owner).copied().unwrap_or(0)
    }
}

/// A second handle on `FLOWS`, with its own file descriptor, that owns
/// nothing else: flows are counted through it by a thread that does not
/// hold the agent's state lock, so a status request or a metrics scrape
/// never makes a health transition, a reload or SIGTERM wait for a walk
/// of the whole flow table.
pub struct FlowCounter {
    flows: BpfHashMap<MapData, FlowKey, Flow>,
}

impl FlowCounter {
    /// Open a handle on the same kernel map as `maps`' `FLOWS`.
    pub fn new(maps: &KernelMaps) -> Result<Self, MapOpenError> {
        let name = lb_common::names::FLOWS;
        let reopen = |source| MapOpenError::Reopen { name, source };
        let fd = maps.flows_fd().try_clone_to_owned().map_err(|io_error| {
            reopen(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error,
            }))
        })?;
        let data = MapData::from_fd(fd).map_err(reopen)?;
        // `HashMap` accepts either kind; the loaded object's is an LRU, the
        // standalone maps of the tests a plain hash.
        let flows = BpfHashMap::try_from(Map::LruHashMap(data))
            .map_err(|source| MapOpenError::WrongType { name, source })?;
        Ok(Self { flows })
    }

    /// Walk the table once. Entries that vanish during the walk (the LRU
    /// evicts under load) are skipped.
    pub fn count(&self) -> FlowCounts {
        FlowCounts::of(self.flows.iter().filter_map(Result::ok).map(|(_, f)| f))
    }
}

/// Flows per (service id, backend id), walking `maps`' `FLOWS` directly
/// (for `lb status --pinned`, where no lock is in the way).
pub fn flows_per_backend(maps: &KernelMaps) -> FlowCounts {
    FlowCounts::of(maps.flows().map(|(_, f)| f))
}

/// The counters and installed services, with flows counted by walking
/// `FLOWS` first.
pub fn snapshot(maps: &KernelMaps, programmer: &Programmer) -> Result<Status, MapWriteError> {
    snapshot_with_flows(maps, programmer, &flows_per_backend(maps))
}

/// The counters and installed services, with flow counts from a walk done
/// elsewhere (see [`FlowCounter`]). Counts of a backend whose id changed
/// hands between the walk and this call are those of the walk: a flow
/// count is a sample of a table the data plane changes all the time anyway.
pub fn snapshot_with_flows(
    maps: &KernelMaps,
    programmer: &Programmer,
    flows: &FlowCounts,
) -> Result<Status, MapWriteError> {
    let services = programmer
        .services()
        .into_iter()
        .map(|s| service_status(maps, flows, s))
        .collect::<Result<_, _>>()?;
    let mut verdicts = std::collections::BTreeMap::new();
    for (i, name) in verdict::NAMES.iter().enumerate() {
        verdicts.insert(name.to_string(), maps.verdict_count(i as u32)?);
    }
    let mut events = std::collections::BTreeMap::new();
    for (i, name) in event::NAMES.iter().enumerate() {
        events.insert(name.to_string(), maps.event_count(i as u32)?);
    }
    Ok(Status {
        services,
        verdicts,
        events,
        source: None,
        vrrp: Vec::new(),
    })
}

fn service_status(
    maps: &KernelMaps,
    flows: &FlowCounts,
    s: ServiceView,
) -> Result<ServiceStatus, MapWriteError> {
    let real_servers = s
        .backends
        .iter()
        .map(|b| {
            Ok(RealServerStatus {
                address: b.address.ip().to_string(),
                port: b.address.port(),
                weight: b.weight,
                flows: flows.get(FlowOwner {
                    service_id: s.id,
                    backend_id: b.id,
                }),
                active: b.active,
                sorry: b.is_sorry,
                stats: maps.backend_counters(b.id)?.into(),
                health: None,
            })
        })
        .collect::<Result<_, MapWriteError>>()?;
    Ok(ServiceStatus {
        name: s.name.clone(),
        address: s.key.address.to_string(),
        port: s.key.port,
        protocol: protocol_name(s.key.protocol).into(),
        forwarding: match s.forwarding {
            Forwarding::Nat => "nat",
            Forwarding::Dr => "dr",
        }
        .into(),
        scheduler: match s.scheduler {
            Scheduler::Maglev => "maglev",
        }
        .into(),
        stats: maps.service_counters(s.id)?.into(),
        real_servers,
    })
}

/// `lb status` without an agent: what the maps pinned in `pins` say. The
/// maps hold no names, weights or health; names and weights are taken from
/// `config` where a service and real server there match the pinned ones.
pub fn pinned_snapshot(pins: &PinDir, config: Option<&Config>) -> Result<Status, PinnedError> {
    let sizes = pins
        .probe()?
        .ok_or_else(|| PinnedError::Nothing(pins.path().into()))?;
    let maps = KernelMaps::open_pinned(pins)?;
    let (services, backends, reverse) = maps.installed()?;
    let programmer = Programmer::adopt(
        sizes.services,
        sizes.backends,
        sizes.ring_slots,
        &services,
        &backends,
        &reverse,
    )
    .map_err(PinnedError::Inconsistent)?;
    let mut status = snapshot(&maps, &programmer)?;
    if let Some(config) = config {
        name_from_config(&mut status, config);
    }
    // The maps have no order: list services and real servers as the config
    // does where it names them, the others after them by address, and each
    // sorry server last.
    let position = |address: &str, port: u16, protocol: &str| {
        config
            .and_then(|c| {
                c.virtual_servers.iter().position(|vs| {
                    vs.address.to_string() == address
                        && vs.port == port
                        && protocol_name(vs.protocol) == protocol
                })
            })
            .unwrap_or(usize::MAX)
    };
    status.services.sort_by_cached_key(|s| {
        let ip: std::net::IpAddr = s.address.parse().expect("formatted from an IpAddr");
        (position(&s.address, s.port, &s.protocol), ip, s.port)
    });
    for s in &mut status.services {
        let vs = config.and_then(|c| c.virtual_servers.iter().find(|vs| vs.name == s.name));
        s.real_servers.sort_by_cached_key(|r| {
            let ip: std::net::IpAddr = r.address.parse().expect("formatted from an IpAddr");
            let at = vs
                .and_then(|vs| {
                    vs.real_servers
                        .iter()
                        .position(|rs| rs.address == ip && rs.port == r.port)
                })
                .unwrap_or(usize::MAX);
            (r.sorry, at, ip, r.port)
        });
    }
    status.source = Some(format!(
        "read from the maps pinned in {} (what the data plane forwards; health is known to \
         the agent only){}",
        pins.path().display(),
        if config.is_some() {
            ""
        } else {
            "; names and weights unknown without a readable config (--config)"
        }
    ));
    Ok(status)
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn name_from_config(status: &mut Status, config: &Config) {
    for s in &mut status.services {
        let Some(vs) = config.virtual_servers.iter().find(|vs| {
            vs.address.to_string() == s.address
                && vs.port == s.port
                && protocol_name(vs.protocol) == s.protocol
        }) else {
            continue;
        };
        s.name = vs.name.clone();
        for r in &mut s.real_servers {
            if let Some(rs) = vs
                .real_servers
                .iter()
                .find(|rs| rs.address.to_string() == r.address && rs.port == r.port)
            {
                r.weight = rs.weight;
            }
        }
    }
}

/// Why the pinned maps could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PinnedError {
    #[error("nothing is pinned in {}: lb is not loaded (or give --pin-dir)", .0.display())]
    Nothing(std::path::PathBuf),
    #[error(transparent)]
    Pin(#[from] super::pin::PinError),
    #[error(transparent)]
    Open(#[from] super::maps::MapOpenError),
    #[error(transparent)]
    Read(#[from] MapWriteError),
    #[error("the pinned maps are inconsistent: {0}")]
    Inconsistent(String),
}
