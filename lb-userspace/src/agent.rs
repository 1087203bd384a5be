//! `lb run`: the agent's life cycle.
//!
//! Start-up order: privileges, the control socket (a second agent stops
//! there), the pin directory (locked: one agent per data plane), load the
//! object with its maps taken from their pins or created and pinned, fill
//! the maps, *then* attach (the first packet already sees the whole
//! config), then serve the socket and start the neighbour warm-up. SIGHUP
//! (or `lb reload`) re-reads the config file and applies only the
//! difference.
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
//! Sysctls: the agent changes none. `bpf_fib_lookup`, which the program uses
//! to forward both NAT and DR packets, answers "forwarding disabled" when
//! IPv4 forwarding is off on the receiving interface
//! (`net.ipv4.conf.<if>.forwarding`, set for all by `net.ipv4.ip_forward`)
//! or IPv6 forwarding is off (`net.ipv6.conf.all.forwarding`). Silently
//! turning a host into a router is a decision for its administrator, so
//! `lb run` logs an error naming the sysctl to set and keeps running; the
//! `fib_miss` event counter shows the effect meanwhile.
//!
//! Likewise `net.ipv4.conf.<if>.accept_local`: when the balancer has no
//! resolved neighbour entry for the client (or its gateway), the program
//! hands an IPv4 NAT reply, already rewritten to come from the VIP, to the
//! kernel. The VIP is a local address, so the kernel drops that packet as a
//! martian unless `accept_local` is 1 on the interface it arrived on; with
//! it, the kernel forwards it and resolves the neighbour. `lb run` warns
//! for each interface where it is 0 while an IPv4 NAT service exists.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::Ebpf;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{
    config::{self, Config},
    control::{self, ControlServer, Incoming, Request, Response},
    dataplane::{
        dr_next_hops::DrNextHops,
        loader::{self, MapSizes},
        maps::MapWriteError,
        maps::{KernelMaps, MapOpenError},
        neighbour,
        pin::{PinDir, PinError},
        programmer::{ApplySummary, ProgramError, Programmer, ServiceKey},
        stats,
    },
    health::{self, StatusReader, TargetKey},
    status::{HealthStatus, Status},
};

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
    Adopt(String),
    #[error("cannot listen for metrics on {addr} ([agent] metrics_listen): {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install a signal handler: {0}")]
    Signal(std::io::Error),
}

/// A sysctl that gets in the way of the configured services (see the
/// module doc): an error stops forwarding, a warning loses packets in a
/// corner case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Error(String),
    Warning(String),
}

impl Problem {
    pub fn log(&self) {
        match self {
            Problem::Error(m) => tracing::error!("{m}"),
            Problem::Warning(m) => tracing::warn!("{m}"),
        }
    }
}

/// One entry per sysctl that keeps the configured services from being
/// forwarded correctly.
pub fn forwarding_problems(config: &Config) -> Vec<Problem> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim() == "1")
            .unwrap_or(false)
    };
    let mut problems = Vec::new();
    // DR needs no forwarding (its next hops come from the neighbour table
    // when the kernel's FIB refuses, see `dataplane::dr_next_hops`).
    let any = |v6: bool| {
        config
            .virtual_servers
            .iter()
            .any(|vs| vs.address.is_ipv6() == v6 && vs.forwarding == config::Forwarding::Nat)
    };
    if any(false) {
        for interface in &config.agent.interfaces {
            let path = format!("/proc/sys/net/ipv4/conf/{interface}/forwarding");
            if !read(&path) {
                problems.push(Problem::Error(format!(
                    "IPv4 forwarding is off on {interface}: the XDP program cannot forward IPv4 \
                     NAT virtual services (bpf_fib_lookup answers \"forwarding disabled\"); run \
                     `sysctl -w net.ipv4.ip_forward=1` (or net.ipv4.conf.{interface}.forwarding=1)"
                )));
            }
        }
    }
    let ipv4_nat = config
        .virtual_servers
        .iter()
        .any(|vs| vs.address.is_ipv4() && vs.forwarding == config::Forwarding::Nat);
    if ipv4_nat {
        for interface in &config.agent.interfaces {
            let path = format!("/proc/sys/net/ipv4/conf/{interface}/accept_local");
            if !read(&path) {
                problems.push(Problem::Warning(format!(
                    "net.ipv4.conf.{interface}.accept_local is 0: a NAT reply arriving on \
                     {interface} while the client's neighbour entry is unresolved is dropped by \
                     the kernel (its source is the VIP, a local address); run `sysctl -w \
                     net.ipv4.conf.{interface}.accept_local=1`"
                )));
            }
        }
    }
    if any(true) && !read("/proc/sys/net/ipv6/conf/all/forwarding") {
        problems.push(Problem::Error(
            "IPv6 forwarding is off: the XDP program cannot forward IPv6 NAT virtual services \
             (bpf_fib_lookup answers \"forwarding disabled\"); run \
             `sysctl -w net.ipv6.conf.all.forwarding=1`"
                .to_string(),
        ));
    }
    problems
}

