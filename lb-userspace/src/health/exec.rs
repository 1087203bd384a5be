//! Exec check (keepalived's MISC_CHECK): run a command, healthy = exit
//! status 0. No shell: `command[0]` is the program (PATH lookup),
//! `{address}` and `{port}` in any element become the real server's
//! address and the checked port. stdin is /dev/null; the end of stderr (or
//! stdout) is quoted in the error so `lb status` says why.
//!
//! A command that outlives its timeout is killed with its whole process
//! group: the check's future is dropped by the timeout, and the guard
//! below sends SIGKILL to the group (a script's children included), on
//! top of tokio's `kill_on_drop` for the direct child.

use std::{net::SocketAddr, process::Stdio};

use tokio::process::Command;

use crate::config::ExecCheck;

/// How much of the command's output an error quotes.
const QUOTE_MAX: usize = 200;

pub async fn check(addr: SocketAddr, cfg: &ExecCheck) -> Result<(), String> {
    let argv = substitute(&cfg.command, addr);
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so the guard can kill what it started.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("exec {:?} failed to start: {e}", argv[0]))?;
    let mut guard = KillGroup(child.id());
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("exec {:?} failed: {e}", argv[0]))?;
    guard.0 = None;
    if out.status.success() {
        return Ok(());
    }
    let quote = last_line(&out.stderr).or_else(|| last_line(&out.stdout));
    Err(match quote {
        Some(q) => format!("exec {:?}: {}: {q}", argv[0], out.status),
        None => format!("exec {:?}: {}", argv[0], out.status),
    })
}

/// `command` with the placeholders filled in.
pub fn substitute(command: &[String], addr: SocketAddr) -> Vec<String> {
    let address = addr.ip().to_string();
    let port = addr.port().to_string();
    command
        .iter()
        .map(|a| a.replace("{address}", &address).replace("{port}", &port))
        .collect()
}

fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(if line.chars().count() > QUOTE_MAX {
        let cut: String = line.chars().take(QUOTE_MAX).collect();
        format!("{cut}...")
    } else {
        line.to_owned()
    })
}

/// Kills the process group `pid` leads when dropped while still set.
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory effects; -pid names the group
            // created by process_group(0) for this child alone.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let cmd: Vec<String> = ["check", "--host={address}", "{port}", "{address}:{port}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            substitute(&cmd, "[2001:db8::1]:389".parse().unwrap()),
            ["check", "--host=2001:db8::1", "389", "2001:db8::1:389"]
        );
    }
}
