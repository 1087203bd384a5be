//! High-availability test rigs: N balancer nodes in one VRRP group, each
//! either an `lb` agent (`[[vrrp_instance]]` in its TOML) or a real
//! keepalived with the same numbers, so tests pair lb+keepalived, lb+lb and
//! keepalived+keepalived on the same network ([`topology`]).
//!
//! [`Cluster`] starts, stops (SIGTERM), kills (`kill -9`), crashes (kill
//! and link down) and restarts nodes, reports each instance's state, who
//! holds an address, and keeps every node's notify and fence calls in a
//! file. [`wire`] times takeovers from the adverts, [`traffic`] measures
//! what a client sees meanwhile.

pub mod keepalived;
pub mod pair;
pub mod timeline;
pub mod topology;
pub mod traffic;
pub mod wire;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::agent::{
    lb_bin, Agent, LbConfig, VirtualServer, VrrpInstanceConfig, VrrpSyncGroupConfig,
};
use crate::nginx::Nginx;
use crate::tempdir::TempDir;
use keepalived::Keepalived;
use topology::{holds, HaTopology, Layout};

/// What runs VRRP on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lb,
    Keepalived,
}

/// One node's configuration.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub kind: Kind,
    pub instances: Vec<VrrpInstanceConfig>,
    pub sync_groups: Vec<VrrpSyncGroupConfig>,
    /// lb only: the virtual servers it balances.
    pub services: Vec<VirtualServer>,
    /// lb only: `[agent] interfaces` (XDP); empty = VRRP only.
    pub interfaces: Vec<String>,
}

impl NodeSpec {
    pub fn new(kind: Kind, instances: Vec<VrrpInstanceConfig>) -> NodeSpec {
        NodeSpec {
            kind,
            instances,
            sync_groups: Vec::new(),
            services: Vec::new(),
            interfaces: Vec::new(),
        }
    }
}

#[derive(Debug)]
enum Process {
    Lb(Agent),
    Keepalived(Keepalived),
}

/// What changes as a node is started and stopped.
#[derive(Debug, Default)]
struct Life {
    process: Option<Process>,
    starts: u32,
    /// Every log file this node's processes wrote, oldest first.
    logs: Vec<PathBuf>,
}

/// A node's processes and files. Behind a lock, so a test can stop and
/// start nodes while another thread drives client traffic through the
/// same [`Cluster`].
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub spec: NodeSpec,
    /// notify.log, fence.log, state files, and one `runN/` per start.
    pub dir: PathBuf,
    life: Mutex<Life>,
}

impl Node {
    fn notify_script(&self) -> PathBuf {
        self.dir.join("notify.sh")
    }

    fn fence_script(&self) -> PathBuf {
        self.dir.join("fence.sh")
    }

    /// The `notify` lines so far: `<epoch> INSTANCE|GROUP <name> <STATE> <prio>`.
    pub fn notify_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("notify.log")).unwrap_or_default()
    }

    /// The `fence` lines so far: `<epoch> INSTANCE <name> <other master>`.
    pub fn fence_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fence.log")).unwrap_or_default()
    }

    fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `f` on the running lb agent; panics on a keepalived or stopped node.
    pub fn with_agent<R>(&self, f: impl FnOnce(&Agent) -> R) -> R {
        match &self.life().process {
            Some(Process::Lb(a)) => f(a),
            _ => panic!("{} runs no lb agent", self.name),
        }
    }

    /// `lb vrrp ARGS...` against this node's agent.
    pub fn vrrp_command(&self, args: &[&str]) -> Result<Output> {
        self.with_agent(|a| a.vrrp_command(args))
    }

    pub fn running(&self) -> bool {
        self.life().process.is_some()
    }
}

