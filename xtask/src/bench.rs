//! `cargo xtask bench` (first version): HTTP requests/s and p99 latency
//! through the VIP against direct to one real server, with ab (a new
//! connection per request) and wrk (keep-alive), for NAT and DR in the demo
//! topology; and the Maglev table build time. Results go to
//! `bench/results/` (JSON + markdown) and into BENCHMARKS.md.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use lb_tests::agent::{Agent, LbConfig, VirtualServer};
use lb_tests::client::{ab, url, wrk};
use lb_tests::nginx::Nginx;
use lb_tests::tempdir::TempDir;
use lb_tests::topology::{Forwarding, Topology};
use serde::Serialize;

use crate::cmd::{cargo, check_interrupt, interrupt_flag, status, workspace_root};

#[derive(clap::Args)]
pub struct Options {
    /// Use this lb binary instead of building one (e.g. another branch's).
    #[arg(long, value_name = "PATH")]
    lb_bin: Option<std::path::PathBuf>,
    /// Tiny counts, results in a temporary directory, BENCHMARKS.md left
    /// alone: the smoke run of `cargo xtask test`.
    #[arg(long)]
    quick: bool,
    /// Run only these suites (repeatable): `vip` (this first-version HTTP
    /// bench), and lb-bench's `packet`, `control`, `agent`, `rate`, `http`,
    /// `vrrp`, `scaleout`, `ipvs`.
    /// Default: every suite but `ipvs` (a VM under TCG: run it on its own).
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
}

/// lb-bench's suites that run by default.
const LB_BENCH_SUITES: [&str; 7] = [
    "packet", "control", "agent", "rate", "http", "vrrp", "scaleout",
];

struct Load {
    ab_requests: u32,
    ab_concurrency: u32,
    wrk_connections: u32,
    wrk_seconds: u32,
    /// Repetitions of each measurement; the median run is reported.
    reps: usize,
}

#[derive(Serialize)]
struct Measure {
    requests_per_sec: f64,
    p99_ms: f64,
    errors: u64,
}

#[derive(Serialize)]
struct HttpRow {
    forwarding: String,
    tool: String,
    direct: Measure,
    vip: Measure,
    /// VIP requests/s divided by direct requests/s.
    ratio: f64,
}

#[derive(Serialize)]
struct Results {
    date: String,
    machine: String,
    /// /proc/loadavg before and after: other work on the machine skews
    /// every number, and this says how much there was.
    load_before: String,
    load_after: String,
    quick: bool,
    commands: Vec<String>,
    http: Vec<HttpRow>,
    maglev: serde_json::Value,
}

fn median_by<T>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.swap_remove(v.len() / 2)
}

fn measure_ab(topo: &Topology, target: IpAddr, load: &Load) -> Result<Measure> {
    let u = url(target, 80, "/");
    let runs = (0..load.reps)
        .map(|_| ab(&topo.client.ns, &u, load.ab_requests, load.ab_concurrency))
        .collect::<Result<Vec<_>>>()?;
    let r = median_by(runs, |r| r.requests_per_sec);
    Ok(Measure {
        requests_per_sec: r.requests_per_sec,
        p99_ms: r.p99_ms,
        errors: r.failed + r.non_2xx + (load.ab_requests as u64 - r.complete),
    })
}

