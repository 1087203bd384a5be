//! `lb-bench [--suite NAME]... [--quick] [--out DIR]`: runs the suites and
//! writes their results (JSON, markdown, SVG) under `bench/results/`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use lb_bench::{machine::Machine, suites, Counts, Ctx};
use lb_tests::netns;

/// Suites in the order `all` runs them. `ipvs` boots a VM and is run only
/// when named. `scaleout` is host-side and takes seconds (full: about a
/// minute): it runs with the others.
const SUITES: [&str; 7] = [
    "packet", "control", "agent", "rate", "http", "vrrp", "scaleout",
];

#[derive(Parser)]
#[command(about = "Benchmark suites of lb: ratios against baselines measured in the same run")]
struct Args {
    /// Suite to run (repeatable); default: every suite except ipvs.
    #[arg(long = "suite", value_parser = ["packet", "control", "agent", "rate", "http", "vrrp", "scaleout", "ipvs"])]
    suites: Vec<String>,
    /// Tiny counts for a smoke run (seconds per suite); results go to a
    /// temporary directory unless --out is given, so the committed results
    /// stay those of a full run.
    #[arg(long)]
    quick: bool,
    /// Rounds over all variants (rate, http; passed into the ipvs VM).
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,
    /// Seconds counted per rate run and per wrk run (rate, http, ipvs VM).
    #[arg(long, value_name = "S")]
    secs: Option<f64>,
    /// `ab -n` per HTTP run (http, ipvs VM).
    #[arg(long, value_name = "N")]
    requests: Option<u32>,
    /// Where results go (default bench/results, or a temp dir with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // Every namespace and scratch directory of a suite is named from
    // lb-tests' `unique_prefix`: Ctrl-C removes this run's, and a run
    // killed with SIGKILL has its leftovers removed by the next.
    netns::install_signal_cleanup("lb-bench");
    let args = Args::parse();
    let stale = netns::remove_stale();
    if !stale.is_empty() {
        eprintln!("removed namespaces left by dead runs: {}", stale.join(" "));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            std::env::temp_dir().join("lb-bench-quick")
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
        }
    });
    let names: Vec<String> = if args.suites.is_empty() {
        SUITES.iter().map(|s| s.to_string()).collect()
    } else {
        args.suites.clone()
    };
    let ctx = Ctx {
        quick: args.quick,
        machine: Machine::detect(),
        counts: Counts {
            rounds: args.rounds,
            secs: args.secs,
            requests: args.requests,
        },
    };
    eprintln!("lb-bench on {}", ctx.machine.describe());
    for name in &names {
        eprintln!("== suite {name}{}", if ctx.quick { " (quick)" } else { "" });
        let t = std::time::Instant::now();
        let mut report = match name.as_str() {
            "packet" => suites::packet::run(&ctx),
            "control" => suites::control::run(&ctx),
            "agent" => suites::agent::run(&ctx),
            "rate" => suites::rate::run(&ctx),
            "http" => suites::http::run(&ctx),
            "vrrp" => suites::vrrp::run(&ctx),
            "scaleout" => suites::scaleout::run(&ctx),
            "ipvs" => suites::ipvs::run(&ctx),
            other => anyhow::bail!("unknown suite {other}"),
        }
        .with_context(|| format!("suite {name}"))?;
        let md = report.write(&out)?;
        if name == "packet" {
            suites::packet::append_history(&report, &out)?;
        }
        println!("{}", std::fs::read_to_string(&md)?);
        eprintln!(
            "== suite {name} done in {:.1} s: {}",
            t.elapsed().as_secs_f64(),
            md.display()
        );
    }
    Ok(())
}
