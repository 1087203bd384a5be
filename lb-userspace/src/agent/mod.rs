//! `lb run`: the agent's life cycle. A file per concern:
//! - [`startup`]: privileges, signals, the control socket, the pin
//!   directory, load or adopt, the first apply, attach and detach;
//! - [`events`]: the one loop over [`events::Event`] (signal, control
//!   request, health transition, expiry tick) with a handler per event;
//! - [`reload`]: `lb reload` and SIGHUP, one code path;
//! - [`state`]: the state behind the lock and the one helper that takes it;
//! - [`flow_counts`]: flow counts for status and metrics, off the lock
//!   (and, with a big flow table, refreshed in the background);
//! - [`sysctl`]: the sysctls that keep services from being forwarded;
//! - [`shutdown`]: what stops and what stays on SIGINT/SIGTERM;
//! - [`announce`]: what the BGP announcer (`crate::announce`) reads from
//!   the state: services with a real server up, the connection counter.
//!
//! Restarts keep forwarding. The maps and one bpf_link per interface are
//! pinned under the pin directory (`lb run --pin-dir`, default
//! /sys/fs/bpf/lb; see `dataplane::pin`), so the program stays attached
//! and keeps forwarding while no agent runs, whether the agent crashed,
//! was killed (`kill -9`) or stopped cleanly. SIGINT/SIGTERM stop the
//! agent only: the socket is removed, XDP stays (what `systemctl restart`
//! expects; `systemctl stop` plus `lb unload` takes the balancer down).
//! A new `lb run` adopts the pinned state: it reopens the pinned maps,
//! rebuilds its id and ring allocations from their contents
//! (`Programmer::adopt`), applies its config as a difference (flows keep
//! their real servers: backend ids of unchanged real servers stay), and
//! swaps its own program into the pinned links atomically. Interfaces
//! pinned but no longer configured are detached. A pinned set whose map
//! layout differs from this build's is refused with a message asking for
//! `lb unload`. `lb unload` detaches from every interface and removes the
//! pins: the one command that removes everything. Settings fixed when the
//! maps were created (map sizes, XDP mode of an existing link) change only
//! after `lb unload`.
//!
//! A config with no virtual servers and no interfaces (VRRP only) runs the
//! agent without XDP: no pin directory, no maps, no neighbour warm-up; the
//! control socket, `lb status` (no services) and reload still work.

use std::path::PathBuf;

use crate::{
    config::Config,
    control,
    dataplane::{loader, maps::MapOpenError, pin::PinError, programmer::ProgramError},
};

mod announce;
mod events;
mod flow_counts;
mod reload;
mod shutdown;
mod startup;
mod state;
mod sysctl;

pub use sysctl::{forwarding_problems, Problem};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Loader(#[from] loader::LoaderError),
    #[error(transparent)]
    Maps(#[from] MapOpenError),
    #[error("cannot program the data plane: {0}")]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("cannot adopt the pinned data plane: {0}; run `lb unload` first")]
    Adopt(#[from] crate::dataplane::programmer::AdoptError),
    #[error("cannot listen for metrics on {addr} ([agent] metrics_listen): {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install a signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot start VRRP: {0}")]
    Vrrp(Box<crate::vrrp::VrrpError>),
    #[error("cannot start announcing ([announce]): {0}")]
    Announce(Box<crate::netlink::NetlinkError>),
}

/// Run the agent in the foreground until SIGINT/SIGTERM, with the data
/// plane pinned in `pin_dir` (adopted when a previous agent left one).
pub async fn run(config_path: PathBuf, config: Config, pin_dir: PathBuf) -> Result<(), AgentError> {
    // Reloads must find the same file whatever the working directory is then.
    let config_path = std::fs::canonicalize(&config_path).unwrap_or(config_path);
    let startup::Started {
        mut agent,
        events,
        background,
        xdp,
    } = startup::start(config_path, config, pin_dir).await?;
    agent.run(events).await;
    shutdown::stop(background, agent, xdp).await;
    Ok(())
}

/// Hands the heap pages freed since the last call back to the kernel.
/// Parsing a config peaks at about 35 bytes of heap per byte of TOML
/// (toml_edit's document), all freed once it is validated, but glibc keeps
/// freed pages in its arenas: without this the agent's RSS stays at that
/// peak (70-100 MB after loading 1,000 services x 16 real servers, whose
/// live state is a fraction of that). Called after start-up and reloads.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
