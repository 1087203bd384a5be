//! The network of the VRRP tests: N balancer nodes on one bridge with a
//! client, and optionally real servers.
//!
//! ```text
//!  client 192.168.253.1   node1 .2   node2 .3   ...   (DR: realserver1 .121 ...)
//!  fd00:253::1            ::2        ::3
//!        \                  |          |             /
//!         switch: br0 (STP off, multicast snooping off: adverts always flooded)
//!
//!  NAT only: node1 eth1 172.16.14.2, node2 .3, ... on br1 with realserver1
//!  172.16.14.121 ..., whose gateway 172.16.14.120 is a VRRP address.
//! ```
//!
//! The VRRP addresses (192.168.253.120, fd00:253::120, 172.16.14.120) are
//! put on no host: the VRRP instances of the nodes add them. Everything is
//! made with the harness's own namespace helpers (`crate::netns`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use crate::netns::{unique_prefix, veth, Netns};
use crate::topology::Host;
use crate::xdp_pass;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 253, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 1);
/// The client-side virtual address (seed 001's VIP).
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 253, 120);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 0x120);
/// NAT: the real servers' gateway, a VRRP address on the server side.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 16, 14, 120);

/// Which real servers hang off the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Client and nodes only (VRRP interop and timing).
    Plain,
    /// Direct routing: real servers on the client's segment with the VIP on
    /// `lo` (arp_ignore=1, arp_announce=2), as seed 000.
    Dr { reals: usize },
    /// NAT: real servers on a second bridge behind every node's `eth1`,
    /// their gateway [`GATEWAY`] a VRRP address, as seed 001 doubled.
    Nat { reals: usize },
}

impl Layout {
    fn reals(self) -> usize {
        match self {
            Layout::Plain => 0,
            Layout::Dr { reals } | Layout::Nat { reals } => reals,
        }
    }
}

/// Node `i`'s (0-based) address on the client segment.
pub fn node_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 253, 2 + i as u8)
}

pub fn node_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 2 + i as u16)
}

/// NAT: node `i`'s own address on the server segment.
pub fn node_server_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, 14, 2 + i as u8)
}

/// Real server `i`'s (0-based) address in `layout`.
pub fn real_addr(layout: Layout, i: usize) -> Ipv4Addr {
    match layout {
        Layout::Nat { .. } => Ipv4Addr::new(172, 16, 14, 121 + i as u8),
        _ => Ipv4Addr::new(192, 168, 253, 121 + i as u8),
    }
}

/// The whole network; dropping it removes every namespace it made.
#[derive(Debug)]
pub struct HaTopology {
    pub layout: Layout,
    pub client: Host,
    /// The balancer nodes, `node1` .. `nodeN`: `eth0` on the client
    /// segment (and `eth1` on the server segment with NAT).
    pub nodes: Vec<Host>,
    pub reals: Vec<Host>,
    /// XDP_PASS on the bridge ports facing the nodes (see `xdp_pass`: a
    /// veth end receiving XDP_TX frames needs an XDP program of its own).
    _napi: Vec<OwnedFd>,
    /// Holds `br0` (client segment) and `br1` (server segment).
    pub switch: Netns,
}

/// Settings every end host gets before its links come up: IPv6 addresses
/// usable at once (no DAD), and kept when a link goes down (a crash is
/// simulated with `ip link set eth0 down`).
fn quiet_ipv6(ns: &Netns) -> Result<()> {
    for dev in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{dev}.accept_dad"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{dev}.keep_addr_on_down"), "1")?;
    }
    Ok(())
}

fn bridge(switch: &Netns, name: &str) -> Result<()> {
    switch.ip(&[
        "link",
        "add",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
        "mcast_snooping",
        "0",
    ])?;
    switch.ip(&["link", "set", name, "up"]).map(drop)
}

/// `ns:eth` wired to a new port `port` of bridge `br` in `switch`.
fn plug(switch: &Netns, br: &str, ns: &Netns, eth: &str, port: &str) -> Result<()> {
    veth(ns, eth, switch, port)?;
    switch.ip(&["link", "set", port, "master", br]).map(drop)
}

