//! Scale-out behind ECMP: telling a BGP daemon on this host (BIRD 2 or
//! FRR) which VIPs this node serves. lb speaks no BGP itself.
//!
//! How: one kernel host route per announced VIP (`VIP/32` or `/128`, `dev
//! lo`, scope link) in a routing table of its own (`[announce] table`,
//! default 200) marked with a route protocol number of its own
//! (`[announce] protocol`, default 252). No `ip rule` points at that
//! table, so the routes change nothing in this host's forwarding; they
//! are a list the daemon reads. BIRD imports the table with a `protocol
//! kernel { kernel table 200; learn; }` and exports to BGP what its
//! filter accepts (`krt_source = 252`); FRR with `ip import-table 200` and
//! `redistribute table 200` in bgpd (examples/bgp/). Why a kernel table
//! rather than a daemon's API: both daemons read it with stock config (no
//! vtysh or birdc scripting, no version-specific RPC), a daemon restart
//! re-reads it, the state is visible with `ip route show table 200`, and
//! it survives the agent: when the agent dies (`kill -9`, crash) the XDP
//! program keeps forwarding and the routes stay, so the node keeps
//! attracting the flows it can still forward (as the issue asks).
//!
//! Life cycle:
//! - start: the routes a previous agent left are adopted; the first plan
//!   removes those no longer wanted (no withdraw/announce flap across a
//!   restart);
//! - health transitions, reloads, `lb drain` / `lb undrain`: a new plan
//!   ([`plan`]), applied as a difference ([`routes`]);
//! - clean stop (SIGTERM/SIGINT): every route is removed. A stopped agent
//!   no longer watches the real servers' health, so the node must stop
//!   attracting new flows; what still arrives is forwarded by XDP, and
//!   the other nodes pick the same real servers (same Maglev table).
//!   `lb drain --wait` first makes the stop lose nothing;
//! - every [`RESYNC_PERIOD`] the table is read again and corrected (a
//!   route deleted by hand, a flush);
//! - `lb unload` removes them too (with the config's `[announce]`).
//!
//! Drain ([`drain`]): withdraws every VIP, keeps forwarding, and reports
//! "drained" (safe to stop) after `drain_min` and `drain_quiet` without a
//! new connection. It lasts for the agent's life, like `lb vrrp handoff`.

pub mod drain;
pub mod plan;
pub mod routes;

