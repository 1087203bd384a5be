//! Exec check (keepalived's MISC_CHECK): run a command, healthy = exit
//! status 0. No shell: `command[0]` is the program (PATH lookup),
//! `{address}` and `{port}` in any element become the real server's
//! address and the checked port. stdin is /dev/null; the end of stderr (or
//! stdout) is quoted in the error so `lb status` says why.
//!
//! # Bounded output
//! stdout and stderr are read as they come (so the command never blocks
//! on a full pipe), and only the last [`KEEP`] bytes of each are kept: a
//! script that prints 100 MB costs the agent a few KiB, not 100 MB. The
//! end is kept rather than the start because a script says why it failed
//! last (`curl: (7) Failed to connect ...`), and the error quotes that
//! last line.
//!
//! # Nothing outlives a check
//! The command runs in its own process group, and that whole group is
//! killed (SIGKILL) when the check ends, however it ends: after the
//! command exits (success or failure: a script's `daemon &` would
//! otherwise live on, one more at every interval), and when the check's
//! timeout drops this future (the guard below, on top of tokio's
//! `kill_on_drop` for the direct child). A descendant that left the group
//! on purpose (`setsid`) is out of reach; if it keeps the pipes open, the
//! check stops reading them [`DRAIN_GRACE`] after the command exited.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
};

use super::CheckError;
use crate::config::ExecCheck;

/// How much of the command's output an error quotes.
const QUOTE_MAX: usize = 200;
/// How much of the end of stdout, and of stderr, is kept (4 KiB each).
pub const KEEP: usize = 4096;
/// Read size: large enough that draining a chatty script is cheap.
const READ_CHUNK: usize = 16 * 1024;
/// After the command exited and its group was killed, how long the pipes
/// may take to reach end-of-file (a descendant outside the group may hold
/// them open forever).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

pub async fn check(addr: SocketAddr, cfg: &ExecCheck) -> Result<(), CheckError> {
    let argv = substitute(&cfg.command, addr);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so the guard can kill what it started.
        .process_group(0)
        .spawn()
        .map_err(|e| CheckError::Spawn {
            program: argv[0].clone(),
            cause: e.to_string(),
        })?;
    let group = KillGroup(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Tail::default(), Tail::default());

    let status = {
        let pipes = async { tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err)) };
        tokio::pin!(pipes);
        let mut pipes_closed = false;
        let status = loop {
            tokio::select! {
                s = child.wait() => break s,
                _ = &mut pipes, if !pipes_closed => pipes_closed = true,
            }
        };
        // The command is done: whatever it left behind in its group goes
        // now, which also closes the pipes those leftovers held.
        group.kill();
        if !pipes_closed {
            let _ = tokio::time::timeout(DRAIN_GRACE, &mut pipes).await;
        }
        status.map_err(|e| CheckError::Wait {
            program: argv[0].clone(),
            cause: e.to_string(),
        })?
    };
    if status.success() {
        return Ok(());
    }
    Err(CheckError::Exit {
        program: argv[0].clone(),
        status,
        said: last_line(err.bytes()).or_else(|| last_line(out.bytes())),
    })
}

/// Reads `pipe` to its end, keeping only its tail in `into`.
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, into: &mut Tail) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; READ_CHUNK];
    // A read error ends the reading like end-of-file: the exit status
    // still decides the check.
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        into.push(&buf[..n]);
    }
}

/// The last [`KEEP`] bytes written to it.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= KEEP {
            self.buf.clear();
            self.buf.extend_from_slice(&chunk[chunk.len() - KEEP..]);
            return;
        }
        let overflow = (self.buf.len() + chunk.len()).saturating_sub(KEEP);
        self.buf.drain(..overflow);
        self.buf.extend_from_slice(chunk);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
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

/// The process group `pid` leads: killed by [`KillGroup::kill`] and again
/// when dropped (the drop is what a timeout triggers).
struct KillGroup(Option<u32>);

impl KillGroup {
    /// SIGKILL to every process left in the group.
    ///
    /// Called after the leader was reaped: a pid is not handed out again
    /// while a process group of that number still has members, so the
    /// signal reaches the leftovers or, when there are none, no one (bar a
    /// wrap of the whole pid space within these microseconds).
    fn kill(&self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory effects; -pid names the group
            // created by process_group(0) for this child alone.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
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

    #[test]
    fn tail_keeps_the_last_bytes_only() {
        let mut t = Tail::default();
        t.push(b"first line\n");
        assert_eq!(t.bytes(), b"first line\n");
        // Many small writes: never more than KEEP, always the newest.
        for i in 0..10_000u32 {
            t.push(format!("{i}\n").as_bytes());
        }
        assert_eq!(t.bytes().len(), KEEP);
        assert!(t.bytes().ends_with(b"9998\n9999\n"));
        // One write larger than KEEP: its end.
        let big: Vec<u8> = (0..3 * KEEP).map(|i| (i % 251) as u8).collect();
        t.push(&big);
        assert_eq!(t.bytes(), &big[big.len() - KEEP..]);
        t.push(b"\nreason\n");
        assert_eq!(last_line(t.bytes()).as_deref(), Some("reason"));
        assert_eq!(t.bytes().len(), KEEP);
    }
}