/// How often removed real servers' drains and lingering reverse-NAT
/// entries are looked at (they end after `programmer::LINGER`).
const EXPIRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// The maps and what is installed in them, shared by the main loop, the
/// status requests and reloads.
struct Shared {
    maps: KernelMaps,
    programmer: Programmer,
    health: StatusReader,
}

impl Shared {
    /// Make the maps match `config` with each real server's health as the
    /// checks last said (unknown and unchecked ones serve).
    fn apply(&mut self, config: &Config) -> Result<ApplySummary, ProgramError> {
        let Shared {
            maps,
            programmer,
            health,
        } = self;
        apply_health(programmer, maps, config, health)
    }

    /// `lb status`: the counters and each real server's health.
    fn status(&self) -> Result<Status, MapWriteError> {
        let mut status = stats::snapshot(&self.maps, &self.programmer)?;
        for s in &mut status.services {
            for r in &mut s.real_servers {
                if r.sorry && r.weight == 0 {
                    continue;
                }
                let Ok(address) = r.address.parse() else {
                    continue;
                };
                let key = TargetKey {
                    service: s.name.clone(),
                    address,
                    port: r.port,
                };
                r.health = self.health.get(&key).map(|t| HealthStatus {
                    state: t.state.name().to_string(),
                    kind: t.kind.to_string(),
                    for_secs: t.since_instant.elapsed().as_secs(),
                    last: t.last.as_ref().map(|c| match &c.outcome {
                        Ok(()) => format!("ok in {} ms", c.latency.as_millis()),
                        Err(e) => e.clone(),
                    }),
                    transitions: t.transitions,
                });
            }
        }
        Ok(status)
    }
}

fn apply_health(
    programmer: &mut Programmer,
    maps: &mut KernelMaps,
    config: &Config,
    health: &StatusReader,
) -> Result<ApplySummary, ProgramError> {
    // Looked up once per real server: a scan of the config for each made
    // an apply of 1,000 services x 16 real servers quadratic.
    let names: HashMap<ServiceKey, &str> = config
        .virtual_servers
        .iter()
        .map(|vs| {
            let key = ServiceKey {
                address: vs.address,
                port: vs.port,
                protocol: vs.protocol,
            };
            (key, vs.name.as_str())
        })
        .collect();
    let is_up = |key: &ServiceKey, addr: std::net::SocketAddr| {
        let Some(name) = names.get(key) else {
            return true;
        };
        health.serves(&TargetKey {
            service: (*name).to_owned(),
            address: addr.ip(),
            port: addr.port(),
        })
    };
    programmer.apply_with_health(config, maps, &is_up)
}

/// Services that have real servers but none in their Maglev table.
fn without_real_servers(programmer: &Programmer) -> HashMap<String, bool> {
    programmer
        .services()
        .into_iter()
        .filter(|s| s.ring_size == 0 && s.backends.iter().any(|b| b.is_real))
        .map(|s| (s.name, s.backends.iter().any(|b| b.is_sorry)))
        .collect()
}

/// Log once when a service loses its last real server or gets one back.
fn log_empty_services(before: &HashMap<String, bool>, after: &HashMap<String, bool>) {
    for (name, sorry) in after {
        if !before.contains_key(name) {
            if *sorry {
                tracing::warn!("{name}: no real server is up: new flows go to the sorry server");
            } else {
                tracing::error!(
                    "{name}: no real server is up and no sorry_server: its packets are dropped \
                     (event no_backend counts them)"
                );
            }
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            tracing::info!("{name}: a real server is up again: new flows go to it");
        }
    }
}

