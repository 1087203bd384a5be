//! Reading the data plane's counters back: per-CPU counters summed, flows
//! counted per backend by walking `FLOWS`, assembled into a [`Status`].

use std::collections::HashMap;

use lb_common::{event, verdict};

use super::{
    maps::{KernelMaps, MapWriteError},
    programmer::{Programmer, ServiceView},
};
use crate::{
    config::{Forwarding, Protocol, Scheduler},
    status::{RealServerStatus, ServiceStatus, Status},
};

/// Flows per (service id, backend id). Walking a large LRU costs two
/// syscalls per entry; fine for an on-demand `lb status`.
pub fn flows_per_backend(maps: &KernelMaps) -> HashMap<(u32, u32), u64> {
    let mut counts = HashMap::new();
    for (_, flow) in maps.flows() {
        *counts
            .entry((flow.service_id, flow.backend_id))
            .or_insert(0) += 1;
    }
    counts
}

pub fn snapshot(maps: &KernelMaps, programmer: &Programmer) -> Result<Status, MapWriteError> {
    let flows = flows_per_backend(maps);
    let services = programmer
        .services()
        .into_iter()
        .map(|s| service_status(maps, &flows, s))
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
    })
}

fn service_status(
    maps: &KernelMaps,
    flows: &HashMap<(u32, u32), u64>,
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
                flows: flows.get(&(s.id, b.id)).copied().unwrap_or(0),
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
        protocol: match s.key.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
        .into(),
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
