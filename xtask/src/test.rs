//! `cargo xtask test`: every check the project has, in order, each step
//! run even when an earlier one failed, and a summary at the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cmd::{cargo, cargo_nightly, status};

#[derive(clap::Args)]
pub struct Options {
    /// Skip the end-to-end tests and the benchmark smoke run (no namespaces).
    #[arg(long)]
    no_e2e: bool,
}

struct Step {
    name: &'static str,
    ok: bool,
    secs: f64,
}

fn step(steps: &mut Vec<Step>, name: &'static str, f: impl FnOnce() -> Result<()>) -> bool {
    eprintln!("\n==> {name}");
    let t = Instant::now();
    let r = f();
    if let Err(e) = &r {
        eprintln!("FAILED: {name}: {e:#}");
    }
    steps.push(Step {
        name,
        ok: r.is_ok(),
        secs: t.elapsed().as_secs_f64(),
    });
    r.is_ok()
}

pub fn test(o: Options) -> Result<()> {
    let mut steps = Vec::new();
    let removed = lb_tests::netns::remove_stale();
    if !removed.is_empty() {
        eprintln!(
            "removed namespaces left by dead runs: {}",
            removed.join(" ")
        );
    }

    step(&mut steps, "cargo fmt --check", || {
        status(cargo().args(["fmt", "--all", "--", "--check"]))
    });
    step(&mut steps, "clippy (host crates)", || {
        // lb-ebpf is a workspace member but not a host crate: it gets its
        // own clippy run for its target below.
        status(cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "lb-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    step(&mut steps, "clippy (eBPF crate)", || {
        status(cargo_nightly().args([
            "clippy",
            "-p",
            "lb-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))
    });
    let mut lb_bin = None::<PathBuf>;
    step(&mut steps, "build lb (release)", || {
        lb_bin = Some(crate::build::build_lb()?);
        Ok(())
    });
    step(&mut steps, "unit tests", || {
        status(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "lb-ebpf",
            "--exclude",
            "lb-tests",
        ]))
    });
    // The lb-tests crate holds the BPF_PROG_TEST_RUN fixtures and the
    // end-to-end tests: they share the machine's namespaces and cores, so
    // one at a time keeps timings and shares meaningful.
    let mut tests = cargo();
    tests.args(["test", "-p", "lb-tests"]);
    if o.no_e2e {
        tests.arg("--lib");
        // The BPF_PROG_TEST_RUN tests need no namespaces.
        for fixture in ["xdp_fixtures", "xdp_fuzz"] {
            if crate::cmd::workspace_root()
                .join(format!("tests/tests/{fixture}.rs"))
                .exists()
            {
                tests.args(["--test", fixture]);
            }
        }
    }
    tests.args(["--", "--test-threads=1"]);
    if let Some(bin) = &lb_bin {
        tests.env("LB_BIN", bin);
    }
    step(&mut steps, "BPF test-run and end-to-end tests", || {
        status(&mut tests)
    });
    if !o.no_e2e {
        step(&mut steps, "benchmark smoke run", || {
            status(
                Command::new(std::env::current_exe()?)
                    .args(["bench", "--quick"])
                    .current_dir(crate::cmd::workspace_root()),
            )
        });
    }

    eprintln!("\n==> summary");
    for s in &steps {
        eprintln!(
            "  {:<6} {:<36} {:>7.1} s",
            if s.ok { "ok" } else { "FAILED" },
            s.name,
            s.secs
        );
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    println!("xtask: {} passed, {failed} failed", steps.len() - failed);
    if failed > 0 {
        bail!("{failed} step(s) failed");
    }
    Ok(())
}
