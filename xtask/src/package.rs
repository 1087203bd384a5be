//! `cargo xtask package [--target T]...`: the `lb` Debian package (.deb)
//! for this machine (amd64) and/or aarch64 (arm64), made by cargo-deb from
//! `[package.metadata.deb]` in lb-userspace/Cargo.toml.
//!
//! xtask builds the binary itself (see `build`: the cross build reuses the
//! host's eBPF objects), generates the man pages and shell completions
//! into `target/assets/` (as `cargo xtask man` does) and stages them with
//! the example configs into `target/deb-staging/`, laid out as installed.
//! cargo-deb then runs with `--no-build`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build::{build_lb_for, host_triple, is_host, target_dir, AARCH64};
use crate::cmd::{display, status, workspace_root};

/// Highest glibc symbol version the binary may need: the package's
/// `Depends: libc6 (>= 2.34)` (lb-userspace/Cargo.toml) says so.
const GLIBC_DEPENDS: (u32, u32) = (2, 34);

#[derive(clap::Args)]
pub struct Options {
    /// Rust target triple (repeatable; default: this machine). Supported:
    /// this machine and aarch64-unknown-linux-gnu.
    #[arg(long)]
    target: Vec<String>,
}

pub fn package(o: Options) -> Result<()> {
    let targets = if o.target.is_empty() {
        vec![host_triple().to_string()]
    } else {
        o.target
    };
    for target in &targets {
        let deb = build_deb(target)?;
        println!("{}", deb.display());
    }
    Ok(())
}

/// Debian's name for the architecture of a supported Rust target.
pub fn debian_arch(target: &str) -> Result<&'static str> {
    match target {
        "x86_64-unknown-linux-gnu" => Ok("amd64"),
        AARCH64 => Ok("arm64"),
        _ => bail!("unsupported target {target}: x86_64-unknown-linux-gnu or {AARCH64}"),
    }
}

/// Builds the binary for `target`, stages the other files and runs
/// cargo-deb; the .deb's path.
pub fn build_deb(target: &str) -> Result<PathBuf> {
    let arch = debian_arch(target)?;
    crate::setup::cargo_deb().context("installing cargo-deb")?;
    crate::setup::cross_tools(Some(target))?;
    let bin = build_lb_for(Some(target))?;
    check_glibc(&bin)?;
    stage(&workspace_root().join("target/deb-staging"))?;

    let out_dir = target_dir()?.join("debian");
    fs::create_dir_all(&out_dir)?;
    let mut deb = Command::new("cargo");
    deb.current_dir(workspace_root())
        .args(["deb", "-p", "lb-userspace", "--no-build", "--output"])
        .arg(&out_dir);
    if !is_host(target) {
        // cargo-deb strips with `STRIP_<debian triple>` when cross-building.
        deb.args(["--target", target])
            .env("STRIP_aarch64-linux-gnu", "aarch64-linux-gnu-strip")
            .env("OBJCOPY_aarch64-linux-gnu", "aarch64-linux-gnu-objcopy");
    }
    eprintln!("+ {}", display(&deb));
    let out = deb
        .output()
        .with_context(|| format!("cannot start {}", display(&deb)))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{} failed ({})", display(&deb), out.status);
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    anyhow::ensure!(
        path.is_file() && path.to_string_lossy().ends_with(&format!("_{arch}.deb")),
        "cargo-deb printed {} instead of an {arch} .deb",
        path.display()
    );
    status(Command::new("dpkg-deb").arg("--contents").arg(&path))?;
    Ok(path)
}

/// Fills `staging` (emptied first) with the files laid out as installed.
fn stage(staging: &Path) -> Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging).with_context(|| format!("emptying {}", staging.display()))?;
    }
    let root = workspace_root();
    let examples = staging.join("usr/share/doc/lb/examples");
    fs::create_dir_all(&examples)?;
    for entry in fs::read_dir(root.join("examples"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            fs::copy(&path, examples.join(path.file_name().context("no name")?))?;
        }
    }
    let assets = root.join("target/assets");
    crate::man::generate(&assets).context("generating the man pages and completions")?;
    let pages = stage_man(&assets.join("man"), staging)?;
    let completions = stage_completions(&assets.join("completions"), staging)?;
    anyhow::ensure!(
        pages > 0 && completions == 3,
        "{} has {pages} man pages and {completions} of 3 completions",
        assets.display()
    );
    Ok(())
}

