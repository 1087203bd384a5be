//! The machine a run happened on, recorded with every result: numbers from
//! different machines (this 2-core VM, a Pi) are only compared as ratios.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// First `model name` of /proc/cpuinfo (or `Model` on a Raspberry Pi).
    pub cpu: String,
    pub cores: usize,
    pub arch: String,
}

impl Machine {
    pub fn detect() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            kernel,
            cpu: cpu_model(&cpuinfo),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            arch: std::env::consts::ARCH.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "kernel {}, {} ({} cores, {})",
            self.kernel, self.cpu, self.cores, self.arch
        )
    }
}

/// x86 names the CPU in `model name`; arm64 kernels often only give `Model`
/// (the board) or nothing but `CPU part`.
pub fn cpu_model(cpuinfo: &str) -> String {
    for key in ["model name", "Model", "Hardware", "CPU part"] {
        for line in cpuinfo.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim() == key && !v.trim().is_empty() {
                    return v.trim().to_string();
                }
            }
        }
    }
    "unknown CPU".into()
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ` and as a file-name stamp
/// `YYYYMMDDTHHMMSSZ`, without a date crate.
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc(secs)
}

pub fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0).0, "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.
        assert_eq!(utc(951_827_696).0, "2000-02-29T12:34:56Z");
        assert_eq!(utc(1_795_307_963).1, "20261122T003923Z");
    }

    #[test]
    fn cpu_model_x86_and_pi() {
        let x86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(x86), "AMD EPYC 7B13");
        let pi = "processor\t: 0\nCPU part\t: 0xd08\n\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(cpu_model(pi), "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(cpu_model(""), "unknown CPU");
    }
}
