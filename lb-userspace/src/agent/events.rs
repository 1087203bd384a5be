//! The agent's event loop: every source (signals, control requests, health
//! transitions, the expiry timer, the announce tick) becomes one [`Event`], and
//! [`Agent::handle`] dispatches each to its handler. Handlers that touch
//! the data plane do it through [`SharedState::with`].
//!
//! To add a source (VRRP): a variant of [`Event`], a
//! branch in [`EventSources::next`] and a handler in [`Agent::handle`].

use std::{path::PathBuf, sync::Arc, time::Instant};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, mpsc::UnboundedReceiver, oneshot},
    time::Interval,
};

use super::{
    announce::{connections, services_view},
    reload::{self, Reloaded},
    startup::NeighbourWarmup,
    state::{EmptyServices, SharedState},
};
use crate::{
    announce::{plan::ServiceView, Announcer},
    config::Config,
    control::{Incoming, Request, Response},
    dataplane::programmer::{ApplySummary, ProgramError},
    health::{self, Transition},
    vrrp::VrrpHandle,
};

/// How often removed real servers' drains and lingering reverse-NAT
/// entries are looked at (they end after `programmer::LINGER`).
pub const EXPIRY_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Something the agent reacts to.
pub enum Event {
    Signal(Signal),
    /// A request on the control socket and where its answer goes.
    Control(Request, oneshot::Sender<Response>),
    /// A real server's health changed.
    Health(Transition),
    /// Time to end the drains and reverse-NAT lingers that are due.
    ExpiryTick,
    /// Time to look at the connection counter of a draining node
    /// (`[announce]` only).
    AnnounceTick,
    // Next sources, each with its handler in `Agent::handle`:
    // - `Vrrp(vrrp::Event)`: a VRRP instance changed state (master/backup/
    //   fault), from the VRRP driver's channel.
}

/// The signals the agent handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: stop (XDP stays).
    Interrupt,
    /// SIGTERM: stop (XDP stays).
    Terminate,
    /// SIGHUP: reload the config file.
    Hangup,
}

/// The signal handlers, installed before anything is attached: a SIGTERM
/// during start-up then waits for the loop instead of killing the process
/// half-way.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Where events come from.
pub struct EventSources {
    pub signals: Signals,
    pub requests: mpsc::Receiver<Incoming>,
    pub transitions: UnboundedReceiver<Transition>,
    pub expiry: Interval,
    /// Every [`ANNOUNCE_PERIOD`] with `[announce]`.
    pub announce_tick: Option<Interval>,
}

/// How often a draining node's connection counter is read (and the
/// announce status refreshed).
pub const ANNOUNCE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

impl EventSources {
    /// The next event. A channel that closes stops producing events; the
    /// signals never do.
    pub async fn next(&mut self) -> Event {
        let signals = &mut self.signals;
        tokio::select! {
            _ = signals.interrupt.recv() => Event::Signal(Signal::Interrupt),
            _ = signals.terminate.recv() => Event::Signal(Signal::Terminate),
            _ = signals.hangup.recv() => Event::Signal(Signal::Hangup),
            Some(t) = self.transitions.recv() => Event::Health(t),
            _ = self.expiry.tick() => Event::ExpiryTick,
            _ = async { self.announce_tick.as_mut().expect("guarded").tick().await },
                if self.announce_tick.is_some() => Event::AnnounceTick,
            Some((request, reply)) = self.requests.recv() => Event::Control(request, reply),
            // A source present only with some configs (VRRP instances) is
            // an `Option` of its receiver here, its branch guarded with
            // `if self.vrrp.is_some()`.
        }
    }
}

/// A health change applied to the maps, and which services are left
/// without a real server.
struct HealthApplied {
    result: Result<ApplySummary, ProgramError>,
    empty: EmptyServices,
}

/// What the loop does after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Stop,
}

/// The running agent: its config, its state and the health checks.
pub struct Agent {
    /// The config file, absolute: reloads find it whatever the working
    /// directory is then.
    pub config_path: PathBuf,
    pub running: Config,
    pub state: SharedState,
    pub monitor: health::Monitor,
    /// Services without a real server up, to log changes once.
    pub empty: EmptyServices,
    /// The DR real servers whose neighbour entries are kept resolved;
    /// `None` without XDP.
    pub neighbours: Option<NeighbourWarmup>,
    /// The VRRP instances; `None` without `[[vrrp_instance]]`.
    pub vrrp: Option<Arc<VrrpHandle>>,
    /// The VIPs offered to the BGP daemon; `None` without `[announce]`.
    pub announcer: Option<Announcer>,
}