/// Writes the hook scripts every node's instances call: `notify` records
/// each transition and keeps `state-<instance>` current (keepalived's state
/// as it reports it), `fence` records each call.
fn write_scripts(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.display();
    let notify = format!(
        "#!/bin/sh\n\
         # notify: $1=INSTANCE|GROUP $2=name $3=STATE $4=priority\n\
         echo \"$(date +%s.%N) $*\" >> {d}/notify.log\n\
         if [ \"$1\" = INSTANCE ]; then\n\
         \techo \"$3\" > {d}/state-$2.tmp && mv {d}/state-$2.tmp {d}/state-$2\n\
         fi\n\
         exit 0\n"
    );
    let fence = format!(
        "#!/bin/sh\n\
         # fence: $1=INSTANCE $2=name $3=the other master's address\n\
         echo \"$(date +%s.%N) $*\" >> {d}/fence.log\n\
         exit 0\n"
    );
    for (name, text) in [("notify.sh", notify), ("fence.sh", fence)] {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The nodes, the real servers' nginx and the network. Fields drop in
/// order: VRRP processes first (cleanly, with SIGTERM), the namespaces last.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub nginx: Vec<Nginx>,
    pub topo: HaTopology,
    pub dir: TempDir,
}

/// Bytes of `/ha.bin` on every real server: at nginx's `/slow/` rate
/// (256 KiB/s) a 3 MiB download takes 12 s, long enough to span a crash
/// (3.6 s), a takeover and the old master's return.
pub const HA_FILE_BYTES: usize = 3 << 20;

impl Cluster {
    /// Builds the network for `layout` with one node per spec, nginx on
    /// every real server (serving `/ha.bin`, the same bytes everywhere),
    /// and the hook scripts; starts no VRRP node yet. Every instance
    /// without a `notify` (and lb ones without a `fence`) gets the
    /// recording scripts.
    pub fn new(layout: Layout, mut specs: Vec<NodeSpec>) -> Result<Cluster> {
        let dir = TempDir::new("vrrp")?;
        let topo = HaTopology::new(layout, specs.len())?;
        let pattern = dir.join("ha.bin");
        traffic::write_pattern(&pattern, HA_FILE_BYTES)?;
        let mut nginx = Vec::new();
        for h in &topo.reals {
            let n = Nginx::start(&h.ns, &h.name)?;
            std::fs::copy(&pattern, n.www().join("ha.bin"))?;
            nginx.push(n);
        }
        let mut nodes = Vec::new();
        for (i, spec) in specs.drain(..).enumerate() {
            let name = format!("node{}", i + 1);
            let node_dir = dir.join(&name);
            std::fs::create_dir_all(&node_dir)?;
            write_scripts(&node_dir)?;
            let mut node = Node {
                name,
                spec,
                dir: node_dir,
                life: Mutex::new(Life::default()),
            };
            let notify = node.notify_script().display().to_string();
            let fence = node.fence_script().display().to_string();
            let kind = node.spec.kind;
            for v in &mut node.spec.instances {
                v.notify.get_or_insert_with(|| notify.clone());
                if kind == Kind::Lb {
                    v.fence.get_or_insert_with(|| fence.clone());
                }
            }
            for g in &mut node.spec.sync_groups {
                g.notify.get_or_insert_with(|| notify.clone());
            }
            nodes.push(node);
        }
        Ok(Cluster {
            nodes,
            nginx,
            topo,
            dir,
        })
    }

    /// The lb config node `i` runs with.
    pub fn lb_config(&self, i: usize) -> LbConfig {
        let node = &self.nodes[i];
        LbConfig {
            interfaces: node.spec.interfaces.clone(),
            xdp_mode: "auto".into(),
            flow_table_size: 65536,
            control_socket: node.dir.join("lb.sock"),
            metrics_listen: None,
            services: node.spec.services.clone(),
            vrrp: node.spec.instances.clone(),
            vrrp_sync_groups: node.spec.sync_groups.clone(),
        }
    }

    /// Starts node `i`'s VRRP process (again, after a stop); returns the
    /// moment it was started, once it runs (lb: answers `lb status`;
    /// keepalived: its VRRP process is up).
    pub fn start(&self, i: usize) -> Result<Instant> {
        let config = self.lb_config(i);
        let node = &self.nodes[i];
        let mut life = node.life();
        if life.process.is_some() {
            bail!("{} is already running", node.name);
        }
        life.starts += 1;
        let run = node.dir.join(format!("run{}", life.starts));
        std::fs::create_dir_all(&run)?;
        for v in &node.spec.instances {
            let _ = std::fs::remove_file(node.dir.join(format!("state-{}", v.name)));
        }
        let ns = &self.topo.nodes[i].ns;
        let started = Instant::now();
        let process = match node.spec.kind {
            Kind::Lb => {
                life.logs.push(run.join("lb.log"));
                let agent = Agent::start(&lb_bin(), ns, &run, &config).with_context(|| {
                    format!("starting lb on {} with\n{}", node.name, config.to_toml())
                })?;
                Process::Lb(agent)
            }
            Kind::Keepalived => {
                life.logs.push(run.join("keepalived.log"));
                let conf =
                    keepalived::render(&node.name, &node.spec.instances, &node.spec.sync_groups);
                Process::Keepalived(Keepalived::start(ns, &run, &conf)?)
            }
        };
        life.process = Some(process);
        Ok(started)
    }

    pub fn start_all(&self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// SIGTERM (a clean stop: priority-0 advert, addresses removed);
    /// returns the moment the signal was sent, once the process exited.
    pub fn stop(&self, i: usize) -> Result<Instant> {
        let process = self.nodes[i]
            .life()
            .process
            .take()
            .context("node not running")?;
        let at = Instant::now();
        match process {
            Process::Lb(agent) => agent
                .stop()
                .with_context(|| format!("stopping lb on node{}", i + 1))?,
            Process::Keepalived(ka) => ka.stop(),
        }
        Ok(at)
    }

    /// `kill -9`: no priority-0 advert, addresses left behind (the node
    /// still answers ARP for them, as after a daemon crash).
    pub fn kill(&self, i: usize) -> Result<Instant> {
        let process = self.nodes[i]
            .life()
            .process
            .take()
            .context("node not running")?;
        let at = Instant::now();
        match process {
            Process::Lb(agent) => agent.kill(),
            Process::Keepalived(ka) => ka.kill(),
        }
        Ok(at)
    }

    /// Node loss: every link down, then `kill -9` (no advert, no ARP
    /// answer); the moment the links went down. In this order because a
    /// killed lb leaves its VIP on a live link without its XDP program for
    /// the milliseconds before the link goes down, and the node's own
    /// kernel then resets every connection to the VIP (seen: hundreds of
    /// failed ab requests, all in that window).
    pub fn crash(&self, i: usize) -> Result<Instant> {
        let at = Instant::now();
        for dev in self.devices() {
            self.topo.set_link(i, dev, false)?;
        }
        self.kill(i)?;
        Ok(at)
    }

    /// Brings a crashed node's links up and starts it again.
    pub fn recover(&self, i: usize) -> Result<Instant> {
        for dev in self.devices() {
            self.topo.set_link(i, dev, true)?;
        }
        self.start(i)
    }

    fn devices(&self) -> &'static [&'static str] {
        match self.topo.layout {
            Layout::Nat { .. } => &["eth0", "eth1"],
            _ => &["eth0"],
        }
    }

    /// The state of `instance` on node `i` as its daemon reports it:
    /// INIT, BACKUP, MASTER, FAULT, STOP; DOWN when nothing runs.
    /// keepalived's comes from its notify calls, lb's from `lb status`.
    pub fn state(&self, i: usize, instance: &str) -> String {
        let node = &self.nodes[i];
        match &node.life().process {
            None => "DOWN".into(),
            Some(Process::Keepalived(_)) => {
                std::fs::read_to_string(node.dir.join(format!("state-{instance}")))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "INIT".into())
            }
            Some(Process::Lb(agent)) => match vrrp_instance(agent, instance) {
                Ok(v) => match v["state"].as_str().unwrap_or("?") {
                    "stopped" => "STOP".into(),
                    s => s.to_uppercase(),
                },
                Err(e) => format!("UNKNOWN ({e:#})"),
            },
        }
    }

    /// Waits until `instance` on node `i` is in `want`; how long it took.
    pub fn wait_state(
        &self,
        i: usize,
        instance: &str,
        want: &str,
        limit: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let now = self.state(i, instance);
            if now == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "node{} {instance} is {now}, not {want}, after {limit:?}\n{}",
                    i + 1,
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The nodes (0-based) that have `addr` on an interface.
    pub fn holders(&self, addr: IpAddr) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| holds(&self.topo.nodes[i].ns, addr).unwrap_or(false))
            .collect()
    }

    /// Waits until the nodes holding `addr` are exactly `want`; how long
    /// it took.
    pub fn wait_holders(&self, addr: IpAddr, want: &[usize], limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let now = self.holders(addr);
            if now == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "{addr} is held by nodes {now:?} (0-based), not {want:?}, after {limit:?}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// When node `i`'s `notify` hook was first called with `instance`
    /// entering `state` after `since` (both daemons call it within a few
    /// ms of the transition): how long after `since`, if it was.
    pub fn notified(
        &self,
        i: usize,
        instance: &str,
        state: &str,
        since: Instant,
    ) -> Option<Duration> {
        let since_wall = SystemTime::now().checked_sub(since.elapsed())?;
        let since_epoch = since_wall.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        let wanted = format!("INSTANCE {instance} {state} ");
        self.nodes[i].notify_log().lines().find_map(|l| {
            let (at, rest) = l.split_once(' ')?;
            let at: f64 = at.parse().ok()?;
            (at > since_epoch && rest.starts_with(&wanted))
                .then(|| Duration::from_secs_f64(at - since_epoch))
        })
    }

    /// From node `i`'s start-up notify (`instance` entering BACKUP after
    /// `since`) to its first MASTER notify: the master-down wait as the
    /// daemon ran it, without the process's own start-up (exec, config
    /// parse: up to half a second on a loaded CI machine, none of it VRRP).
    /// Waits up to 2 s for both calls: `lb status` can show MASTER a few
    /// ms before the notify script has run.
    pub fn backup_to_master(&self, i: usize, instance: &str, since: Instant) -> Option<Duration> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let backup = self.notified(i, instance, "BACKUP", since);
            let master = self.notified(i, instance, "MASTER", since);
            if let (Some(backup), Some(master)) = (backup, master) {
                return master.checked_sub(backup);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until node `i` holds `addr` (whoever else does); how long it
    /// took.
    pub fn wait_held_by(&self, i: usize, addr: IpAddr, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if holds(&self.topo.nodes[i].ns, addr).unwrap_or(false) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "node{} does not hold {addr} after {limit:?} (held by {:?}, 0-based)\n{}",
                    i + 1,
                    self.holders(addr),
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `i`'s advert sources (its addresses on `eth0`).
    pub fn sources(&self, i: usize) -> Vec<IpAddr> {
        self.topo.node_sources(i).unwrap_or_default()
    }

    /// `lb status --json`'s `vrrp[]` entry for `instance` on node `i`.
    pub fn lb_vrrp(&self, i: usize, instance: &str) -> Result<serde_json::Value> {
        self.nodes[i].with_agent(|a| vrrp_instance(a, instance))
    }

    /// Every node's state, notify and fence calls, and the end of each of
    /// its logs: what a failing assertion prints.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for node in &self.nodes {
            s += &format!(
                "--- {} ({:?}, {})\nnotify:\n{}fence:\n{}",
                node.name,
                node.spec.kind,
                if node.running() {
                    "running"
                } else {
                    "not running"
                },
                node.notify_log(),
                node.fence_log()
            );
            for log in &node.life().logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                s += &format!(
                    "{} (last {} lines):\n{}\n",
                    log.display(),
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
        s
    }
}

fn vrrp_instance(agent: &Agent, instance: &str) -> Result<serde_json::Value> {
    let status = agent.status_json()?;
    status["vrrp"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == instance)
        .cloned()
        .with_context(|| format!("no VRRP instance {instance} in lb status: {status}"))
}
