//! Suite `ipvs`: IPVS next to lb where IPVS exists. This host's kernel has
//! no ip_vs, so the suite boots Debian bookworm's 6.1 kernel (which has it)
//! under qemu with TCG (KVM hangs on these machines) on a root filesystem
//! built with debootstrap, and runs suites `rate` and `http` inside that one
//! VM: packet rate and softirq CPU per packet of IPVS NAT/DR next to lb
//! NAT/DR (the per-packet comparison: IPVS is not a BPF program, so
//! BPF_PROG_TEST_RUN cannot time it), and HTTP next to lb, nftables,
//! HAProxy and direct. Only the ratios of that run mean anything: TCG
//! scales every absolute number.
//!
//! Cached under `bench/.cache/vm/` (gitignored): `rootfs/` (debootstrap),
//! `disk.img` (ext4 made from it). A rerun reuses both unless the package
//! list or the VM's init changed (stamps next to them); the disk is booted
//! with `snapshot=on`, so a run never changes it. This `lb-bench` binary
//! reaches the VM through a 9p share, together with the results directory.
//! Not part of the smoke run (`--quick` does not apply to building the
//! image): it takes minutes.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};

use crate::{report::Report, Counts, Ctx};

/// Runs a program to completion: its stdout, or an error with its stderr.
fn run_cmd(program: &str, args: &[&str]) -> anyhow::Result<String> {
    lb_tests::netns::run(std::process::Command::new(program).args(args))
}

const PACKAGES: &str = "linux-image-amd64,netbase,ipvsadm,nginx-light,apache2-utils,wrk,iproute2,ethtool,curl,kmod,nftables,haproxy,conntrack";

/// Counts of the runs inside the VM unless given on the command line (or
/// `--quick`, or `LB_BENCH_VM_FULL` for the suites' full counts): sized so
/// that boot, `rate` and `http` take about 20 minutes under TCG on 2
/// shared cores (3 rounds, 3 s, 800 requests took 9 minutes; the rounds
/// varied by 2x, hence more of them; 4 rounds of 3 s since http has the
/// agent's generic-mode rows too, 11 variants instead of 9: 11 minutes on
/// 2026-12-03 with the host at load 3-7).
const VM_COUNTS: Counts = Counts {
    rounds: Some(4),
    secs: Some(3.0),
    requests: Some(1000),
};

const INIT: &str = r#"#!/bin/sh
# PID 1 of the benchmark VM: mount what lb-bench needs, run it from the
# host's share, power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /share
modprobe -a 9p 9pnet_virtio veth ip_vs ip_vs_rr nf_tables nft_chain_nat nf_nat nft_hash nft_numgen nf_conntrack_netlink 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L share /share || echo "lb-bench-vm: no share"
ip link set lo up
echo "lb-bench-vm: kernel $(uname -r), $(nproc) CPUs"
/share/lb-bench $(cat /share/args) --out /share/results 2>&1 | tee /share/log
echo "lb-bench-vm: done"
sync
echo o > /proc/sysrq-trigger
sleep 10
"#;

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/vm")
}

/// Kernel and initrd of the rootfs (`boot/vmlinuz-<version>` and the
/// initrd of that same version, not a `.dpkg-bak` left by a rebuild).
fn boot_files(rootfs: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let boot = rootfs.join("boot");
    for e in std::fs::read_dir(&boot)? {
        let n = e?.file_name().to_string_lossy().to_string();
        if let Some(version) = n.strip_prefix("vmlinuz-") {
            let initrd = boot.join(format!("initrd.img-{version}"));
            ensure!(initrd.exists(), "no {}", initrd.display());
            return Ok((boot.join(&n), initrd));
        }
    }
    bail!("no vmlinuz in {}", boot.display())
}

/// Whether `path` holds exactly `text` (a cache stamp).
fn stamp_is(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s == text)
}

