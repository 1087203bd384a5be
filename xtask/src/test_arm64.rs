//! `cargo xtask test-arm64`: the arm64 .deb proven on an emulated arm64
//! machine, as a Raspberry Pi 4 runs it. Debian bookworm's arm64 kernel
//! boots under qemu-system-aarch64 (TCG: machine `virt`, a Cortex-A72,
//! direct kernel boot with the rootfs's own vmlinuz and initrd) with
//! systemd as PID 1 on a disk made from a debootstrap root (`--arch arm64`,
//! second stage run through qemu-user-static and binfmt_misc). Inside,
//! `test_arm64_vm.sh` (from a 9p share, with the .deb) installs the
//! package with dpkg, starts it with the packaged unit and runs seed 001's
//! NAT and seed 000's DR end to end with `xdp_mode = "generic"` (a Pi 4's
//! NIC has no native XDP), then measures lb against IPVS (the VM's kernel
//! has ip_vs) on seed 001's workload. Pass/fail and the time of each check
//! are printed; any failure makes the command fail.
//!
//! The VM is a host this test created: the packaged unit runs lb in its
//! root namespace (as on a Pi), every other host in a namespace inside it,
//! and the VM has no network device: nothing leaves it.
//!
//! Cached under `bench/.cache/arm64/` (gitignored): `rootfs/` (stamped
//! with the debootstrap inputs) and `disk.img` (stamped with those and the
//! test unit). Each is rebuilt only when its stamp differs; the disk boots
//! with `snapshot=on`, so every run starts from the same clean disk.
//! Slow (minutes to boot under TCG on a shared machine, the first run
//! bootstraps for many more), so not part of `cargo xtask test`.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::cmd::status;

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the VM's root holds besides minbase: the kernel (with ip_vs and
/// the 9p modules), systemd as init, the tools the checks run.
const PACKAGES: &str = "linux-image-arm64,systemd,systemd-sysv,udev,dbus,kmod,netbase,iproute2,ethtool,procps,curl,apache2-utils,nginx-light,ipvsadm";

/// The unit that runs the checks once the VM has booted: mounts the
/// host's share, runs the script from it with its output on the serial
/// console and in the share, and powers the VM off whatever happened.
const TEST_UNIT: &str = "\
[Unit]
Description=cargo xtask test-arm64: the checks from the host's share
After=network.target

[Service]
Type=simple
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyAMA0
ExecStart=/bin/sh -c 'modprobe -a 9p 9pnet_virtio; mkdir -p /share; mount -t 9p -o trans=virtio,version=9p2000.L share /share && bash /share/test_arm64_vm.sh 2>&1 | tee /share/log; systemctl poweroff'

