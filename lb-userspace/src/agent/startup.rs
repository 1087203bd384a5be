//! Start-up, in this order: privileges, signal handlers, the control socket
//! (a second agent stops there), then, when the config has virtual servers
//! or interfaces, the data plane: the pin directory (locked: one agent per
//! data plane), the object loaded with its maps taken from their pins or
//! created and pinned, the maps filled, *then* attached (the first packet
//! already sees the whole config), stale links detached; last the metrics
//! endpoint, the control socket's server and the neighbour warm-up.
//!
//! A config with no virtual servers and no interfaces (VRRP only) loads no
//! XDP and leaves the pin directory alone: the agent then has no
//! [`Dataplane`], answers `lb status` with no services and refuses a reload
//! that adds virtual servers.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use aya::Ebpf;
use lb_common::flow_table::FLOW_WAYS;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{
    events::{Agent, EventSources, Signals, EXPIRY_PERIOD},
    release_freed_memory,
    state::{AgentState, Dataplane, EmptyServices, SharedState},
    sysctl::forwarding_problems,
    AgentError,
};
use crate::{
    config::{Config, EbpfLog},
    control::{ControlError, ControlServer, Incoming},
    dataplane::{
        dr_next_hops::DrNextHops,
        ebpf_log::{self, LogSwitch},
        loader::{self, MapSizes},
        maps::KernelMaps,
        neighbour,
        pin::{PinDir, PinError},
        programmer::{ProgramError, Programmer},
    },
    health,
    metrics::HealthMetrics,
    vrrp::{self, VrrpHandle},
};

/// Everything `run` needs once started.
pub struct Started {
    pub agent: Agent,
    pub events: EventSources,
    pub background: Background,
    /// `None` when no XDP is loaded (VRRP only).
    pub xdp: Option<Xdp>,
}

/// The loaded XDP object and its pin directory, held for the agent's life.
/// Dropping it detaches nothing: the links are pinned.
pub struct Xdp {
    _ebpf: Ebpf,
    _logger: Option<JoinHandle<()>>,
    pub pins: PinDir,
    /// The pin directory's lock: one agent per data plane.
    _pin_lock: std::fs::File,
}

/// Tasks that run beside the event loop, stopped at shutdown.
pub struct Background {
    pub server: Arc<ControlServer>,
    pub serving: JoinHandle<()>,
    pub metrics: Option<JoinHandle<()>>,
}

/// Keeps the DR real servers' neighbour entries resolved.
pub struct NeighbourWarmup {
    targets: watch::Sender<Vec<IpAddr>>,
    task: JoinHandle<()>,
}

impl NeighbourWarmup {
    fn start(targets: Vec<IpAddr>, next_hops: DrNextHops) -> Self {
        let (tx, rx) = watch::channel(targets);
        Self {
            targets: tx,
            task: tokio::spawn(neighbour::keep_resolved(rx, Some(next_hops))),
        }
    }

