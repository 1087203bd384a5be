//! The upstream router: FRR's zebra, bfdd and bgpd started by hand inside the
//! router's namespace (own config file, pid files, zebra socket and vty
//! sockets in a temporary directory; the Debian service stays off), with
//! one BGP peer group that accepts every lb node of the segment, ECMP over
//! up to 16 paths, BFD with every node (100 ms x 3), and Linux multipath
//! hashing on L4 ports.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::Netns;
use crate::process::wait_until;
use crate::tempdir::TempDir;

/// The router's AS and the nodes' (one AS for every node: equal AS paths,
/// so `maximum-paths` needs no multipath-relax, though it is set too).
pub const ROUTER_AS: u32 = 65000;
pub const NODE_AS: u32 = 65001;
/// BGP keepalive and hold time (s) on both sides: a node lost without a
/// word is withdrawn after the hold time.
pub const KEEPALIVE_SECS: u64 = 1;
pub const HOLD_SECS: u64 = 3;

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";
const BFDD: &str = "/usr/lib/frr/bfdd";
/// BFD's transmit and receive interval (ms) on both sides, and its
/// multiplier: a silent peer is down after 3 x 100 ms.
pub const BFD_INTERVAL_MS: u64 = 100;
pub const BFD_MULTIPLIER: u64 = 3;

/// zebra and bgpd of one router namespace.
#[derive(Debug)]
pub struct Frr {
    dir: TempDir,
}

impl Frr {
    /// The router: writes its config and starts zebra, bfdd and bgpd in
    /// `ns`; `segment` is the nodes' subnet (`10.2.0.0/24`), `router_id`
    /// the router's address on it.
    pub fn start(ns: &Netns, router_id: Ipv4Addr, segment: &str) -> Result<Frr> {
        Frr::start_with(ns, |log| router_conf(router_id, segment, log))
    }

    /// FRR as an lb node's BGP daemon instead of BIRD: zebra imports the
    /// table lb writes (`ip import-table`), bgpd redistributes it to the
    /// router, with BFD (examples/bgp/frr-node.conf).
    pub fn start_node(ns: &Netns, me: Ipv4Addr, router: Ipv4Addr) -> Result<Frr> {
        Frr::start_with(ns, |log| node_conf(me, router, log))
    }

    fn start_with(ns: &Netns, conf_text: impl FnOnce(&std::path::Path) -> String) -> Result<Frr> {
        for daemon in [ZEBRA, BFDD, BGPD] {
            if !std::path::Path::new(daemon).exists() {
                bail!("{daemon} is missing: install FRR (`apt-get install frr`, or `cargo xtask setup`)");
            }
        }
        let dir = TempDir::new("frr")?;
        // zebra drops to the frr user (FRR refuses root outside its vty
        // group): it must be able to write its sockets and pid file here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let conf = dir.join("frr.conf");
        std::fs::write(&conf, conf_text(&dir.join("frr.log")))?;
        let d = dir.path().display().to_string();
        let common = |daemon: &str| -> Vec<String> {
            vec![
                "-d".into(),
                "-f".into(),
                conf.display().to_string(),
                "-i".into(),
                format!("{d}/{daemon}.pid"),
                "-z".into(),
                format!("{d}/zserv.api"),
                "--vty_socket".into(),
                d.clone(),
                "-P".into(),
                "0".into(),
                "-u".into(),
                "frr".into(),
                "-g".into(),
                "frr".into(),
            ]
        };
        let mut zebra = ns.command(ZEBRA);
        zebra.args(common("zebra"));
        crate::netns::run(&mut zebra).context("starting zebra")?;
        let zsock = dir.join("zserv.api");
        if !wait_until(Duration::from_secs(10), || zsock.exists()) {
            bail!("zebra did not create {} within 10 s", zsock.display());
        }
        let mut bfdd = ns.command(BFDD);
        bfdd.args(common("bfdd"))
            .arg("--bfdctl")
            .arg(dir.join("bfdd.sock"));
        crate::netns::run(&mut bfdd).context("starting bfdd")?;
        let mut bgpd = ns.command(BGPD);
        bgpd.args(common("bgpd"));
        crate::netns::run(&mut bgpd).context("starting bgpd")?;
        let frr = Frr { dir };
        if !wait_until(Duration::from_secs(10), || {
            frr.vtysh("show bgp summary").is_ok()
        }) {
            bail!("bgpd does not answer on its vty socket within 10 s");
        }
        Ok(frr)
    }

