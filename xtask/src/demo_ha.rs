//! `cargo xtask demo --ha [--mode nat|dr]`: two balancer nodes share the
//! VIP through VRRP (seed 001 doubled with a sync group for NAT, seed 000's
//! single segment for DR). A slow download and `ab` run through the VIP
//! while the master is lost (its links down and `kill -9`) and
//! brought back; then the timeline of who held the addresses, the takeover
//! and fail-back times, the download's checksum against the file, and ab's
//! failed count. Everything is removed afterwards, on failure and on
//! Ctrl-C too (the guards drop as the error unwinds).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use lb_tests::client::{curl, url, AbReport};
use lb_tests::topology::Forwarding;
use lb_tests::vrrp::keepalived;
use lb_tests::vrrp::pair::{AbRun, Fault, HaPair, Timers};
use lb_tests::vrrp::timeline::Timeline;
use lb_tests::vrrp::topology::{node_addr, VIP};
use lb_tests::vrrp::traffic::{sha256, Download, DownloadReport};
use lb_tests::vrrp::wire::{AdvertLog, Takeover};
use lb_tests::vrrp::{Kind, HA_FILE_BYTES};

use crate::cmd::{check_interrupt, interrupt_flag};

#[derive(clap::Args)]
pub struct HaOptions {
    /// With --ha: who runs VRRP on the two nodes. `keepalived` runs a real
    /// keepalived for VRRP next to a VRRP-less `lb run` that forwards (the
    /// benchmark's baseline pair).
    #[arg(long, default_value = "lb", value_parser = ["lb", "keepalived"])]
    vrrp_by: String,
    /// With --ha: 2 (1 s adverts, PASS auth, keepalived's defaults) or 3
    /// (100 ms adverts).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    vrrp_version: u8,
    /// With --ha: how long ab runs (the failover happens inside it).
    #[arg(long, default_value_t = 20)]
    ab_seconds: u32,
}

/// Sleeps `d`, failing early when the user interrupts.
fn pause(flag: &AtomicBool, d: Duration) -> Result<()> {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        check_interrupt(flag)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    check_interrupt(flag)
}

pub fn demo(
    lb_bin: Option<PathBuf>,
    mode: Forwarding,
    concurrency: u32,
    o: &HaOptions,
) -> Result<()> {
    let lb = match lb_bin {
        Some(p) => p,
        None => crate::build::build_lb()?,
    };
    // The harness starts lb nodes with $LB_BIN. Set before the Ctrl-C
    // handler's thread exists.
    std::env::set_var("LB_BIN", &lb);
    let interrupted = interrupt_flag()?;
    let (kind, timers) = (
        if o.vrrp_by == "keepalived" {
            Kind::Keepalived
        } else {
            Kind::Lb
        },
        if o.vrrp_version == 3 {
            Timers::V3_100MS
        } else {
            Timers::V2_1S
        },
    );

    println!(
        "== building the {mode} HA topology: two {} nodes, {}",
        o.vrrp_by,
        timers.label()
    );
    let mut pair = HaPair::new(mode, 3, kind, timers, &lb)?;
    describe(&pair);
    check_interrupt(&interrupted)?;

    let names = vec!["node1".to_string(), "node2".to_string()];
    let timeline = Timeline::start(
        pair.node_namespaces(),
        pair.addresses(),
        Duration::from_millis(100),
    );
    let wire = AdvertLog::start(pair.client(), "eth0", false)?;
    timeline.mark("node1 and node2 started");
    pair.start(0)?;
    pair.start(1)?;
    if let Some(why) = pair.lb_vrrp_missing() {
        bail!(
            "this lb build does not run VRRP yet ({why}); \
             `cargo xtask demo --ha --vrrp-by keepalived` shows the same demo with keepalived \
             running VRRP"
        );
    }
    pair.wait_ready(Duration::from_secs(15))?;
    timeline.mark("node1 is MASTER, node2 BACKUP");
    check_interrupt(&interrupted)?;

    let vip = IpAddr::V4(VIP);
    let body = curl(pair.client(), &url(vip, 80, "/"))?;
    println!(
        "\n== curl {} -> answered by {}",
        url(vip, 80, "/"),
        body.trim()
    );

    let slow = url(vip, 80, "/slow/ha.bin");
    let page = url(vip, 80, "/");
    println!(
        "\n== traffic through the VIP: curl {slow} ({} MiB at 256 KiB/s) and ab -t {} -c {concurrency} {page}",
        HA_FILE_BYTES >> 20,
        o.ab_seconds
    );
    let download = Download::start(
        pair.client(),
        &slow,
        pair.cluster.dir.join("download.bin"),
        Duration::from_secs(120),
    )?;
    let ab = AbRun::start(
        pair.client(),
        &page,
        o.ab_seconds,
        concurrency,
        pair.cluster.dir.join("ab.txt"),
    )?;
    timeline.mark("download and ab started");
    pause(&interrupted, Duration::from_secs(3))?;

    let failover = lose_and_return(&mut pair, &wire, &timeline, &interrupted, timers)?;

    println!("== waiting for the download and ab to end");
    let dl = download.finish(Duration::from_secs(120))?;
    let ab = ab.finish(Duration::from_secs(u64::from(o.ab_seconds) + 30))?;
    timeline.mark("download and ab ended");
    check_interrupt(&interrupted)?;

    let notify: Vec<(String, String)> = pair
        .cluster
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.notify_log()))
        .collect();
    println!("\n== timeline (seconds from the start of the watch; addresses polled every 100 ms, states from the notify scripts)");
    print!("{}", timeline.render(&names, &notify));

    print_failover(&failover, &timeline, &names, timers);

    let want = sha256(&pair.cluster.dir.join("ha.bin"))?;
    let ab_cmd = format!("ab -t {} -c {concurrency} {page}", o.ab_seconds);
    print_traffic(&dl, &want, &ab, &ab_cmd);

    println!("\n== stopping both nodes; removing namespaces");
    drop(wire);
    drop(timeline);
    drop(pair);
    if !dl.success || dl.sha256 != want {
        bail!("the download did not survive the failover intact");
    }
    println!(
        "demo ok: checksum matches, {} failed requests",
        ab.failed + ab.non_2xx
    );
    Ok(())
}

