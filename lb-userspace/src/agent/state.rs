//! The agent's shared state: the data plane's maps and what is installed in
//! them (when XDP is loaded), and the health table; and the one way to use
//! it from async code, [`SharedState::with`], which runs a closure under
//! the lock on a blocking thread (map writes are syscalls).
//!
//! What takes long stays off the lock: counting flows walks the whole flow
//! table (half a second for a million flows), so [`SharedState::status`]
//! gets its counts from [`FlowWalks`] (a handle of its own on the map,
//! walked without the lock; a big table's count is refreshed in the
//! background, see `flow_counts`) *before* taking the lock for the rest,
//! and a health transition, a reload or SIGTERM never waits for a walk.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::task::JoinError;

use super::flow_counts::FlowWalks;
use crate::{
    config::{Config, EbpfLog},
    dataplane::{
        ebpf_log::LogSwitch,
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
    /// The program's log switch (`[agent] ebpf_log`); `None` for maps
    /// without a program (tests).
    pub log_switch: Option<LogSwitch>,
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
        let Dataplane {
            maps, programmer, ..
        } = self;
        programmer.expire(now, maps)
    }

    /// `[agent] ebpf_log` from a reload: the switch moves at once, nothing
    /// is loaded or attached. Whether it changed.
    pub fn set_ebpf_log(&mut self, level: EbpfLog) -> Result<bool, MapWriteError> {
        match &mut self.log_switch {
            Some(switch) if switch.level() != level => switch.set(level).map(|()| true),
            _ => Ok(false),
        }
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
        status.ebpf_log = dataplane.log_switch.as_ref().map(|s| s.level().to_string());
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
                        Err(e) => e.to_string(),
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
    /// `[announce]`'s last status, kept by the event loop's announcer.
    announce: Option<crate::announce::StatusCell>,
}

impl SharedState {
    pub fn new(state: AgentState) -> Result<Self, MapOpenError> {
        let flow_walks = match &state.dataplane {
            Some(dataplane) => Some(FlowWalks::new(FlowCounter::new(&dataplane.maps)?)),
            None => None,
        };
        Ok(Self {
            locked: Arc::new(Mutex::new(state)),
            flow_walks,
            vrrp: None,
            announce: None,
        })
    }

    /// Report these VRRP instances in [`Self::status`] from now on.
    pub fn set_vrrp(&mut self, vrrp: Arc<VrrpHandle>) {
        self.vrrp = Some(vrrp);
    }

    /// Report the announcer's status in [`Self::status`] from now on.
    pub fn set_announce(&mut self, cell: crate::announce::StatusCell) {
        self.announce = Some(cell);
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
            Some(walks) => Some(walks.count().await?),
            None => None,
        };
        let counted_ago_ms = flows.as_ref().map(|f| f.age.as_millis() as u64);
        let flows = flows.map(|f| f.counts).unwrap_or_default();
        let mut status = self.with(move |state| state.status(&flows)).await??;
        status.flows_counted_ago_ms = counted_ago_ms;
        if let Some(vrrp) = &self.vrrp {
            status.vrrp = vrrp.status();
        }
        if let Some(cell) = &self.announce {
            status.announce = cell.lock().expect("announce status").clone();
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
    use crate::{
        agent::flow_counts::SYNC_WALK_LIMIT, dataplane::loader::MapSizes, health::Monitor,
    };

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
        maps.insert_flows(&flows)
            .unwrap_or_else(|e| panic!("filling FLOWS_V4: {e}"));
    }

    /// A state whose flow table holds [`FLOWS`] flows.
    fn state_with_flows() -> SharedState {
        let sizes = MapSizes {
            services: 16,
            backends: 64,
            ring_slots: 1024,
            flow_sets: lb_common::flow_table::flow_sets(4 * FLOWS),
            flow_sets_v6: 1024,
        };
        let maps = KernelMaps::standalone(&sizes)
            .unwrap_or_else(|e| panic!("creating BPF maps failed (run as root): {e}"));
        fill_flows(&maps);
        let (monitor, _transitions) = Monitor::new();
        SharedState::new(AgentState {
            dataplane: Some(Dataplane {
                maps,
                programmer: Programmer::new(sizes.services, sizes.backends, sizes.ring_slots),
                log_switch: None,
            }),
            health: monitor.reader(),
        })
        .unwrap()
    }

    /// [`state_with_flows`] whose requests always wait for a walk of their
    /// own, however long it takes (the agent stops waiting above
    /// [`SYNC_WALK_LIMIT`]).
    fn state_with_flows_always_walked() -> SharedState {
        let mut state = state_with_flows();
        let counter = {
            let locked = state.locked.lock().unwrap();
            FlowCounter::new(&locked.dataplane.as_ref().unwrap().maps).unwrap()
        };
        state.flow_walks = Some(FlowWalks::with_sync_limit(counter, Duration::MAX));
        state
    }

    fn walks(state: &SharedState) -> u64 {
        state.flow_walks.as_ref().expect("a data plane").walks()
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
        let state = state_with_flows_always_walked();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_big_table_status_answers_at_once_and_counts_again_in_the_background() {
        let state = state_with_flows();
        // No count yet: the first request waits for a walk.
        let started = Instant::now();
        let first = state.status().await.unwrap();
        let walk = started.elapsed();
        assert!(
            walk > SYNC_WALK_LIMIT * 2,
            "walking {FLOWS} flows took only {walk:?}: not a big table"
        );
        assert!(first.flows_counted_ago_ms.unwrap() <= walk.as_millis() as u64);
        assert_eq!(walks(&state), 1);

        // The walk was slow: the next request takes its count at once and
        // says how old it is.
        let started = Instant::now();
        let second = state.status().await.unwrap();
        let answered = started.elapsed();
        assert!(
            answered * 5 < walk,
            "status took {answered:?} with a count at hand (a walk takes {walk:?})"
        );
        assert!(second.flows_counted_ago_ms.unwrap() >= first.flows_counted_ago_ms.unwrap());

        // ... and the background task counts again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while walks(&state) < 2 {
            assert!(Instant::now() < deadline, "no walk in the background");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let third = state.status().await.unwrap();
        assert!(
            third.flows_counted_ago_ms.unwrap()
                < second.flows_counted_ago_ms.unwrap() + walk.as_millis() as u64
        );
    }
}
