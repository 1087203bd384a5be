//! The scale-out rig (issue 13): a client, a router running FRR (bgpd,
//! zebra, `maximum-paths`, L4 multipath hashing), N lb nodes each with its
//! own BIRD 2 peering with the router, and three nginx real servers in DR
//! mode (the VIPs on `lo`), every host in its own namespace.
//!
//! ```text
//!  client 10.0.0.2 ── 10.0.0.1 router 10.2.0.254 ─┐
//!                                                 br0 (switch namespace)
//!  node i: 10.2.0.(1+i), lb (XDP on eth0) + BIRD ─┤
//!  real server j: 10.2.0.(11+j), VIPs on lo ──────┘  default via the router
//! ```
//!
//! The router learns each VIP from every node announcing it and spreads
//! the client's flows over them; a node forwards what it gets straight to
//! a real server (DR), which answers the client through the router. Two
//! services: `web` on [`VIP_WEB`] (HTTP check) and `api` on [`VIP_API`],
//! whose check is an exec check each node can fail on its own
//! ([`Cluster::block_api`]): "every real server down in this node's view".

pub mod node;
pub mod router;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::{unique_prefix, Netns};
use crate::nginx::Nginx;
use node::{Daemon, Node};
use router::Frr;

pub const VIP_WEB: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
pub const VIP_API: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 254);
pub const SEGMENT: &str = "10.2.0.0/24";
pub const REALS: usize = 3;

pub fn node_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 1 + i as u8)
}

pub fn real_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 11 + i as u8)
}

/// The whole rig; dropping it removes every namespace and process.
pub struct Cluster {
    pub bin: PathBuf,
    prefix: String,
    pub client: Netns,
    pub frr: Frr,
    pub router: Netns,
    /// `None` once removed ([`Cluster::remove_node`]).
    pub nodes: Vec<Option<Node>>,
    pub reals: Vec<(Netns, Nginx)>,
    /// Dropped last: the segment everything hangs off.
    switch: Netns,
    /// The nodes' BGP daemon.
    daemon: Daemon,
}

/// Connects `a`'s `a_if` to the switch's bridge through port `port`.
fn plug(switch: &Netns, a: &Netns, a_if: &str, port: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        switch.name(),
    ])?;
    switch.ip(&["link", "set", port, "master", "br0", "up"])?;
    a.ip(&["link", "set", a_if, "up"]).map(drop)
}

impl Cluster {
    /// Builds the rig with `nodes` lb nodes running BIRD, and waits until
    /// the router has a path to both VIPs through every node.
    pub fn new(nodes: usize) -> Result<Cluster> {
        Cluster::with_daemon(nodes, Daemon::Bird)
    }

