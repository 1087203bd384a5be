//! Two balancer nodes serving one web service through a VRRP address, as
//! `cargo xtask demo --ha` and the `vrrp` benchmark suite run them: node1
//! (priority 150, starts as master) and node2 (100), both forwarding the
//! same service to the same real servers (DR, seed 000's single segment;
//! or NAT, seed 001 doubled with a sync group for the client-side VIP and
//! the real servers' gateway).
//!
//! With [`Kind::Lb`] each node is one `lb run` (VRRP and data plane). With
//! [`Kind::Keepalived`], keepalived runs VRRP and a VRRP-less `lb run`
//! forwards (this kernel has no IPVS), so the two pairs differ only in who
//! runs VRRP. A node fault takes the whole node's software down either
//! way: [`Fault::Kill`] kills keepalived *and* its forwarding agent, as
//! `kill -9` of `lb run` does (inside `ip netns exec` the agent's pinned
//! XDP link dies with it).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::topology::{Layout, GATEWAY, VIP};
use super::{Cluster, Kind, NodeSpec};
use crate::agent::{
    Agent, LbConfig, RealServer, VirtualServer, VrrpInstanceConfig, VrrpSyncGroupConfig,
};
use crate::client::{parse_ab, AbReport};
use crate::netns::Netns;
use crate::process::{wait_until, ChildGuard};
use crate::topology::Forwarding;

/// How a node is taken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGTERM: a priority-0 advert, the addresses removed.
    Stop,
    /// `kill -9`: no advert; the addresses stay on the node, which keeps
    /// answering ARP for them with nothing forwarding behind.
    Kill,
    /// Every link down, then `kill -9`: the node is gone.
    Crash,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::Stop, Fault::Kill, Fault::Crash];

    pub fn label(self) -> &'static str {
        match self {
            Fault::Stop => "clean stop (SIGTERM)",
            Fault::Kill => "kill -9",
            Fault::Crash => "link down (links down + kill -9)",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Fault::Stop => "stop",
            Fault::Kill => "kill",
            Fault::Crash => "linkdown",
        }
    }
}

/// Protocol version and advert interval of every instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub version: u8,
    pub advert: Duration,
}

impl Timers {
    /// keepalived's defaults: VRRPv2, 1 s adverts (with PASS auth).
    pub const V2_1S: Timers = Timers {
        version: 2,
        advert: Duration::from_secs(1),
    };
    /// VRRPv3 with 100 ms adverts.
    pub const V3_100MS: Timers = Timers {
        version: 3,
        advert: Duration::from_millis(100),
    };

    pub fn label(self) -> String {
        format!("v{} {} ms adverts", self.version, self.advert.as_millis())
    }

    /// The RFC's master-down interval for a backup of priority 100:
    /// 3 adverts + skew ((256 - 100) / 256 adverts).
    pub fn master_down(self) -> Duration {
        self.advert * 3 + self.advert.mul_f64(156.0 / 256.0)
    }
}

/// The pair, its network and, for keepalived nodes, the forwarding agents.
pub struct HaPair {
    pub cluster: Cluster,
    pub kind: Kind,
    pub forwarding: Forwarding,
    /// The instance whose state says who is master (the client side's).
    pub instance: &'static str,
    lb: PathBuf,
    dataplanes: Vec<Option<Agent>>,
    dataplane_starts: Vec<u32>,
}

fn instances(forwarding: Forwarding, timers: Timers, priority: u8) -> Vec<VrrpInstanceConfig> {
    let one = |name: &str, iface: &str, vrid: u8, addr: String| VrrpInstanceConfig {
        version: timers.version,
        advert_interval: timers.advert,
        auth_pass: (timers.version == 2).then(|| "1111".to_string()),
        state: if priority == 150 { "master" } else { "backup" }.into(),
        ..VrrpInstanceConfig::new(name, iface, vrid, priority, &[&addr])
    };
    match forwarding {
        Forwarding::Dr => vec![one("VI_1", "eth0", 51, format!("{VIP}/24"))],
        Forwarding::Nat => vec![
            one("VI_CLIENT", "eth0", 51, format!("{VIP}/24")),
            one("VI_SERVERS", "eth1", 52, format!("{GATEWAY}/24")),
        ],
    }
}

