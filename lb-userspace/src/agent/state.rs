//! The agent's shared state: the data plane's maps and what is installed in
//! them (when XDP is loaded), and the health table; and the one way to use
//! it from async code, [`SharedState::with`], which runs a closure under
//! the lock on a blocking thread (map writes are syscalls).
//!
//! What takes long stays off the lock: counting flows walks the whole flow
//! table (two syscalls per entry, seconds for a million flows), so
//! [`SharedState::status`] walks it through a handle of its own
//! ([`FlowCounter`]) *before* taking the lock for the rest, and a health
//! transition, a reload or SIGTERM never waits for a scrape's walk. Walks
//! are also shared ([`FlowWalks`]): requests that arrive while one runs
//! wait for the next and take its result, so a burst of scrapes costs two
//! walks, not one each.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::task::JoinError;

use crate::{
    config::Config,
    dataplane::{
        flows::{FlowCounter, FlowCounts},
        maps::{KernelMaps, MapOpenError, MapWriteError},
        programmer::{ApplySummary, ProgramError, Programmer, ServiceKey},
        stats,
    },
    health::{StatusReader, TargetKey},
    status::{HealthStatus, Status},
    vrrp::VrrpHandle,
};

/// The maps of the loaded XDP object and the programmer that knows what is
/// installed in them. Absent when the config has no virtual servers and no
/// interfaces (a VRRP-only agent loads no XDP).
pub struct Dataplane {
    pub maps: KernelMaps,
    pub programmer: Programmer,
}

impl Dataplane {
    /// Make the maps match `config` with each real server's health as the
    /// checks last said (unknown and unchecked ones serve).
    pub fn apply(
        &mut self,
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
        self.programmer
            .apply_with_health(config, &mut self.maps, &is_up)
    }

    /// End the drains and reverse-NAT lingers due by `now`; how many ended.
    pub fn expire(&mut self, now: Instant) -> Result<usize, ProgramError> {
        let Dataplane { maps, programmer } = self;
        programmer.expire(now, maps)
    }

    /// Real servers of DR services, whose neighbour entries are kept resolved.
    pub fn dr_neighbours(&self) -> Vec<IpAddr> {
        self.programmer.dr_neighbours()
    }

    /// Services that have real servers but none in their Maglev table.
    pub fn empty_services(&self) -> EmptyServices {
        EmptyServices(
            self.programmer
                .services()
                .into_iter()
                .filter(|s| s.ring_size == 0 && s.backends.iter().any(|b| b.is_real))
                .map(|s| (s.name, s.backends.iter().any(|b| b.is_sorry)))
                .collect(),
        )
    }
}

/// Services with no real server in their Maglev table, each with whether a
/// sorry server takes their new flows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmptyServices(HashMap<String, bool>);

impl EmptyServices {
    /// The services without a real server up (sorry server or not): what
    /// VRRP instances tracking them lower their priority for.
    pub fn names(&self) -> std::collections::HashSet<String> {
        self.0.keys().cloned().collect()
    }

    /// Log once when a service loses its last real server or gets one back.
    pub fn log_changes(&self, after: &EmptyServices) {
        for (name, sorry) in &after.0 {
            if !self.0.contains_key(name) {
                if *sorry {
                    tracing::warn!(
                        "{name}: no real server is up: new flows go to the sorry server"
                    );
                } else {
                    tracing::error!(
                        "{name}: no real server is up and no sorry_server: its packets are \
                         dropped (event no_backend counts them)"
                    );
                }
            }
        }
        for name in self.0.keys() {
            if !after.0.contains_key(name) {
                tracing::info!("{name}: a real server is up again: new flows go to it");
            }
        }
    }
}

/// Everything the state lock protects.
pub struct AgentState {
    pub dataplane: Option<Dataplane>,
    /// Read-only view of the health checks' table.
    pub health: StatusReader,
}