    pub fn update(&self, targets: Vec<IpAddr>) {
        let _ = self.targets.send(targets);
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// A data plane loaded and programmed: the part the state lock protects
/// and the part held beside it.
struct Loaded {
    xdp: Xdp,
    dataplane: Dataplane,
    /// Filled by the neighbour warm-up (DR with forwarding off).
    dr_next_hops: DrNextHops,
}

/// Whether the config needs XDP at all.
fn wants_xdp(config: &Config) -> bool {
    !config.virtual_servers.is_empty() || !config.agent.interfaces.is_empty()
}

/// Start the agent up to its event loop (see the module doc for the order).
pub async fn start(
    config_path: PathBuf,
    config: Config,
    pin_dir: PathBuf,
) -> Result<Started, AgentError> {
    loader::check_privileges()?;
    let signals = Signals::install().map_err(AgentError::Signal)?;
    // First, so a second agent on the same config stops here with a clear
    // message instead of fighting over the interfaces.
    let group = match &config.agent.control_group {
        Some(name) => Some(crate::control::peer::resolve_group(name).map_err(ControlError::from)?),
        None => None,
    };
    let server = Arc::new(ControlServer::bind_with_group(
        &config.agent.control_socket,
        group,
    )?);

    let (mut monitor, transitions) = health::Monitor::new();
    let health_metrics = HealthMetrics::default();
    monitor.set_observer(health_metrics.observer());
    let (xdp, dataplane, neighbours) = if wants_xdp(&config) {
        let Loaded {
            xdp,
            dataplane,
            dr_next_hops,
        } = load_dataplane(&config, PinDir::new(pin_dir), &mut monitor)?;
        let neighbours = NeighbourWarmup::start(dataplane.dr_neighbours(), dr_next_hops);
        (Some(xdp), Some(dataplane), Some(neighbours))
    } else {
        tracing::info!(
            "no virtual servers and no interfaces: no XDP program loaded (pin directory {} \
             untouched)",
            pin_dir.display()
        );
        monitor.update(health::targets(&config));
        (None, None, None)
    };
    let empty = dataplane
        .as_ref()
        .map(Dataplane::empty_services)
        .unwrap_or_default();
    let mut state = SharedState::new(AgentState {
        dataplane,
        health: monitor.reader(),
    })?;
    // After the data plane is attached: a node that becomes master (and
    // draws the clients' traffic) already forwards it.
    let vrrp = start_vrrp(&config, &empty).await?;
    if let Some(vrrp) = &vrrp {
        state.set_vrrp(vrrp.clone());
    }

    tracing::info!("control socket {}", server.path().display());
    let metrics = serve_metrics(&config, &state, health_metrics).await?;
    let (req_tx, requests) = mpsc::channel::<Incoming>(16);
    let serving = serve_control(&server, req_tx, vrrp.as_ref());
    let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let announcer = start_announcer(&config, &mut state).await?;
    let announce_tick = announcer.as_ref().map(|_| {
        let mut tick = tokio::time::interval(super::events::ANNOUNCE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    Ok(Started {
        agent: Agent {
            config_path,
            running: config,
            state,
            monitor,
            empty,
            neighbours,
            vrrp,
            announcer,
        },
        events: EventSources {
            signals,
            requests,
            transitions,
            expiry,
            announce_tick,
        },
        background: Background {
            server,
            serving,
            metrics,
        },
        xdp,
    })
}

/// The VRRP instances of the config, started (none: `None`), told which
/// tracked virtual servers have no real server up at start.
async fn start_vrrp(
    config: &Config,
    empty: &EmptyServices,
) -> Result<Option<Arc<VrrpHandle>>, AgentError> {
    if config.vrrp_instances.is_empty() {
        return Ok(None);
    }
    let handle = VrrpHandle::start(&config.vrrp_instances, &config.vrrp_sync_groups)
        .await
        .map_err(|e| AgentError::Vrrp(Box::new(e)))?;
    handle.set_tracked_down(empty.names());
    tracing::info!(
        "VRRP: {} instances and {} sync groups started",
        config.vrrp_instances.len(),
        config.vrrp_sync_groups.len()
    );
    Ok(Some(Arc::new(handle)))
}

/// The control socket's server: agent requests to the event loop, VRRP
/// requests (`lb vrrp handoff|resume`) straight to the VRRP driver, so a
/// handoff never waits behind a reload.
fn serve_control(
    server: &Arc<ControlServer>,
    requests: mpsc::Sender<Incoming>,
    vrrp: Option<&Arc<VrrpHandle>>,
) -> JoinHandle<()> {
    let server = server.clone();
    let vrrp_requests = vrrp.map(|handle| {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(vrrp::serve_control(handle.clone(), rx));
        tx
    });
    tokio::spawn(async move { server.serve_with_vrrp(requests, vrrp_requests).await })
}

/// Pin directory, load or adopt, first apply, attach (see the module doc).
fn load_dataplane(
    config: &Config,
    pins: PinDir,
    monitor: &mut health::Monitor,
) -> Result<Loaded, AgentError> {
    loader::raise_memlock_limit();
    pins.prepare()?;
    let pin_lock = pins.lock()?;
    let pinned = probe_or_upgrade(&pins)?;
    let sizes = pinned.unwrap_or_else(|| MapSizes::for_config(config));
    log_sizes(config, &pins, &sizes, pinned.is_some());
    let flow_seed = pins.flow_seed(pinned.is_some())?;
    let mut ebpf = loader::load(crate::EBPF_OBJECT, &sizes, flow_seed, Some(&pins))?;
    // The maps are pinned now: say which layout they have (a set adopted
    // from a build that recorded none gets it too).
    pins.record_version()?;
    let logger = ebpf_log::forward(&mut ebpf);
    let mut log_switch = LogSwitch::take(&mut ebpf)?;
    log_switch
        .set(config.agent.ebpf_log)
        .map_err(ProgramError::from)?;
    if config.agent.ebpf_log != EbpfLog::Off {
        tracing::info!(
            "ebpf_log {}: the data plane logs its rare events",
            config.agent.ebpf_log
        );
    }
    let maps = KernelMaps::take(&mut ebpf)?;
    let dr_next_hops = DrNextHops::take(&mut ebpf)?;
    let programmer = if pinned.is_some() {
        adopt(&maps, &sizes)?
    } else {
        Programmer::new(sizes.services, sizes.backends, sizes.ring_slots)
    };
    // Before the first apply: the checks start now, every checked real
    // server is `unknown` (serves) until its first result.
    monitor.update(health::targets(config));
    let mut dataplane = Dataplane {
        maps,
        programmer,
        log_switch: Some(log_switch),
    };
    let summary = dataplane.apply(config, &monitor.reader())?;
    tracing::info!("maps programmed: {summary}");
    release_freed_memory();
    attach(&mut ebpf, config, &pins)?;
    for problem in forwarding_problems(config) {
        problem.log();
    }
    Ok(Loaded {
        xdp: Xdp {
            _ebpf: ebpf,
            _logger: logger,
            pins,
            _pin_lock: pin_lock,
        },
        dataplane,
        dr_next_hops,
    })
}

/// The sizes of the pinned set this agent adopts, `None` to create one. A
/// set of an older map layout (an upgrade of lb) is replaced instead of
/// refused: its map pins go, the new maps are created, and the links take
/// this agent's program atomically, so XDP never stops; what is lost is the
/// flow table (each flow's next packet is scheduled again by the Maglev
/// ring, to the same real server while the set of servers is unchanged)
/// and the counters. A newer layout (a downgrade) is still refused.
fn probe_or_upgrade(pins: &PinDir) -> Result<Option<MapSizes>, PinError> {
    match pins.probe() {
        Err(PinError::Version { dir, pinned, ours }) if pinned < ours => {
            tracing::warn!(
                "the data plane pinned in {} has map layout version {pinned}, this lb build \
                 uses {ours}: replacing its maps (XDP stays attached and takes this agent's \
                 program atomically; flows are scheduled again by the Maglev ring, to the same \
                 real servers while the set is unchanged; counters restart)",
                dir.display()
            );
            pins.remove_maps()?;
            Ok(None)
        }
        other => other,
    }
}

fn log_sizes(config: &Config, pins: &PinDir, sizes: &MapSizes, adopting: bool) {
    if adopting {
        tracing::info!(
            "adopting the data plane pinned in {}: {} services, {} backends, {} Maglev ring \
             slots, {} flows",
            pins.path().display(),
            sizes.services,
            sizes.backends,
            sizes.ring_slots,
            sizes.flow_sets * FLOW_WAYS as u32
        );
        let wanted = MapSizes::for_config(config);
        if wanted.flow_sets_v6 > sizes.flow_sets_v6 {
            tracing::warn!(
                "the pinned IPv6 flow table holds {} flows (sized for a config without IPv6 \
                 services), this config wants {}: it takes effect after `lb unload` and a new \
                 `lb run`",
                sizes.flow_sets_v6 * FLOW_WAYS as u32,
                wanted.flow_sets_v6 * FLOW_WAYS as u32
            );
        }
        if wanted.flow_sets != sizes.flow_sets {
            tracing::warn!(
                "flow_table_size {} differs from the pinned flow table ({}): it takes effect \
                 after `lb unload` and a new `lb run`",
                wanted.flow_sets * FLOW_WAYS as u32,
                sizes.flow_sets * FLOW_WAYS as u32
            );
        }
    } else {
        tracing::info!(
            "loading XDP object: {} services, {} backends, {} Maglev ring slots, {} flows \
             (pinned in {})",
            sizes.services,
            sizes.backends,
            sizes.ring_slots,
            sizes.flow_sets * FLOW_WAYS as u32,
            pins.path().display()
        );
    }
}

/// Rebuild the id and ring allocations from what a previous agent left in
/// the pinned maps.
fn adopt(maps: &KernelMaps, sizes: &MapSizes) -> Result<Programmer, AgentError> {
    let (services, backends, reverse) = maps.installed().map_err(ProgramError::from)?;
    let programmer = Programmer::adopt(
        sizes.services,
        sizes.backends,
        sizes.ring_slots,
        &services,
        &backends,
        &reverse,
    )
    .map_err(AgentError::Adopt)?;
    tracing::info!(
        "adopted {} services and {} real server slots from the pinned maps",
        services.len(),
        backends.len()
    );
    Ok(programmer)
}

/// Attach to (or take over the pinned link of) every configured interface,
/// and detach from the pinned ones no longer configured.
fn attach(ebpf: &mut Ebpf, config: &Config, pins: &PinDir) -> Result<(), AgentError> {
    for interface in &config.agent.interfaces {
        match loader::attach_pinned(ebpf, interface, config.agent.xdp_mode, pins)? {
            loader::Attached::New(mode) => tracing::info!(
                "attached {} to {interface} in {} mode",
                lb_common::names::PROGRAM,
                mode.name()
            ),
            loader::Attached::Adopted => tracing::info!(
                "{interface}: this agent's program replaced the previous one in the pinned link"
            ),
        }
    }
    for interface in pins.linked_interfaces() {
        if !config.agent.interfaces.contains(&interface) {
            match pins.remove_link(&interface) {
                Ok(()) => tracing::info!("detached from {interface} (no longer configured)"),
                Err(e) => tracing::error!("detaching from {interface}: {e}"),
            }
        }
    }
    Ok(())
}

/// `[agent] metrics_listen`: serve `/metrics` from the same status as
/// `lb status`.
async fn serve_metrics(
    config: &Config,
    state: &SharedState,
    health_metrics: HealthMetrics,
) -> Result<Option<JoinHandle<()>>, AgentError> {
    let Some(addr) = config.agent.metrics_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Metrics { addr, source })?;
    tracing::info!("metrics on http://{addr}/metrics");
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "metrics_listen {addr} is not a loopback address: /metrics has no authentication, \
             anyone who can reach {addr} can read it (service names, addresses, counters); \
             bind it to 127.0.0.1 or firewall the port"
        );
    }
    let state = state.clone();
    let snapshot = move || {
        let state = state.clone();
        async move { state.status().await.map_err(|e| e.to_string()) }
    };
    Ok(Some(tokio::spawn(crate::metrics::serve(
        listener,
        health_metrics,
        snapshot,
    ))))
}

/// `[announce]`: adopt the routes a previous agent left, for the first
/// plan (made by the event loop's first refresh) to correct. After XDP is
/// attached: a route draws traffic only once it can be forwarded.
async fn start_announcer(
    config: &Config,
    state: &mut SharedState,
) -> Result<Option<crate::announce::Announcer>, AgentError> {
    let Some(announce) = &config.announce else {
        return Ok(None);
    };
    let cell = crate::announce::StatusCell::default();
    let announcer = crate::announce::Announcer::start(announce, cell.clone())
        .await
        .map_err(|e| AgentError::Announce(Box::new(e)))?;
    state.set_announce(cell);
    Ok(Some(announcer))
}
