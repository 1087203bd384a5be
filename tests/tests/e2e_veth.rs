//! lb as a new user tries it: seed 001's NAT layout and seed 000's DR
//! layout built from veths exactly as `ip link add ... type veth` makes
//! them (checksum and segmentation offload on, GRO off, no XDP program on
//! any peer), with `xdp_mode = "auto"`. In native mode a veth has three
//! artifacts a NIC has not (partial checksums of veth senders, XDP_TX
//! frames that wait for the peer's NAPI, XDP_REDIRECT frames refused
//! without it: every connection timed out); the other end-to-end tests
//! tune their veths to hide them (`topology::Veths::Tuned`, with native
//! mode). Here `auto` must see the veths and attach in generic mode, where
//! none of the three exists (`lb_userspace::dataplane::device`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use lb_tests::agent::{lb_bin, Agent, LbConfig, VirtualServer};
use lb_tests::client::{ab, curl, url};
use lb_tests::nginx::Nginx;
use lb_tests::nginx::BIG_FILE_BYTES;
use lb_tests::tempdir::TempDir;
use lb_tests::topology::{Forwarding, Topology, Veths};

struct Lab {
    agent: Agent,
    _nginx: Vec<Nginx>,
    _dir: TempDir,
    topo: Topology,
}

fn lab(forwarding: Forwarding, xdp_mode: &str) -> Lab {
    let bin = lb_bin();
    let topo = match forwarding {
        Forwarding::Nat => Topology::nat_with(3, Veths::Default),
        Forwarding::Dr => Topology::dr_with(3, Veths::Default),
    }
    .expect("building the topology");
    if forwarding == Forwarding::Nat {
        // As the README (and `lb run`'s warning) ask for IPv4 NAT. Here it
        // matters for large replies: a veth sender hands over 64 KB
        // segmentation-offload packets, which generic XDP sees whole; no
        // device's MTU fits them, so the program passes them, rewritten,
        // to the kernel, which segments them, and which drops a packet
        // from a local address (the VIP) without accept_local.
        for dev in ["eth0", "eth1"] {
            topo.balancer
                .ns
                .sysctl(&format!("net.ipv4.conf.{dev}.accept_local"), "1")
                .expect("sysctl");
        }
    }
    let nginx = topo
        .reals
        .iter()
        .map(|h| Nginx::start(&h.ns, &h.name).expect("starting nginx"))
        .collect();
    let dir = TempDir::new("e2e-veth").expect("temp dir");
    let mut config = LbConfig::new(
        &topo,
        dir.join("lb.sock"),
        vec![VirtualServer::tcp(&topo, 80, &[1, 1, 1])],
    );
    config.xdp_mode = xdp_mode.into();
    let agent = Agent::start(&bin, &topo.balancer.ns, dir.path(), &config)
        .unwrap_or_else(|e| panic!("{e:#}\nconfig:\n{}", config.to_toml()));
    Lab {
        agent,
        _nginx: nginx,
        _dir: dir,
        topo,
    }
}

/// Every real server answers through the VIP, 300 connections all
/// complete, and a 4 MB download arrives whole.
fn works(lab: &Lab) {
    let vip = url(IpAddr::V4(lab.topo.vip), 80, "/");
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        let body = curl(&lab.topo.client.ns, &vip).unwrap_or_else(|e| {
            panic!(
                "{e:#}\nstatus:\n{}\nlb log:\n{}",
                lab.agent.status_text().unwrap_or_default(),
                lab.agent.log()
            )
        });
        seen.insert(body.trim().to_string());
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "real servers answering: {seen:?}");
    let report = ab(&lab.topo.client.ns, &vip, 300, 10).unwrap();
    assert_eq!(report.complete, 300, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    let big = url(IpAddr::V4(lab.topo.vip), 80, "/big.bin");
    let size = lab
        .topo
        .client
        .ns
        .exec(&[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "20",
            "-w",
            "%{size_download}",
            &big,
        ])
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\nstatus:\n{}",
                lab.agent.status_text().unwrap_or_default()
            )
        });
    assert_eq!(size.trim(), BIG_FILE_BYTES.to_string(), "bytes downloaded");
}

#[test]
fn nat_on_default_veths_with_auto_mode() {
    let lab = lab(Forwarding::Nat, "auto");
    works(&lab);
    says_it_chose_generic(&lab);
}

#[test]
fn dr_on_default_veths_with_auto_mode() {
    let lab = lab(Forwarding::Dr, "auto");
    works(&lab);
    says_it_chose_generic(&lab);
}

/// One line per interface says why generic and how to force native.
fn says_it_chose_generic(lab: &Lab) {
    let log = lab.agent.log();
    for dev in &lab.topo.interfaces {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{dev} is a veth")))
            .unwrap_or_else(|| panic!("lb run says nothing about {dev} being a veth:\n{log}"));
        assert!(
            line.contains("generic") && line.contains("xdp_mode = \"native\""),
            "{line}"
        );
    }
}