impl HaPair {
    /// Builds the network (`reals` nginx real servers) and the two nodes'
    /// configs; starts nothing yet. `lb` forwards on keepalived nodes; lb
    /// nodes run `$LB_BIN` (see [`crate::agent::lb_bin`]), which must be
    /// set to the same binary.
    pub fn new(
        forwarding: Forwarding,
        reals: usize,
        kind: Kind,
        timers: Timers,
        lb: &Path,
    ) -> Result<HaPair> {
        let layout = match forwarding {
            Forwarding::Dr => Layout::Dr { reals },
            Forwarding::Nat => Layout::Nat { reals },
        };
        let spec = |priority| {
            let mut s = NodeSpec::new(kind, instances(forwarding, timers, priority));
            if forwarding == Forwarding::Nat {
                s.sync_groups = vec![VrrpSyncGroupConfig {
                    name: "G1".into(),
                    instances: vec!["VI_CLIENT".into(), "VI_SERVERS".into()],
                    notify: None,
                }];
            }
            s
        };
        let mut cluster = Cluster::new(layout, vec![spec(150), spec(100)])?;
        let service = VirtualServer {
            name: "web".into(),
            address: IpAddr::V4(VIP),
            port: 80,
            protocol: "tcp".into(),
            forwarding,
            real_servers: cluster
                .topo
                .reals
                .iter()
                .map(|h| RealServer {
                    address: IpAddr::V4(h.addr),
                    port: (forwarding == Forwarding::Nat).then_some(80),
                    weight: 1,
                })
                .collect(),
            sorry_server: None,
            health_check: None,
        };
        let interfaces: Vec<String> = match forwarding {
            Forwarding::Dr => vec!["eth0".into()],
            Forwarding::Nat => vec!["eth0".into(), "eth1".into()],
        };
        for node in &mut cluster.nodes {
            node.spec.services = vec![service.clone()];
            node.spec.interfaces = interfaces.clone();
        }
        Ok(HaPair {
            cluster,
            kind,
            forwarding,
            instance: match forwarding {
                Forwarding::Dr => "VI_1",
                Forwarding::Nat => "VI_CLIENT",
            },
            lb: lb.to_path_buf(),
            dataplanes: vec![None, None],
            dataplane_starts: vec![0, 0],
        })
    }

    /// The VRRP addresses: the VIP, and with NAT the real servers' gateway.
    pub fn addresses(&self) -> Vec<IpAddr> {
        match self.forwarding {
            Forwarding::Dr => vec![IpAddr::V4(VIP)],
            Forwarding::Nat => vec![IpAddr::V4(VIP), IpAddr::V4(GATEWAY)],
        }
    }

    pub fn client(&self) -> &Netns {
        &self.cluster.topo.client.ns
    }

    pub fn node_namespaces(&self) -> Vec<String> {
        self.cluster
            .topo
            .nodes
            .iter()
            .map(|h| h.ns.name().to_string())
            .collect()
    }

    fn start_dataplane(&mut self, i: usize) -> Result<()> {
        if self.kind != Kind::Keepalived {
            return Ok(());
        }
        self.dataplane_starts[i] += 1;
        let node = &self.cluster.nodes[i];
        let dir = node
            .dir
            .join(format!("dataplane{}", self.dataplane_starts[i]));
        std::fs::create_dir_all(&dir)?;
        let config = LbConfig {
            control_socket: dir.join("lb.sock"),
            vrrp: Vec::new(),
            vrrp_sync_groups: Vec::new(),
            ..self.cluster.lb_config(i)
        };
        let ns = &self.cluster.topo.nodes[i].ns;
        let agent = Agent::start(&self.lb, ns, &dir, &config)
            .with_context(|| format!("starting the forwarding lb on node{}", i + 1))?;
        self.dataplanes[i] = Some(agent);
        Ok(())
    }

    /// Starts node `i`: the forwarding agent first (keepalived nodes), so
    /// the node forwards before it can become master.
    pub fn start(&mut self, i: usize) -> Result<Instant> {
        self.start_dataplane(i)?;
        self.cluster.start(i)
    }

    /// Starts both nodes and waits until node1 is master with every
    /// address and node2 backup.
    pub fn start_all(&mut self, limit: Duration) -> Result<()> {
        self.start(0)?;
        self.start(1)?;
        self.wait_ready(limit)
    }

    /// Waits until node1 is master and alone holds every address, and
    /// node2 is backup.
    pub fn wait_ready(&self, limit: Duration) -> Result<()> {
        let c = &self.cluster;
        c.wait_state(0, self.instance, "MASTER", limit)?;
        c.wait_state(1, self.instance, "BACKUP", limit)?;
        for a in self.addresses() {
            c.wait_holders(a, &[0], limit)?;
        }
        Ok(())
    }

