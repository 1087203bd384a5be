//! A real `lb run` for the tests of the agent's two listening sockets
//! (`metrics_http.rs`, `control_socket.rs`): a network namespace this kit
//! creates, holding `lo` and a veth pair whose `eth0` XDP attaches to (generic mode),
//! the agent started in it with `ip netns exec` (so its bpffs and pins die
//! with it), its log kept in a file, and sockets opened from inside the
//! namespace for the clients. Nothing is configured in the root namespace
//! and no packet leaves the namespace's loopback.
//!
//! Needs root (namespaces, XDP), as `cargo xtask test` runs it; without it
//! the tests fail saying so.

#![allow(dead_code)] // each test file uses its own part of the kit

use std::{
    io::Read as _,
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub const LB: &str = env!("CARGO_BIN_EXE_lb");

pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert!(
        caps & (1 << 21) != 0 && caps & (1 << 12) != 0,
        "this test creates a network namespace and runs `lb run` (XDP) in it: run it as root \
         (cargo xtask test does)"
    );
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A namespace with `lo` and the veth pair `eth0`/`eth1` up, and a private directory; both
/// removed on drop.
pub struct Lab {
    pub ns: String,
    pub dir: PathBuf,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = format!("lbtest-ag{tag}-{id}");
        let dir = std::env::temp_dir().join(format!("lbtest-ag{tag}-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab { ns, dir };
        sh(&["ip", "netns", "add", &lab.ns]);
        sh(&["ip", "-n", &lab.ns, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "-n", &lab.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        sh(&["ip", "-n", &lab.ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &lab.ns, "link", "set", "eth1", "up"]);
        lab
    }

    /// Set a (per-namespace) sysctl in the lab's namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "sysctl",
            "-q",
            "-w",
            &format!("{key}={value}"),
        ]);
    }

    /// Where the configs put the control socket (in a directory the agent
    /// creates).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run").join("lb.sock")
    }

    /// A config: `agent_extra` lines appended to `[agent]`, and one NAT
    /// service with `real_servers` real servers (none of which is ever
    /// sent a packet).
    pub fn config(&self, name: &str, agent_extra: &str, real_servers: usize) -> PathBuf {
        let mut text = format!(
            "[agent]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\n\
             flow_table_size = 4096\ncontrol_socket = \"{}\"\n{agent_extra}\n\n\
             [[virtual_server]]\nname = \"web\"\naddress = \"10.97.0.100\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"nat\"\n",
            self.socket().display()
        );
        for i in 0..real_servers {
            text.push_str(&format!(
                "  [[virtual_server.real_server]]\n  address = \"10.98.{}.{}\"\n",
                i / 200,
                i % 200 + 2
            ));
        }
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `lb run --config config` in the namespace, once it answers
    /// `lb status`. `max_files`: the agent's RLIMIT_NOFILE (soft and hard),
    /// for a host whose file limit is within a client's reach.
    pub fn start(&self, config: &Path, max_files: Option<u64>) -> Agent {
        self.start_with(config, max_files, |_| {})
    }

    /// As [`Self::start`], with `before_ready` called as soon as the agent
    /// process exists (e.g. to watch its socket appear).
    pub fn start_with(
        &self,
        config: &Path,
        max_files: Option<u64>,
        before_ready: impl FnOnce(&Agent),
    ) -> Agent {
        let log = self.dir.join(format!(
            "{}.log",
            config.file_stem().unwrap().to_string_lossy()
        ));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, LB, "run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
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
        let child = cmd.spawn().expect("spawning ip netns exec lb run");
        let mut agent = Agent {
            child,
            log,
            socket: self.socket(),
        };
        before_ready(&agent);
        wait_for("lb status to answer", Duration::from_secs(30), || {
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("lb run exited ({status}):\n{}", agent.log());
            }
            lb_userspace::control::request(&agent.socket, &lb_userspace::control::Request::Status)
                .is_ok_and(|r| r.ok)
        });
        agent
    }

    /// Run `f` on a thread inside the namespace: the sockets it opens
    /// live there (and stay usable from any thread).
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on this (scoped, soon ended) thread only.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running agent, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
    pub socket: PathBuf,
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The agent's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in:\n{status}"))
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// A connection to the Unix socket `path` made with the credentials
/// `uid`, `gid`, `groups` (which the agent reads with SO_PEERCRED and
/// SO_PEERGROUPS): made on a thread of its own that drops to them with the
/// raw system calls, which change that thread only (glibc's wrappers would
/// change every thread of the test).
pub fn connect_as(
    path: &Path,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> std::io::Result<std::os::unix::net::UnixStream> {
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
        std::os::unix::net::UnixStream::connect(&path)
    })
    .join()
    .unwrap()
}

/// `lb ARGS` as uid/gid/groups given to `setpriv` (e.g. `--reuid=65534`),
/// its exit success, stdout and stderr.
pub fn lb_as(setpriv: &[&str], args: &[&str]) -> (bool, String, String) {
    let out = Command::new("setpriv")
        .args(setpriv)
        .arg(LB)
        .args(args)
        .output()
        .expect("running setpriv (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
