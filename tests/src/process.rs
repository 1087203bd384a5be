//! Long-running helper processes (nginx, socat, `lb run`) that must not
//! outlive the test or demo that started them.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A child process stopped with SIGTERM (then SIGKILL after a grace period)
/// when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    pub fn spawn(what: impl Into<String>, cmd: &mut Command) -> Result<ChildGuard> {
        let what = what.into();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}: {cmd:?}"))?;
        Ok(ChildGuard { child, what })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` and waits up to `grace` for the exit; SIGKILL after.
    pub fn stop(&mut self, signal: i32, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within {grace:?}: killing it", self.what);
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM, Duration::from_secs(5));
    }
}

/// Polls `ready` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `ready` every `poll` until it returns true; how long that took.
/// Panics naming `what` when `limit` passes first: for tests, whose
/// timing checks need their own polling step (a failover measured to a
/// few milliseconds polls faster than a daemon's start-up).
#[track_caller]
pub fn wait_for(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut ready: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(poll);
    }
    start.elapsed()
}