use std::{
    collections::HashSet,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use drain::{Drain, DrainState};
use plan::{Inputs, ServiceView, VipPlan};
use routes::Routes;

use crate::{
    config::Announce,
    netlink::{Netlink, NetlinkError},
    status::{AnnounceStatus, VipStatus},
};

/// How often the routes are read back from the kernel and corrected.
pub const RESYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// The last status, shared with `lb status` and `/metrics` readers.
pub type StatusCell = Arc<Mutex<Option<AnnounceStatus>>>;

/// The agent's announcer: config, routes, drain, and the last plan.
pub struct Announcer {
    config: Announce,
    routes: Routes,
    drain: Option<Drain>,
    plan: Vec<VipPlan>,
    /// Addresses whose route could not be programmed in the last update.
    failed: HashSet<IpAddr>,
    cell: StatusCell,
    last_resync: Instant,
}

impl Announcer {
    pub async fn start(config: &Announce, cell: StatusCell) -> Result<Announcer, NetlinkError> {
        let routes = Routes::open(Netlink::new()?, config).await?;
        if !routes.installed().is_empty() {
            tracing::info!(
                "announce: {} routes left in table {} by a previous agent adopted",
                routes.installed().len(),
                config.table
            );
        }
        Ok(Announcer {
            config: config.clone(),
            routes,
            drain: None,
            plan: Vec::new(),
            failed: HashSet::new(),
            cell,
            last_resync: Instant::now(),
        })
    }

    /// A reload with another `[announce]`: a new table, protocol or
    /// interface moves the routes (the old ones are removed first).
    pub async fn reconfigure(&mut self, config: &Announce) -> Result<(), NetlinkError> {
        if *config == self.config {
            return Ok(());
        }
        let moved = routes::owner(config) != self.routes.owner()
            || config.interface != self.routes.interface();
        if moved {
            self.routes.apply(&HashSet::new()).await;
            self.routes = Routes::open(Netlink::new()?, config).await?;
        }
        self.config = config.clone();
        Ok(())
    }

    /// Plan again from `services` and apply the difference.
    pub async fn update(&mut self, services: &[ServiceView], attached: bool) {
        let plan = plan::plan(&Inputs {
            addresses: &self.config.addresses,
            services,
            attached,
            draining: self.drain.is_some(),
        });
        for p in &plan {
            let before = self.plan.iter().find(|b| b.address == p.address);
            if before.map(|b| b.withheld) != Some(p.withheld) {
                match p.withheld {
                    None => tracing::info!("announce {}: announced", p.address),
                    Some(w) => {
                        tracing::warn!("announce {}: withdrawn: {}", p.address, w.describe())
                    }
                }
            }
        }
        let changes = self.routes.apply(&plan::announced(&plan)).await;
        self.failed.clear();
        for e in &changes.errors {
            tracing::error!("announce: {e}");
        }
        let wanted = plan::announced(&plan);
        self.failed = wanted
            .difference(self.routes.installed())
            .copied()
            .collect();
        self.plan = plan;
        self.publish(Instant::now());
    }

    /// Re-read the table and apply the last plan again: a route removed
    /// by hand comes back, one added by hand with lb's protocol goes.
    pub async fn resync(&mut self) {
        if let Err(e) = self.routes.resync().await {
            tracing::error!("announce: {e}");
            return;
        }
        let wanted = plan::announced(&self.plan);
        let changes = self.routes.apply(&wanted).await;
        for a in &changes.added {
            tracing::warn!(
                "announce {a}: its route had gone from table {}: added again",
                self.config.table
            );
        }
        for a in &changes.removed {
            tracing::warn!(
                "announce {a}: a route lb did not want was in table {}: removed",
                self.config.table
            );
        }
        for e in &changes.errors {
            tracing::error!("announce: {e}");
        }
        self.failed = wanted
            .difference(self.routes.installed())
            .copied()
            .collect();
        self.publish(Instant::now());
    }

    /// Withdraw everything (clean stop).
    pub async fn stop(&mut self) {
        let changes = self.routes.apply(&HashSet::new()).await;
        for e in &changes.errors {
            tracing::error!("announce: {e}");
        }
        if !changes.removed.is_empty() {
            tracing::info!(
                "announce: {} routes removed from table {}: the BGP daemon withdraws them",
                changes.removed.len(),
                self.config.table
            );
        }
        *self.cell.lock().expect("announce status") = None;
    }

    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Start draining (`conns`: the services' connection counter now).
    /// The caller plans again. Returns false when already draining.
    pub fn start_drain(&mut self, now: Instant, conns: u64) -> bool {
        if self.drain.is_some() {
            return false;
        }
        self.drain = Some(Drain::start(now, conns));
        true
    }

    /// Stop draining; the caller plans again. False when not draining.
    pub fn end_drain(&mut self) -> bool {
        self.drain.take().is_some()
    }

    /// Whether a [`Self::resync`] is due (and, if so, counts it as done).
    pub fn resync_due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_resync) < RESYNC_PERIOD {
            return false;
        }
        self.last_resync = now;
        true
    }

    /// The periodic look at the connection counter while draining.
    pub fn observe(&mut self, now: Instant, conns: u64) {
        if let Some(drain) = &mut self.drain {
            let before = drain.state(now, self.config.drain_min, self.config.drain_quiet);
            drain.observe(now, conns);
            let after = drain.state(now, self.config.drain_min, self.config.drain_quiet);
            if before != after && after == DrainState::Drained {
                tracing::info!(
                    "drained: every VIP withdrawn for {} s and no new connection for {} s: \
                     safe to stop",
                    now.duration_since(drain.since()).as_secs(),
                    now.duration_since(drain.last_new_conn()).as_secs()
                );
            }
        }
        self.publish(now);
    }

    pub fn status(&self, now: Instant) -> AnnounceStatus {
        let (drain, drain_for_ms, ms_since_new_conn) = match &self.drain {
            None => ("announcing", None, None),
            Some(d) => {
                let state = d.state(now, self.config.drain_min, self.config.drain_quiet);
                (
                    if state == DrainState::Drained {
                        "drained"
                    } else {
                        "draining"
                    },
                    Some(now.duration_since(d.since()).as_millis() as u64),
                    Some(now.duration_since(d.last_new_conn()).as_millis() as u64),
                )
            }
        };
        let vips = self
            .plan
            .iter()
            .map(|p| {
                let failed = self.failed.contains(&p.address);
                let announced = self.routes.installed().contains(&p.address);
                let (reason, why) = match (p.withheld, failed) {
                    (Some(w), _) => (Some(w.label().to_owned()), Some(w.describe().to_owned())),
                    (None, true) => (
                        Some("route_error".to_owned()),
                        Some("its route could not be added (see the log)".to_owned()),
                    ),
                    (None, false) => (None, None),
                };
                VipStatus {
                    address: p.address.to_string(),
                    announced,
                    reason,
                    why,
                    services: p.services.clone(),
                    services_down: p.services_down.clone(),
                }
            })
            .collect();
        AnnounceStatus {
            table: self.config.table,
            protocol: self.config.protocol,
            interface: self.config.interface.clone(),
            drain: drain.to_owned(),
            drain_for_ms,
            ms_since_new_conn,
            vips,
        }
    }

    fn publish(&self, now: Instant) {
        *self.cell.lock().expect("announce status") = Some(self.status(now));
    }
}
