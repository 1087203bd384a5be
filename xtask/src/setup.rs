//! `cargo xtask setup`: the Debian packages, the nightly's rust-src,
//! bpf-linker built against the nightly's LLVM (see TOOLCHAIN.md) and bpffs.
//! Each step checks first and does nothing when already done.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::status;

/// Debian packages the build, the tests, the demo and the benchmarks run.
const PACKAGES: &[&str] = &[
    "nginx-light",
    "apache2-utils",
    "wrk",
    "curl",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "slapd",
    "ldap-utils",
    "keepalived",
    "bpftool",
    "netsniff-ng",
    "socat",
    // lb-bench's comparisons (the smoke run in `cargo xtask test` too).
    "nftables",
    "conntrack",
    "haproxy",
    // systemd-analyze, for the check of the packaged unit (contrib/systemd).
    "systemd",
    // LDAP checks over TLS link the system OpenSSL (native-tls); the
    // tests make their CA and certificates with the openssl CLI.
    "libssl-dev",
    "pkg-config",
    "openssl",
    // The scale-out tests (tests/tests/bgp_scaleout.rs): FRR on the
    // router, BIRD 2 on the lb nodes, each started by hand inside a test
    // namespace (their Debian services are stopped: see
    // `stop_routing_daemons`).
    "frr",
    "bird2",
];

/// The Debian services of the routing daemons the tests start by hand:
/// installing the packages starts them in the root namespace, where
/// nothing may run for the tests.
const ROUTING_SERVICES: &[&str] = &["frr", "bird"];

/// Only for `cargo xtask bench --suite ipvs`: a Debian VM under qemu TCG.
pub const VM_PACKAGES: &[&str] = &["debootstrap", "qemu-system-x86"];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Only for `cargo xtask package` and `test-package`: cargo-deb, pinned to
/// a release that builds with this machine's Rust 1.95 (it declares
/// rust-version 1.85), and what the chroot test needs.
const CARGO_DEB_VERSION: &str = "3.8.0";
pub const PACKAGE_TEST_PACKAGES: &[&str] = &["debootstrap", "systemd-container"];

/// Only for `cargo xtask test-arm64`: the emulated arm64 machine and what
/// bootstraps its root (foreign debootstrap, its second stage run through
/// qemu-user-static registered with binfmt_misc).
pub const ARM64_VM_PACKAGES: &[&str] = &[
    "qemu-system-arm",
    "qemu-user-static",
    "binfmt-support",
    "debootstrap",
];

/// Only for builds for another architecture: Debian's cross linker (with
/// its binutils, whose strip cargo-deb uses).
const AARCH64_PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu"];

pub fn setup() -> Result<()> {
    packages(PACKAGES).context("installing Debian packages")?;
    stop_routing_daemons();
    rust_src().context("adding rust-src to the nightly toolchain")?;
    bpf_linker().context("installing bpf-linker")?;
    bpffs().context("mounting bpffs")?;
    Ok(())
}

