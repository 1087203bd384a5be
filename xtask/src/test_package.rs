//! `cargo xtask test-package`: the amd64 .deb installed with dpkg into a
//! clean Debian bookworm root (debootstrap, minbase plus systemd for
//! `systemd-analyze`), then purged. Slow (the first run bootstraps for
//! minutes), so not part of `cargo xtask test`.
//!
//! The bootstrapped root is cached in `target/pkg-test/rootfs` (stamped
//! with its package list, made again when that changes) and copied for
//! every run, so each run starts clean. Commands run in the copy through
//! `chroot` inside a private mount namespace (`unshare --mount`) that has
//! its own /proc and /sys: nothing is mounted on the host, and nothing
//! runs in or reaches another network namespace.
//!
//! Then the unit under systemd: another copy with the package installed is
//! booted by systemd-nspawn (systemd as its PID 1, a private network with
//! only `lo`), and `test_package_systemd.sh` runs inside it: start with
//! READY=1, the capability set, reload (and a rejected one), stop keeping
//! the pins, adoption, restart after kill -9, no restart loop on an
//! invalid config, `dpkg -r` unloading.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::build::host_triple;
use crate::cmd::{display, status};

/// What the clean root holds besides minbase: `systemd-analyze` (package
/// systemd; it brings init-system-helpers, which the unit's maintainer
/// scripts call).
const INCLUDE: &str = "systemd";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// Paths a purge may leave that are not the package's: dpkg's own records
/// of a package that was installed once, and the state systemd-analyze
/// writes when the verify check runs it.
const BOOKKEEPING: &[&str] = &[
    "/var/lib/dpkg/",
    "/var/log/",
    "/var/cache/",
    "/run/systemd/",
];

