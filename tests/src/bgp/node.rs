//! One lb node of the scale-out cluster: its namespace, its BIRD 2
//! (started by hand: `bird -c conf -s sock -P pid`) peering with the
//! router and exporting the routes lb keeps in table 200 with protocol
//! 252, and its `lb run`.
//!
//! The agent runs under a small `sh` that stays behind when `lb run` is
//! killed: `ip netns exec` gives its command a private /sys, so the bpffs
//! the agent pins its XDP links on lives as long as some process of that
//! mount namespace does. With the shell holding it, `kill -9` of the agent
//! leaves XDP attached and forwarding, as it does on a real host.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::router::{
    BFD_INTERVAL_MS, BFD_MULTIPLIER, HOLD_SECS, KEEPALIVE_SECS, NODE_AS, ROUTER_AS,
};
use crate::netns::Netns;
use crate::process::{wait_until, ChildGuard};
use crate::tempdir::TempDir;

/// The routing table and protocol number the nodes' lb uses (the
/// defaults of `[announce]`), which BIRD imports.
pub const ANNOUNCE_TABLE: u32 = 200;
pub const ANNOUNCE_PROTOCOL: u8 = 252;

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub dir: TempDir,
    /// The `sh` holding `lb run` (and its mount namespace).
    agent: Option<ChildGuard>,
    /// FRR, when it is the node's BGP daemon instead of BIRD.
    frr: Option<super::router::Frr>,
}

/// Which BGP daemon a node runs next to lb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Bird,
    Frr,
}