/// Run the agent in the foreground until SIGINT/SIGTERM, with the data
/// plane pinned in `pin_dir` (adopted when a previous agent left one).
pub async fn run(config_path: PathBuf, config: Config, pin_dir: PathBuf) -> Result<(), AgentError> {
    // Reloads must find the same file whatever the working directory is then.
    let config_path = std::fs::canonicalize(&config_path).unwrap_or(config_path);
    loader::check_privileges()?;
    loader::raise_memlock_limit();
    // Installed before anything is attached: a SIGTERM during start-up then
    // waits for the loop below instead of killing the process half-way.
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
    // First, so a second agent on the same config stops here with a clear
    // message instead of fighting over the interfaces.
    let server = Arc::new(ControlServer::bind(&config.agent.control_socket)?);

    let pins = PinDir::new(pin_dir);
    pins.prepare()?;
    let _pin_lock = pins.lock()?;
    let wanted = MapSizes::for_config(&config);
    let pinned = pins.probe()?;
    let sizes = pinned.unwrap_or(wanted);
    if pinned.is_some() {
        tracing::info!(
            "adopting the data plane pinned in {}: {} services, {} backends, {} Maglev ring \
             slots, {} flows",
            pins.path().display(),
            sizes.services,
            sizes.backends,
            sizes.ring_slots,
            sizes.flows
        );
        if wanted.flows != sizes.flows {
            tracing::warn!(
                "flow_table_size {} differs from the pinned flow table ({}): it takes effect \
                 after `lb unload` and a new `lb run`",
                wanted.flows,
                sizes.flows
            );
        }
    } else {
        tracing::info!(
            "loading XDP object: {} services, {} backends, {} Maglev ring slots, {} flows \
             (pinned in {})",
            sizes.services,
            sizes.backends,
            sizes.ring_slots,
            sizes.flows,
            pins.path().display()
        );
    }
    let mut ebpf = loader::load(crate::EBPF_OBJECT, &sizes, Some(&pins))?;
    let _logger = start_ebpf_logger(&mut ebpf);
    let mut maps = KernelMaps::take(&mut ebpf)?;
    let dr_next_hops = DrNextHops::take(&mut ebpf)?;
    let mut programmer = if pinned.is_some() {
        let (services, backends, reverse) = maps.installed().map_err(ProgramError::from)?;
        let p = Programmer::adopt(
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
        p
    } else {
        Programmer::new(sizes.services, sizes.backends, sizes.ring_slots)
    };
    // Before the first apply: the checks start now, every checked real
    // server is `unknown` (serves) until its first result.
    let (mut monitor, mut transitions) = health::Monitor::new();
    let health_metrics = crate::metrics::HealthMetrics::default();
    monitor.set_observer(health_metrics.observer());
    monitor.update(health::targets(&config));
    let summary = apply_health(&mut programmer, &mut maps, &config, &monitor.reader())?;
    tracing::info!("maps programmed: {summary}");
    release_freed_memory();
    let mut empty = without_real_servers(&programmer);

    for interface in &config.agent.interfaces {
        match loader::attach_pinned(&mut ebpf, interface, config.agent.xdp_mode, &pins)? {
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
    for problem in forwarding_problems(&config) {
        problem.log();
    }

    let (neigh_tx, neigh_rx) = watch::channel(programmer.dr_neighbours());
    let neighbours = tokio::spawn(neighbour::keep_resolved(neigh_rx, Some(dr_next_hops)));

    let shared = Arc::new(Mutex::new(Shared {
        maps,
        programmer,
        health: monitor.reader(),
    }));
    tracing::info!("control socket {}", server.path().display());
    let metrics = match config.agent.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Metrics { addr, source })?;
            tracing::info!("metrics on http://{addr}/metrics");
            let shared = shared.clone();
            Some(tokio::spawn(crate::metrics::serve(
                listener,
                health_metrics,
                move || {
                    let shared = shared.clone();
                    async move {
                        tokio::task::spawn_blocking(move || {
                            let s = shared.lock().expect("agent state lock");
                            s.status().map_err(|e| e.to_string())
                        })
                        .await
                        .map_err(|e| e.to_string())?
                    }
                },
            )))
        }
        None => None,
    };
    let (req_tx, mut req_rx) = mpsc::channel::<Incoming>(16);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve(req_tx).await })
    };

    let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = config;
    tracing::info!(
        "lb agent running ({} virtual services)",
        running.virtual_servers.len()
    );
    loop {
        tokio::select! {
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading {}", config_path.display());
                match reload(&shared, &config_path, &running, &mut monitor).await {
                    Ok((cfg, msg)) => { tracing::info!("{msg}"); running = cfg; }
                    Err(e) => tracing::error!("reload rejected, the running config stays: {e}"),
                }
                let _ = neigh_tx.send(dr_neighbours(&shared));
            }
            Some(t) = transitions.recv() => {
                // The health module logs the transition itself (once).
                tracing::debug!("{}: {} -> {}: {}", t.key, t.from, t.to, t.reason);
                if t.from.serves() != t.to.serves() {
                    let shared2 = shared.clone();
                    let cfg = running.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        let mut s = shared2.lock().expect("agent state lock");
                        let r = s.apply(&cfg);
                        (r, without_real_servers(&s.programmer))
                    })
                    .await;
                    match applied {
                        Ok((Ok(summary), now_empty)) => {
                            tracing::debug!("health change applied: {summary}");
                            log_empty_services(&empty, &now_empty);
                            empty = now_empty;
                        }
                        Ok((Err(e), _)) => tracing::error!("applying a health change: {e}"),
                        Err(e) => tracing::error!("health task failed: {e}"),
                    }
                }
            }
            _ = expiry.tick() => {
                let shared = shared.clone();
                let expired = tokio::task::spawn_blocking(move || {
                    let mut s = shared.lock().expect("agent state lock");
                    let Shared { maps, programmer, .. } = &mut *s;
                    programmer.expire(std::time::Instant::now(), maps)
                })
                .await;
                match expired {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!(
                        "{n} drained backends and lingering reverse-NAT entries removed"
                    ),
                    Ok(Err(e)) => tracing::error!(
                        "ending the drain of removed real servers: {e}"
                    ),
                    Err(e) => tracing::error!("expiry task failed: {e}"),
                }
            }
            Some((request, reply)) = req_rx.recv() => match request {
                Request::Status => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let answer = tokio::task::spawn_blocking(move || {
                            let s = shared.lock().expect("agent state lock");
                            s.status()
                        })
                        .await;
                        let _ = reply.send(match answer {
                            Ok(Ok(status)) => Response::status(status),
                            Ok(Err(e)) => Response::error(format!("reading counters: {e}")),
                            Err(e) => Response::error(format!("status task failed: {e}")),
                        });
                    });
                }
                Request::Reload => {
                    tracing::info!("reload requested on the control socket");
                    let answer = match reload(&shared, &config_path, &running, &mut monitor).await {
                        Ok((cfg, msg)) => {
                            tracing::info!("{msg}");
                            running = cfg;
                            Response::message(msg)
                        }
                        Err(e) => {
                            tracing::error!("reload rejected, the running config stays: {e}");
                            Response::error(format!("reload rejected, the running config stays: {e}"))
                        }
                    };
                    let _ = neigh_tx.send(dr_neighbours(&shared));
                    let _ = reply.send(answer);
                }
            },
        }
    }

    serving.abort();
    let _ = serving.await;
    drop(server);
    neighbours.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    tracing::info!(
        "stopped; XDP stays attached and forwarding with the maps pinned in {} (the next `lb \
         run` adopts them; `lb unload --pin-dir {}` removes everything)",
        pins.path().display(),
        pins.path().display()
    );
    Ok(())
}