/// Installs those of `wanted` that are missing (nothing to do: no apt run).
pub fn packages(wanted: &[&str]) -> Result<()> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status}\\n"])
        .args(wanted)
        .output()
        .context("running dpkg-query (is this Debian?)")?;
    let listed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| {
            !listed
                .lines()
                .any(|l| l.starts_with(&format!("{p} ")) && l.ends_with("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing missing packages: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null());
        c
    };
    status(&mut apt(&["update", "-q"]))?;
    status(apt(&["install", "-y", "-q"]).args(&missing))
}

/// Stops and disables frr and bird if their packages started them (with
/// systemd, or with their init scripts where systemd is not PID 1).
/// Best effort: a machine without them running needs nothing.
fn stop_routing_daemons() {
    let systemd = std::path::Path::new("/run/systemd/system").exists();
    for service in ROUTING_SERVICES {
        let quiet = |c: &mut Command| {
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if systemd {
            if quiet(Command::new("systemctl").args(["is-active", "--quiet", service])) {
                eprintln!("stopping the {service} service (the tests run their own daemons in namespaces)");
            }
            quiet(Command::new("systemctl").args(["disable", "--now", service]));
        } else {
            let script = format!("/etc/init.d/{service}");
            if std::path::Path::new(&script).exists() {
                quiet(Command::new(&script).arg("stop"));
            }
        }
    }
}

fn rust_src() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("running rustup")?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is not installed (rustup says: {}); the eBPF \
             program builds with nightly: `rustup toolchain install nightly`",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(());
    }
    status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> Result<()> {
    if let Ok(out) = Command::new("bpf-linker").arg("--version").output() {
        if String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    // bpf-linker must link the same LLVM as the nightly rustc that emits the
    // eBPF bitcode; link it against the nightly's own libLLVM. The binary
    // keeps a RUNPATH into the prefix, so the prefix must stay.
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".local/share/lb-llvm");
    let sysroot = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("rustc +nightly --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}/lib", sysroot.display()))?;
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir)?;
    for name in [
        std::ffi::OsStr::new("libLLVM.so"),
        lib.file_name().context("libLLVM without a name")?,
    ] {
        let link = libdir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let llvm_major = lib
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libLLVM.so."))
        .and_then(|v| v.split(['.', '-']).next())
        .context("cannot read the LLVM version from the library name")?
        .to_string();
    status(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )
}

/// What a build for `target` needs beyond `setup`: nothing for this
/// machine; for aarch64 the cross linker and the Rust standard library for
/// the target.
pub fn cross_tools(target: Option<&str>) -> Result<()> {
    let Some(target) = target.filter(|t| !crate::build::is_host(t)) else {
        return Ok(());
    };
    if target != crate::build::AARCH64 {
        bail!(
            "unsupported target {target}: this machine or {}",
            crate::build::AARCH64
        );
    }
    packages(AARCH64_PACKAGES).context("installing the cross linker")?;
    arm64_openssl().context("installing Debian's arm64 libssl-dev")?;
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(crate::cmd::workspace_root())
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    status(
        Command::new("rustup")
            .args(["target", "add", target])
            .current_dir(crate::cmd::workspace_root()),
    )
}

/// cargo-deb at [`CARGO_DEB_VERSION`] (installed with `--locked`, so its
/// dependencies are the ones its release was tested with).
pub fn cargo_deb() -> Result<()> {
    if let Ok(out) = Command::new("cargo").args(["deb", "--version"]).output() {
        if String::from_utf8_lossy(&out.stdout).contains(CARGO_DEB_VERSION) {
            return Ok(());
        }
    }
    status(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
    ]))
}

fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
    {
        return Ok(());
    }
    status(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

/// The arm64 OpenSSL that a cross-built `lb` links (LDAP checks over TLS
/// use the system's libssl3 through native-tls): Debian's libssl-dev:arm64,
/// installed side by side with the host's through multiarch (which also
/// brings the host's libssl-dev to the same version, as multiarch
/// requires).
fn arm64_openssl() -> Result<()> {
    use crate::build::{AARCH64_INCLUDE_DIR, AARCH64_LIB_DIR};
    let have = |p: &str| std::path::Path::new(p).exists();
    if have(&format!("{AARCH64_LIB_DIR}/libssl.so"))
        && have(&format!("{AARCH64_INCLUDE_DIR}/openssl/opensslconf.h"))
    {
        return Ok(());
    }
    let out = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .context("running dpkg")?;
    if !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|a| a.trim() == "arm64")
    {
        eprintln!("adding arm64 to dpkg's architectures (multiarch), for libssl-dev:arm64");
        status(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    }
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null());
        c
    };
    status(&mut apt(&["update", "-q"]))?;
    status(&mut apt(&["install", "-y", "-q", "libssl-dev:arm64"]))
}