    /// The same with `daemon` as every node's BGP speaker.
    pub fn with_daemon(nodes: usize, daemon: Daemon) -> Result<Cluster> {
        let bin = crate::agent::lb_bin();
        let prefix = unique_prefix();
        let switch = Netns::new(format!("{prefix}-sw"))?;
        switch.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;

        let router = Netns::new(format!("{prefix}-rt"))?;
        plug(&switch, &router, "eth0", "rt")?;
        router.ip(&["addr", "add", &format!("{ROUTER}/24"), "dev", "eth0"])?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        // Hash flows over the ECMP next hops by their L4 ports too, so
        // the client's connections spread over the nodes.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;

        let client = Netns::new(format!("{prefix}-cl"))?;
        client.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "cl",
            "netns",
            router.name(),
        ])?;
        client.ip(&["link", "set", "eth0", "up"])?;
        router.ip(&["link", "set", "cl", "up"])?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_CLIENT_SIDE}/24"),
            "dev",
            "cl",
        ])?;
        client.ip(&[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_SIDE.to_string(),
        ])?;

        let mut reals = Vec::new();
        for j in 0..REALS {
            let ns = Netns::new(format!("{prefix}-rs{}", j + 1))?;
            plug(&switch, &ns, "eth0", &format!("rs{}", j + 1))?;
            // DR: the VIPs are local but never answered for in ARP.
            for dev in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
            for vip in [VIP_WEB, VIP_API] {
                ns.ip(&["addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
            }
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/24", real_addr(j)),
                "dev",
                "eth0",
            ])?;
            ns.ip(&["route", "add", "default", "via", &ROUTER.to_string()])?;
            let nginx = Nginx::start(&ns, &format!("realserver{}", j + 1))?;
            reals.push((ns, nginx));
        }

        let frr = Frr::start(&router, ROUTER, SEGMENT)?;
        let mut cluster = Cluster {
            bin,
            prefix,
            client,
            frr,
            router,
            nodes: Vec::new(),
            reals,
            switch,
            daemon,
        };
        for _ in 0..nodes {
            cluster.add_node()?;
        }
        let all: Vec<Ipv4Addr> = (0..nodes).map(node_addr).collect();
        for vip in [VIP_WEB, VIP_API] {
            cluster
                .wait_next_hops(vip, &all, Duration::from_secs(30))
                .with_context(|| format!("the router never learnt {vip} from every node"))?;
        }
        Ok(cluster)
    }

    /// Starts one more node (BIRD, then lb); its index.
    pub fn add_node(&mut self) -> Result<usize> {
        let i = self.nodes.len();
        let ns = Netns::new(format!("{}-n{}", self.prefix, i + 1))?;
        plug(&self.switch, &ns, "eth0", &format!("n{}", i + 1))?;
        let addr = node_addr(i);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        // DR needs no forwarding on the balancer (see the README).
        ns.sysctl("net.ipv4.ip_forward", "0")?;
        let mut node = Node::new(format!("node{}", i + 1), ns, addr)?;
        match self.daemon {
            Daemon::Bird => node.start_bird(ROUTER)?,
            Daemon::Frr => node.start_frr(ROUTER)?,
        }
        let config = self.node_config(&node);
        node.start_agent(&self.bin, &config)?;
        self.nodes.push(Some(node));
        Ok(i)
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node removed")
    }

    /// Takes a node away altogether (its namespace, BIRD and lb go).
    pub fn remove_node(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// The same services on every node (same Maglev tables), with the
    /// `api` check failing on a node while its block file exists.
    pub fn node_config(&self, node: &Node) -> String {
        let mut s = format!(
            "[agent]\ninterfaces = [\"eth0\"]\nflow_table_size = 65536\n\
             control_socket = \"{}\"\n",
            node.socket().display()
        );
        let block = node.dir.join("block-api");
        let checks = [
            (
                "web",
                VIP_WEB,
                "kind = \"http\"\n  path = \"/\"".to_string(),
            ),
            (
                "api",
                VIP_API,
                format!(
                    "kind = \"exec\"\n  command = [\"/bin/sh\", \"-c\", \"test ! -e {}\"]",
                    block.display()
                ),
            ),
        ];
        for (name, vip, check) in checks {
            s.push_str(&format!(
                "\n[[virtual_server]]\nname = \"{name}\"\naddress = \"{vip}\"\nport = 80\n\
                 protocol = \"tcp\"\nforwarding = \"dr\"\n\n  [virtual_server.health_check]\n  \
                 {check}\n  interval = \"500ms\"\n  timeout = \"400ms\"\n  rise = 1\n  fall = 1\n"
            ));
            for j in 0..REALS {
                s.push_str(&format!(
                    "\n  [[virtual_server.real_server]]\n  address = \"{}\"\n",
                    real_addr(j)
                ));
            }
        }
        s.push_str("\n[announce]\ndrain_min = \"2s\"\ndrain_quiet = \"1s\"\n");
        s
    }

    /// Makes node `i`'s `api` check fail (`true`) or pass again.
    pub fn block_api(&self, i: usize, blocked: bool) -> Result<()> {
        let path = self.node(i).dir.join("block-api");
        if blocked {
            std::fs::write(&path, "")?;
        } else {
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }

    /// The router's next hops for `vip` now.
    pub fn next_hops(&self, vip: Ipv4Addr) -> Vec<Ipv4Addr> {
        router::next_hops(&self.router, vip)
    }

    /// Waits until the router's next hops for `vip` are exactly `want`;
    /// how long that took.
    pub fn wait_next_hops(
        &self,
        vip: Ipv4Addr,
        want: &[Ipv4Addr],
        limit: Duration,
    ) -> Result<Duration> {
        let mut want = want.to_vec();
        want.sort();
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.next_hops(vip) == want {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the router's next hops for {vip} are {:?} after {limit:?}, not {want:?}\n\
             BGP: {}\n{}",
            self.next_hops(vip),
            self.frr.vtysh("show bgp summary").unwrap_or_default(),
            self.logs()
        )
    }

    /// Every node's lb log and BIRD protocols, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.iter().flatten() {
            out.push_str(&format!(
                "--- {} lb log:\n{}\n--- {} BGP daemon:\n{}\n",
                n.name,
                n.log(),
                n.name,
                n.daemon_state()
            ));
        }
        out
    }
}
