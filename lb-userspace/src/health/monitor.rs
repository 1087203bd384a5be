//! The scheduler: one tokio task per checked target, a shared table of
//! [`TargetStatus`] for `lb status`, and a channel of [`Transition`]s for
//! the agent.
//!
//! The check tasks run on a runtime of their own: one thread with a
//! current-thread scheduler, owned by the [`Monitor`]. A check is a few
//! microseconds of work between I/O waits; on the agent's multi-thread
//! runtime nearly every one of its wake-ups also woke the other, idle,
//! worker thread to look for work to steal, so at 1,000 checks a second
//! the futex and scheduler round trips cost about as much as the checks.
//! It also keeps a burst of checks from delaying `lb status` or a reload,
//! and a slow map write from delaying checks.

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    sync::mpsc::{self, UnboundedReceiver, UnboundedSender},
    task::JoinHandle,
};

use super::{
    check_once, state::Tracker, CheckResult, Health, Target, TargetKey, TargetStatus, Transition,
};
use crate::config::KindName;

/// Called after every check (for metrics: latency histograms, counts).
/// Runs on the check's task: keep it short and non-blocking.
pub type CheckObserver = Arc<dyn Fn(&TargetKey, &CheckResult) + Send + Sync>;

type Table = Arc<Mutex<HashMap<TargetKey, Entry>>>;

/// A target's status and which task may write it: a task started for an
/// older check of the same key (aborted by `update`, but possibly
/// finishing a check on another thread) finds a newer generation and
/// neither writes nor reports.
struct Entry {
    status: TargetStatus,
    generation: u64,
}

/// Runs the health checks of a set of targets.
///
/// Agent-facing contract:
/// - [`Monitor::new`] returns the monitor and the receiver of
///   [`Transition`]s. Every state change of every target is sent once, in
///   order per target, on an unbounded channel (changes are rare: at most
///   one per `min(rise, fall)` checks), so a slow consumer never stalls a
///   check.
/// - [`Monitor::update`] sets the targets (at start and on every reload);
///   targets whose key stays keep their state and counters and, when
///   their check is unchanged, their schedule; a changed check restarts
///   from the state reached. New targets start [`Health::Unknown`], which
///   serves; kind `none` targets are `Up` and never checked. Removed ones
///   vanish without a transition (the agent drops them anyway).
/// - A real server may take new flows while [`Monitor::serves`] (or
///   [`StatusReader::serves`]) is true for its key. Build the tables from
///   that right after `update`, then on each transition set the target's
///   state to `transition.to` (not a toggle: a transition received after a
///   snapshot that already includes it is then harmless) and rebuild its
///   service's table when `serves()` changed.
/// - [`Monitor::snapshot`] / [`StatusReader`] give `lb status` and metrics
///   state, since, last result and latency of every target.
/// - Dropping the monitor stops every check.
pub struct Monitor {
    table: Table,
    running: HashMap<TargetKey, Running>,
    tx: UnboundedSender<Transition>,
    observer: Option<CheckObserver>,
    generation: u64,
    /// Declared last: dropped after `running` has aborted every task.
    checks: CheckRuntime,
}