[Install]
WantedBy=multi-user.target
";
/// The initrd only needs to find the root disk. Debian's default
/// (`MODULES=most`) copies some 1,500 driver modules, one emulated `cp`
/// each: over 20 minutes of the second stage here; this list takes
/// seconds. Written into the root between the two debootstrap stages.
const INITRAMFS_CONF: &str = "MODULES=list\n";
const INITRAMFS_HOOK: &str = "\
#!/bin/sh
# cargo xtask test-arm64: what the VM's initrd needs to mount /dev/vda.
[ \"$1\" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk ext4 crc32c_generic
";

const TEST_UNIT_NAME: &str = "lb-arm64-test.service";
const VM_SCRIPT: &str = include_str!("test_arm64_vm.sh");

/// The kernel command line: the serial console is the test's output, so
/// no getty on it; nothing else that would start on its own (nginx's own
/// unit, apt's timers) competes with the checks for the emulated CPUs.
const CMDLINE: &str = "root=/dev/vda rw console=ttyAMA0 quiet \
    systemd.mask=serial-getty@ttyAMA0.service systemd.mask=nginx.service \
    systemd.mask=apt-daily.timer systemd.mask=apt-daily-upgrade.timer";

#[derive(clap::Args)]
pub struct Options {
    /// Requests of each `ab` run of the lb/IPVS benchmark inside the VM
    /// (1000: about 25 s per run under TCG on a shared 2-core host).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    /// ab's concurrency in the benchmark (seed 001's workload: 30).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Benchmark rounds (each: lb, then IPVS).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Stop the VM (and fail) after this many minutes.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_minutes: u64,
    /// Memory of the VM in MiB.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(512..))]
    memory_mib: u32,
    /// Test this arm64 .deb instead of building one (`cargo xtask package
    /// --target aarch64-unknown-linux-gnu` makes it).
    #[arg(long, value_name = "PATH")]
    deb: Option<PathBuf>,
}

pub fn test_arm64(o: Options) -> Result<()> {
    let started = Instant::now();
    crate::setup::packages(crate::setup::ARM64_VM_PACKAGES)?;
    let deb = match &o.deb {
        Some(p) => p.clone(),
        None => crate::package::build_deb(crate::build::AARCH64)?,
    };
    check_deb(&deb)?;
    let dir = cache_dir();
    fs::create_dir_all(&dir)?;
    let rootfs = ensure_rootfs(&dir)?;
    let disk = ensure_disk(&dir, &rootfs)?;
    let (kernel, initrd) = boot_files(&rootfs)?;

    let share = dir.join(format!("share-{}", std::process::id()));
    let _ = fs::remove_dir_all(&share);
    fs::create_dir_all(&share)?;
    fs::copy(&deb, share.join("lb.deb")).with_context(|| format!("copying {}", deb.display()))?;
    fs::write(share.join("test_arm64_vm.sh"), VM_SCRIPT)?;
    fs::write(
        share.join("args"),
        format!(
            "REQUESTS={} CONCURRENCY={} ROUNDS={}\n",
            o.requests, o.concurrency, o.rounds
        ),
    )?;
    let vm = Vm {
        kernel,
        initrd,
        disk,
        share: share.clone(),
        memory_mib: o.memory_mib,
    };
    let run = boot(&vm, Duration::from_secs(o.timeout_minutes * 60), &dir);
    // The share's copy is complete even when the console dropped lines.
    let log = fs::read_to_string(share.join("log")).ok();
    let _ = fs::remove_dir_all(&share);
    let run = run?;
    let outcome = parse_log(log.as_deref().unwrap_or(&run.console));
    report(&outcome, &run, started.elapsed())
}

fn cache_dir() -> PathBuf {
    crate::cmd::workspace_root().join("bench/.cache/arm64")
}

/// The package must be the arm64 one (a user's `--deb` may be anything).
fn check_deb(deb: &Path) -> Result<()> {
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ensure!(
        name.ends_with("_arm64.deb"),
        "{} is not an arm64 .deb (want lb_<version>_arm64.deb from `cargo xtask package \
         --target aarch64-unknown-linux-gnu`)",
        deb.display()
    );
    ensure!(deb.is_file(), "{} does not exist", deb.display());
    Ok(())
}

/// What the root filesystem is made from; it is made again when this
/// changes.
fn rootfs_stamp() -> String {
    format!(
        "debootstrap --arch=arm64 --variant=minbase {SUITE} {MIRROR}\n{PACKAGES}\n\
         {INITRAMFS_CONF}{INITRAMFS_HOOK}"
    )
}

/// What the disk image is made from: the root and the test unit.
fn disk_stamp() -> String {
    format!("{}{TEST_UNIT_NAME}\n{TEST_UNIT}", rootfs_stamp())
}

/// Whether the stamp at `path` says the cached thing was made from `want`.
fn fresh(path: &Path, want: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s == want)
}

/// Whether a binfmt_misc entry (`/proc/sys/fs/binfmt_misc/qemu-aarch64`)
/// runs arm64 binaries inside a chroot: enabled, and with the F flag (the
/// interpreter opened when registered, so the chroot need not hold it).
fn binfmt_usable(entry: &str) -> bool {
    let enabled = entry.lines().next() == Some("enabled");
    let fixed = entry
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .is_some_and(|f| f.contains('F'));
    enabled && fixed
}