impl Agent {
    /// Handle events until a signal says stop.
    pub async fn run(&mut self, mut events: EventSources) {
        tracing::info!(
            "lb agent running ({} virtual services)",
            self.running.virtual_servers.len()
        );
        // Attached and the maps filled: announce what can be forwarded.
        self.refresh_announcements().await;
        // Start-up is done: attached, maps filled, control socket serving.
        crate::systemd::notify_ready(&format!(
            "running {} virtual services",
            self.running.virtual_servers.len()
        ));
        while self.handle(events.next().await).await == Next::Continue {}
    }

    async fn handle(&mut self, event: Event) -> Next {
        match event {
            Event::Signal(signal) => return self.on_signal(signal).await,
            Event::Control(request, reply) => self.on_control(request, reply).await,
            Event::Health(transition) => self.on_health(transition).await,
            Event::ExpiryTick => self.on_expiry_tick().await,
            Event::AnnounceTick => self.on_announce_tick().await,
            // Event::Vrrp(event) => self.on_vrrp(event).await,
        }
        Next::Continue
    }

    async fn on_signal(&mut self, signal: Signal) -> Next {
        match signal {
            Signal::Interrupt => tracing::info!("SIGINT: stopping"),
            Signal::Terminate => tracing::info!("SIGTERM: stopping"),
            Signal::Hangup => {
                tracing::info!("SIGHUP: reloading {}", self.config_path.display());
                self.reload().await;
                return Next::Continue;
            }
        }
        Next::Stop
    }

    async fn on_control(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        match request {
            Request::Status => {
                // Off the loop: counting flows takes a while with a full
                // table, and nothing here waits for it.
                let state = self.state.clone();
                tokio::spawn(async move {
                    let _ = reply.send(match state.status().await {
                        Ok(status) => Response::status(status),
                        Err(e) => Response::error(e.to_string()),
                    });
                });
            }
            Request::Reload => {
                tracing::info!("reload requested on the control socket");
                let _ = reply.send(self.reload().await);
            }
            Request::Drain => {
                let _ = reply.send(self.on_drain(true).await);
            }
            Request::Undrain => {
                let _ = reply.send(self.on_drain(false).await);
            }
        }
    }

    /// The one reload path, for SIGHUP and `lb reload`: the answer is
    /// logged here and sent back by the control handler.
    async fn reload(&mut self) -> Response {
        let result = reload::reload(
            &self.state,
            &self.config_path,
            &self.running,
            &mut self.monitor,
        )
        .await;
        let answer = match result {
            Ok(Reloaded { config, message }) => {
                tracing::info!("{message}");
                self.running = config;
                Response::message(message)
            }
            Err(e) => {
                let message = format!("reload rejected, the running config stays: {e}");
                tracing::error!("{message}");
                Response::error(message)
            }
        };
        self.refresh_neighbours().await;
        self.reconfigure_announcer().await;
        answer
    }

    /// Tell the neighbour warm-up which DR real servers there are now.
    async fn refresh_neighbours(&self) {
        let Some(neighbours) = &self.neighbours else {
            return;
        };
        let wanted = self
            .state
            .with(|s| s.dataplane.as_ref().map(|d| d.dr_neighbours()))
            .await;
        match wanted {
            Ok(Some(wanted)) => neighbours.update(wanted),
            Ok(None) => {}
            Err(e) => tracing::error!("neighbour task failed: {e}"),
        }
    }

    async fn on_health(&mut self, t: Transition) {
        // The health module logs the transition itself (once).
        tracing::debug!("{}: {} -> {}: {}", t.key, t.from, t.to, t.reason);
        if t.from.serves() == t.to.serves() {
            return;
        }
        let config = self.running.clone();
        let applied = self
            .state
            .with(move |s| {
                let dataplane = s.dataplane.as_mut()?;
                Some(HealthApplied {
                    result: dataplane.apply(&config, &s.health),
                    empty: dataplane.empty_services(),
                })
            })
            .await;
        match applied {
            Ok(Some(HealthApplied {
                result: Ok(summary),
                empty,
            })) => {
                tracing::debug!("health change applied: {summary}");
                self.empty.log_changes(&empty);
                self.empty = empty;
                self.track_empty_services();
                self.refresh_announcements().await;
            }
            Ok(Some(HealthApplied { result: Err(e), .. })) => {
                tracing::error!("applying a health change: {e}")
            }
            Ok(None) => {}
            Err(e) => tracing::error!("health task failed: {e}"),
        }
    }