impl AgentState {
    /// `lb status`: the counters and each real server's health, with the
    /// flow counts of a walk done before the lock was taken.
    fn status(&self, flows: &FlowCounts) -> Result<Status, MapWriteError> {
        let Some(dataplane) = &self.dataplane else {
            // No XDP loaded (VRRP only): no services and no counters.
            return Ok(Status::default());
        };
        let mut status = stats::snapshot_with_flows(&dataplane.maps, &dataplane.programmer, flows)?;
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

/// Why a status could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading counters: {0}")]
    Read(#[from] MapWriteError),
    #[error("status task failed: {0}")]
    Task(#[from] JoinError),
}

/// Walks of the flow table shared between the requests that want one:
/// one walk at a time, and a request takes the result of the first walk
/// that *started* after it arrived (never an older count than it would
/// have got alone).
pub struct FlowWalks {
    counter: Arc<FlowCounter>,
    /// The last walk; its lock is held for the length of a walk.
    last: tokio::sync::Mutex<Option<FlowWalk>>,
    /// Walks done, for the tests.
    walks: std::sync::atomic::AtomicU64,
}

struct FlowWalk {
    started: Instant,
    counts: FlowCounts,
}

impl FlowWalks {
    fn new(counter: FlowCounter) -> Self {
        Self {
            counter: Arc::new(counter),
            last: tokio::sync::Mutex::new(None),
            walks: Default::default(),
        }
    }

    async fn count(&self) -> Result<FlowCounts, JoinError> {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some(walk) = last.as_ref().filter(|w| w.started >= asked) {
            return Ok(walk.counts.clone());
        }
        let started = Instant::now();
        let counter = self.counter.clone();
        let counts = tokio::task::spawn_blocking(move || counter.count()).await?;
        self.walks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *last = Some(FlowWalk {
            started,
            counts: counts.clone(),
        });
        Ok(counts)
    }
}

/// The state behind its lock, shared by the event loop, status requests
/// and metrics scrapes. Cloning shares it.
#[derive(Clone)]
pub struct SharedState {
    locked: Arc<Mutex<AgentState>>,
    /// Present exactly when `dataplane` is: set up together in [`Self::new`].
    flow_walks: Option<Arc<FlowWalks>>,
    /// The VRRP instances, when the config has any: their status is read
    /// from the driver's own channel, never under the lock.
    vrrp: Option<Arc<VrrpHandle>>,
}

impl SharedState {
    pub fn new(state: AgentState) -> Result<Self, MapOpenError> {
        let flow_walks = match &state.dataplane {
            Some(dataplane) => Some(Arc::new(FlowWalks::new(FlowCounter::new(&dataplane.maps)?))),
            None => None,
        };
        Ok(Self {
            locked: Arc::new(Mutex::new(state)),
            flow_walks,
            vrrp: None,
        })
    }

    /// Report these VRRP instances in [`Self::status`] from now on.
    pub fn set_vrrp(&mut self, vrrp: Arc<VrrpHandle>) {
        self.vrrp = Some(vrrp);
    }

    /// The VRRP instances, when the config has any (a reload hands them
    /// their live changes).
    pub fn vrrp(&self) -> Option<&Arc<VrrpHandle>> {
        self.vrrp.as_ref()
    }

    /// Whether XDP is loaded (fixed for the agent's life).
    pub fn has_dataplane(&self) -> bool {
        self.flow_walks.is_some()
    }

    /// Run `f` on the state under the lock, on a blocking thread. The one
    /// place the lock is taken: keep what `f` does short (map writes, no
    /// walks of the flow table).
    pub async fn with<R, F>(&self, f: F) -> Result<R, JoinError>
    where
        F: FnOnce(&mut AgentState) -> R + Send + 'static,
        R: Send + 'static,
    {
        let locked = self.locked.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = locked.lock().expect("agent state lock");
            f(&mut state)
        })
        .await
    }

    /// `lb status` and `/metrics`: flows counted off the lock, then the
    /// counters and health read under it. (`Status::vrrp` is left empty
    /// here: VRRP state is not behind this lock.)
    pub async fn status(&self) -> Result<Status, StatusError> {
        let flows = match &self.flow_walks {
            Some(walks) => walks.count().await?,
            None => FlowCounts::default(),
        };
        let mut status = self.with(move |state| state.status(&flows)).await??;
        if let Some(vrrp) = &self.vrrp {
            status.vrrp = vrrp.status();
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    //! Against real kernel maps (needs CAP_BPF: run as root, as `cargo xtask
    //! test` does).

    use std::time::{Duration, Instant};

    use lb_common::{Flow, FlowKey};

    use super::*;
    use crate::{dataplane::loader::MapSizes, health::Monitor};

    /// Flows in the table: enough that walking them takes far longer than
    /// a short job under the lock.
    const FLOWS: u32 = 500_000;

    fn fill_flows(maps: &KernelMaps) {
        let flows: Vec<(FlowKey, Flow)> = (0..FLOWS)
            .map(|i| {
                let key = FlowKey {
                    src: [i, 0, 0, 0],
                    proto: 6,
                    family: 4,
                    ..FlowKey::default()
                };
                (key, Flow::default())
            })
            .collect();
        crate::dataplane::flows::insert_batched(maps.flows_fd(), &flows);
    }

    /// A state whose flow table holds [`FLOWS`] flows.
    fn state_with_flows() -> SharedState {
        let sizes = MapSizes {
            services: 16,
            backends: 64,
            ring_slots: 1024,
            flows: FLOWS,
        };
        let maps = KernelMaps::standalone(&sizes)
            .unwrap_or_else(|e| panic!("creating BPF maps failed (run as root): {e}"));
        fill_flows(&maps);
        let (monitor, _transitions) = Monitor::new();
        SharedState::new(AgentState {
            dataplane: Some(Dataplane {
                maps,
                programmer: Programmer::new(sizes.services, sizes.backends, sizes.ring_slots),
            }),
            health: monitor.reader(),
        })
        .unwrap()
    }

    fn walks(state: &SharedState) -> u64 {
        let walks = state.flow_walks.as_ref().expect("a data plane");
        walks.walks.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_counts_flows_without_holding_the_state_lock() {
        let state = state_with_flows();

        let started = Instant::now();
        let status = tokio::spawn({
            let state = state.clone();
            async move { state.status().await }
        });
        // While the walk runs, a job under the lock (what a health
        // transition does) gets it at once.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waited = Instant::now();
        state.with(|_| ()).await.unwrap();
        let lock_wait = waited.elapsed();
        status.await.unwrap().unwrap();
        let walk = started.elapsed();
        assert!(
            walk > Duration::from_millis(100) && lock_wait * 5 < walk,
            "the lock was taken after {lock_wait:?} while status took {walk:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_status_requests_shares_walks_of_the_flow_table() {
        let state = state_with_flows();
        // Eight requests while the first walk runs: the first walks, the
        // others wait for one more walk (started after they asked) and
        // share it (or share the first, had they all asked before it began).
        let requests: Vec<_> = (0..8)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move { state.status().await })
            })
            .collect();
        for request in requests {
            request.await.unwrap().unwrap();
        }
        let burst = walks(&state);
        assert!(burst <= 2, "8 requests made {burst} walks");
        // A request after them gets a walk of its own, not an old count.
        state.status().await.unwrap();
        assert_eq!(walks(&state), burst + 1);
    }
}