    /// `None` when the lb nodes run VRRP; otherwise why not (an lb build
    /// whose agent does not run `[[vrrp_instance]]` yet shows no instance
    /// in `lb status`). Call after starting the nodes.
    pub fn lb_vrrp_missing(&self) -> Option<String> {
        if self.kind != Kind::Lb {
            return None;
        }
        let has_vrrp = |s: &serde_json::Value| s["vrrp"].as_array().is_some_and(|v| !v.is_empty());
        let node = &self.cluster.nodes[0];
        // The control socket may answer before the VRRP task has reported.
        wait_until(Duration::from_secs(3), || {
            node.with_agent(|a| a.status_json().is_ok_and(|s| has_vrrp(&s)))
        });
        match node.with_agent(|a| a.status_json()) {
            Ok(s) if has_vrrp(&s) => None,
            Ok(_) => Some(format!(
                "`lb status` on node1 shows no VRRP instance, {} configured",
                self.instance
            )),
            Err(e) => Some(format!("{e:#}")),
        }
    }

    fn links(&self, i: usize, up: bool) -> Result<()> {
        let devs: &[&str] = match self.forwarding {
            Forwarding::Dr => &["eth0"],
            Forwarding::Nat => &["eth0", "eth1"],
        };
        for dev in devs {
            self.cluster.topo.set_link(i, dev, up)?;
        }
        Ok(())
    }

    /// Takes node `i` down; the moment the first signal was sent.
    ///
    /// Both programs of a keepalived node get their signal together (the
    /// forwarder's first), as the one `lb run` of an lb node does. A crash
    /// takes the links down first, then kills: the node never answers
    /// while dead (a kill first would leave a few ms of resets).
    pub fn fault(&mut self, i: usize, fault: Fault) -> Result<Instant> {
        if let (Fault::Stop, Some(dp)) = (fault, &self.dataplanes[i]) {
            // SAFETY: kill(2) on the pid of our own running child; it is
            // reaped by `stop` below.
            unsafe { libc::kill(dp.pid() as i32, libc::SIGTERM) };
        }
        let at = match fault {
            Fault::Stop => self.cluster.stop(i)?,
            Fault::Kill => self.cluster.kill(i)?,
            Fault::Crash => {
                let at = Instant::now();
                self.links(i, false)?;
                self.cluster.kill(i)?;
                at
            }
        };
        if let Some(dp) = self.dataplanes[i].take() {
            match fault {
                Fault::Stop => dp.stop()?,
                Fault::Kill | Fault::Crash => dp.kill(),
            }
        }
        Ok(at)
    }

    /// Brings node `i` back after `fault` (links up first after a crash)
    /// and starts it; the moment it was started.
    pub fn restore(&mut self, i: usize, fault: Fault) -> Result<Instant> {
        if fault == Fault::Crash {
            self.links(i, true)?;
        }
        self.start(i)
    }
}

/// `ab -t SECONDS` running in the background (a new connection per
/// request, `-r`: socket errors count as failed requests and ab goes on).
/// Unlike [`super::traffic::ab_during`] it borrows nothing, so the caller
/// may change the cluster meanwhile.
#[derive(Debug)]
pub struct AbRun {
    process: ChildGuard,
    out: PathBuf,
    pub command: String,
}

impl AbRun {
    pub fn start(
        ns: &Netns,
        url: &str,
        seconds: u32,
        concurrency: u32,
        out: PathBuf,
    ) -> Result<AbRun> {
        let args = [
            "-q".to_string(),
            "-r".into(),
            "-s".into(),
            "10".into(),
            "-t".into(),
            seconds.to_string(),
            "-n".into(),
            "10000000".into(),
            "-c".into(),
            concurrency.to_string(),
            url.into(),
        ];
        let mut cmd = ns.command("ab");
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(out.with_extension("err"))?);
        let process = ChildGuard::spawn(format!("ab {url}"), &mut cmd)?;
        Ok(AbRun {
            process,
            out,
            command: format!("ab {}", args.join(" ")),
        })
    }

    /// Waits up to `limit` for ab to end; its report.
    pub fn finish(mut self, limit: Duration) -> Result<AbReport> {
        if !wait_until(limit, || self.process.try_wait().is_some()) {
            bail!("ab did not end within {limit:?}");
        }
        let text = std::fs::read_to_string(&self.out)?;
        let err = std::fs::read_to_string(self.out.with_extension("err")).unwrap_or_default();
        parse_ab(&text).with_context(|| format!("ab's report:\n{text}{err}"))
    }
}
