//! The two layouts of the seeds, built from namespaces:
//!
//! - NAT (seed 001): `client` (192.168.253.1/24, gateway .254) is wired to
//!   the balancer's `eth0` (192.168.253.254 + VIP 192.168.253.120); the
//!   balancer's `eth1` (172.16.14.120/24) sits on a Linux bridge in a
//!   `switch` namespace with the real servers 172.16.14.121.. (gateway .120).
//!   IPv6 runs alongside: fd00:253::/64 on the client side (VIP
//!   fd00:253::120), fd00:14::/64 on the server side.
//! - DR (seed 000): one bridge with the client (192.168.253.1), the balancer
//!   (`eth0` 192.168.253.254 + VIP 192.168.253.120) and the real servers
//!   192.168.253.121.., which hold the VIP on `lo` with arp_ignore=1 /
//!   arp_announce=2 and answer the client directly.
//!
//! Without `lb` the balancer is a plain router (NAT) or a bystander (DR),
//! so the client reaches each real server directly: the baseline of the
//! benchmarks and the check that the harness itself works.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::os::fd::OwnedFd;

use anyhow::Result;

use crate::netns::{unique_prefix, veth, veth_with, Netns, VethOptions};
use crate::xdp_pass;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 253, 1);
pub const BALANCER: Ipv4Addr = Ipv4Addr::new(192, 168, 253, 254);
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 253, 120);
/// The balancer's server-side address in NAT: the real servers' gateway.
pub const SERVER_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 16, 14, 120);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 0x1);
pub const BALANCER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 0x254);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x253, 0, 0, 0, 0, 0, 0x120);
pub const SERVER_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x14, 0, 0, 0, 0, 0, 0x120);

/// How the veth pairs are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Veths {
    /// As the harness has always made them: transmit checksum offload off,
    /// GRO on (`netns::veth`), and an XDP_PASS program on the peers of the
    /// balancer's interfaces (`xdp_pass`), so veths behave like a wire.
    Tuned,
    /// As `ip link add ... type veth` makes them: what a user trying lb in
    /// namespaces or containers has.
    Default,
}

impl Veths {
    fn xdp_mode(self) -> &'static str {
        match self {
            Veths::Tuned => "native",
            Veths::Default => "auto",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    Nat,
    Dr,
}

impl Forwarding {
    /// The name the config file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Nat => "nat",
            Forwarding::Dr => "dr",
        }
    }
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Forwarding {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "nat" => Ok(Forwarding::Nat),
            "dr" => Ok(Forwarding::Dr),
            _ => anyhow::bail!("unknown forwarding mode {s:?} (nat | dr)"),
        }
    }
}

/// One host: its namespace and addresses.
#[derive(Debug)]
pub struct Host {
    /// What the host calls itself (`realserver1`, `client`, `balancer`).
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub addr6: Option<Ipv6Addr>,
}

/// A whole test network; dropping it removes every namespace (and so every
/// veth, bridge and process) it made.
#[derive(Debug)]
pub struct Topology {
    pub forwarding: Forwarding,
    pub client: Host,
    /// The balancer; `addr` is its own client-side address (not the VIP).
    pub balancer: Host,
    pub reals: Vec<Host>,
    pub vip: Ipv4Addr,
    /// NAT only: the IPv6 VIP.
    pub vip6: Option<Ipv6Addr>,
    /// The balancer's interfaces for `[agent] interfaces`, client side first.
    pub interfaces: Vec<String>,
    /// The `xdp_mode` the agent gets: "native" on tuned veths (made to
    /// behave like NICs, so the tests exercise native XDP as a NIC runs
    /// it; `auto` would pick generic on a veth), "auto" on default ones.
    pub xdp_mode: &'static str,
    /// Kept for its `Drop`: the segment the real servers hang off.
    pub switch: Netns,
    /// XDP_PASS links on the peers of the balancer's interfaces (see
    /// `xdp_pass`); detached when dropped.
    _napi: Vec<OwnedFd>,
}

fn real_addr(forwarding: Forwarding, i: usize) -> Ipv4Addr {
    let last = 121 + i as u8;
    match forwarding {
        Forwarding::Nat => Ipv4Addr::new(172, 16, 14, last),
        Forwarding::Dr => Ipv4Addr::new(192, 168, 253, last),
    }
}