    /// `vtysh -c COMMAND` against this router's daemons (run outside the
    /// namespace: vtysh only talks to the sockets).
    pub fn vtysh(&self, command: &str) -> Result<String> {
        crate::netns::run(
            std::process::Command::new("vtysh")
                .arg("--vty_socket")
                .arg(self.dir.path())
                .args(["-c", command]),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("frr.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// One file for the three daemons, each of which skips the others'
/// commands: the `bfd` block comes last, since a block a daemon does not
/// know would leave it outside `router bgp` for the lines after.
fn router_conf(router_id: Ipv4Addr, segment: &str, log: &std::path::Path) -> String {
    format!(
        "frr defaults datacenter\n\
         hostname router\n\
         log file {log}\n\
         router bgp {ROUTER_AS}\n \
         bgp router-id {router_id}\n \
         no bgp ebgp-requires-policy\n \
         bgp bestpath as-path multipath-relax\n \
         neighbor NODES peer-group\n \
         neighbor NODES remote-as external\n \
         neighbor NODES timers {KEEPALIVE_SECS} {HOLD_SECS}\n \
         neighbor NODES timers connect 1\n \
         neighbor NODES bfd profile fast\n \
         bgp listen range {segment} peer-group NODES\n \
         address-family ipv4 unicast\n  \
         maximum-paths 16\n \
         exit-address-family\n\
         bfd\n \
         profile fast\n  \
         receive-interval {BFD_INTERVAL_MS}\n  \
         transmit-interval {BFD_INTERVAL_MS}\n  \
         detect-multiplier {BFD_MULTIPLIER}\n",
        log = log.display()
    )
}

fn node_conf(me: Ipv4Addr, router: Ipv4Addr, log: &std::path::Path) -> String {
    let table = super::node::ANNOUNCE_TABLE;
    format!(
        "frr defaults datacenter\n\
         hostname node\n\
         log file {log}\n\
         ip import-table {table}\n\
         ip prefix-list HOSTS seq 10 permit 0.0.0.0/0 ge 32\n\
         route-map LB-VIPS permit 10\n \
         match ip address prefix-list HOSTS\n\
         exit\n\
         router bgp {NODE_AS}\n \
         bgp router-id {me}\n \
         no bgp ebgp-requires-policy\n \
         neighbor {router} remote-as {ROUTER_AS}\n \
         neighbor {router} timers {KEEPALIVE_SECS} {HOLD_SECS}\n \
         neighbor {router} timers connect 1\n \
         neighbor {router} bfd profile fast\n \
         address-family ipv4 unicast\n  \
         redistribute table {table} route-map LB-VIPS\n \
         exit-address-family\n\
         bfd\n \
         profile fast\n  \
         receive-interval {BFD_INTERVAL_MS}\n  \
         transmit-interval {BFD_INTERVAL_MS}\n  \
         detect-multiplier {BFD_MULTIPLIER}\n",
        log = log.display()
    )
}

/// The next hops of the kernel route to `dest` in `ns` (the router's FIB,
/// what forwarding uses): empty when there is none.
pub fn next_hops(ns: &Netns, dest: Ipv4Addr) -> Vec<Ipv4Addr> {
    let Ok(text) = ns.ip(&["-4", "route", "show", &format!("{dest}/32")]) else {
        return Vec::new();
    };
    let mut hops: Vec<Ipv4Addr> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    hops.sort();
    hops.dedup();
    hops
}
