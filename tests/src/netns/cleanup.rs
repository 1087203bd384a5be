//! Removing namespaces (and scratch directories) the guards could not:
//! those of a run killed with SIGKILL ([`remove_stale`], called by `cargo
//! xtask test`, `demo`, `bench` and lb-bench at start), and those of this
//! run when Ctrl-C or SIGTERM ends it ([`install_signal_cleanup`], for
//! programs that exit on a signal rather than unwind, such as lb-bench).
//!
//! Both find their namespaces by name alone: every name starts with
//! `lbt<pid>x` (`unique_prefix`), with the pid of the process that made it.

use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use super::{delete, own_prefix, stop_running, PREFIX};

/// Names in `ip netns list`.
fn namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The pid in a name made from `unique_prefix` (`lbt<pid>x<n>...`).
fn creator(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Namespaces named with this harness's prefix whose creating process is
/// gone (a run killed with SIGKILL cannot clean up after itself); their
/// names.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in namespaces() {
        let Some(pid) = creator(&name) else { continue };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        delete(&name);
        removed.push(name);
    }
    removed
}

/// Removes every namespace and scratch directory (`TempDir`) this process
/// made, guards or not: for a signal handler's way out.
pub fn remove_own() {
    // `lbt123x` must not match `lbt1234x...`: the `x` ends the pid.
    let own = format!("{}x", own_prefix());
    for name in namespaces() {
        if name.starts_with(&own) {
            delete(&name);
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&own) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// On SIGINT/SIGTERM: end the commands `run` waits for, remove this run's
/// namespaces and scratch directories ([`remove_own`]) and exit with 130.
/// `who` names the program in the message. The handler only sets a flag
/// (nothing else is safe in a handler); a thread watching the flag does the
/// work. A handler, unlike a blocked signal mask, is not inherited by the
/// programs we start, so they still stop on Ctrl-C. Call first thing in
/// `main`.
pub fn install_signal_cleanup(who: &'static str) {
    // SAFETY: installing an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(move || loop {
        let sig = SIGNALLED.load(Ordering::SeqCst);
        if sig != 0 {
            eprintln!("\n{who}: signal {sig}: removing the namespaces of this run");
            stop_running();
            remove_own();
            std::process::exit(130);
        }
        std::thread::sleep(Duration::from_millis(100));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_reads_the_pid_from_a_name() {
        assert_eq!(creator("lbt4242x0-client"), Some(4242));
        assert_eq!(creator("lbt4242x17"), Some(4242));
        // Not ours: another prefix, or no pid.
        assert_eq!(creator("lbb4242-cli"), None);
        assert_eq!(creator("lbtx0"), None);
        assert_eq!(creator("hkitbench-a"), None);
    }
}