/// binfmt_misc mounted and qemu-aarch64 registered (binfmt-support does
/// both on a booted Debian; a fresh container has neither mounted).
fn binfmt() -> Result<()> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    if !dir.join("status").exists() {
        status(
            Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(dir),
        )
        .context("mounting binfmt_misc")?;
    }
    let entry = dir.join("qemu-aarch64");
    if !entry.exists() {
        status(Command::new("update-binfmts").args(["--enable", "qemu-aarch64"]))?;
    }
    let text = fs::read_to_string(&entry).unwrap_or_default();
    ensure!(
        binfmt_usable(&text),
        "{} is not an enabled entry with the F flag ({text:?}): install qemu-user-static and \
         binfmt-support, then `update-binfmts --enable qemu-aarch64`",
        entry.display()
    );
    Ok(())
}

/// The cached arm64 root, bootstrapped (both stages) when missing or stale.
fn ensure_rootfs(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let stamp = dir.join("rootfs.stamp");
    if rootfs.join("boot").exists() && fresh(&stamp, &rootfs_stamp()) {
        eprintln!("reusing {}", rootfs.display());
        return Ok(rootfs);
    }
    binfmt()?;
    let _ = fs::remove_file(&stamp);
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    eprintln!(
        "debootstrap --arch=arm64 {SUITE} into {} (the second stage runs emulated: tens of minutes)",
        rootfs.display()
    );
    status(
        Command::new("debootstrap")
            .args([
                "--arch=arm64",
                "--foreign",
                "--variant=minbase",
                &format!("--include={PACKAGES}"),
                SUITE,
            ])
            .arg(&rootfs)
            .arg(MIRROR),
    )?;
    small_initrd(&rootfs)?;
    status(
        Command::new("chroot")
            .arg(&rootfs)
            .args(["/debootstrap/debootstrap", "--second-stage"]),
    )
    .context("debootstrap's second stage under qemu-user-static")?;
    fs::write(&stamp, rootfs_stamp())?;
    Ok(rootfs)
}

/// initramfs-tools told to build an initrd with the disk's modules only.
fn small_initrd(rootfs: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let etc = rootfs.join("etc/initramfs-tools");
    fs::create_dir_all(etc.join("conf.d"))?;
    fs::create_dir_all(etc.join("hooks"))?;
    fs::write(etc.join("conf.d/lb-arm64-vm"), INITRAMFS_CONF)?;
    let hook = etc.join("hooks/lb-arm64-vm");
    fs::write(&hook, INITRAMFS_HOOK)?;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The cached ext4 disk made from the root with the test unit enabled.
fn ensure_disk(dir: &Path, rootfs: &Path) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    let stamp = dir.join("disk.stamp");
    if disk.exists() && fresh(&stamp, &disk_stamp()) {
        eprintln!("reusing {}", disk.display());
        return Ok(disk);
    }
    let _ = fs::remove_file(&stamp);
    let units = rootfs.join("etc/systemd/system");
    fs::write(units.join(TEST_UNIT_NAME), TEST_UNIT)?;
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    let link = wants.join(TEST_UNIT_NAME);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{TEST_UNIT_NAME}"), &link)?;
    eprintln!("making {}", disk.display());
    let tmp = dir.join("disk.img.tmp");
    status(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(rootfs)
            .arg(&tmp)
            .arg("3G"),
    )?;
    fs::rename(&tmp, &disk)?;
    fs::write(&stamp, disk_stamp())?;
    Ok(disk)
}

/// The root's kernel and the initrd of the same version.
fn boot_files(rootfs: &Path) -> Result<(PathBuf, PathBuf)> {
    let boot = rootfs.join("boot");
    let mut names: Vec<String> = fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let version = names
        .iter()
        .rev()
        .find_map(|n| n.strip_prefix("vmlinuz-"))
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))?;
    let initrd = boot.join(format!("initrd.img-{version}"));
    ensure!(initrd.exists(), "no {}", initrd.display());
    Ok((boot.join(format!("vmlinuz-{version}")), initrd))
}

