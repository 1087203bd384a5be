//! What a privileged test needs before it starts: root's capabilities and
//! the programs it runs. A missing prerequisite is a panic that says what
//! to do, never a silent skip (CI runs these tests as root on a machine
//! `cargo xtask setup` prepared).

use std::path::{Path, PathBuf};

/// Capability numbers (linux/capability.h), as bits of `CapEff`.
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process has every capability in `caps` (root has them).
pub fn has_capabilities(caps: &[u32]) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    caps.iter().all(|&c| effective & (1 << c) != 0)
}

/// Panics, saying `what` the test does and to run it as root, unless this
/// process has CAP_SYS_ADMIN and CAP_NET_ADMIN (what namespaces and XDP
/// need).
#[track_caller]
pub fn require_root(what: &str) {
    require_capabilities(what, &[CAP_SYS_ADMIN, CAP_NET_ADMIN]);
}

/// Panics, saying `what` the test does and to run it as root, unless this
/// process has every capability in `caps`.
#[track_caller]
pub fn require_capabilities(what: &str, caps: &[u32]) {
    assert!(
        has_capabilities(caps),
        "this test {what}: run it as root (cargo xtask test does)"
    );
}

/// The path of `program` (searched in the system's bin directories), or a
/// panic naming the Debian `package` that has it.
#[track_caller]
pub fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{program}` is not installed: this test needs it (apt-get install {package}; \
         cargo xtask setup installs it)"
    );
}
