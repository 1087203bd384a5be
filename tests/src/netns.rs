//! Network namespaces and veth pairs for the end-to-end tests, the demo and
//! the benchmarks: every host lives in a namespace this module created, and
//! dropping a [`Netns`] removes it together with the processes inside it.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// A prefix no other live process uses, so tests can run side by side and a
/// crashed run's leftovers never collide with a new one. Kept short: names
/// derived from it must fit in 15-character interface names elsewhere.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "lbt{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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
        .with_context(|| format!("cannot start {cmd:?}"))?;
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
    /// Creates the namespace and brings its loopback up.
    pub fn new(name: impl Into<String>) -> Result<Netns> {
        let name = name.into();
        run(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
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

    /// Sets a sysctl inside the namespace (net.* keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Runs `f` on a thread that has joined this namespace, so sockets it
    /// opens live there. The calling thread is untouched.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd only changes this
                // thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    bail!("setns({path}): {}", std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
        })
    }

    /// Process ids of everything running inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A process left inside would keep the namespace (and an attached
        // XDP program) alive after its name is gone; everything in it was
        // started by this harness.
        for pid in self.pids() {
            // SAFETY: plain kill(2) on a pid listed inside our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects `a`'s interface `a_if` to `b`'s `b_if` with a veth pair created
/// directly inside the namespaces (nothing appears in the root namespace),
/// and brings both ends up.
///
/// Both ends get GRO on: the kernel's veth only accepts a frame that an XDP
/// program sends with XDP_TX/XDP_REDIRECT when the receiving end runs NAPI,
/// which GRO switches on. Both ends also stop offloading transmit checksums,
/// so frames carry complete checksums as they do on a wire between real
/// hosts (a partial checksum cannot survive XDP_TX/REDIRECT).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])
    .with_context(|| format!("veth {}:{a_if} <-> {}:{b_if}", a.name, b.name))?;
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        ns.exec(&["ethtool", "-K", ifname, "gro", "on", "tx", "off"])
            .with_context(|| format!("ethtool on {}:{ifname}", ns.name))?;
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// Namespaces named with this harness's prefix whose creating process is
/// gone (a run killed with SIGKILL cannot clean up after itself).
pub fn remove_stale() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("lbt") else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        drop(Netns {
            name: name.to_string(),
        });
        removed.push(name.to_string());
    }
    removed
}