fn dr_neighbours(shared: &Mutex<Shared>) -> Vec<std::net::IpAddr> {
    shared
        .lock()
        .expect("agent state lock")
        .programmer
        .dr_neighbours()
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

/// Re-read the config and apply the difference. Settings fixed at load
/// time (interfaces, XDP mode, map sizes, socket) keep their running value.
async fn reload(
    shared: &Arc<Mutex<Shared>>,
    path: &Path,
    running: &Config,
    monitor: &mut health::Monitor,
) -> Result<(Config, String), String> {
    let result = reload_config(shared, path, running, monitor).await;
    release_freed_memory();
    result
}

async fn reload_config(
    shared: &Arc<Mutex<Shared>>,
    path: &Path,
    running: &Config,
    monitor: &mut health::Monitor,
) -> Result<(Config, String), String> {
    let config = config::load(path).map_err(|e| e.to_string())?;
    config::validate_host(&config).map_err(|e| e.to_string())?;
    if config.agent != running.agent {
        tracing::warn!(
            "[agent] settings changed in {}: they take effect at the next `lb run` restart",
            path.display()
        );
    }
    // Targets first, so the new real servers are known (unknown = serve)
    // when the tables are built; put back if the apply is refused.
    monitor.update(health::targets(&config));
    let shared = shared.clone();
    let cfg = config.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let mut s = shared.lock().expect("agent state lock");
        s.apply(&cfg)
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))
    .and_then(|r| r.map_err(|e| e.to_string()));
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            monitor.update(health::targets(running));
            return Err(e);
        }
    };
    for problem in forwarding_problems(&config) {
        problem.log();
    }
    Ok((config, format!("config reloaded: {summary}")))
}

/// Forward the eBPF program's aya-log records to `tracing` when the object
/// has a log map; `None` when it does not log.
fn start_ebpf_logger(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => {
            tracing::debug!("no eBPF log forwarding: {e}");
            return None;
        }
    };
    // SAFETY: the logger owns its ring-buffer fd and is moved into the
    // AsyncFd, so the fd stays open exactly as long as it is registered.
    let registered =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("cannot poll the eBPF log map: {}", e.into_parts().1);
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}
