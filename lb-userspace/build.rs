//! Builds the XDP object (`lb-ebpf`) with the nightly toolchain and
//! bpf-linker; the agent embeds it with `include_bytes_aligned!`.
//!
//! `LB_EBPF_DIR=<dir>` embeds objects built before instead (the host
//! build's OUT_DIR): a cross build (`cargo xtask build --target
//! aarch64-unknown-linux-gnu`) reuses them, since an XDP program's bytes do
//! not depend on the CPU the agent runs on, rather than building them again.
use anyhow::{anyhow, Context as _};

/// The files `lb_userspace` includes from OUT_DIR: the eBPF crate's
/// binaries (aya-build copies them there under these names).
const OBJECTS: [&str; 2] = ["lb-xdp", "xdp-baseline"];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=LB_EBPF_DIR");
    if let Some(dir) = std::env::var_os("LB_EBPF_DIR") {
        let dir = std::path::PathBuf::from(dir);
        let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
        for name in OBJECTS {
            let (from, to) = (dir.join(name), out_dir.join(name));
            println!("cargo:rerun-if-changed={}", from.display());
            std::fs::copy(&from, &to).with_context(|| {
                format!(
                    "LB_EBPF_DIR: copying {} to {}",
                    from.display(),
                    to.display()
                )
            })?;
        }
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "lb-ebpf")
        .ok_or_else(|| anyhow!("lb-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?;
    let package = aya_build::Package {
        name: name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