/// The checks' runtime (see the module doc): its thread drives it until
/// the monitor drops `stop`; the runtime, and every task still on it, is
/// dropped on that thread.
struct CheckRuntime {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl CheckRuntime {
    fn start() -> Self {
        // Fails only when the process is out of threads or file
        // descriptors, where the agent cannot do its job either.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot create the health checks' runtime");
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lb-health".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("cannot start the health checks' thread");
        CheckRuntime {
            handle,
            _stop: stop,
        }
    }
}

struct Running {
    target: Target,
    /// `None` for kind none: nothing to run.
    task: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A cloneable, read-only view of the monitor's status table (for the
/// control socket and metrics, which live on other tasks).
#[derive(Clone)]
pub struct StatusReader(Table);

impl StatusReader {
    /// Every target's status, sorted by key.
    pub fn snapshot(&self) -> Vec<(TargetKey, TargetStatus)> {
        let table = lock(&self.0);
        let mut all: Vec<_> = table
            .iter()
            .map(|(k, e)| (k.clone(), e.status.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn get(&self, key: &TargetKey) -> Option<TargetStatus> {
        lock(&self.0).get(key).map(|e| e.status.clone())
    }

    /// May this target take new flows? True unless it is known to be
    /// down; a key the monitor does not track serves (it is not checked).
    pub fn serves(&self, key: &TargetKey) -> bool {
        lock(&self.0)
            .get(key)
            .is_none_or(|e| e.status.state.serves())
    }
}

fn lock(t: &Table) -> MutexGuard<'_, HashMap<TargetKey, Entry>> {
    // A panic while holding the lock cannot leave a status half-written
    // in a way that matters more than losing every status.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl Monitor {
    pub fn new() -> (Monitor, UnboundedReceiver<Transition>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Monitor {
                table: Arc::default(),
                running: HashMap::new(),
                tx,
                observer: None,
                generation: 0,
                checks: CheckRuntime::start(),
            },
            rx,
        )
    }

    /// Sets a function called after every check, for targets started
    /// from now on (set it before the first `update`).
    pub fn set_observer(&mut self, observer: CheckObserver) {
        self.observer = Some(observer);
    }

    pub fn reader(&self) -> StatusReader {
        StatusReader(self.table.clone())
    }

    /// Every target's status, sorted by key.
    pub fn snapshot(&self) -> Vec<(TargetKey, TargetStatus)> {
        self.reader().snapshot()
    }

    pub fn status(&self, key: &TargetKey) -> Option<TargetStatus> {
        self.reader().get(key)
    }

    /// See [`StatusReader::serves`].
    pub fn serves(&self, key: &TargetKey) -> bool {
        self.reader().serves(key)
    }

    /// Replaces the set of targets (the checks run on the monitor's own
    /// runtime: callers need none). A key listed twice keeps its last entry.
    pub fn update(&mut self, targets: impl IntoIterator<Item = Target>) {
        let wanted: HashMap<TargetKey, Target> =
            targets.into_iter().map(|t| (t.key.clone(), t)).collect();

        self.running.retain(|k, _| wanted.contains_key(k));
        lock(&self.table).retain(|k, _| wanted.contains_key(k));

        for (key, target) in wanted {
            if self.running.get(&key).is_some_and(|r| r.target == target) {
                continue;
            }
            // New, or its check changed: (re)start it from its current
            // state. Dropping the old `Running` aborts the old task, and
            // the new generation silences it should it be mid-check.
            self.running.remove(&key);
            self.generation += 1;
            let generation = self.generation;
            let now = (SystemTime::now(), Instant::now());
            let kind = target.check.kind.word();
            let none = kind == KindName::None;
            let mut table = lock(&self.table);
            let entry = table.entry(key.clone()).or_insert_with(|| Entry {
                status: fresh(if none { Health::Up } else { Health::Unknown }, kind, now),
                generation,
            });
            entry.generation = generation;
            let status = &mut entry.status;
            status.kind = kind;
            let state = status.state;
            if none {
                status.last = None;
                if state != Health::Up {
                    enter(status, Health::Up, now);
                    self.send(
                        &key,
                        state,
                        Health::Up,
                        now.0,
                        "no longer checked (kind none)".into(),
                    );
                }
                drop(table);
                self.running.insert(key, Running { target, task: None });
                continue;
            }
            drop(table);

            let tracker = Tracker::starting_in(state, target.check.rise, target.check.fall);
            let task = self.checks.handle.spawn(run(
                target.clone(),
                generation,
                tracker,
                self.table.clone(),
                self.tx.clone(),
                self.observer.clone(),
            ));
            self.running.insert(
                key,
                Running {
                    target,
                    task: Some(task),
                },
            );
        }
    }

    fn send(&self, key: &TargetKey, from: Health, to: Health, at: SystemTime, reason: String) {
        log_transition(key, from, to, &reason);
        let _ = self.tx.send(Transition {
            key: key.clone(),
            from,
            to,
            at,
            reason,
        });
    }
}

fn fresh(state: Health, kind: KindName, (wall, mono): (SystemTime, Instant)) -> TargetStatus {
    TargetStatus {
        state,
        since: wall,
        since_instant: mono,
        kind,
        last: None,
        checks: 0,
        failed_checks: 0,
        transitions: 0,
    }
}

fn enter(s: &mut TargetStatus, state: Health, (wall, mono): (SystemTime, Instant)) {
    s.state = state;
    s.since = wall;
    s.since_instant = mono;
    s.transitions += 1;
}

fn log_transition(key: &TargetKey, from: Health, to: Health, reason: &str) {
    match to {
        Health::Down => {
            tracing::warn!(target: "lb::health", "{key} is down (was {from}): {reason}")
        }
        _ => tracing::info!(target: "lb::health", "{key} is {to} (was {from}): {reason}"),
    }
}

/// One target's check loop; runs until aborted.
async fn run(
    target: Target,
    generation: u64,
    mut tracker: Tracker,
    table: Table,
    tx: UnboundedSender<Transition>,
    observer: Option<CheckObserver>,
) {
    let interval = target.check.interval;
    let mut rng = Jitter::new(&target.key);
    // First check at once, spread over a tenth of the interval.
    let mut next = Instant::now() + rng.below(interval / 10);
    loop {
        tokio::time::sleep_until(next.into()).await;
        let started = Instant::now();
        let result = check_once(&target).await;
        if let Some(obs) = &observer {
            obs(&target.key, &result);
        }
        let from = tracker.state();
        let changed = tracker.record(result.outcome.is_ok());
        {
            let mut t = lock(&table);
            let Some(entry) = t
                .get_mut(&target.key)
                .filter(|e| e.generation == generation)
            else {
                // Replaced or removed by `update` while this check ran.
                return;
            };
            let s = &mut entry.status;
            s.checks += 1;
            if result.outcome.is_err() {
                s.failed_checks += 1;
            }
            if let Some(to) = changed {
                enter(s, to, (result.at, Instant::now()));
                let reason = match &result.outcome {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                };
                log_transition(&target.key, from, to, &reason);
                // Sent under the lock, so transitions of one key leave in
                // the order the table saw them, across generations too.
                let _ = tx.send(Transition {
                    key: target.key.clone(),
                    from,
                    to,
                    at: result.at,
                    reason,
                });
            }
            s.last = Some(Box::new(result));
        }
        // Measured from this check's start, so the cadence does not drift
        // by the checks' own latency; never earlier than now.
        let jitter = interval / 20;
        next = (started + interval - jitter + rng.below(jitter * 2)).max(Instant::now());
    }
}

/// splitmix64 seeded per target and start time: spreads targets apart
/// without a random-number crate.
struct Jitter(u64);

impl Jitter {
    fn new(key: &TargetKey) -> Self {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .hash(&mut h);
        Jitter(h.finish())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max).
    fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next() % nanos)
    }
}