impl HaTopology {
    pub fn new(layout: Layout, nodes: usize) -> Result<HaTopology> {
        let p = unique_prefix();
        let switch = Netns::new(format!("{p}-sw"))?;
        switch.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        bridge(&switch, "br0")?;
        if matches!(layout, Layout::Nat { .. }) {
            bridge(&switch, "br1")?;
        }

        let client = Netns::new(format!("{p}-client"))?;
        quiet_ipv6(&client)?;
        plug(&switch, "br0", &client, "eth0", "cli")?;
        client.ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"])?;
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;

        let mut hosts = Vec::new();
        let mut napi = Vec::new();
        for i in 0..nodes {
            let ns = Netns::new(format!("{p}-node{}", i + 1))?;
            quiet_ipv6(&ns)?;
            // lb's XDP program asks the kernel's FIB for next hops, which
            // answers only on forwarding interfaces (NAT and DR alike).
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            let port = format!("n{}", i + 1);
            plug(&switch, "br0", &ns, "eth0", &port)?;
            napi.push(xdp_pass::attach(&switch, &port)?);
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/24", node_addr(i)),
                "dev",
                "eth0",
            ])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/64", node_addr6(i)),
                "dev",
                "eth0",
                "nodad",
            ])?;
            if matches!(layout, Layout::Nat { .. }) {
                let port = format!("s{}", i + 1);
                plug(&switch, "br1", &ns, "eth1", &port)?;
                napi.push(xdp_pass::attach(&switch, &port)?);
                ns.ip(&[
                    "addr",
                    "add",
                    &format!("{}/24", node_server_addr(i)),
                    "dev",
                    "eth1",
                ])?;
                // A reply whose client is not resolved yet is handed to the
                // kernel already rewritten (source = VIP, a local address).
                ns.sysctl("net.ipv4.conf.eth1.accept_local", "1")?;
                ns.sysctl("net.ipv4.conf.all.accept_local", "1")?;
            }
            hosts.push(Host {
                name: format!("node{}", i + 1),
                ns,
                addr: node_addr(i),
                addr6: Some(node_addr6(i)),
            });
        }

        let reals = (0..layout.reals())
            .map(|i| real_server(&p, &switch, layout, i))
            .collect::<Result<Vec<_>>>()?;

        Ok(HaTopology {
            layout,
            client: Host {
                name: "client".into(),
                ns: client,
                addr: CLIENT,
                addr6: Some(CLIENT6),
            },
            nodes: hosts,
            reals,
            _napi: napi,
            switch,
        })
    }

    /// Every address node `i` has on `eth0` (IPv4, IPv6 global and
    /// link-local): the sources its adverts may carry.
    pub fn node_sources(&self, i: usize) -> Result<Vec<IpAddr>> {
        let ns = &self.nodes[i].ns;
        Ok(addresses(ns)?
            .into_iter()
            .filter(|(dev, _)| dev == "eth0")
            .map(|(_, a)| a)
            .collect())
    }

    /// `ip link set DEV up|down` in node `i` (a cable pulled / plugged).
    pub fn set_link(&self, i: usize, dev: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.nodes[i].ns.ip(&["link", "set", dev, state]).map(drop)
    }

    /// Makes node `i` deaf to VRRP (an nftables input rule dropping
    /// protocol 112) or hearing again. Its own adverts still go out and
    /// the client still reaches it: a partition between the balancers as
    /// a broken link or filter makes, healed one side at a time if the
    /// test wants a known order.
    pub fn deafen(&self, i: usize, deaf: bool) -> Result<()> {
        let ns = &self.nodes[i].ns;
        let rules = if deaf {
            "table inet lbtest_deaf {\n\
             \tchain input {\n\
             \t\ttype filter hook input priority 0; policy accept;\n\
             \t\tmeta l4proto 112 drop\n\
             \t}\n\
             }\n"
        } else {
            "delete table inet lbtest_deaf\n"
        };
        let path = std::env::temp_dir().join(format!("{}-nft", ns.name()));
        std::fs::write(&path, rules)?;
        let out = ns.exec(&["nft", "-f", &path.display().to_string()]);
        let _ = std::fs::remove_file(&path);
        out.with_context(|| format!("nft in {}", ns.name()))
            .map(drop)
    }
}

fn real_server(p: &str, switch: &Netns, layout: Layout, i: usize) -> Result<Host> {
    let ns = Netns::new(format!("{p}-rs{}", i + 1))?;
    let addr = real_addr(layout, i);
    let port = format!("rs{}", i + 1);
    match layout {
        Layout::Nat { .. } => {
            plug(switch, "br1", &ns, "eth0", &port)?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ns.ip(&["route", "add", "default", "via", &GATEWAY.to_string()])?;
        }
        _ => {
            plug(switch, "br0", &ns, "eth0", &port)?;
            // The VIP is local (the server accepts packets to it) but never
            // announced (the client's ARP finds the VRRP master).
            for dev in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        }
    }
    Ok(Host {
        name: format!("realserver{}", i + 1),
        ns,
        addr,
        addr6: None,
    })
}

/// `(device, address)` for every address in `ns`, from `ip -j addr`.
pub fn addresses(ns: &Netns) -> Result<Vec<(String, IpAddr)>> {
    let out = ns.ip(&["-j", "addr", "show"])?;
    let links: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("ip -j addr printed {out}"))?;
    let mut found = Vec::new();
    for link in links.as_array().into_iter().flatten() {
        let dev = link["ifname"].as_str().unwrap_or_default();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let Some(addr) = a["local"].as_str().and_then(|s| s.parse().ok()) {
                found.push((dev.to_string(), addr));
            }
        }
    }
    Ok(found)
}

/// Whether `ns` has `addr` on any interface but `lo`.
pub fn holds(ns: &Netns, addr: IpAddr) -> Result<bool> {
    Ok(addresses(ns)?
        .iter()
        .any(|(dev, a)| *a == addr && dev != "lo"))
}
