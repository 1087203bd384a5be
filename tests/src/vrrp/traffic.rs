//! Client traffic across a failover: a long download checked byte for
//! byte, a fast ping that measures the longest gap in reachability, and
//! `ab` run while a closure takes the master down.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::client::{ab_for, AbReport};
use crate::netns::Netns;
use crate::process::{wait_until, ChildGuard};

/// A file of `len` bytes that repeats no 4 KiB block (a lost, doubled or
/// misplaced segment changes its digest), written to `path`.
pub fn write_pattern(path: &Path, len: usize) -> Result<()> {
    let mut data = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < len {
        // xorshift64*: cheap, deterministic, no repeats at this length.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// `sha256sum FILE`'s digest.
pub fn sha256(path: &Path) -> Result<String> {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!(
            "sha256sum {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// A curl download running in the background.
#[derive(Debug)]
pub struct Download {
    process: ChildGuard,
    pub out: PathBuf,
    log: PathBuf,
}

/// How a download ended.
#[derive(Clone, Debug)]
pub struct DownloadReport {
    pub success: bool,
    pub bytes: u64,
    pub sha256: String,
    /// curl's stderr (why it failed).
    pub error: String,
}

impl Download {
    /// `curl URL -o out` from `ns`. No time limit short of `max`: a
    /// failover stalls the transfer for seconds and TCP retransmits across.
    pub fn start(ns: &Netns, url: &str, out: PathBuf, max: Duration) -> Result<Download> {
        let log = out.with_extension("curl.log");
        let mut cmd = ns.command("curl");
        cmd.args(["-sS", "-g", "--max-time", &max.as_secs().to_string(), "-o"])
            .arg(&out)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let process = ChildGuard::spawn(format!("curl {url}"), &mut cmd)?;
        Ok(Download { process, out, log })
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    /// Waits up to `limit` for curl to end; what it got.
    pub fn finish(mut self, limit: Duration) -> Result<DownloadReport> {
        if !wait_until(limit, || self.process.try_wait().is_some()) {
            bail!(
                "the download did not end within {limit:?} ({} bytes so far)",
                self.bytes()
            );
        }
        let status = self.process.try_wait().context("curl vanished")?;
        Ok(DownloadReport {
            success: status.success(),
            bytes: self.bytes(),
            sha256: sha256(&self.out).unwrap_or_default(),
            error: std::fs::read_to_string(&self.log).unwrap_or_default(),
        })
    }
}

/// `ping -D -i 0.01` in the background: every reply is timestamped, so
/// the longest silence between two replies is the client's outage.
#[derive(Debug)]
pub struct Pinger {
    process: ChildGuard,
    out: PathBuf,
}

#[derive(Clone, Debug)]
pub struct PingReport {
    pub replies: usize,
    /// Longest time between two consecutive replies.
    pub longest_gap: Duration,
}

impl Pinger {
    pub fn start(ns: &Netns, target: &str, out: PathBuf) -> Result<Pinger> {
        let mut cmd = ns.command("ping");
        cmd.args(["-D", "-n", "-i", "0.01", "-W", "1", target])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(Stdio::null());
        let process = ChildGuard::spawn(format!("ping {target}"), &mut cmd)?;
        Ok(Pinger { process, out })
    }

    pub fn finish(mut self) -> Result<PingReport> {
        self.process.stop(libc::SIGINT, Duration::from_secs(3));
        let text = std::fs::read_to_string(&self.out)?;
        Ok(parse_ping(&text))
    }
}

/// Reply times from `ping -D` lines: `[1764720000.123456] 64 bytes from ...`.
fn parse_ping(text: &str) -> PingReport {
    let times: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let longest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    PingReport {
        replies: times.len(),
        longest_gap: Duration::from_secs_f64(longest.max(0.0)),
    }
}

/// Runs `ab -t seconds -c concurrency url` from `ns` while `during` runs
/// on this thread (after `lead`, so ab is in full swing); ab's report and
/// what `during` returned.
pub fn ab_during<R>(
    ns: &Netns,
    url: &str,
    seconds: u32,
    concurrency: u32,
    lead: Duration,
    during: impl FnOnce() -> R,
) -> (Result<AbReport>, R) {
    std::thread::scope(|s| {
        let ab = s.spawn(|| ab_for(ns, url, seconds, concurrency));
        std::thread::sleep(lead);
        let r = during();
        let report = ab
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the ab thread panicked")));
        (report, r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_gap_is_the_longest_silence() {
        let text = "PING 1.2.3.4 (1.2.3.4) 56(84) bytes of data.\n\
                    [100.000] 64 bytes from 1.2.3.4: icmp_seq=1 ttl=64 time=0.1 ms\n\
                    [100.010] 64 bytes from 1.2.3.4: icmp_seq=2 ttl=64 time=0.1 ms\n\
                    [100.650] 64 bytes from 1.2.3.4: icmp_seq=66 ttl=64 time=0.1 ms\n\
                    [100.660] 64 bytes from 1.2.3.4: icmp_seq=67 ttl=64 time=0.1 ms\n";
        let r = parse_ping(text);
        assert_eq!(r.replies, 4);
        assert!((r.longest_gap.as_secs_f64() - 0.64).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn pattern_does_not_repeat() {
        let dir = crate::tempdir::TempDir::new("pattern").unwrap();
        let p = dir.join("f");
        write_pattern(&p, 64 << 10).unwrap();
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 64 << 10);
        assert_ne!(data[..4096], data[4096..8192]);
    }
}
