//! `cargo xtask build [--target T]`: the release `lb` binary; its build
//! script compiles the eBPF object with nightly and bpf-linker and embeds
//! it. A cross build (`--target aarch64-unknown-linux-gnu`) links with
//! Debian's gcc-aarch64-linux-gnu and embeds the host build's eBPF objects
//! (`LB_EBPF_DIR`, see lb-userspace/build.rs): the same bytes, built once.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, display, status};

/// The cross target the project supports (Raspberry Pi OS, Debian arm64).
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";
/// Its linker, from Debian's gcc-aarch64-linux-gnu.
pub const AARCH64_GCC: &str = "aarch64-linux-gnu-gcc";
/// Debian's multiarch directories for arm64 libraries and their
/// architecture-dependent headers.
pub const AARCH64_LIB_DIR: &str = "/usr/lib/aarch64-linux-gnu";
pub const AARCH64_INCLUDE_DIR: &str = "/usr/include/aarch64-linux-gnu";

#[derive(clap::Args)]
pub struct Options {
    /// Rust target triple to build for (default: this machine). Supported:
    /// aarch64-unknown-linux-gnu (Raspberry Pi OS / Debian arm64).
    #[arg(long)]
    pub target: Option<String>,
}

pub fn build(o: Options) -> Result<()> {
    crate::setup::cross_tools(o.target.as_deref())?;
    let bin = build_lb_for(o.target.as_deref())?;
    println!("{}", bin.display());
    Ok(())
}

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
    build_lb_for(None)
}

/// Builds `lb` in release mode for `target` (None: this machine); its path.
pub fn build_lb_for(target: Option<&str>) -> Result<PathBuf> {
    let Some(target) = target.filter(|t| !is_host(t)) else {
        status(cargo().args(["build", "--release", "-p", "lb-userspace", "--bin", "lb"]))?;
        let bin = target_dir()?.join("release/lb");
        anyhow::ensure!(bin.is_file(), "{} was not built", bin.display());
        return Ok(bin);
    };
    if target != AARCH64 {
        bail!("unsupported target {target}: this machine or {AARCH64}");
    }
    let ebpf = host_ebpf_dir()?;
    status(
        cargo()
            .args(["build", "--release", "-p", "lb-userspace", "--bin", "lb"])
            .args(["--target", target])
            .env("LB_EBPF_DIR", &ebpf)
            .env(linker_env(target), AARCH64_GCC)
            // openssl-sys (LDAP checks over TLS) links Debian's arm64
            // libssl (multiarch, installed by `setup::cross_tools`). Its
            // opensslconf.h lives under the triple's include directory,
            // which the cross gcc does not search by itself.
            .env("AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_LIB_DIR", AARCH64_LIB_DIR)
            .env(
                "AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_INCLUDE_DIR",
                "/usr/include",
            )
            .env(
                "CFLAGS_aarch64_unknown_linux_gnu",
                format!("-I{AARCH64_INCLUDE_DIR}"),
            ),
    )?;
    let bin = target_dir()?.join(target).join("release/lb");
    anyhow::ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

/// `CARGO_TARGET_<TRIPLE>_LINKER`.
pub fn linker_env(target: &str) -> String {
    format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace('-', "_")
    )
}

/// Whether `target` is the triple this xtask was built for.
pub fn is_host(target: &str) -> bool {
    target == host_triple()
}

pub fn host_triple() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(target_arch = "aarch64") {
        AARCH64
    } else {
        "unknown"
    }
}

/// Builds the host `lb` (and with it the eBPF objects) and returns the
/// OUT_DIR its build script left them in, from cargo's JSON messages.
fn host_ebpf_dir() -> Result<PathBuf> {
    build_lb_for(None)?;
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "lb-userspace",
        "--bin",
        "lb",
        "--message-format=json",
    ])
    .stderr(Stdio::null());
    let out = cmd
        .output()
        .with_context(|| format!("running {}", display(&cmd)))?;
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| {
            m["reason"] == "build-script-executed"
                && m["package_id"]
                    .as_str()
                    .is_some_and(|id| id.contains("lb-userspace"))
        })
        .and_then(|m| m["out_dir"].as_str().map(PathBuf::from))
        .context("cargo did not report lb-userspace's build script OUT_DIR")?;
    anyhow::ensure!(
        dir.join("lb-xdp").is_file(),
        "no eBPF object in {}",
        dir.display()
    );
    Ok(dir)
}
