//! `cargo xtask build`: the release `lb` binary; its build script compiles
//! the eBPF object with nightly and bpf-linker and embeds it.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cmd::{cargo, status};

/// Where cargo puts build output (honours CARGO_TARGET_DIR and configs).
pub fn target_dir() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    Ok(PathBuf::from(
        meta["target_directory"]
            .as_str()
            .context("cargo metadata has no target_directory")?,
    ))
}

/// Builds `lb` in release mode; its path.
pub fn build_lb() -> Result<PathBuf> {
    status(cargo().args(["build", "--release", "-p", "lb-userspace", "--bin", "lb"]))?;
    let bin = target_dir()?.join("release/lb");
    anyhow::ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}
