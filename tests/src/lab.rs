//! A one-namespace lab for the tests of the agent itself (its control
//! socket, its metrics endpoint, its life cycle): a network namespace with
//! `lo` and a veth pair `eth0`/`eth1` for XDP to attach to, a scratch
//! directory, configs whose real servers are never sent a packet, and
//! `lb run` started in the namespace with `ip netns exec` (so its bpffs
//! and pins die with it). Nothing is configured in the root namespace and
//! no packet leaves the namespace's loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::agent::{Agent, LbConfig, RealServer, VirtualServer};
use crate::netns::{unique_prefix, Netns};
use crate::require::require_root;
use crate::tempdir::TempDir;

/// The namespace and the directory, both removed on drop.
#[derive(Debug)]
pub struct Lab {
    bin: PathBuf,
    // Field order: the namespace (and the agent's processes in it) go
    // before the directory holding their files.
    pub ns: Netns,
    pub dir: TempDir,
}

impl Lab {
    /// `bin`: the `lb` binary under test; `tag` names the test in the
    /// namespace's and directory's names. Panics without root.
    pub fn new(bin: &Path, tag: &str) -> Result<Lab> {
        require_root("creates a network namespace and runs `lb run` (XDP) in it");
        let ns = Netns::new(format!("{}{tag}", unique_prefix()))?;
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["link", "set", "eth1", "up"])?;
        Ok(Lab {
            bin: bin.to_path_buf(),
            dir: TempDir::new(tag)?,
            ns,
        })
    }

    /// Where the configs put the control socket (in a directory the agent
    /// creates).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run").join("lb.sock")
    }

    /// Writes config `name`: `agent_extra` lines appended to `[agent]`, and
    /// one NAT service with `real_servers` real servers (at most 50,000).
    pub fn config(&self, name: &str, agent_extra: &str, real_servers: usize) -> Result<PathBuf> {
        let reals = (0..real_servers)
            .map(|i| {
                let host = Ipv4Addr::new(10, 98, (i / 200) as u8, (i % 200 + 2) as u8);
                RealServer::new(IpAddr::V4(host), 1)
            })
            .collect();
        let service =
            VirtualServer::nat_tcp("web", Ipv4Addr::new(10, 97, 0, 100).into(), 80, reals);
        let mut config =
            LbConfig::for_interfaces(&["eth0"], "generic", self.socket(), vec![service]);
        config.flow_table_size = 4096;
        let path = self.dir.join(name);
        std::fs::write(&path, config.to_toml_with_agent(agent_extra))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// `lb run --config config` in the namespace, once it answers `lb
    /// status`. `max_files`: the agent's RLIMIT_NOFILE (soft and hard), for
    /// a host whose file limit is within a client's reach.
    pub fn start(&self, config: &Path, max_files: Option<u64>) -> Result<Agent> {
        self.start_with(config, max_files, |_| {})
    }

    /// As [`Lab::start`], with `before_ready` called as soon as the agent
    /// process exists (e.g. to watch its socket appear).
    pub fn start_with(
        &self,
        config: &Path,
        max_files: Option<u64>,
        before_ready: impl FnOnce(&Agent),
    ) -> Result<Agent> {
        let stem = config.file_stem().unwrap_or_default().to_string_lossy();
        let log = self.dir.join(&format!("{stem}.log"));
        let mut cmd = self.ns.command(&self.bin);
        cmd.args(["run", "--config"]).arg(config);
        if let Some(n) = max_files {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut agent = Agent::spawn(&self.bin, cmd, config.to_path_buf(), self.socket(), log)?;
        before_ready(&agent);
        agent.wait_serving(Duration::from_secs(30))?;
        Ok(agent)
    }

    /// Sets a (per-namespace) sysctl in the lab's namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.ns.sysctl(key, value)
    }

    /// Runs `f` on a thread inside the namespace: the sockets it opens live
    /// there (and stay usable from any thread).
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        inside(&self.ns, f)
    }
}

/// Runs `f` on a thread that joined `ns` (processes it starts are born
/// there); a panic in `f` is raised again here with its own message.
pub fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let caught = ns
        .enter(|| std::panic::catch_unwind(AssertUnwindSafe(f)))
        .unwrap_or_else(|e| panic!("entering namespace {}: {e:#}", ns.name()));
    caught.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Moves the calling thread into the network namespace named `name` for
/// the rest of its life: for a thread spawned only to live there (a VRRP
/// node, an agent run in-process, a load generator). Panics when it cannot.
pub fn join_namespace(name: &str) {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: setns on a valid namespace fd changes only this thread's
    // network namespace (and that of threads and processes it starts).
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// A connection to the Unix socket `path` made with the credentials `uid`,
/// `gid`, `groups` (which the agent reads with SO_PEERCRED and
/// SO_PEERGROUPS): made on a thread of its own that drops to them with the
/// raw system calls, which change that thread only (glibc's wrappers would
/// change every thread of the test).
pub fn connect_as(path: &Path, uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<UnixStream> {
    let path = path.to_path_buf();
    let groups = groups.to_vec();
    std::thread::spawn(move || {
        // SAFETY: credential system calls on this thread alone, which ends
        // right after the connect.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
                0,
                "setgroups: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        UnixStream::connect(&path)
    })
    .join()
    .expect("the connecting thread panicked")
}

/// `bin ARGS` as the uid/gid/groups given to `setpriv` (e.g.
/// `--reuid=65534`): its exit success, stdout and stderr.
pub fn run_as(setpriv: &[&str], bin: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("setpriv")
        .args(setpriv)
        .arg(bin)
        .args(args)
        .output()
        .expect("running setpriv (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