/// Builds `rootfs/` and `disk.img` unless they are there and were built
/// from this package list and init.
fn ensure_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let disk = dir.join("disk.img");
    let disk_stamp = dir.join("disk.stamp");
    let disk_text = format!("{PACKAGES}\n{INIT}");
    if disk.exists() && stamp_is(&disk_stamp, &disk_text) {
        eprintln!("  [ipvs] reusing {}", disk.display());
        return Ok(disk);
    }
    std::fs::create_dir_all(dir)?;
    let pkg_stamp = rootfs.join("lb-bench-packages");
    if !rootfs.join("boot").exists() {
        eprintln!(
            "  [ipvs] debootstrap bookworm into {} (minutes)",
            rootfs.display()
        );
        run_cmd(
            "debootstrap",
            &[
                "--variant=minbase",
                &format!("--include={PACKAGES}"),
                "bookworm",
                &rootfs.to_string_lossy(),
                "http://deb.debian.org/debian",
            ],
        )
        .context("debootstrap (apt-get install debootstrap)")?;
    } else if !stamp_is(&pkg_stamp, PACKAGES) {
        // A rootfs from an older package list: add what is new rather than
        // bootstrapping again.
        eprintln!(
            "  [ipvs] installing the package list into {}",
            rootfs.display()
        );
        let mut args = vec![
            rootfs.to_string_lossy().to_string(),
            "apt-get".into(),
            "install".into(),
            "-y".into(),
            "--no-install-recommends".into(),
        ];
        args.extend(PACKAGES.split(',').map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cmd("chroot", &args).context("apt-get install inside the VM's rootfs")?;
    }
    std::fs::write(&pkg_stamp, PACKAGES)?;
    std::fs::write(rootfs.join("lb-bench-init"), INIT)?;
    run_cmd(
        "chmod",
        &["755", &rootfs.join("lb-bench-init").to_string_lossy()],
    )?;
    eprintln!("  [ipvs] making {}", disk.display());
    let tmp = dir.join("disk.img.tmp");
    run_cmd(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            &rootfs.to_string_lossy(),
            &tmp.to_string_lossy(),
            "3G",
        ],
    )?;
    std::fs::rename(&tmp, &disk)?;
    std::fs::write(&disk_stamp, &disk_text)?;
    Ok(disk)
}

/// How the VM's kernel counts softirq time, from its config: without
/// CONFIG_IRQ_TIME_ACCOUNTING the tick samples it (a tick that lands in a
/// softirq charges the whole tick to softirq).
fn irq_accounting_note(rootfs: &Path) -> String {
    let config = std::fs::read_dir(rootfs.join("boot"))
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("config-"))
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .unwrap_or_default();
    irq_accounting(&config).to_string()
}

fn irq_accounting(config: &str) -> &'static str {
    if config.lines().any(|l| l == "CONFIG_IRQ_TIME_ACCOUNTING=y") {
        "The VM's kernel measures softirq time exactly (CONFIG_IRQ_TIME_ACCOUNTING=y)."
    } else if config.is_empty() {
        "The VM kernel's config was not found: how it accounts softirq time is unknown."
    } else {
        "The VM's kernel has no CONFIG_IRQ_TIME_ACCOUNTING: softirq time is sampled by the timer tick, the same way for every variant but coarsely: a window's softirq cost rests on the few hundred ticks that landed in it."
    }
}

