//! Health checks of real servers (issue 3): which real servers may take
//! new flows.
//!
//! This module owns the checks (one file per kind: [`tcp`], [`http`],
//! [`ldap`], [`exec`]; [`tls`]: LDAP's TLS trust; [`CheckError`]: why a
//! check failed, in the words `lb status` shows), the rise/fall state
//! machine ([`state`]) and the
//! [`Monitor`] that runs every target's checks on tokio and reports
//! transitions. It never touches the BPF maps: the agent turns
//! transitions into Maglev table rebuilds.
//!
//! # Start-up: `Unknown` counts as up
//! A target starts (at start-up, or when a reload adds it) in
//! [`Health::Unknown`], and [`Health::serves`] is true for it: the agent
//! puts it in the Maglev table right away, so a restart never black-holes
//! a service while its first checks run. Its first check starts at once
//! (after a jitter of at most a tenth of its interval, so a thousand
//! targets do not connect in the same millisecond) and its first result
//! decides: success = [`Health::Up`] (no change for the data plane),
//! failure = [`Health::Down`] at once, so a dead server receives traffic
//! for at most one timeout plus that jitter, not `fall x interval`. From
//! then on the usual rule holds: `fall` consecutive failures take it down,
//! `rise` consecutive successes bring it back. Kind `none` targets are
//! `Up` from the start and never checked.
//!
//! # Cadence and timeouts
//! Every target has its own task: a check starts every `interval` (5%
//! jitter either way) measured from the start of the previous one, and
//! `tokio::time::timeout` ends it after `timeout` (< interval, enforced
//! by the config), dropping its connection or killing its command. So a
//! hanging server costs its own task one timeout per check and never
//! delays another target's checks.

mod error;
pub mod exec;
pub mod http;
pub mod ldap;
mod monitor;
pub mod state;
pub mod tcp;
pub mod tls;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

pub use error::CheckError;
pub use monitor::{CheckObserver, Monitor, StatusReader};

use crate::config::{CheckKind, Config, HealthCheck, KindName};

/// A real server's health as the agent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Not checked yet: treated as up (see the module doc).
    Unknown,
    Up,
    Down,
}

impl Health {
    /// May the real server take new flows? True for `Up` and `Unknown`.
    pub fn serves(self) -> bool {
        !matches!(self, Health::Down)
    }

    /// For `lb status` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which real server of which service: the identity a target keeps across
/// reloads. `port` is the real server's port (not the checked port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub service: String,
    pub address: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.service,
            SocketAddr::new(self.address, self.port)
        )
    }
}

/// One real server to check, and how.
///
/// The check is shared: real servers with the same check (usually every
/// real server of a service) hold one copy, so the monitor's tables stay
/// small with tens of thousands of real servers.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub key: TargetKey,
    pub check: Arc<HealthCheck>,
}

impl Target {
    /// Where the check connects: the real server's address, and the
    /// check's `port` or else the real server's.
    pub fn check_addr(&self) -> SocketAddr {
        SocketAddr::new(self.key.address, self.check.port.unwrap_or(self.key.port))
    }
}

/// Every real server of every service in `config`, in config order.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut shared: Option<Arc<HealthCheck>> = None;
    let mut out = Vec::new();
    for vs in &config.virtual_servers {
        for rs in &vs.real_servers {
            let check = match &shared {
                Some(c) if **c == rs.health_check => c.clone(),
                _ => Arc::new(rs.health_check.clone()),
            };
            shared = Some(check.clone());
            out.push(Target {
                key: TargetKey {
                    service: vs.name.clone(),
                    address: rs.address,
                    port: rs.port,
                },
                check,
            });
        }
    }
    out
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// When it ended.
    pub at: SystemTime,
    /// `Err` says what failed; its text is what `lb status` and logs
    /// show (e.g. "ldap bind failed: invalidCredentials (49)").
    pub outcome: Result<(), CheckError>,
    pub latency: Duration,
}

impl CheckResult {
    /// The outcome in the words `lb status` and the logs use.
    pub fn outcome_text(&self) -> Result<(), String> {
        self.outcome.clone().map_err(|e| e.to_string())
    }
}

/// What `lb status` and metrics show for one target.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub state: Health,
    /// When it entered `state` (wall clock, for display).
    pub since: SystemTime,
    /// The same moment on the monotonic clock, for "for how long".
    pub since_instant: Instant,
    pub kind: KindName,
    /// `None` until the first check ends (and always for kind none).
    /// Boxed: most targets of a large config are never checked (kind
    /// none), and the status table keeps one entry per real server.
    pub last: Option<Box<CheckResult>>,
    pub checks: u64,
    pub failed_checks: u64,
    /// State changes since the target was added (Unknown -> Up counts).
    pub transitions: u64,
}

/// A change of a target's state, sent once per change.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub key: TargetKey,
    pub from: Health,
    pub to: Health,
    pub at: SystemTime,
    /// The result that caused it: "ok" or the check's error.
    pub reason: String,
}

/// Runs one check of `target` with its timeout enforced.
pub async fn check_once(target: &Target) -> CheckResult {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(target.check.timeout, probe(target)).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout {
            check: target.check.kind.word(),
            after: target.check.timeout,
        }),
    };
    CheckResult {
        at: SystemTime::now(),
        outcome,
        latency: started.elapsed(),
    }
}

/// The check itself, without a timeout (the caller sets one).
async fn probe(target: &Target) -> Result<(), CheckError> {
    let addr = target.check_addr();
    match &target.check.kind {
        CheckKind::None => Ok(()),
        CheckKind::Tcp => tcp::check(addr).await,
        CheckKind::Http(c) => http::check(addr, c).await,
        CheckKind::Ldap(c) => ldap::check(addr, c).await,
        CheckKind::Exec(c) => exec::check(addr, c).await,
    }
}