pub fn test_package() -> Result<()> {
    crate::setup::packages(crate::setup::PACKAGE_TEST_PACKAGES)?;
    let deb = crate::package::build_deb(host_triple())?;
    let dir = crate::build::target_dir()?.join("pkg-test");
    let clean = bootstrap(&dir)?;
    let root = dir.join("work");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    status(Command::new("cp").args(["-a"]).arg(&clean).arg(&root))?;
    fs::copy(&deb, root.join("lb.deb"))?;
    let before = tree(&root)?;

    let mut checks = Checks::default();
    let staged = staged_files()?;
    checks.run("dpkg -i lb.deb", || {
        expect_ok(chroot(&root, &["dpkg", "-i", "/lb.deb"])?).map(drop)
    });
    checks.run("files in place (binary, unit, conffile, docs)", || {
        files_in_place(&root)
    });
    checks.run(
        &format!("man pages and completions ({} staged)", staged.len()),
        || staged_installed(&root, &staged),
    );
    checks.run("unit installed disabled", || {
        let wants = root.join("etc/systemd/system/multi-user.target.wants/lb.service");
        anyhow::ensure!(!wants.exists(), "{} exists", wants.display());
        Ok(())
    });
    checks.run("systemd-analyze verify lb.service", || {
        let out = chroot(
            &root,
            &[
                "systemd-analyze",
                "verify",
                "--man=no",
                "/usr/lib/systemd/system/lb.service",
            ],
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(stderr.trim().is_empty(), "it says: {stderr}");
        expect_ok(out).map(drop)
    });
    checks.run("lb --version", || {
        let out = expect_ok(chroot(&root, &["lb", "--version"])?)?;
        anyhow::ensure!(out.starts_with("lb "), "printed {out:?}");
        Ok(())
    });
    checks.run("lb check --config /etc/lb/lb.toml", || {
        let out = expect_ok(chroot(
            &root,
            &["lb", "check", "--config", "/etc/lb/lb.toml"],
        )?)?;
        anyhow::ensure!(out.to_lowercase().contains("config ok"), "printed {out:?}");
        Ok(())
    });
    // A file of the user's own next to the config: purge takes /etc/lb
    // with everything in it (postrm), as the README says.
    fs::write(root.join("etc/lb/notify.sh"), "#!/bin/sh\n")?;
    checks.run("dpkg --purge lb", || {
        expect_ok(chroot(&root, &["dpkg", "--purge", "lb"])?).map(drop)
    });
    checks.run("purge leaves no files", || {
        let after = tree(&root)?;
        let left: Vec<&String> = after
            .difference(&before)
            .filter(|p| !BOOKKEEPING.iter().any(|b| p.starts_with(b)))
            .collect();
        anyhow::ensure!(left.is_empty(), "left behind: {left:?}");
        Ok(())
    });

    let _ = fs::remove_dir_all(&root);
    if let Err(e) = under_systemd(&dir, &clean, &deb, &mut checks) {
        checks.run("boot the root under systemd-nspawn", || Err(e));
    }
    checks.report()
}

/// The unit under systemd: a copy of the clean root with the package
/// installed, booted by systemd-nspawn with a private network (its own
/// namespace with only `lo`), runs test_package_systemd.sh. nspawn gives
/// the container no /sys/fs/bpf, which every systemd host has: one is
/// mounted in the container's mount namespace first.
fn under_systemd(dir: &Path, clean: &Path, deb: &Path, checks: &mut Checks) -> Result<()> {
    let root = dir.join("boot");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    status(Command::new("cp").args(["-a"]).arg(clean).arg(&root))?;
    fs::copy(deb, root.join("lb.deb"))?;
    expect_ok(chroot(&root, &["dpkg", "-i", "/lb.deb"])?)?;
    let log = fs::File::create(dir.join("nspawn.log"))?;
    let mut nspawn = Command::new("systemd-nspawn")
        .arg("-D")
        .arg(&root)
        .args([
            "--boot",
            "--private-network",
            "--register=no",
            "--keep-unit",
            "--capability=CAP_BPF,CAP_PERFMON",
            "--system-call-filter=bpf perf_event_open",
            &format!("--machine=lbpkg-{}", std::process::id()),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting systemd-nspawn (apt-get install systemd-container)")?;
    let result = booted_checks(nspawn.id(), checks);
    // SIGTERM asks nspawn to shut the container down.
    let _ = Command::new("kill").arg(nspawn.id().to_string()).status();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while nspawn.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = nspawn.kill();
    let _ = nspawn.wait();
    let _ = fs::remove_dir_all(&root);
    result
}

fn booted_checks(nspawn: u32, checks: &mut Checks) -> Result<()> {
    // The container's systemd is nspawn's child.
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    let init = loop {
        let out = Command::new("pgrep")
            .args(["-P", &nspawn.to_string()])
            .output()?;
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !pid.is_empty() {
            let state = Command::new("nsenter")
                .args(["-t", &pid, "-a", "systemctl", "is-system-running"])
                .output()?;
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break pid;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the container did not finish booting in 120 s (target/pkg-test/nspawn.log)"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let inside = |script: &str| {
        Command::new("nsenter")
            .args(["-t", &init, "-a", "sh", "-c", script])
            .output()
            .context("nsenter")
    };
    expect_ok(inside(
        "mountpoint -q /sys/fs/bpf || { mount -o remount,rw /sys && mkdir -p /sys/fs/bpf \
         && mount -t bpf bpf /sys/fs/bpf && mount -o remount,ro /sys; }",
    )?)?;
    let out = inside(include_str!("test_package_systemd.sh"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut seen = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("CHECK ") else {
            continue;
        };
        seen += 1;
        let (verdict, what) = rest.split_once(' ').unwrap_or((rest, ""));
        let (name, detail) = what.split_once(" -- ").unwrap_or((what, ""));
        let name = format!("systemd: {name}");
        if verdict == "ok" {
            checks.run(&name, || Ok(()));
        } else {
            let detail = detail.to_string();
            checks.run(&name, || bail!("{detail}"));
        }
    }
    anyhow::ensure!(
        seen == 9,
        "the systemd script reported {seen} of 9 checks: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The cached clean root, made by debootstrap when missing or stale.
fn bootstrap(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let stamp = dir.join("rootfs.stamp");
    let want = format!("{SUITE} minbase {INCLUDE} {MIRROR}");
    if rootfs.join("usr/bin/systemd-analyze").exists()
        && fs::read_to_string(&stamp).is_ok_and(|s| s == want)
    {
        return Ok(rootfs);
    }
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    fs::create_dir_all(dir)?;
    eprintln!("debootstrap {SUITE} into {} (minutes)", rootfs.display());
    status(
        Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
            .arg(&rootfs)
            .arg(MIRROR),
    )?;
    fs::write(&stamp, want)?;
    Ok(rootfs)
}

/// Runs `args` in `root` with its own /proc and /sys (lb check looks up
/// interfaces in /sys/class/net), in a private mount namespace.
fn chroot(root: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount -t proc proc \"$0/proc\" && mount -t sysfs sysfs \"$0/sys\" && \
             exec chroot \"$0\" \"$@\"",
        )
        .arg(root)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DEBIAN_FRONTEND", "noninteractive");
    eprintln!("+ chroot {} {}", root.display(), args.join(" "));
    cmd.output()
        .with_context(|| format!("cannot start {}", display(&cmd)))
}

/// stdout of a successful command, else its output as the error.
fn expect_ok(out: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{}: {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

fn files_in_place(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &str| -> Result<u32> {
        Ok(fs::metadata(root.join(p))
            .with_context(|| format!("/{p} is missing"))?
            .permissions()
            .mode()
            & 0o7777)
    };
    anyhow::ensure!(mode("usr/sbin/lb")? == 0o755, "/usr/sbin/lb is not 0755");
    mode("usr/lib/systemd/system/lb.service")?;
    anyhow::ensure!(
        mode("etc/lb/lb.toml")? == 0o640,
        "/etc/lb/lb.toml is not 0640"
    );
    mode("usr/share/doc/lb/README.md")?;
    mode("usr/share/doc/lb/examples/full.toml")?;
    let conffiles = fs::read_to_string(root.join("var/lib/dpkg/info/lb.conffiles"))
        .context("the package has no conffiles")?;
    anyhow::ensure!(
        conffiles.lines().any(|l| l.trim() == "/etc/lb/lb.toml"),
        "/etc/lb/lb.toml is not a conffile: {conffiles:?}"
    );
    Ok(())
}

/// Man pages and completions in `target/deb-staging` (what this package
/// was given), as installed paths.
fn staged_files() -> Result<Vec<String>> {
    let staging = crate::cmd::workspace_root().join("target/deb-staging");
    Ok(tree(&staging)?
        .into_iter()
        .filter(|p| p.starts_with("/usr/share/man/") || p.contains("completion"))
        .filter(|p| staging.join(&p[1..]).is_file())
        .collect())
}

fn staged_installed(root: &Path, staged: &[String]) -> Result<()> {
    anyhow::ensure!(
        staged.iter().any(|p| p.ends_with("/lb.1.gz")),
        "no man page lb.1 was staged (`cargo xtask man`)"
    );
    for p in staged {
        let len = fs::metadata(root.join(&p[1..]))
            .with_context(|| format!("{p} is missing"))?
            .len();
        anyhow::ensure!(len > 0, "{p} is empty");
    }
    Ok(())
}

/// Every path under `root` (not following /proc and /sys), as absolute
/// paths inside it.
fn tree(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let rel = format!("/{}", path.strip_prefix(root)?.display());
            if rel == "/proc" || rel == "/sys" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            }
            out.insert(rel);
        }
    }
    Ok(out)
}

/// Pass/fail per check, every check run even after a failure.
#[derive(Default)]
struct Checks {
    results: Vec<(String, Result<()>, f64)>,
}

impl Checks {
    fn run(&mut self, name: &str, f: impl FnOnce() -> Result<()>) {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let r = f();
        if let Err(e) = &r {
            eprintln!("FAILED: {name}: {e:#}");
        }
        self.results
            .push((name.to_string(), r, t.elapsed().as_secs_f64()));
    }

    fn report(self) -> Result<()> {
        eprintln!("\n==> test-package summary");
        let mut failed = 0;
        for (name, r, secs) in &self.results {
            let verdict = if r.is_ok() { "ok" } else { "FAILED" };
            failed += usize::from(r.is_err());
            eprintln!("  {verdict:<6} {name:<76} {secs:>6.1} s");
        }
        println!(
            "test-package: {} passed, {failed} failed",
            self.results.len() - failed
        );
        if failed > 0 {
            bail!("{failed} check(s) failed");
        }
        Ok(())
    }
}