/// lb-bench's arguments inside the VM: `rate` first (minutes), then `http`,
/// so a failing http run still leaves the packet rates.
fn vm_args(quick: bool, full: bool, counts: &Counts) -> String {
    let mut a = vec!["--suite", "rate", "--suite", "http"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    if quick {
        a.push("--quick".into());
    } else if full {
        a.extend(counts.args());
    } else {
        a.extend(counts.or(&VM_COUNTS).args());
    }
    a.join(" ")
}

/// One report from the VM's `rate` and `http` reports: the comparison with
/// IPVS first, then the rate table, then HTTP. Method lines say which suite
/// they belong to.
fn merge(rate: Option<Report>, http: Option<Report>) -> anyhow::Result<Report> {
    let base = rate
        .as_ref()
        .or(http.as_ref())
        .context("the VM produced neither rate nor http results")?;
    let mut report = base.clone();
    report.suite = "ipvs".into();
    report.title = format!(
        "IPVS next to lb in a Debian VM (kernel {}, qemu TCG): packet rate, per-packet softirq cost, HTTP",
        base.machine.kernel
    );
    report.method.clear();
    report.tables.clear();
    report.notes.clear();
    for (name, r) in [("rate", &rate), ("http", &http)] {
        let Some(r) = r else {
            report.notes.push(format!(
                "Suite {name} produced no results in the VM (see its log)."
            ));
            continue;
        };
        report
            .method
            .extend(r.method.iter().map(|m| format!("{name}: {m}")));
        for n in &r.notes {
            if !report.notes.contains(n) {
                report.notes.push(n.clone());
            }
        }
    }
    let mut tables: Vec<_> = rate
        .iter()
        .chain(http.iter())
        .flat_map(|r| r.tables.clone())
        .collect();
    // The comparison the goal names first.
    tables.sort_by_key(|t| t.id != "vs-ipvs");
    report.tables = tables;
    Ok(report)
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let dir = cache_dir();
    let disk = ensure_image(&dir)?;
    let (kernel, initrd) = boot_files(&dir.join("rootfs"))?;
    let share = dir.join(format!("share-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(share.join("results"))?;
    let exe = std::env::current_exe()?;
    std::fs::copy(&exe, share.join("lb-bench"))?;
    // The agent, when built next to us: the http suite inside finds it
    // next to itself and adds the `lb run` rows.
    if let Some(lb) = exe.parent().map(|d| d.join("lb")).filter(|p| p.exists()) {
        std::fs::copy(lb, share.join("lb"))?;
    }
    // TCG is slow: the VM runs counts sized for it unless told otherwise;
    // the ratios of one VM run are the result either way.
    let args = vm_args(
        ctx.quick,
        std::env::var_os("LB_BENCH_VM_FULL").is_some(),
        &ctx.counts,
    );
    std::fs::write(share.join("args"), &args)?;
    eprintln!(
        "  [ipvs] booting {} under qemu TCG: lb-bench {args}",
        kernel.display()
    );
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "2048",
            "-smp",
            "2",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "root=/dev/vda rw console=ttyS0 init=/lb-bench-init quiet",
        ])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            disk.display()
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=share,security_model=none,id=share",
            share.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu (apt-get install qemu-system-x86)")?;
    let out = child.stdout.take().context("qemu stdout")?;
    let start = Instant::now();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap_or_default();
        let l = line.trim_end();
        if !l.is_empty() {
            eprintln!("  [vm {:>4.0}s] {l}", start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(3600) {
            let _ = child.kill();
            bail!("the VM ran for an hour; stopped");
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "qemu exited with {status}");
    let read = |suite: &str| -> Option<Report> {
        let path = share.join(format!("results/{suite}-latest.json"));
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("  [ipvs] {}: {e}", path.display());
                None
            }
        }
    };
    let mut report = merge(read("rate"), read("http"))
        .with_context(|| format!("the VM's results; its log: {}", share.join("log").display()))?;
    report.notes.splice(
        0..0,
        [
            format!(
                "Run inside qemu TCG (2 vCPUs, 2 GiB) on {}: absolute numbers are scaled by emulation, compare ratios only.",
                ctx.machine.describe()
            ),
            format!("Inside the VM: lb-bench {args}."),
            irq_accounting_note(&dir.join("rootfs")),
            "The host's 2 cores were shared with other work (builds and benchmarks of other branches) while the VM ran: that work slows the VM's vCPUs unevenly, and the VM slows it.".into(),
        ],
    );
    let _ = std::fs::remove_dir_all(&share);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Row, Table};

    #[test]
    fn softirq_accounting_from_the_kernel_config() {
        assert!(
            irq_accounting("CONFIG_HZ=250\nCONFIG_IRQ_TIME_ACCOUNTING=y\n").contains("exactly")
        );
        assert!(irq_accounting("# CONFIG_IRQ_TIME_ACCOUNTING is not set\n").contains("sampled"));
        assert!(irq_accounting("").contains("unknown"));
    }

    #[test]
    fn vm_arguments() {
        let none = Counts::default();
        assert_eq!(
            vm_args(true, false, &none),
            "--suite rate --suite http --quick"
        );
        assert_eq!(vm_args(false, true, &none), "--suite rate --suite http");
        assert_eq!(
            vm_args(false, false, &none),
            "--suite rate --suite http --rounds 4 --secs 3 --requests 1000"
        );
        let mine = Counts {
            rounds: Some(1),
            ..Counts::default()
        };
        assert!(vm_args(false, false, &mine).contains("--rounds 1 --secs 3"));
    }

    fn report(suite: &str, tables: &[&str]) -> Report {
        let m = crate::machine::Machine::detect();
        let mut r = Report::new(suite, suite, &m, false);
        r.method = vec![format!("{suite} method")];
        r.notes = vec!["shared note".into(), format!("{suite} note")];
        for id in tables {
            let mut t = Table::new(id, id, "u", "b", "m");
            t.push(Row::new("b", 1.0, vec![]));
            r.tables.push(t);
        }
        r
    }

    #[test]
    fn vm_reports_merge_with_the_ipvs_comparison_first() {
        let r = merge(
            Some(report("rate", &["rate", "vs-ipvs"])),
            Some(report("http", &["ab", "wrk"])),
        )
        .unwrap();
        assert_eq!(r.suite, "ipvs");
        let ids: Vec<&str> = r.tables.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["vs-ipvs", "rate", "ab", "wrk"]);
        assert_eq!(r.method, ["rate: rate method", "http: http method"]);
        assert_eq!(r.notes, ["shared note", "rate note", "http note"]);
        // One suite missing: said so, the other kept.
        let r = merge(None, Some(report("http", &["ab"]))).unwrap();
        assert_eq!(r.tables.len(), 1);
        assert!(
            r.notes[0].contains("rate produced no results"),
            "{:?}",
            r.notes
        );
        assert!(merge(None, None).is_err());
    }
}
