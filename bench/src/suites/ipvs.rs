//! Suite `ipvs`: IPVS next to lb where IPVS exists. This host's kernel has
//! no ip_vs, so the suite boots Debian bookworm's 6.1 kernel (which has it)
//! under qemu with TCG (KVM hangs on these machines) on a root filesystem
//! built with debootstrap, and runs suite `http` inside that one VM, where
//! it measures IPVS NAT/DR next to lb NAT/DR, nftables and direct. Only the
//! ratios of that run mean anything: TCG scales every absolute number.
//!
//! Cached under `bench/.cache/vm/` (gitignored): `rootfs/` (debootstrap),
//! `disk.img` (ext4 made from it). A rerun reuses both; the disk is booted
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

use crate::{netns::run as run_cmd, report::Report, Ctx};

const PACKAGES: &str = "linux-image-amd64,netbase,ipvsadm,nginx-light,apache2-utils,wrk,iproute2,ethtool,curl,kmod,nftables,haproxy";

const INIT: &str = r#"#!/bin/sh
# PID 1 of the benchmark VM: mount what lb-bench needs, run it from the
# host's share, power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /share
modprobe -a 9p 9pnet_virtio veth ip_vs ip_vs_rr nf_tables nft_chain_nat nf_nat nft_hash nft_numgen 2>/dev/null
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

/// Builds `rootfs/` and `disk.img` unless they are there.
fn ensure_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let disk = dir.join("disk.img");
    if disk.exists() {
        eprintln!("  [ipvs] reusing {}", disk.display());
        return Ok(disk);
    }
    std::fs::create_dir_all(dir)?;
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
    }
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
    Ok(disk)
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
    // TCG is slow: the VM always runs the smoke counts unless told
    // otherwise; the ratios of one VM run are the result either way.
    let args = if ctx.quick || std::env::var_os("LB_BENCH_VM_FULL").is_none() {
        "--suite http --quick"
    } else {
        "--suite http"
    };
    std::fs::write(share.join("args"), args)?;
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
    let json = share.join("results/http-latest.json");
    let text = std::fs::read_to_string(&json).with_context(|| {
        format!(
            "the VM produced no results; its log: {}",
            share.join("log").display()
        )
    })?;
    let mut report: Report = serde_json::from_str(&text).context("the VM's http results")?;
    report.suite = "ipvs".into();
    report.title = format!(
        "HTTP in a Debian VM (kernel {}, qemu TCG): IPVS next to lb",
        report.machine.kernel
    );
    report.notes.insert(
        0,
        format!(
            "Run inside qemu TCG on {}: absolute numbers are scaled by emulation, compare ratios only.",
            ctx.machine.describe()
        ),
    );
    let _ = std::fs::remove_dir_all(&share);
    Ok(report)
}