fn real_addr6(i: usize) -> Ipv6Addr {
    // fd00:14::121, ::122, ... read like their IPv4 twins.
    let last = u16::from_str_radix(&format!("{}", 121 + i), 16).unwrap_or(0x121);
    Ipv6Addr::new(0xfd00, 0x14, 0, 0, 0, 0, 0, last)
}

/// Adds an IPv6 address without duplicate address detection, so it is
/// usable at once instead of after a second of DAD.
fn addr6(ns: &Netns, dev: &str, addr: Ipv6Addr) -> Result<()> {
    ns.ip(&["addr", "add", &format!("{addr}/64"), "dev", dev, "nodad"])
        .map(drop)
}

/// A veth pair, tuned (`netns::veth`) or as `ip` makes it.
fn make_veth(veths: Veths, a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    match veths {
        Veths::Tuned => veth(a, a_if, b, b_if),
        Veths::Default => veth_with(a, a_if, b, b_if, VethOptions::PLAIN),
    }
}

fn addr4(ns: &Netns, dev: &str, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    ns.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", dev])
        .map(drop)
}

impl Topology {
    pub fn new(forwarding: Forwarding, reals: usize) -> Result<Topology> {
        match forwarding {
            Forwarding::Nat => Topology::nat(reals),
            Forwarding::Dr => Topology::dr(reals),
        }
    }

    /// Seed 001's LVS-NAT layout with `reals` real servers.
    pub fn nat(reals: usize) -> Result<Topology> {
        Topology::nat_with(reals, Veths::Tuned)
    }

