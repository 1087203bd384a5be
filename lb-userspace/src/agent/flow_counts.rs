//! Flow counts per real server for `lb status` and `/metrics`, kept off the
//! state lock and, once the flow table is big, off the request path too.
//!
//! Counting walks the whole flow table (a batched walk: about half a second
//! for a million flows on a small machine). Two regimes, chosen by how long
//! the last walk took:
//!
//! - **Quick walks** (at most [`SYNC_WALK_LIMIT`]): a request waits for a
//!   walk that started after it asked, so what it reports is never older
//!   than the request (the tests count the flows of connections they just
//!   made). Requests that arrive together share one walk.
//! - **Slow walks** (a big table): a request answers at once with the last
//!   count and its age (`flows_counted_ago_ms` in JSON, "Flows counted … ago"
//!   in text, `lb_flows_counted_age_seconds` in metrics), and wakes a
//!   background task that walks again. That task keeps walking, at most one
//!   walk per [`min_gap`] (ten times the walk's own duration, so it costs at
//!   most a tenth of a CPU), while requests keep coming, and goes idle
//!   [`IDLE_AFTER`] after the last one: an agent nobody scrapes does not walk.
//!
//! Flows are not counted in the data plane instead: a closed connection's
//! entry stays until its set needs the way, so a per-real-server counter
//! kept by the program would count what the table holds, as this walk
//! does, at the price of a counter write on every new flow.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};

use tokio::{sync::Notify, task::JoinError};

use crate::dataplane::flows::{FlowCounter, FlowCounts};

/// The longest walk a request waits for. Above it the table is big and
/// requests take the background task's last count.
pub const SYNC_WALK_LIMIT: Duration = Duration::from_millis(20);

/// The background task stops walking when nobody asked for this long.
pub const IDLE_AFTER: Duration = Duration::from_secs(60);

/// Time between two background walks: ten times the walk (so a tenth of
/// a CPU at most), and never less than a second.
pub fn min_gap(walk: Duration) -> Duration {
    (walk * 10).max(Duration::from_secs(1))
}

/// A count and how old it is.
#[derive(Clone, Debug, Default)]
pub struct CountedFlows {
    pub counts: FlowCounts,
    /// Since the walk that produced `counts` started.
    pub age: Duration,
}

#[derive(Clone)]
struct FlowWalk {
    started: Instant,
    took: Duration,
    counts: FlowCounts,
}

/// The flow counter, its last walk and the background task.
pub struct FlowWalks {
    counter: Arc<FlowCounter>,
    /// [`SYNC_WALK_LIMIT`] (the tests change it).
    sync_limit: Duration,
    /// Held for the length of a walk: one walk at a time.
    walking: tokio::sync::Mutex<()>,
    /// The last finished walk (held only to copy it).
    last: Mutex<Option<FlowWalk>>,
    /// When a request last asked for counts.
    asked: Mutex<Instant>,
    /// Wakes the background task.
    wake: Arc<Notify>,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Walks done, for the tests.
    walks: AtomicU64,
}

impl FlowWalks {
    pub fn new(counter: FlowCounter) -> Arc<Self> {
        Self::with_sync_limit(counter, SYNC_WALK_LIMIT)
    }

    /// Requests wait for walks that take at most `sync_limit`.
    pub fn with_sync_limit(counter: FlowCounter, sync_limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            counter: Arc::new(counter),
            sync_limit,
            walking: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            asked: Mutex::new(Instant::now()),
            wake: Arc::new(Notify::new()),
            refresher: Mutex::new(None),
            walks: AtomicU64::new(0),
        })
    }

    /// The flow counts for one request: a walk of its own (shared) while
    /// walks are quick, the background task's last count once they are not.
    pub async fn count(self: &Arc<Self>) -> Result<CountedFlows, JoinError> {
        let asked = Instant::now();
        *self.asked.lock().expect("flow walk lock") = asked;
        let last = self.last();
        if let Some(walk) = last.filter(|w| w.took > self.sync_limit) {
            self.start_refresher();
            self.wake.notify_one();
            return Ok(CountedFlows {
                age: walk.started.elapsed(),
                counts: walk.counts,
            });
        }
        let walk = self.walk_started_after(asked).await?;
        Ok(CountedFlows {
            age: walk.started.elapsed(),
            counts: walk.counts,
        })
    }

    /// Walks done so far.
    #[cfg(test)]
    pub fn walks(&self) -> u64 {
        self.walks.load(Ordering::Relaxed)
    }

    fn last(&self) -> Option<FlowWalk> {
        self.last.lock().expect("flow walk lock").clone()
    }

    /// The first walk that started at or after `asked`: the running one's
    /// result when it started after `asked`, else a new walk.
    async fn walk_started_after(&self, asked: Instant) -> Result<FlowWalk, JoinError> {
        let _walking = self.walking.lock().await;
        if let Some(walk) = self.last().filter(|w| w.started >= asked) {
            return Ok(walk);
        }
        let started = Instant::now();
        let counter = self.counter.clone();
        // Timed on the blocking thread: a wait for one (a busy machine)
        // is not the table's size and must not switch regimes.
        let (counts, took) = tokio::task::spawn_blocking(move || {
            let walking = Instant::now();
            let counts = counter.count();
            (counts, walking.elapsed())
        })
        .await?;
        let walk = FlowWalk {
            started,
            took,
            counts,
        };
        self.walks.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().expect("flow walk lock") = Some(walk.clone());
        Ok(walk)
    }

    /// Start the background task once. It holds only a weak reference, and
    /// dropping the last [`FlowWalks`] aborts it.
    fn start_refresher(self: &Arc<Self>) {
        let mut refresher = self.refresher.lock().expect("flow walk lock");
        if refresher.is_some() {
            return;
        }
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        *refresher = Some(tokio::spawn(refresh(weak, wake)));
    }
}

impl Drop for FlowWalks {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// The background task: sleeps until a request wakes it, then walks every
/// [`min_gap`] while requests keep coming.
async fn refresh(weak: Weak<FlowWalks>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        loop {
            let Some(walks) = weak.upgrade() else {
                return;
            };
            if walks.asked.lock().expect("flow walk lock").elapsed() > IDLE_AFTER {
                break;
            }
            let took = match walks.walk_started_after(Instant::now()).await {
                Ok(walk) => walk.took,
                Err(e) => {
                    tracing::warn!("counting flows failed: {e}");
                    Duration::ZERO
                }
            };
            drop(walks);
            tokio::time::sleep(min_gap(took)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_walks_cost_at_most_a_tenth_of_a_cpu() {
        assert_eq!(min_gap(Duration::from_millis(5)), Duration::from_secs(1));
        assert_eq!(min_gap(Duration::from_millis(600)), Duration::from_secs(6));
    }
}
