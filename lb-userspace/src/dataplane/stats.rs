//! Reading the data plane's counters back: per-CPU counters summed, flows
//! counted per backend (see [`super::flows`]), assembled into a [`Status`].
//!
//! The agent counts flows through a
//! [`FlowCounter`](super::flows::FlowCounter) of its own, without its
//! state lock, and merges the [`FlowCounts`] into a [`snapshot_with_flows`]
//! taken under it.

use lb_common::{event, verdict};

use super::pin::PinDir;
use super::{
    flows::{FlowCounts, FlowOwner},
    maps::{KernelMaps, MapWriteError},
    programmer::{Programmer, ServiceView},
};
use crate::{
    config::Config,
    status::{RealServerStatus, ServiceStatus, Status},
};

/// Flows per (service id, backend id), walking `maps`' `FLOWS_V4` and
/// `FLOWS` directly (for `lb status --pinned`, where no lock is in the way).
pub fn flows_per_backend(maps: &KernelMaps) -> FlowCounts {
    maps.flow_counts()
}

/// The counters and installed services, with flows counted by walking
/// the flow tables first.
pub fn snapshot(maps: &KernelMaps, programmer: &Programmer) -> Result<Status, MapWriteError> {
    snapshot_with_flows(maps, programmer, &flows_per_backend(maps))
}

/// The counters and installed services, with flow counts from a walk done
/// elsewhere (see [`FlowCounter`](super::flows::FlowCounter)). Counts of a
/// backend whose id changed hands between the walk and this call are those
/// of the walk: a flow count is a sample of a table the data plane changes
/// all the time anyway.
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
        announce: None,
        flows_counted_ago_ms: None,
        ebpf_log: None,
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
        protocol: s.key.protocol.name().into(),
        forwarding: s.forwarding.name().into(),
        scheduler: s.scheduler.name().into(),
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
                        && vs.protocol.name() == protocol
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

fn name_from_config(status: &mut Status, config: &Config) {
    for s in &mut status.services {
        let Some(vs) = config.virtual_servers.iter().find(|vs| {
            vs.address.to_string() == s.address
                && vs.port == s.port
                && vs.protocol.name() == s.protocol
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
    Inconsistent(#[from] super::programmer::AdoptError),
}