    /// Seed 001's LVS-NAT layout with veths made as `veths` says.
    pub fn nat_with(reals: usize, veths: Veths) -> Result<Topology> {
        let veth =
            |a: &Netns, a_if: &str, b: &Netns, b_if: &str| make_veth(veths, a, a_if, b, b_if);
        let p = unique_prefix();
        let client = Netns::new(format!("{p}-client"))?;
        let balancer = Netns::new(format!("{p}-lb"))?;
        let switch = Netns::new(format!("{p}-switch"))?;
        switch.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;

        veth(&client, "eth0", &balancer, "eth0")?;
        veth(&balancer, "eth1", &switch, "lb")?;
        switch.ip(&["link", "set", "lb", "master", "br0"])?;

        addr4(&client, "eth0", CLIENT, 24)?;
        addr6(&client, "eth0", CLIENT6)?;
        client.ip(&["route", "add", "default", "via", &BALANCER.to_string()])?;
        client.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &BALANCER6.to_string(),
        ])?;

        addr4(&balancer, "eth0", BALANCER, 24)?;
        addr4(&balancer, "eth0", VIP, 24)?;
        addr6(&balancer, "eth0", BALANCER6)?;
        addr6(&balancer, "eth0", VIP6)?;
        addr4(&balancer, "eth1", SERVER_GATEWAY, 24)?;
        addr6(&balancer, "eth1", SERVER_GATEWAY6)?;
        balancer.sysctl("net.ipv4.ip_forward", "1")?;
        balancer.sysctl("net.ipv6.conf.all.forwarding", "1")?;

        let mut hosts = Vec::new();
        for i in 0..reals {
            let name = format!("realserver{}", i + 1);
            let ns = Netns::new(format!("{p}-rs{}", i + 1))?;
            let port = format!("rs{}", i + 1);
            veth(&ns, "eth0", &switch, &port)?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
            let addr = real_addr(Forwarding::Nat, i);
            let a6 = real_addr6(i);
            addr4(&ns, "eth0", addr, 24)?;
            addr6(&ns, "eth0", a6)?;
            ns.ip(&[
                "route",
                "add",
                "default",
                "via",
                &SERVER_GATEWAY.to_string(),
            ])?;
            ns.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &SERVER_GATEWAY6.to_string(),
            ])?;
            hosts.push(Host {
                name,
                ns,
                addr,
                addr6: Some(a6),
            });
        }

        let napi = match veths {
            Veths::Tuned => vec![
                xdp_pass::attach(&client, "eth0")?,
                xdp_pass::attach(&switch, "lb")?,
            ],
            Veths::Default => Vec::new(),
        };
        Ok(Topology {
            forwarding: Forwarding::Nat,
            client: Host {
                name: "client".into(),
                ns: client,
                addr: CLIENT,
                addr6: Some(CLIENT6),
            },
            balancer: Host {
                name: "balancer".into(),
                ns: balancer,
                addr: BALANCER,
                addr6: Some(BALANCER6),
            },
            reals: hosts,
            vip: VIP,
            vip6: Some(VIP6),
            interfaces: vec!["eth0".into(), "eth1".into()],
            xdp_mode: veths.xdp_mode(),
            _napi: napi,
            switch,
        })
    }

    /// Seed 000's LVS-DR layout (one segment) with `reals` real servers.
    pub fn dr(reals: usize) -> Result<Topology> {
        Topology::dr_with(reals, Veths::Tuned)
    }

    /// Seed 000's LVS-DR layout with veths made as `veths` says.
    pub fn dr_with(reals: usize, veths: Veths) -> Result<Topology> {
        let veth =
            |a: &Netns, a_if: &str, b: &Netns, b_if: &str| make_veth(veths, a, a_if, b, b_if);
        let p = unique_prefix();
        let switch = Netns::new(format!("{p}-switch"))?;
        switch.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let attach = |ns: &Netns, port: &str| -> Result<()> {
            veth(ns, "eth0", &switch, port)?;
            switch.ip(&["link", "set", port, "master", "br0"]).map(drop)
        };

        let client = Netns::new(format!("{p}-client"))?;
        attach(&client, "client")?;
        addr4(&client, "eth0", CLIENT, 24)?;

        let balancer = Netns::new(format!("{p}-lb"))?;
        attach(&balancer, "lb")?;
        addr4(&balancer, "eth0", BALANCER, 24)?;
        addr4(&balancer, "eth0", VIP, 24)?;
        // Forwarding stays off, as seed 000 leaves it (IPVS DR does not
        // need it, and neither does lb's: the kernel's FIB refuses to
        // answer then, and the program takes the real server's MAC from
        // the agent's copy of the neighbour table). Set explicitly so a
        // host default cannot turn it on behind the test's back.
        balancer.sysctl("net.ipv4.ip_forward", "0")?;

        let mut hosts = Vec::new();
        for i in 0..reals {
            let name = format!("realserver{}", i + 1);
            let ns = Netns::new(format!("{p}-rs{}", i + 1))?;
            attach(&ns, &format!("rs{}", i + 1))?;
            // The VIP is local (so the server accepts packets to it) but
            // never announced (so the client's ARP finds the balancer).
            for dev in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                ns.sysctl(&format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
            addr4(&ns, "lo", VIP, 32)?;
            let addr = real_addr(Forwarding::Dr, i);
            addr4(&ns, "eth0", addr, 24)?;
            hosts.push(Host {
                name,
                ns,
                addr,
                addr6: None,
            });
        }

        let napi = match veths {
            Veths::Tuned => vec![xdp_pass::attach(&switch, "lb")?],
            Veths::Default => Vec::new(),
        };
        Ok(Topology {
            forwarding: Forwarding::Dr,
            client: Host {
                name: "client".into(),
                ns: client,
                addr: CLIENT,
                addr6: None,
            },
            balancer: Host {
                name: "balancer".into(),
                ns: balancer,
                addr: BALANCER,
                addr6: None,
            },
            reals: hosts,
            vip: VIP,
            vip6: None,
            interfaces: vec!["eth0".into()],
            xdp_mode: veths.xdp_mode(),
            _napi: napi,
            switch,
        })
    }

    /// The real servers' addresses as IpAddr, in order.
    pub fn real_addrs(&self) -> Vec<IpAddr> {
        self.reals.iter().map(|h| IpAddr::V4(h.addr)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_server_v6_addresses_mirror_v4() {
        assert_eq!(real_addr6(0).to_string(), "fd00:14::121");
        assert_eq!(real_addr6(2).to_string(), "fd00:14::123");
        assert_eq!(real_addr(Forwarding::Nat, 1).to_string(), "172.16.14.122");
        assert_eq!(real_addr(Forwarding::Dr, 2).to_string(), "192.168.253.123");
    }
}
