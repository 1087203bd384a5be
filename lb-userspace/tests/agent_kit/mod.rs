//! Starting and stopping `lb run` in the agent tests (`agent_lifecycle.rs`,
//! `agent_restart.rs`): one way to run a setup command, to require root,
//! to wait for an agent to answer and to stop it.
#![allow(dead_code)]

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub const LB: &str = env!("CARGO_BIN_EXE_lb");

/// Runs a setup command; panics with its stderr when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails (never skips) without CAP_SYS_ADMIN and CAP_NET_ADMIN, or when
/// one of `tools` is not installed.
pub fn require_root(tools: &[&str]) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert!(
        caps & (1 << 21) != 0 && caps & (1 << 12) != 0,
        "this test creates network namespaces and loads XDP: run it as root \
         (cargo xtask test does)"
    );
    for tool in tools {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is not installed (cargo xtask test installs it)"
        );
    }
}

/// A child killed and reaped on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `run` (an `lb run` command, its stderr sent to `log`) and waits
/// until `lb status` answers on `socket`: the socket is bound before the
/// program is loaded (so a second agent fails early) but served only once
/// XDP is attached, so an answer means the agent is up. Panics with the
/// log when the agent exits or does not answer within `limit`.
pub fn start_agent(mut run: Command, socket: &Path, log: &Path, limit: Duration) -> Guard {
    let file = std::fs::File::create(log).unwrap();
    let child = run
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawning lb run");
    let mut agent = Guard(child);
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let start = Instant::now();
    loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            panic!("lb run exited with {status}:\n{}", log_text());
        }
        let answered = socket.exists()
            && Command::new(LB)
                .args(["status", "--socket"])
                .arg(socket)
                .output()
                .unwrap()
                .status
                .success();
        if answered {
            return agent;
        }
        assert!(
            start.elapsed() < limit,
            "lb status does not answer {limit:?} after lb run started:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then a clean exit within 10 s.
pub fn stop_agent(mut agent: Guard) {
    let pid = agent.0.id() as i32;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            assert!(status.success(), "lb run exited with {status} on SIGTERM");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lb run still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
