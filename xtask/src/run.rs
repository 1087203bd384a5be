//! `cargo xtask run -- <lb args>`: build, then run the agent.

use std::process::Command;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct Options {
    /// Arguments for `lb` (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(o: Options) -> Result<()> {
    let bin = crate::build::build_lb()?;
    let status = Command::new(&bin)
        .args(&o.args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        // Keep lb's own status (e.g. 2 from `lb check` on a bad config).
        Some(code) => std::process::exit(code),
        None => bail!("lb exited with {status}"),
    }
}
