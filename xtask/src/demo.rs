//! `cargo xtask demo`: seed 001 (LVS-NAT, three nginx real servers) or
//! seed 000's layout (`--mode dr`) rebuilt in network namespaces with `lb`
//! in place of IPVS: curl and ab through the VIP, each real server's share
//! counted from its own access log, `lb status`, and everything removed
//! afterwards, on failure and on Ctrl-C too. `--ha` runs the
//! high-availability demo instead (`demo_ha.rs`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use lb_tests::agent::{Agent, LbConfig, VirtualServer};
use lb_tests::client::{ab, curl, url};
use lb_tests::nginx::{shares, Nginx};
use lb_tests::tempdir::TempDir;
use lb_tests::topology::{Forwarding, Topology};

use crate::cmd::{check_interrupt, interrupt_flag};

#[derive(clap::Args)]
pub struct Options {
    /// Use this lb binary instead of building one (e.g. another branch's).
    #[arg(long, value_name = "PATH")]
    lb_bin: Option<std::path::PathBuf>,
    /// nat (seed 001) or dr (seed 000).
    #[arg(long, default_value = "nat")]
    mode: Forwarding,
    /// Requests for ab.
    #[arg(long, default_value_t = 3000)]
    requests: u32,
    /// ab's concurrency.
    #[arg(long, default_value_t = 30)]
    concurrency: u32,
    /// Real server weights, comma separated (one per real server).
    #[arg(long, value_delimiter = ',', default_value = "1,1,1")]
    weights: Vec<u32>,
    /// High availability: two balancer nodes share the VIP through VRRP;
    /// the master is killed and brought back under traffic (demo_ha.rs).
    #[arg(long)]
    ha: bool,
    #[command(flatten)]
    ha_options: crate::demo_ha::HaOptions,
}

pub fn demo(o: Options) -> Result<()> {
    if o.ha {
        return crate::demo_ha::demo(o.lb_bin, o.mode, o.concurrency, &o.ha_options);
    }
    let interrupted = interrupt_flag()?;
    let lb = match &o.lb_bin {
        Some(p) => p.clone(),
        None => crate::build::build_lb()?,
    };
    lb_tests::netns::remove_stale();
    check_interrupt(&interrupted)?;

    println!(
        "== building the {} topology ({} real servers)",
        o.mode,
        o.weights.len()
    );
    let topo = Topology::new(o.mode, o.weights.len())?;
    for h in &topo.reals {
        println!("   {} {} (namespace {})", h.name, h.addr, h.ns.name());
    }
    println!(
        "   client {} / balancer {} + VIP {} (namespace {})",
        topo.client.addr,
        topo.balancer.addr,
        topo.vip,
        topo.balancer.ns.name()
    );
    let nginx = topo
        .reals
        .iter()
        .map(|h| Nginx::start(&h.ns, &h.name))
        .collect::<Result<Vec<_>>>()?;
    check_interrupt(&interrupted)?;

    let dir = TempDir::new("demo")?;
    let config = LbConfig::new(
        &topo,
        dir.join("lb.sock"),
        vec![VirtualServer::tcp(&topo, 80, &o.weights)],
    );
    println!("\n== lb config\n{}", config.to_toml());
    let agent = Agent::start(&lb, &topo.balancer.ns, dir.path(), &config)?;
    println!("== lb run is up (log: {})", agent.log_path.display());

    let vip_url = url(IpAddr::V4(topo.vip), 80, "/");
    println!("\n== curl {vip_url} from the client");
    let mut seen = BTreeSet::new();
    let want = o.weights.iter().filter(|&&w| w > 0).count();
    for _ in 0..60 {
        check_interrupt(&interrupted)?;
        let body = curl(&topo.client.ns, &vip_url)?;
        let name = body.trim().to_string();
        if seen.insert(name.clone()) {
            println!("   answered by {name}");
        }
        if seen.len() == want {
            break;
        }
    }
    if seen.len() < want {
        bail!("only {seen:?} answered through the VIP after 60 requests");
    }

    println!("\n== ab -n {} -c {} {vip_url}", o.requests, o.concurrency);
    let before: Vec<usize> = nginx.iter().map(Nginx::requests).collect();
    let report = ab(&topo.client.ns, &vip_url, o.requests, o.concurrency)?;
    let counts: Vec<usize> = nginx
        .iter()
        .zip(&before)
        .map(|(n, b)| n.requests() - b)
        .collect();
    println!(
        "   {} complete, {} failed, {:.0} requests/s, p99 {} ms",
        report.complete, report.failed, report.requests_per_sec, report.p99_ms
    );
    let total_w: u32 = o.weights.iter().sum();
    println!("   share per real server (from nginx access logs):");
    for ((n, share), (&c, &w)) in nginx
        .iter()
        .zip(shares(&counts))
        .zip(counts.iter().zip(&o.weights))
    {
        println!(
            "   {:<12} weight {w}  {c:>6} requests  {:>5.1}%  (weight share {:.1}%)",
            n.name,
            share * 100.0,
            w as f64 * 100.0 / total_w as f64
        );
    }
    check_interrupt(&interrupted)?;

    println!("\n== lb status");
    println!("{}", agent.status_text().context("lb status")?);
    agent.stop().context("stopping lb")?;
    println!("== lb detached; removing namespaces");
    drop(nginx);
    drop(topo);
    if report.failed > 0 || report.non_2xx > 0 {
        bail!(
            "{} failed and {} non-2xx requests",
            report.failed,
            report.non_2xx
        );
    }
    println!("demo ok");
    Ok(())
}
