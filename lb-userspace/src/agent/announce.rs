//! What the announcer needs from the agent's state, read under the lock:
//! which services have a real server up, and the connection counter a
//! drain watches.

use super::state::AgentState;
use crate::{
    announce::plan::ServiceView,
    config::Config,
    dataplane::{flows::FlowCounts, stats},
};

/// Each configured service with whether a real server of it is up (none
/// without XDP: then nothing is announced anyway).
pub fn services_view(state: &mut AgentState, config: &Config) -> Vec<ServiceView> {
    let Some(dataplane) = &state.dataplane else {
        return Vec::new();
    };
    let empty = dataplane.empty_services().names();
    config
        .virtual_servers
        .iter()
        .map(|vs| ServiceView {
            name: vs.name.clone(),
            address: vs.address,
            up: !empty.contains(&vs.name),
        })
        .collect()
}

/// The services' new-connection counters, summed (no flow walk: only the
/// per-service counters are read).
pub fn connections(state: &mut AgentState) -> u64 {
    let Some(dataplane) = &state.dataplane else {
        return 0;
    };
    match stats::snapshot_with_flows(
        &dataplane.maps,
        &dataplane.programmer,
        &FlowCounts::default(),
    ) {
        Ok(status) => status.services.iter().map(|s| s.stats.conns).sum(),
        Err(e) => {
            tracing::error!("announce: reading the connection counters: {e}");
            0
        }
    }
}
