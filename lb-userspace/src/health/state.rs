//! The rise/fall state machine of one target: pure, no clocks, no I/O.
//!
//! - `Unknown` (start-up, or a target added by a reload): the agent keeps
//!   the server in service; the first result decides at once (success:
//!   `Up`, failure: `Down`). One result is enough here because nothing has
//!   been withdrawn or restored yet: waiting `fall` checks would send
//!   traffic to a dead server for `fall x interval`, waiting `rise` would
//!   keep a healthy one out for `rise x interval`.
//! - `Up`: `fall` consecutive failures make it `Down`.
//! - `Down`: `rise` consecutive successes make it `Up`.
//!
//! So after the first result, two transitions are always at least
//! `min(rise, fall)` results apart, whatever the server does.

use super::Health;

#[derive(Clone, Debug)]
pub struct Tracker {
    state: Health,
    rise: u32,
    fall: u32,
    /// Consecutive successes (while Down) or failures (while Up) so far.
    streak: u32,
}

impl Tracker {
    /// `rise` and `fall` are at least 1 (the config guarantees it).
    pub fn new(rise: u32, fall: u32) -> Self {
        Tracker::starting_in(Health::Unknown, rise, fall)
    }

    /// A tracker that resumes from a known state (a target whose check
    /// changed on reload keeps its state).
    pub fn starting_in(state: Health, rise: u32, fall: u32) -> Self {
        Tracker {
            state,
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    /// Records one check result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let next = match (self.state, ok) {
            (Health::Unknown, true) => Some(Health::Up),
            (Health::Unknown, false) => Some(Health::Down),
            (Health::Up, true) | (Health::Down, false) => {
                self.streak = 0;
                None
            }
            (Health::Up, false) => {
                self.streak += 1;
                (self.streak >= self.fall).then_some(Health::Down)
            }
            (Health::Down, true) => {
                self.streak += 1;
                (self.streak >= self.rise).then_some(Health::Up)
            }
        };
        if let Some(s) = next {
            self.state = s;
            self.streak = 0;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Tracker, results: &str) -> Vec<(usize, Health)> {
        results
            .chars()
            .enumerate()
            .filter_map(|(i, c)| t.record(c == '+').map(|s| (i, s)))
            .collect()
    }

    #[test]
    fn first_result_decides_from_unknown() {
        assert_eq!(
            run(&mut Tracker::new(2, 3), "+"),
            [(0, Health::Up)],
            "a healthy server is confirmed by its first check"
        );
        assert_eq!(
            run(&mut Tracker::new(2, 3), "-"),
            [(0, Health::Down)],
            "a dead server leaves at its first failed check"
        );
    }

    #[test]
    fn down_after_fall_up_after_rise() {
        let mut t = Tracker::new(2, 3);
        // up at 0; two failures are not enough; a success resets; then
        // three failures: down at 6; one success is not enough, a failure
        // resets, two successes: up at 10.
        assert_eq!(
            run(&mut t, "+--+---+-++"),
            [(0, Health::Up), (6, Health::Down), (10, Health::Up)]
        );
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let mut t = Tracker::new(1, 1);
        assert_eq!(run(&mut t, "+-+").len(), 3);
    }

    #[test]
    fn flapping_server_moves_no_more_than_rise_and_fall_allow() {
        // A server that alternates never moves after the first result
        // when rise and fall are both above 1.
        let mut t = Tracker::new(2, 2);
        assert_eq!(run(&mut t, &"+-".repeat(500)), [(0, Health::Up)]);

        // Random flapping: between two transitions there are at least
        // min(rise, fall) results, so at most 1 + (n - 1) / min of them.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for (rise, fall) in [(1, 3), (2, 3), (3, 2), (5, 5)] {
            let results: String = (0..2000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed.is_multiple_of(3) {
                        '-'
                    } else {
                        '+'
                    }
                })
                .collect();
            let moves = run(&mut Tracker::new(rise, fall), &results);
            for w in moves.windows(2) {
                let gap = w[1].0 - w[0].0;
                let need = if w[1].1 == Health::Up { rise } else { fall };
                assert!(
                    gap >= need as usize,
                    "rise {rise} fall {fall}: {:?} only {gap} results after {:?}",
                    w[1],
                    w[0]
                );
            }
            let bound = 1 + (results.len() - 1) / rise.min(fall) as usize;
            assert!(moves.len() <= bound, "{} > {bound}", moves.len());
        }
    }

    #[test]
    fn resumed_state_needs_full_streaks() {
        let mut t = Tracker::starting_in(Health::Down, 3, 2);
        assert_eq!(run(&mut t, "++-+++"), [(5, Health::Up)]);
    }
}
