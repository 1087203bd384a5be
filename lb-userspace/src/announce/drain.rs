//! `lb drain`: when a draining node may be stopped. Pure, with time and
//! the node's connection counter as inputs.
//!
//! After the withdrawal the BGP daemon tells the router within a second
//! or so, and the router moves the flows to the other nodes. Until then
//! packets keep arriving and are forwarded as usual. The node is "safe to
//! stop" once both hold:
//! - `drain_min` has passed since the withdrawal (the daemons' and the
//!   router's reaction time, whatever the traffic);
//! - no new connection (the services' `conns` counter, which counts
//!   flows the node scheduled) for `drain_quiet`: the router no longer
//!   sends new flows here.
//!
//! Packets of established flows that still arrive are not waited for: in
//! DR mode any other node forwards them to the same real server (same
//! Maglev table), and a client that keeps a connection open for hours
//! would otherwise hold the node forever.

use std::time::{Duration, Instant};

/// A drain in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    since: Instant,
    /// The connection counter last seen, and when it last moved.
    conns: u64,
    last_new_conn: Instant,
}

/// Where a drain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainState {
    /// Withdrawn; not yet safe to stop.
    Draining,
    /// Safe to stop.
    Drained,
}

impl Drain {
    /// A drain starting at `now`, with the connection counter at `conns`.
    pub fn start(now: Instant, conns: u64) -> Self {
        Drain {
            since: now,
            conns,
            last_new_conn: now,
        }
    }

    /// Record the connection counter read at `now`.
    pub fn observe(&mut self, now: Instant, conns: u64) {
        // A counter that went backwards was reset (a reload that removed
        // and re-added a service): count it as activity.
        if conns != self.conns {
            self.conns = conns;
            self.last_new_conn = now;
        }
    }

    pub fn state(&self, now: Instant, min: Duration, quiet: Duration) -> DrainState {
        let long_enough = now.saturating_duration_since(self.since) >= min;
        let quiet_enough = now.saturating_duration_since(self.last_new_conn) >= quiet;
        if long_enough && quiet_enough {
            DrainState::Drained
        } else {
            DrainState::Draining
        }
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn last_new_conn(&self) -> Instant {
        self.last_new_conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(10);
    const QUIET: Duration = Duration::from_secs(5);

    #[test]
    fn safe_after_the_minimum_time_and_a_quiet_period() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut d = Drain::start(t0, 100);
        // New connections keep arriving for 8 s (the router has not moved
        // the flows yet).
        for (t, conns) in [(1, 110), (4, 115), (8, 116)] {
            d.observe(s(t), conns);
            assert_eq!(d.state(s(t), MIN, QUIET), DrainState::Draining);
        }
        // Quiet since 8 s, minimum reached at 10 s: safe at 13 s.
        d.observe(s(10), 116);
        assert_eq!(d.state(s(10), MIN, QUIET), DrainState::Draining);
        d.observe(s(12), 116);
        assert_eq!(d.state(s(12), MIN, QUIET), DrainState::Draining);
        d.observe(s(13), 116);
        assert_eq!(d.state(s(13), MIN, QUIET), DrainState::Drained);
        // One more connection: not safe again until quiet again.
        d.observe(s(14), 117);
        assert_eq!(d.state(s(14), MIN, QUIET), DrainState::Draining);
        assert_eq!(d.state(s(19), MIN, QUIET), DrainState::Drained);
    }

    #[test]
    fn an_idle_node_is_safe_after_the_minimum_time() {
        let t0 = Instant::now();
        let d = Drain::start(t0, 0);
        assert_eq!(
            d.state(t0 + Duration::from_secs(9), MIN, QUIET),
            DrainState::Draining
        );
        assert_eq!(
            d.state(t0 + Duration::from_secs(10), MIN, QUIET),
            DrainState::Drained
        );
    }

    #[test]
    fn a_counter_reset_counts_as_activity() {
        let t0 = Instant::now();
        let mut d = Drain::start(t0, 50);
        d.observe(t0 + Duration::from_secs(11), 3);
        assert_eq!(
            d.state(t0 + Duration::from_secs(12), MIN, QUIET),
            DrainState::Draining
        );
    }
}