/// `man/*.1` gzipped (as Debian ships man pages) into usr/share/man/man1.
fn stage_man(from: &Path, staging: &Path) -> Result<usize> {
    let Ok(dir) = fs::read_dir(from) else {
        return Ok(0);
    };
    let to = staging.join("usr/share/man/man1");
    fs::create_dir_all(&to)?;
    let mut n = 0;
    for entry in dir {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "1") {
            continue;
        }
        let name = path.file_name().context("no name")?.to_string_lossy();
        let gz = fs::File::create(to.join(format!("{name}.gz")))?;
        // -n: no name or time stamp in the header, so the bytes are
        // reproducible.
        let ok = Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(&path)
            .stdout(gz)
            .status()
            .context("running gzip")?
            .success();
        anyhow::ensure!(ok, "gzip {} failed", path.display());
        n += 1;
    }
    Ok(n)
}

/// Completions where Debian's bash-completion, zsh and fish look.
fn stage_completions(from: &Path, staging: &Path) -> Result<usize> {
    let mut n = 0;
    for (file, dest) in [
        ("lb.bash", "usr/share/bash-completion/completions/lb"),
        ("_lb", "usr/share/zsh/vendor-completions/_lb"),
        ("lb.fish", "usr/share/fish/vendor_completions.d/lb.fish"),
    ] {
        let src = from.join(file);
        if src.is_file() {
            let dest = staging.join(dest);
            fs::create_dir_all(dest.parent().context("no parent")?)?;
            fs::copy(&src, &dest)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Fails when `bin` needs a newer glibc than the package depends on.
fn check_glibc(bin: &Path) -> Result<()> {
    let out = Command::new("readelf")
        .args(["--version-info", "--wide"])
        .arg(bin)
        .output()
        .context("running readelf (binutils)")?;
    let needed = max_glibc(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("no GLIBC_ version in {}", bin.display()))?;
    if needed > GLIBC_DEPENDS {
        bail!(
            "{} needs glibc {}.{}, but the package depends on libc6 (>= {}.{}): raise \
             `depends` in lb-userspace/Cargo.toml and GLIBC_DEPENDS",
            bin.display(),
            needed.0,
            needed.1,
            GLIBC_DEPENDS.0,
            GLIBC_DEPENDS.1
        );
    }
    Ok(())
}

/// The highest `GLIBC_x.y` in readelf's version information.
fn max_glibc(readelf: &str) -> Option<(u32, u32)> {
    readelf
        .split(|c: char| c.is_whitespace())
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let (major, minor) = v.split_once('.')?;
            let minor = minor.split('.').next()?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_glibc_version_is_found() {
        let text = "  0x0010: Name: GLIBC_2.2.5  Flags: none\n  Name: GLIBC_2.34 Flags\n\
                    Name: GLIBC_2.17  Name: GLIBC_PRIVATE";
        assert_eq!(max_glibc(text), Some((2, 34)));
        assert_eq!(max_glibc("nothing"), None);
    }

    /// The shipped unit, with its binary pointed at /bin/true (the check
    /// wants the ExecStart binaries to exist): directives, capabilities,
    /// dependencies. The package test checks the installed unit as is.
    #[test]
    fn systemd_unit_passes_systemd_analyze_verify() {
        let unit = workspace_root().join("contrib/systemd/lb.service");
        let text = fs::read_to_string(&unit).unwrap();
        assert!(text.contains("ExecStart=/usr/sbin/lb run"), "{text}");
        let dir = std::env::temp_dir().join(format!("lb-unit-verify-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("lb.service");
        fs::write(&copy, text.replace("/usr/sbin/lb", "/bin/true")).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output();
        let _ = fs::remove_dir_all(&dir);
        let out = out.expect("systemd-analyze is missing: apt-get install systemd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify: {stderr}"
        );
    }
}