/// What the VM boots.
struct Vm {
    kernel: PathBuf,
    initrd: PathBuf,
    disk: PathBuf,
    share: PathBuf,
    memory_mib: u32,
}

/// qemu-system-aarch64's arguments: TCG on both host cores (a Cortex-A72
/// as in a Pi 4; `-cpu max` emulates pointer authentication and is
/// slower), no network device, the disk as a snapshot, the share as 9p.
fn qemu_args(vm: &Vm) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "-machine",
        "virt",
        "-cpu",
        "cortex-a72",
        "-accel",
        "tcg,thread=multi",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
        "-m",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    a.push(vm.memory_mib.to_string().into());
    a.push("-kernel".into());
    a.push(vm.kernel.clone().into());
    a.push("-initrd".into());
    a.push(vm.initrd.clone().into());
    a.push("-append".into());
    a.push(CMDLINE.into());
    a.push("-drive".into());
    a.push(
        format!(
            "file={},format=raw,if=virtio,snapshot=on",
            vm.disk.display()
        )
        .into(),
    );
    a.push("-virtfs".into());
    a.push(
        format!(
            "local,path={},mount_tag=share,security_model=none,id=share",
            vm.share.display()
        )
        .into(),
    );
    a
}

/// What one boot printed and how long it took.
struct Run {
    console: String,
    /// From qemu's start to the script's first line.
    booted: Option<Duration>,
    total: Duration,
}

/// Boots the VM, echoes its console, stops it after `timeout`.
fn boot(vm: &Vm, timeout: Duration, dir: &Path) -> Result<Run> {
    let args = qemu_args(vm);
    eprintln!(
        "+ qemu-system-aarch64 {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = Command::new("qemu-system-aarch64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-aarch64 (apt-get install qemu-system-arm)")?;
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, timed_out, pid) = (done.clone(), timed_out.clone(), child.id());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > timeout {
                    timed_out.store(true, Ordering::SeqCst);
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let mut console = String::new();
    let mut booted = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        let line = line.trim_end_matches('\r');
        if booted.is_none() && line.starts_with("test-arm64 VM:") {
            booted = Some(start.elapsed());
        }
        eprintln!("[vm {:>5.0}s] {line}", start.elapsed().as_secs_f64());
        console.push_str(line);
        console.push('\n');
    }
    let exit = child.wait()?;
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    let _ = fs::write(dir.join("console.log"), &console);
    ensure!(
        !timed_out.load(Ordering::SeqCst),
        "the VM ran longer than {} minutes and was stopped (console: {})",
        timeout.as_secs() / 60,
        dir.join("console.log").display()
    );
    ensure!(exit.success(), "qemu-system-aarch64 exited with {exit}");
    Ok(Run {
        console,
        booted,
        total: start.elapsed(),
    })
}

/// One check as the VM's script reported it.
#[derive(Debug, PartialEq)]
struct Check {
    ok: bool,
    secs: f64,
    name: String,
    detail: String,
}

/// One benchmark run: variant (`lb` or `ipvs`), round, requests/s.
#[derive(Debug, PartialEq)]
struct Sample {
    variant: String,
    round: u32,
    rps: f64,
}

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    checks: Vec<Check>,
    bench: Vec<Sample>,
    /// The script reached its end (no DONE: it or the VM died on the way).
    done: bool,
}

