//! Network namespaces for the end-to-end tests, the demo and the
//! benchmarks: every host lives in a namespace this module created, and
//! dropping a [`Netns`] removes it together with the processes inside it.
//!
//! One kit for all three users (issue 8): the parts are [`veth`] (pairs
//! wired between namespaces, tuned for XDP or plain), [`thread`] (moving a
//! thread into a namespace, or a private one, and back) and [`cleanup`]
//! (namespaces of dead runs, and of this run on Ctrl-C). Every name starts
//! with [`unique_prefix`], which carries the creating process's id: that is
//! how the clean-ups tell a dead run's leftovers from a live one's.

mod cleanup;
mod thread;
mod veth;

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

pub use cleanup::{install_signal_cleanup, remove_own, remove_stale};
pub use thread::ThreadNs;
pub use veth::{mac_str, parse_mac, veth, veth_with, VethEnd, VethOptions};

/// What every name [`unique_prefix`] makes starts with.
const PREFIX: &str = "lbt";

/// A prefix no other live process uses, so tests can run side by side and a
/// crashed run's leftovers never collide with a new one. Kept short: names
/// derived from it must fit in 15-character interface names elsewhere.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{}x{}", own_prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The part of every [`unique_prefix`] of this process: `lbt<pid>x`
/// without the counter.
fn own_prefix() -> String {
    format!("{PREFIX}{}", std::process::id())
}

/// Pids of commands `run` is waiting for, so an interrupt handler can end
/// a long ab/wrk at once instead of waiting for it (see `stop_running`).
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Runs a command and fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?} (is it installed?)"))?;
    let pid = child.id();
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    let out = child.wait_with_output();
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&p| p != pid);
    check(cmd, out.with_context(|| format!("waiting for {cmd:?}"))?)
}

/// Sends SIGTERM to every command `run` is waiting for (all children of
/// this process); they then fail, and the caller unwinds through its
/// guards. For signal handlers.
pub fn stop_running() {
    for &pid in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: kill(2) on a child this process spawned; it leaves the
        // list right after being reaped, so the pid is not yet reused.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
}

fn check(cmd: &Command, out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up. Name it
    /// `unique_prefix() + "-" + role`, so the clean-ups find it.
    pub fn new(name: impl Into<String>) -> Result<Netns> {
        let name = name.into();
        run(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A namespace named `unique_prefix()-role`: for callers that need no
    /// common prefix across their namespaces (the benchmarks).
    pub fn unique(role: &str) -> Result<Netns> {
        Netns::new(format!("{}-{role}", unique_prefix()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`: what `setns` opens.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args[0] args[1..]` inside the namespace; its stdout, or an error
    /// carrying its stderr.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("empty command")?;
        run(self.command(program).args(rest))
    }

    /// `ip -n NS args...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A permanent neighbour entry (`ip neigh replace ... nud permanent`):
    /// no ARP or neighbour discovery for `addr` on `dev`, from the first
    /// packet on.
    pub fn neigh_permanent(
        &self,
        addr: impl std::fmt::Display,
        dev: &str,
        mac: [u8; 6],
    ) -> Result<()> {
        let addr = addr.to_string();
        let mac = mac_str(&mac);
        self.ip(&[
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .map(drop)
    }

    /// Sets a sysctl inside the namespace (net.* keys are per namespace).
    /// `key` as `sysctl` takes it, with dots (or slashes, for an interface
    /// name with a dot in it). Written to /proc/sys directly, so a minimal
    /// system without procps (the ipvs suite's VM) needs no `sysctl`
    /// binary.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = if key.contains('/') {
            format!("/proc/sys/{key}")
        } else {
            format!("/proc/sys/{}", key.replace('.', "/"))
        };
        // /proc/sys/net shows the namespace of the thread that opens it.
        self.enter(|| std::fs::write(&path, value))?
            .with_context(|| format!("setting {key}={value} in {}", self.name))
    }

    /// Runs `f` on a thread that has joined this namespace, so sockets it
    /// opens live there. The calling thread is untouched.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _in = self.enter_thread()?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
        })
    }

    /// Moves the calling thread into the namespace until the guard drops:
    /// for code that must stay in it across several steps (loading and
    /// attaching an XDP program, a thread of its own that only measures).
    /// Prefer [`Netns::enter`], which leaves the caller untouched.
    pub fn enter_thread(&self) -> Result<ThreadNs> {
        ThreadNs::join(&self.path())
    }

    /// Interface index of `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> Result<u32> {
        let s = self.exec(&["cat", &format!("/sys/class/net/{dev}/ifindex")])?;
        s.trim()
            .parse()
            .with_context(|| format!("ifindex of {dev} in {}: {s:?}", self.name))
    }

    /// MAC address of `dev` inside the namespace.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6]> {
        let s = self.exec(&["cat", &format!("/sys/class/net/{dev}/address")])?;
        parse_mac(s.trim()).with_context(|| format!("address of {dev} in {}", self.name))
    }

    /// Process ids of everything running inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.name)
    }
}

fn pids_in(name: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a namespace by name: the processes inside first, then the name.
fn delete(name: &str) {
    // A process left inside would keep the namespace (and an attached
    // XDP program) alive after its name is gone; everything in it was
    // started by this harness.
    for pid in pids_in(name) {
        // SAFETY: plain kill(2) on a pid listed inside our namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}