/// Both takeovers of the demo, as the client's segment heard them.
struct Failover {
    lost: Instant,
    takeover: Takeover,
    restarted: Instant,
    failback: Takeover,
}

/// Takes node1 (the master) off the network and kills it, waits for
/// node2 to take over, then brings node1 back until it is master again.
fn lose_and_return(
    pair: &mut HaPair,
    wire: &AdvertLog,
    timeline: &Timeline,
    interrupted: &AtomicBool,
    timers: Timers,
) -> Result<Failover> {
    let (n1, n2) = (pair.cluster.sources(0), pair.cluster.sources(1));
    println!("== node1 (master): links down and kill -9 (node loss)");
    timeline.mark("node1: links down + kill -9");
    let lost = pair.fault(0, Fault::Crash)?;
    let limit = timers.master_down() * 2 + Duration::from_secs(2);
    let takeover = wire.wait_takeover(&n1, &n2, lost, limit)?;
    pair.cluster
        .wait_state(1, pair.instance, "MASTER", Duration::from_secs(5))?;
    pause(interrupted, Duration::from_secs(4))?;

    println!("== node1: links up, started again");
    timeline.mark("node1: links up, started again");
    let restarted = pair.restore(0, Fault::Crash)?;
    let failback = wire.wait_takeover(&n2, &n1, restarted, limit + Duration::from_secs(5))?;
    pair.wait_ready(Duration::from_secs(15))?;
    Ok(Failover {
        lost,
        takeover,
        restarted,
        failback,
    })
}

fn print_failover(f: &Failover, timeline: &Timeline, names: &[String], timers: Timers) {
    let vip = IpAddr::V4(VIP);
    let lost_at = timeline
        .entries(names, &[])
        .iter()
        .find(|e| e.what.starts_with("node1: links down"))
        .map(|e| e.at)
        .unwrap_or(timeline.start);
    println!("\n== takeover (as heard on the client's segment)");
    println!(
        "   node1's last advert -> node2's first: {:.3} s (the RFC's master-down interval: {:.3} s; \
         keepalived measured 3.61 s with 1 s adverts, 0.361 s with 100 ms)",
        f.takeover.gap().as_secs_f64(),
        timers.master_down().as_secs_f64()
    );
    println!(
        "   node loss -> node2's first advert: {:.3} s",
        f.takeover.first_new.at.duration_since(f.lost).as_secs_f64()
    );
    // node1's copy may stay on its dead link (keepalived) or go with
    // its FAULT state (lb): either way, node2 having it is the takeover.
    if let Some(h) = timeline
        .holdings()
        .into_iter()
        .find(|h| h.addr == vip && h.at >= lost_at && h.nodes.contains(&1))
    {
        println!(
            "   node loss -> the VIP on node2 (polled): {:.3} s",
            h.at - lost_at
        );
    }
    println!(
        "   fail-back: node1 started again -> node1's first advert as master: {:.3} s",
        f.failback
            .first_new
            .at
            .duration_since(f.restarted)
            .as_secs_f64()
    );
}

fn print_traffic(dl: &DownloadReport, want: &str, ab: &AbReport, ab_cmd: &str) {
    println!("\n== download through the failover and the fail-back");
    println!(
        "   {} of {} bytes, curl {}",
        dl.bytes,
        HA_FILE_BYTES,
        if dl.success {
            "succeeded".to_string()
        } else {
            format!("failed: {}", dl.error.trim())
        }
    );
    println!("   sha256 received {}", dl.sha256);
    println!("   sha256 file     {want}");
    println!("\n== {ab_cmd}");
    println!(
        "   {} complete, {} failed, {} non-2xx, {:.0} requests/s, p99 {} ms",
        ab.complete, ab.failed, ab.non_2xx, ab.requests_per_sec, ab.p99_ms
    );
}

fn describe(pair: &HaPair) {
    let topo = &pair.cluster.topo;
    println!(
        "   client {} (namespace {})",
        topo.client.addr,
        topo.client.ns.name()
    );
    for (i, h) in topo.nodes.iter().enumerate() {
        println!(
            "   {} {} priority {} (namespace {})",
            h.name,
            node_addr(i),
            if i == 0 { 150 } else { 100 },
            h.ns.name()
        );
    }
    for h in &topo.reals {
        println!("   {} {} nginx (namespace {})", h.name, h.addr, h.ns.name());
    }
    let addrs: Vec<String> = pair.addresses().iter().map(|a| a.to_string()).collect();
    println!("   VRRP addresses: {}", addrs.join(", "));
    match pair.kind {
        Kind::Lb => println!(
            "\n== node1's lb config\n{}",
            pair.cluster.lb_config(0).to_toml()
        ),
        Kind::Keepalived => {
            let n = &pair.cluster.nodes[0];
            println!(
                "\n== node1's keepalived.conf (an lb run with the same services and no VRRP forwards)\n{}",
                keepalived::render(&n.name, &n.spec.instances, &n.spec.sync_groups)
            );
        }
    }
}
