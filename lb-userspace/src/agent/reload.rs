//! Reload (`lb reload` and SIGHUP, one code path): re-read the config file,
//! validate it as `lb check` does, and apply only the difference. A config
//! that fails anywhere is rejected and the running one stays, health
//! targets included. Settings fixed at start-up (`[agent]`: interfaces,
//! XDP mode, map sizes, sockets) keep their running value, with a warning;
//! `[agent] ebpf_log` is the exception, a switch in a map applied at once.
//! VRRP settings that are safe to change live are handed to the running
//! instances; any other VRRP change rejects the reload (`vrrp::reconfig`).

use std::path::Path;

use tokio::task::JoinError;

use super::{release_freed_memory, state::SharedState, sysctl::forwarding_problems};
use crate::{
    config::{self, Config, ConfigError, EbpfLog},
    dataplane::programmer::{ApplySummary, ProgramError},
    health,
    vrrp::reconfig,
};

/// Why a reload was rejected (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Vrrp(#[from] reconfig::NeedsRestart),
    /// Boxed: the VRRP error is large and reloads are rare.
    #[error("{0}; nothing was applied")]
    VrrpAdd(Box<crate::vrrp::VrrpError>),
    #[error("reload task failed: {0}")]
    Task(#[from] JoinError),
    #[error(
        "the agent was started with no virtual servers and no interfaces, so it loaded no XDP \
         program: restart it (`lb run`) to add virtual servers"
    )]
    NeedsRestart,
}

/// A config that is now the running one.
pub struct Reloaded {
    pub config: Config,
    /// What the user is told: "config reloaded: ...".
    pub message: String,
}

/// Re-read `path` and apply what differs from `running`; the health
/// targets follow the new config once it is applied.
pub async fn reload(
    state: &SharedState,
    path: &Path,
    running: &Config,
    monitor: &mut health::Monitor,
) -> Result<Reloaded, ReloadError> {
    let result = reload_config(state, path, running, monitor).await;
    release_freed_memory();
    result
}

/// VRRP instances and sync groups keep running through a reload (a
/// restart would make a master give its addresses up for a config edit);
/// what may change in them live is decided here, before anything is
/// applied, and a change that needs a restart rejects the whole reload
/// (see `vrrp::reconfig`). Returns what to hand the running instances
/// once the rest is applied.
fn plan_vrrp(config: &Config, running: &Config) -> Result<reconfig::Plan, ReloadError> {
    Ok(reconfig::plan(
        &running.vrrp_instances,
        &running.vrrp_sync_groups,
        &config.vrrp_instances,
        &config.vrrp_sync_groups,
    )?)
}

async fn reload_config(
    state: &SharedState,
    path: &Path,
    running: &Config,
    monitor: &mut health::Monitor,
) -> Result<Reloaded, ReloadError> {
    let config = config::load(path)?;
    config::validate_host(&config)?;
    let vrrp_changes = plan_vrrp(&config, running)?;
    crate::vrrp::check_addable(&vrrp_changes.added)
        .await
        .map_err(|e| ReloadError::VrrpAdd(Box::new(e)))?;
    if !state.has_dataplane() && !config.virtual_servers.is_empty() {
        // The maps were never created (their sizes come from the config at
        // load time): adding services needs a new `lb run`.
        return Err(ReloadError::NeedsRestart);
    }
    if running.agent.needs_restart_for(&config.agent) {
        tracing::warn!(
            "[agent] settings changed in {}: they take effect at the next `lb run` restart",
            path.display()
        );
    }
    // Targets first, so the new real servers are known (unknown = serve)
    // when the tables are built; put back if the apply is refused.
    monitor.update(health::targets(&config));
    let applied = apply(state, config.clone()).await;
    let summary = match applied {
        Ok(summary) => summary,
        Err(e) => {
            monitor.update(health::targets(running));
            return Err(e);
        }
    };
    for problem in forwarding_problems(&config) {
        problem.log();
    }
    let mut message = match summary {
        Some(summary) => format!("config reloaded: {summary}"),
        None => "config reloaded: no virtual servers (no XDP program loaded)".to_string(),
    };
    // After the services: a one-entry array write that only a broken
    // kernel refuses, said in the answer rather than undoing the rest.
    match switch_ebpf_log(state, config.agent.ebpf_log).await {
        Ok(false) => {}
        Ok(true) => {
            message.push_str(&format!("; ebpf_log {}", config.agent.ebpf_log));
            tracing::info!("ebpf_log {}: switched live", config.agent.ebpf_log);
        }
        Err(e) => {
            tracing::error!("ebpf_log: {e}");
            message.push_str(&format!("; ebpf_log not switched: {e}"));
        }
    }
    if let (false, Some(vrrp)) = (vrrp_changes.is_empty(), state.vrrp()) {
        let described = vrrp_changes.describe();
        match vrrp.reconfigure(vrrp_changes).await {
            Ok(()) => message.push_str(&format!("; VRRP live: {described}")),
            // Rare (the interfaces were checked): the services and the
            // other VRRP changes are in place; say what is not.
            Err(e) => {
                tracing::error!("VRRP on reload: {e}");
                message.push_str(&format!("; VRRP: {e} (restart the agent for it)"));
            }
        }
    }
    Ok(Reloaded { config, message })
}

/// `[agent] ebpf_log`: the program's switch, moved without loading or
/// attaching anything; whether it moved (never without XDP loaded).
async fn switch_ebpf_log(state: &SharedState, level: EbpfLog) -> Result<bool, ReloadError> {
    let switched = state
        .with(move |s| match &mut s.dataplane {
            Some(dataplane) => dataplane.set_ebpf_log(level),
            None => Ok(false),
        })
        .await?;
    Ok(switched.map_err(ProgramError::from)?)
}

/// Program the maps for `config`; `None` when no XDP is loaded (then
/// `config` has no virtual servers: checked before).
async fn apply(state: &SharedState, config: Config) -> Result<Option<ApplySummary>, ReloadError> {
    let applied = state
        .with(move |s| match &mut s.dataplane {
            Some(dataplane) => dataplane.apply(&config, &s.health).map(Some),
            None => Ok(None),
        })
        .await?;
    Ok(applied?)
}