fn measure_wrk(topo: &Topology, target: IpAddr, load: &Load) -> Result<Measure> {
    let u = url(target, 80, "/");
    let runs = (0..load.reps)
        .map(|_| {
            wrk(
                &topo.client.ns,
                &u,
                2,
                load.wrk_connections,
                load.wrk_seconds,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let r = median_by(runs, |r| r.requests_per_sec);
    Ok(Measure {
        requests_per_sec: r.requests_per_sec,
        p99_ms: r.p99_ms,
        errors: r.errors,
    })
}

fn http(
    lb: &Path,
    mode: Forwarding,
    load: &Load,
    interrupted: &std::sync::atomic::AtomicBool,
) -> Result<Vec<HttpRow>> {
    eprintln!("-- {mode}: building the topology");
    let topo = Topology::new(mode, 3)?;
    let _nginx = topo
        .reals
        .iter()
        .map(|h| Nginx::start(&h.ns, &h.name))
        .collect::<Result<Vec<_>>>()?;
    let direct = IpAddr::V4(topo.reals[0].addr);
    // The baseline runs before lb is attached: the path without lb at all.
    eprintln!("-- {mode}: direct to {direct} (ab, wrk)");
    let direct_ab = measure_ab(&topo, direct, load)?;
    check_interrupt(interrupted)?;
    let direct_wrk = measure_wrk(&topo, direct, load)?;
    check_interrupt(interrupted)?;

    let dir = TempDir::new("bench")?;
    let config = LbConfig::new(
        &topo,
        dir.join("lb.sock"),
        vec![VirtualServer::tcp(&topo, 80, &[1, 1, 1])],
    );
    let agent = Agent::start(lb, &topo.balancer.ns, dir.path(), &config)?;
    let vip = IpAddr::V4(topo.vip);
    eprintln!("-- {mode}: through the VIP {vip} (ab, wrk)");
    let vip_ab = measure_ab(&topo, vip, load)?;
    check_interrupt(interrupted)?;
    let vip_wrk = measure_wrk(&topo, vip, load)?;
    agent.stop()?;

    let row = |tool: &str, direct: Measure, vip: Measure| HttpRow {
        forwarding: mode.to_string(),
        tool: tool.into(),
        ratio: vip.requests_per_sec / direct.requests_per_sec,
        direct,
        vip,
    };
    Ok(vec![
        row("ab (new connection per request)", direct_ab, vip_ab),
        row("wrk (keep-alive)", direct_wrk, vip_wrk),
    ])
}

fn maglev(quick: bool) -> Result<serde_json::Value> {
    eprintln!("-- Maglev table build (release)");
    let mut cmd = cargo();
    cmd.args(["bench", "-q", "-p", "lb-tests", "--bench", "maglev"]);
    if quick {
        cmd.args(["--", "--quick"]);
    }
    let out = cmd.output().context("running the maglev bench")?;
    if !out.status.success() {
        bail!(
            "the maglev bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the maglev bench printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpu}, {} CPUs, Linux {}",
        sh("nproc", &[]),
        sh("uname", &["-r"])
    )
}

fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run {} on {}; load average {} before, {} after.\n",
        r.date, r.machine, r.load_before, r.load_after
    );
    let _ = writeln!(
        s,
        "| forwarding | tool | direct req/s | VIP req/s | VIP / direct | direct p99 ms | VIP p99 ms | errors (direct / VIP) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for h in &r.http {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {} / {} |",
            h.forwarding,
            h.tool,
            h.direct.requests_per_sec,
            h.vip.requests_per_sec,
            h.ratio,
            h.direct.p99_ms,
            h.vip.p99_ms,
            h.direct.errors,
            h.vip.errors
        );
    }
    let m = &r.maglev;
    let _ = writeln!(
        s,
        "\nMaglev table build, {} slots, {} real servers (weight 1), {} runs: median {:.3} ms, min {:.3} ms, max {:.3} ms.",
        m["slots"], m["backends"], m["runs"],
        m["median_ms"].as_f64().unwrap_or(f64::NAN),
        m["min_ms"].as_f64().unwrap_or(f64::NAN),
        m["max_ms"].as_f64().unwrap_or(f64::NAN),
    );
    s
}

const START: &str = "<!-- bench:results:start -->";
const END: &str = "<!-- bench:results:end -->";

/// Replaces the generated block of BENCHMARKS.md with `table`.
fn update_benchmarks_md(table: &str) -> Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        bail!("{} lacks the {START} / {END} markers", path.display());
    };
    let new = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    std::fs::write(&path, new)?;
    Ok(())
}