    /// VRRP instances that track a virtual server lower their priority
    /// while it has no real server up.
    fn track_empty_services(&self) {
        if let Some(vrrp) = &self.vrrp {
            vrrp.set_tracked_down(self.empty.names());
        }
    }

    async fn on_expiry_tick(&mut self) {
        let expired = self
            .state
            .with(|s| s.dataplane.as_mut().map(|d| d.expire(Instant::now())))
            .await;
        match expired {
            Ok(None | Some(Ok(0))) => {}
            Ok(Some(Ok(n))) => {
                tracing::debug!("{n} drained backends and lingering reverse-NAT entries removed")
            }
            Ok(Some(Err(e))) => tracing::error!("ending the drain of removed real servers: {e}"),
            Err(e) => tracing::error!("expiry task failed: {e}"),
        }
    }
}

/// The announcer's handlers: health, reload and drain change what this
/// node announces (see `crate::announce`).
impl Agent {
    /// Plan the announcements again from the services' health now.
    async fn refresh_announcements(&mut self) {
        if self.announcer.is_none() {
            return;
        }
        let services = self.services_view().await;
        let attached = self.state.has_dataplane();
        if let Some(announcer) = &mut self.announcer {
            announcer.update(&services, attached).await;
        }
    }

    async fn services_view(&self) -> Vec<ServiceView> {
        let config = self.running.clone();
        match self.state.with(move |s| services_view(s, &config)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("announce task failed: {e}");
                Vec::new()
            }
        }
    }

    /// After a reload: the new `[announce]` (or none), then a new plan.
    async fn reconfigure_announcer(&mut self) {
        match (&mut self.announcer, &self.running.announce) {
            (Some(announcer), Some(config)) => {
                if let Err(e) = announcer.reconfigure(config).await {
                    tracing::error!("announce: applying the reloaded [announce]: {e}");
                }
            }
            (Some(_), None) => {
                tracing::info!("announce: [announce] removed from the config");
                if let Some(mut announcer) = self.announcer.take() {
                    announcer.stop().await;
                }
            }
            (None, Some(_)) => tracing::warn!(
                "announce: [announce] added by a reload takes effect at the next restart"
            ),
            (None, None) => {}
        }
        self.refresh_announcements().await;
    }

    /// `lb drain` (`drain`) and `lb undrain`.
    async fn on_drain(&mut self, drain: bool) -> Response {
        if self.announcer.is_none() {
            return Response::error(
                "this agent announces nothing: its config has no [announce] (drain and \
                 undrain withdraw and restore BGP announcements)",
            );
        }
        let conns = self.connections().await;
        let Some(announcer) = &mut self.announcer else {
            return Response::error("no announcer");
        };
        let changed = if drain {
            announcer.start_drain(Instant::now(), conns)
        } else {
            announcer.end_drain()
        };
        self.refresh_announcements().await;
        let message = match (drain, changed) {
            (true, true) => {
                "draining: every VIP withdrawn, forwarding goes on; `lb status` \
                             says when it is safe to stop (or use `lb drain --wait`)"
            }
            (true, false) => "already draining",
            (false, true) => "undrained: VIPs announced again (those with a real server up)",
            (false, false) => "not draining: nothing to do",
        };
        tracing::info!("{message}");
        Response::message(message)
    }

    async fn on_announce_tick(&mut self) {
        if let Some(announcer) = &mut self.announcer {
            if announcer.resync_due(Instant::now()) {
                announcer.resync().await;
            }
        }
        if self.announcer.as_ref().is_some_and(Announcer::draining) {
            let conns = self.connections().await;
            if let Some(announcer) = &mut self.announcer {
                announcer.observe(Instant::now(), conns);
            }
        }
    }

    /// New connections scheduled by every service so far.
    async fn connections(&self) -> u64 {
        match self.state.with(connections).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("announce task failed: {e}");
                0
            }
        }
    }
}