/// The script's CHECK, BENCH and DONE lines (anything else, such as the
/// kernel's messages on the same console, is ignored).
fn parse_log(text: &str) -> Outcome {
    let mut out = Outcome::default();
    for line in text.lines().map(str::trim) {
        if line == "DONE" {
            out.done = true;
        } else if let Some(rest) = line.strip_prefix("CHECK ") {
            let mut f = rest.splitn(3, ' ');
            let (Some(verdict), Some(secs), Some(what)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (name, detail) = what.split_once(" -- ").unwrap_or((what, ""));
            out.checks.push(Check {
                ok: verdict == "ok",
                secs: secs.parse().unwrap_or(f64::NAN),
                name: name.to_string(),
                detail: detail.trim().to_string(),
            });
        } else if let Some(rest) = line.strip_prefix("BENCH ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let [variant, round, rps] = f[..] {
                if let (Ok(round), Ok(rps)) = (round.parse(), rps.parse()) {
                    out.bench.push(Sample {
                        variant: variant.to_string(),
                        round,
                        rps,
                    });
                }
            }
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median requests/s of lb and of IPVS and their ratio (lb / IPVS).
fn bench_ratio(samples: &[Sample]) -> Option<(f64, f64, f64)> {
    let of = |v: &str| {
        median(
            samples
                .iter()
                .filter(|s| s.variant == v)
                .map(|s| s.rps)
                .collect(),
        )
    };
    let (lb, ipvs) = (of("lb")?, of("ipvs")?);
    (ipvs > 0.0).then_some((lb, ipvs, lb / ipvs))
}

fn report(outcome: &Outcome, run: &Run, total: Duration) -> Result<()> {
    eprintln!("\n==> test-arm64 summary");
    for c in &outcome.checks {
        let verdict = if c.ok { "ok" } else { "FAILED" };
        eprintln!("  {verdict:<6} {:<74} {:>7.1} s", c.name, c.secs);
        if !c.ok {
            eprintln!("         {}", c.detail);
        }
    }
    if let Some((lb, ipvs, ratio)) = bench_ratio(&outcome.bench) {
        let rounds: Vec<String> = outcome
            .bench
            .iter()
            .map(|s| format!("{} {}: {:.0}", s.variant, s.round, s.rps))
            .collect();
        println!(
            "test-arm64 bench (seed 001 NAT, ab, medians): lb generic {lb:.0} req/s, IPVS {ipvs:.0} req/s, lb/IPVS {ratio:.2} ({})",
            rounds.join(", ")
        );
    }
    let failed = outcome.checks.iter().filter(|c| !c.ok).count();
    println!(
        "test-arm64: {} passed, {failed} failed; VM booted to the checks in {}, VM {:.0} s, whole command {:.0} s",
        outcome.checks.len() - failed,
        run.booted
            .map(|d| format!("{:.0} s", d.as_secs_f64()))
            .unwrap_or_else(|| "(never)".into()),
        run.total.as_secs_f64(),
        total.as_secs_f64()
    );
    if outcome.checks.is_empty() {
        bail!("the VM reported no checks (console: bench/.cache/arm64/console.log)");
    }
    if !outcome.done {
        bail!("the VM's script did not reach its end (console: bench/.cache/arm64/console.log)");
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> Vm {
        Vm {
            kernel: "/c/rootfs/boot/vmlinuz-6.1.0-41-arm64".into(),
            initrd: "/c/rootfs/boot/initrd.img-6.1.0-41-arm64".into(),
            disk: "/c/disk.img".into(),
            share: "/c/share-1".into(),
            memory_mib: 2048,
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
        let i = args.iter().position(|a| a == flag).unwrap_or_else(|| {
            panic!("no {flag} in {args:?}");
        });
        &args[i + 1]
    }

    #[test]
    fn qemu_boots_the_roots_kernel_on_an_emulated_a72_without_network() {
        let args: Vec<String> = qemu_args(&vm())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(after(&args, "-machine"), "virt");
        assert_eq!(after(&args, "-cpu"), "cortex-a72");
        assert!(after(&args, "-accel").starts_with("tcg"));
        assert_eq!(after(&args, "-smp"), "2");
        assert_eq!(after(&args, "-m"), "2048");
        assert_eq!(after(&args, "-nic"), "none");
        assert_eq!(
            after(&args, "-kernel"),
            "/c/rootfs/boot/vmlinuz-6.1.0-41-arm64"
        );
        assert_eq!(
            after(&args, "-initrd"),
            "/c/rootfs/boot/initrd.img-6.1.0-41-arm64"
        );
        let drive = after(&args, "-drive");
        assert!(drive.starts_with("file=/c/disk.img,"), "{drive}");
        assert!(drive.contains("snapshot=on"), "{drive}");
        assert!(after(&args, "-virtfs").contains("path=/c/share-1,mount_tag=share"));
        let cmdline = after(&args, "-append");
        assert!(cmdline.contains("root=/dev/vda") && cmdline.contains("console=ttyAMA0"));
        assert!(cmdline.contains("systemd.mask=serial-getty@ttyAMA0.service"));
        assert!(args.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn stamps_follow_their_inputs() {
        let dir = std::env::temp_dir().join(format!("xtask-arm64-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let stamp = dir.join("rootfs.stamp");
        assert!(!fresh(&stamp, &rootfs_stamp()), "no stamp yet");
        fs::write(&stamp, rootfs_stamp()).unwrap();
        assert!(fresh(&stamp, &rootfs_stamp()));
        // Another package list (or suite, or mirror) means another root.
        let older = rootfs_stamp().replace(",ipvsadm", "");
        fs::write(&stamp, older).unwrap();
        assert!(!fresh(&stamp, &rootfs_stamp()));
        fs::remove_dir_all(&dir).unwrap();
        // The disk is made again when the root or the test unit changes.
        assert!(disk_stamp().starts_with(&rootfs_stamp()));
        assert!(disk_stamp().contains(TEST_UNIT));
        assert!(rootfs_stamp().contains("--arch=arm64") && rootfs_stamp().contains(SUITE));
        assert!(PACKAGES.contains("linux-image-arm64") && PACKAGES.contains("ipvsadm"));
    }

    #[test]
    fn binfmt_entry_must_be_enabled_with_the_fix_binary_flag() {
        let good =
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n";
        assert!(binfmt_usable(good));
        assert!(!binfmt_usable(&good.replace("enabled", "disabled")));
        assert!(!binfmt_usable(&good.replace("flags: PF", "flags: P")));
        assert!(!binfmt_usable(""));
    }

    #[test]
    fn only_an_arm64_deb_is_accepted() {
        let e = check_deb(Path::new("target/debian/lb_0.1.0-1_amd64.deb")).unwrap_err();
        assert!(e.to_string().contains("not an arm64 .deb"), "{e}");
        let e = check_deb(Path::new("/nonexistent/lb_0.1.0-1_arm64.deb")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn the_vm_log_gives_checks_benchmark_and_end() {
        let log = "\
[   12.3] virtio_blk virtio1: [vda] 6291456 512-byte logical blocks
test-arm64 VM: aarch64 6.1.0-41-arm64, requests 1000, concurrency 30, rounds 3
CHECK ok 1.5 VM: aarch64, systemd as PID 1
CHECK FAILED 30.2 nat: curl through the VIP reaches all 3 real servers -- only realserver1 answered
CHECK ok 120.0 bench: lb generic and IPVS NAT
BENCH lb 1 410.5
BENCH ipvs 1 300.0
BENCH lb 2 390.5
BENCH ipvs 2 320.0
BENCH lb 3 400.0
BENCH ipvs 3 bogus
DONE
";
        let o = parse_log(log);
        assert!(o.done);
        assert_eq!(o.checks.len(), 3);
        assert!(o.checks[0].ok);
        assert_eq!(o.checks[0].secs, 1.5);
        assert_eq!(o.checks[0].name, "VM: aarch64, systemd as PID 1");
        assert!(!o.checks[1].ok);
        assert_eq!(
            o.checks[1].name,
            "nat: curl through the VIP reaches all 3 real servers"
        );
        assert_eq!(o.checks[1].detail, "only realserver1 answered");
        // The malformed line is dropped, not read as 0.
        assert_eq!(o.bench.len(), 5);
        let (lb, ipvs, ratio) = bench_ratio(&o.bench).unwrap();
        assert_eq!(lb, 400.0);
        assert_eq!(ipvs, 310.0);
        assert!((ratio - 400.0 / 310.0).abs() < 1e-9);
        // A VM that died on the way: no DONE, and no ratio without IPVS.
        let o = parse_log("CHECK ok 1.0 x\nBENCH lb 1 100\n");
        assert!(!o.done);
        assert_eq!(bench_ratio(&o.bench), None);
    }
}
