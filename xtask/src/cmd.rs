//! Running commands from xtask: echoed, with their status checked, and an
//! interrupt flag that long subcommands poll so Ctrl-C unwinds through the
//! Drop guards instead of leaving namespaces behind.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `cargo` as the one running xtask would be found.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo +nightly` through rustup's proxy (`$CARGO` is the stable
/// toolchain's own binary, which does not understand `+toolchain`).
pub fn cargo_nightly() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").current_dir(workspace_root());
    cmd
}

/// Prints the command, runs it with inherited stdio, fails on non-zero exit.
pub fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", display(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", display(cmd));
    }
    Ok(())
}

pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Installs a SIGINT/SIGTERM handler that raises the returned flag.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        // End a running ab/wrk/curl now; its failure unwinds the demo or
        // bench through the guards that remove namespaces and stop lb.
        lb_tests::netns::stop_running();
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: cleaning up, please wait");
        } else {
            eprintln!("interrupted: cleaning up");
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(flag)
}

/// Fails when the user has interrupted, so `?` unwinds to the guards.
pub fn check_interrupt(flag: &AtomicBool) -> Result<()> {
    if flag.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
