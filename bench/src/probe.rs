//! A TCP prober: connects to one address over and over from inside a
//! namespace and keeps the moments connects succeeded, so the longest
//! silence around an event is the client's outage, whether connections
//! were refused (a reset) or lost (no answer) meanwhile.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lb_tests::netns::ThreadNs;

/// Time between the starts of two connects of one thread.
const PACE: Duration = Duration::from_millis(10);

/// The probing threads; [`Prober::finish`] stops them.
pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<Vec<Instant>>>>,
}

impl Prober {
    /// `threads` threads in namespace `ns` (a name under /run/netns), each
    /// connecting to `target` every 10 ms (staggered) and giving up on a
    /// connect after `timeout`: while one waits out a lost SYN, the others
    /// keep trying, so the end of an outage is seen within about
    /// `timeout / threads`.
    pub fn start(
        ns: &str,
        target: SocketAddr,
        threads: u32,
        timeout: Duration,
    ) -> anyhow::Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/run/netns/{ns}");
        let mut handles = Vec::new();
        for k in 0..threads {
            // Here, so a wrong name fails now rather than at `finish`.
            std::fs::metadata(&path).with_context(|| format!("opening {path}"))?;
            let (stop, path) = (stop.clone(), path.clone());
            handles.push(std::thread::spawn(move || {
                // A thread of its own: it probes from the namespace until it ends.
                let _in = ThreadNs::join(&path)?;
                std::thread::sleep(PACE * k / threads);
                let mut ok = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if TcpStream::connect_timeout(&target, timeout).is_ok() {
                        ok.push(Instant::now());
                    }
                    std::thread::sleep((t + PACE).saturating_duration_since(Instant::now()));
                }
                Ok(ok)
            }));
        }
        Ok(Prober {
            stop,
            threads: handles,
        })
    }

    /// Stops probing; every successful connect's moment, oldest first.
    pub fn finish(self) -> anyhow::Result<Vec<Instant>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.threads {
            all.extend(
                t.join()
                    .map_err(|_| anyhow::anyhow!("a probe thread panicked"))??,
            );
        }
        all.sort();
        Ok(all)
    }
}

/// The longest time between two successful connects, among the gaps that
/// end after `from`: the outage an event at `from` caused. `None` without
/// two successes.
pub fn outage(successes: &[Instant], from: Instant) -> Option<Duration> {
    successes
        .windows(2)
        .filter(|w| w[1] > from)
        .map(|w| w[1] - w[0])
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_is_the_longest_gap_after_the_event() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // A 500 ms gap before the event does not count; the one spanning
        // it (120 -> 480) does.
        let s = [at(0), at(500), at(110), at(120), at(480), at(490)];
        let mut s = s.to_vec();
        s.sort();
        assert_eq!(outage(&s, at(130)), Some(Duration::from_millis(360)));
        assert_eq!(outage(&s[..1], at(0)), None);
    }
}