impl Node {
    pub fn new(name: String, ns: Netns, addr: Ipv4Addr) -> Result<Node> {
        let dir = TempDir::new(&name)?;
        Ok(Node {
            name,
            ns,
            addr,
            dir,
            agent: None,
            frr: None,
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("lb.sock")
    }

    fn bird_socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// Writes bird.conf and starts BIRD in the node's namespace.
    pub fn start_bird(&self, router: Ipv4Addr) -> Result<()> {
        if Command::new("bird").arg("--version").output().is_err() {
            bail!(
                "bird is missing: install BIRD 2 (`apt-get install bird2`, or `cargo xtask setup`)"
            );
        }
        let conf = self.dir.join("bird.conf");
        std::fs::write(
            &conf,
            bird_conf(self.addr, router, &self.dir.join("bird.log")),
        )?;
        let mut cmd = self.ns.command("bird");
        cmd.arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(self.bird_socket())
            .arg("-P")
            .arg(self.dir.join("bird.pid"));
        crate::netns::run(&mut cmd).with_context(|| format!("starting BIRD on {}", self.name))?;
        Ok(())
    }

    /// Starts FRR (zebra, bfdd, bgpd) in the node's namespace instead of
    /// BIRD.
    pub fn start_frr(&mut self, router: Ipv4Addr) -> Result<()> {
        self.frr = Some(super::router::Frr::start_node(&self.ns, self.addr, router)?);
        Ok(())
    }

    /// The BGP daemon's view, for failure messages.
    pub fn daemon_state(&self) -> String {
        match &self.frr {
            Some(frr) => frr.vtysh("show bgp summary").unwrap_or_default(),
            None => self.birdc(&["show", "protocols"]).unwrap_or_default(),
        }
    }

    /// `birdc -s SOCK ARGS...`
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        crate::netns::run(
            Command::new("birdc")
                .arg("-s")
                .arg(self.bird_socket())
                .args(args),
        )
    }

    /// Starts `lb run` with `config` (TOML text) and waits until it answers.
    pub fn start_agent(&mut self, bin: &Path, config: &str) -> Result<()> {
        let config_path = self.dir.join("lb.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(self.dir.join("lb.log"))?;
        let pid_file = self.dir.join("lb.pid");
        let _ = std::fs::remove_file(&pid_file);
        let mut cmd = self.ns.command("sh");
        cmd.args([
            "-c",
            "\"$0\" run --config \"$1\" & echo $! > \"$2\"; wait; exec sleep 100000",
        ])
        .arg(bin)
        .arg(&config_path)
        .arg(&pid_file)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        self.agent = Some(ChildGuard::spawn(
            format!("lb run on {}", self.name),
            &mut cmd,
        )?);
        if !wait_until(Duration::from_secs(20), || self.status_json().is_ok()) {
            bail!(
                "lb on {} does not answer 20 s after start:\n{}",
                self.name,
                self.log()
            );
        }
        Ok(())
    }

    fn agent_pid(&self) -> Result<i32> {
        let text = std::fs::read_to_string(self.dir.join("lb.pid"))?;
        text.trim().parse().context("lb.pid")
    }

    /// `kill -9` of `lb run` (its shell stays, holding the pins).
    pub fn kill_agent(&self) -> Result<()> {
        let pid = self.agent_pid()?;
        // SAFETY: kill(2) on the agent this harness started.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGTERM to `lb run`, waiting until it is gone.
    pub fn stop_agent(&self) -> Result<()> {
        let pid = self.agent_pid()?;
        // SAFETY: kill(2) on the agent this harness started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        // SAFETY: signal 0 only checks that the process exists.
        if !wait_until(
            Duration::from_secs(10),
            || unsafe { libc::kill(pid, 0) } != 0,
        ) {
            bail!("lb on {} still runs 10 s after SIGTERM", self.name);
        }
        Ok(())
    }

    /// `lb unload --config lb.toml` inside the node's namespace (no agent
    /// running): its output, whatever the exit status.
    pub fn unload(&self, bin: &Path) -> Result<Output> {
        self.ns
            .command(bin)
            .args(["unload", "--config"])
            .arg(self.dir.join("lb.toml"))
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
            .context("running lb unload")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lb.log")).unwrap_or_default()
    }

    /// `lb ARGS... --socket SOCK`, whatever its exit status.
    pub fn lb(&self, bin: &Path, args: &[&str]) -> Result<Output> {
        Command::new(bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
            .context("running lb")
    }

    /// `lb status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value> {
        let out = Command::new(crate::agent::lb_bin())
            .args(["status", "--json", "--socket"])
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("lb status: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// New connections this node scheduled, summed over its services.
    pub fn conns(&self) -> Result<u64> {
        let s = self.status_json()?;
        Ok(s["services"]
            .as_array()
            .context("no services in lb status")?
            .iter()
            .filter_map(|svc| svc["stats"]["conns"].as_u64())
            .sum())
    }

    /// Whether `lb status` says `vip` is announced.
    pub fn announced(&self, vip: Ipv4Addr) -> Result<bool> {
        let s = self.status_json()?;
        let vips = s["announce"]["vips"]
            .as_array()
            .context("no announce.vips in lb status")?;
        Ok(vips
            .iter()
            .any(|v| v["address"] == vip.to_string() && v["announced"] == true))
    }

    /// The routes lb keeps in its table, as `ip route show table 200`.
    pub fn announce_routes(&self) -> Result<String> {
        self.ns.ip(&[
            "route",
            "show",
            "table",
            &ANNOUNCE_TABLE.to_string(),
            "proto",
            &ANNOUNCE_PROTOCOL.to_string(),
        ])
    }
}

fn bird_conf(me: Ipv4Addr, router: Ipv4Addr, log: &Path) -> String {
    format!(
        "router id {me};\n\
         log \"{log}\" all;\n\
         protocol device {{ scan time 1; }}\n\
         protocol bfd {{\n\
           interface \"eth0\" {{ min rx interval {BFD_INTERVAL_MS} ms; \
         min tx interval {BFD_INTERVAL_MS} ms; multiplier {BFD_MULTIPLIER}; }};\n\
         }}\n\
         # lb's announcements: host routes in table {ANNOUNCE_TABLE}, protocol {ANNOUNCE_PROTOCOL}.\n\
         protocol kernel lb_vips {{\n\
           kernel table {ANNOUNCE_TABLE};\n\
           learn;\n\
           scan time 1;\n\
           ipv4 {{ import where krt_source = {ANNOUNCE_PROTOCOL}; export none; }};\n\
         }}\n\
         protocol bgp uplink {{\n\
           local {me} as {NODE_AS};\n\
           neighbor {router} as {ROUTER_AS};\n\
           hold time {HOLD_SECS};\n\
           keepalive time {KEEPALIVE_SECS};\n\
           connect retry time 1;\n\
           bfd on;\n\
           ipv4 {{ import none; export where proto = \"lb_vips\"; next hop self; }};\n\
         }}\n",
        log = log.display()
    )
}