pub fn bench(o: Options) -> Result<()> {
    for s in &o.suites {
        if s != "vip" && s != "ipvs" && !LB_BENCH_SUITES.contains(&s.as_str()) {
            bail!(
                "unknown suite `{s}`: choose vip, packet, control, agent, rate, http, vrrp, scaleout or ipvs"
            );
        }
    }
    if o.suites.iter().any(|s| s == "ipvs") {
        crate::setup::packages(crate::setup::VM_PACKAGES)
            .context("installing what the IPVS VM suite needs")?;
    }
    let lb = match &o.lb_bin {
        Some(p) => p.clone(),
        None => crate::build::build_lb()?,
    };
    if o.suites.is_empty() || o.suites.iter().any(|s| s == "vip") {
        vip_bench(&o, &lb)?;
    }
    let suites: Vec<&str> = if o.suites.is_empty() {
        LB_BENCH_SUITES.to_vec()
    } else {
        o.suites
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "vip")
            .collect()
    };
    if suites.is_empty() {
        return Ok(());
    }
    // The issue 4 suites live in their own crate (bench/); it finds the
    // agent through LB_BIN.
    let mut cmd = cargo();
    cmd.args(["run", "-p", "lb-bench"]);
    if !o.quick {
        cmd.arg("--release");
    }
    cmd.arg("--");
    if o.quick {
        cmd.arg("--quick");
    }
    for s in suites {
        cmd.args(["--suite", s]);
    }
    cmd.env("LB_BIN", &lb);
    status(&mut cmd)
}

/// Through the VIP against direct to one real server (issue 2's bench).
fn vip_bench(o: &Options, lb: &Path) -> Result<()> {
    let interrupted = interrupt_flag()?;
    let lb = lb.to_path_buf();
    lb_tests::netns::remove_stale();
    let load = if o.quick {
        Load {
            ab_requests: 200,
            ab_concurrency: 10,
            wrk_connections: 10,
            wrk_seconds: 1,
            reps: 1,
        }
    } else {
        Load {
            ab_requests: 3000,
            ab_concurrency: 30,
            wrk_connections: 30,
            wrk_seconds: 10,
            reps: 3,
        }
    };
    let load_before = loadavg();
    let mut rows = Vec::new();
    for mode in [Forwarding::Nat, Forwarding::Dr] {
        check_interrupt(&interrupted)?;
        rows.extend(http(&lb, mode, &load, &interrupted)?);
    }
    let maglev = maglev(o.quick)?;
    let results = Results {
        date: sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: machine(),
        load_before,
        load_after: loadavg(),
        quick: o.quick,
        commands: vec![
            format!(
                "ab -q -r -s 10 -n {} -c {} http://TARGET/ (median of {} runs)",
                load.ab_requests, load.ab_concurrency, load.reps
            ),
            format!(
                "wrk --latency -t 2 -c {} -d {}s http://TARGET/ (median of {} runs)",
                load.wrk_connections, load.wrk_seconds, load.reps
            ),
            "cargo bench -p lb-tests --bench maglev".into(),
        ],
        http: rows,
        maglev,
    };
    let md = markdown(&results);
    println!("\n{md}");

    let tmp;
    let out_dir: PathBuf = if o.quick {
        tmp = TempDir::new("bench-results")?;
        tmp.path().to_path_buf()
    } else {
        workspace_root().join("bench/results")
    };
    std::fs::create_dir_all(&out_dir)?;
    let stamp = results.date.replace(':', "");
    std::fs::write(
        out_dir.join(format!("vip-{stamp}.json")),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(
        out_dir.join("vip-latest.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out_dir.join("vip-latest.md"), &md)?;
    eprintln!("results written to {}", out_dir.display());
    if !o.quick {
        update_benchmarks_md(&md)?;
        eprintln!("BENCHMARKS.md updated");
    }
    let errors: u64 = results
        .http
        .iter()
        .map(|h| h.direct.errors + h.vip.errors)
        .sum();
    if errors > 0 {
        bail!("{errors} requests failed during the benchmark (see the table)");
    }
    Ok(())
}
