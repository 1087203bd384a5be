//! Notify scripts (keepalived's `notify_master`, `notify`, ..., and the
//! `fence` hook), run for one instance in the order the transitions
//! happened, one at a time, each with a timeout, never blocking the state
//! machine: [`Notifier::notify`] only queues. keepalived forks and forgets
//! (issues 1991/1884: scripts overlap, finish out of order, hang forever);
//! here a script that outlives its timeout is killed with its whole process
//! group, and its exit status and the start of its output are logged.
//!
//! No shell: `Script::argv[0]` is the program (PATH lookup), as
//! keepalived runs a script without `script_security` shell quirks.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
    sync::{mpsc, oneshot},
};

use crate::config::Script;

/// Bytes of stdout and of stderr kept (and logged) per run; the rest is
/// read and dropped, so a chatty script can neither block on a full pipe
/// nor fill the log.
pub const OUTPUT_LIMIT: usize = 4096;
/// How long output is still read after a script exited: a child it left in
/// the background may hold the pipes open forever.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// How one run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptStatus {
    Exited(i32),
    Signalled(i32),
    /// Killed (with its process group) at the timeout.
    TimedOut,
    /// Could not be started or waited for.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptOutcome {
    pub status: ScriptStatus,
    /// At most [`OUTPUT_LIMIT`] bytes each.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes written beyond the limit (stdout, stderr).
    pub dropped: (usize, usize),
}

/// Runs `script` with `extra_args` appended, stdin from /dev/null, in a
/// process group of its own, and waits at most `timeout` for it.
pub async fn run_script(
    script: &Script,
    extra_args: &[String],
    timeout: Duration,
) -> ScriptOutcome {
    let failed = |e: String| ScriptOutcome {
        status: ScriptStatus::Failed(e),
        stdout: Vec::new(),
        stderr: Vec::new(),
        dropped: (0, 0),
    };
    let Some((program, args)) = script.argv.split_first() else {
        return failed("empty command".into());
    };
    let spawned = Command::new(program)
        .args(args)
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {program:?}: {e}")),
    };
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    let stdout = tokio::spawn(read_bounded(child.stdout.take()));
    let stderr = tokio::spawn(read_bounded(child.stderr.take()));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => ScriptStatus::Exited(code),
            (None, Some(sig)) => ScriptStatus::Signalled(sig),
            (None, None) => ScriptStatus::Failed(format!("{s}")),
        },
        Ok(Err(e)) => ScriptStatus::Failed(format!("waiting for {program:?}: {e}")),
        Err(_) => {
            if let Some(pid) = group {
                // SAFETY: kill(2) has no memory effects; -pid is the group
                // process_group(0) created for this script alone.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.wait().await;
            ScriptStatus::TimedOut
        }
    };
    let (stdout, out_dropped) = collect(stdout).await;
    let (stderr, err_dropped) = collect(stderr).await;
    ScriptOutcome {
        status,
        stdout,
        stderr,
        dropped: (out_dropped, err_dropped),
    }
}

async fn collect(task: tokio::task::JoinHandle<(Vec<u8>, usize)>) -> (Vec<u8>, usize) {
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_GRACE, task).await {
        Ok(Ok(r)) => r,
        _ => {
            abort.abort();
            (Vec::new(), 0)
        }
    }
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_LIMIT`] bytes; the
/// count of the others is returned too.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, usize) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), 0);
    };
    let mut kept = Vec::new();
    let mut dropped = 0;
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, dropped),
            Ok(n) => {
                let room = OUTPUT_LIMIT - kept.len();
                let take = n.min(room);
                kept.extend_from_slice(&chunk[..take]);
                dropped += n - take;
            }
        }
    }
}

enum Message {
    Run {
        script: Script,
        extra_args: Vec<String>,
        timeout: Duration,
    },
    Flush(oneshot::Sender<()>),
}

/// The script queue of one VRRP instance (or sync group). Dropping it lets
/// the queued scripts finish, then the worker ends.
pub struct Notifier {
    tx: mpsc::UnboundedSender<Message>,
}

impl Notifier {
    /// Starts the worker on the current tokio runtime. `name` (the
    /// instance's) prefixes every log line.
    pub fn new(name: impl Into<String>) -> Notifier {
        let name = name.into();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                match message {
                    Message::Run {
                        script,
                        extra_args,
                        timeout,
                    } => {
                        let outcome = run_script(&script, &extra_args, timeout).await;
                        log(&name, &script, &extra_args, timeout, &outcome);
                    }
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Notifier { tx }
    }

    /// Queues `script` with `extra_args` appended; returns at once.
    pub fn notify(&self, script: Script, extra_args: Vec<String>, timeout: Duration) {
        let _ = self.tx.send(Message::Run {
            script,
            extra_args,
            timeout,
        });
    }

    /// Waits until every script queued before this call has finished (for
    /// a clean stop, whose `notify_stop` should run before the agent exits).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

fn log(name: &str, script: &Script, extra: &[String], timeout: Duration, o: &ScriptOutcome) {
    let command = if extra.is_empty() {
        script.line.clone()
    } else {
        format!("{} {}", script.line, extra.join(" "))
    };
    let out = text(&o.stdout, o.dropped.0);
    let err = text(&o.stderr, o.dropped.1);
    match &o.status {
        ScriptStatus::Exited(0) => tracing::info!(
            "VRRP {name}: notify script `{command}` exited 0; stdout: {out:?}; stderr: {err:?}"
        ),
        ScriptStatus::Exited(code) => tracing::warn!(
            "VRRP {name}: notify script `{command}` exited {code}; stdout: {out:?}; stderr: {err:?}"
        ),
        ScriptStatus::Signalled(sig) => tracing::warn!(
            "VRRP {name}: notify script `{command}` was killed by signal {sig}; stdout: {out:?}; stderr: {err:?}"
        ),
        ScriptStatus::TimedOut => tracing::warn!(
            "VRRP {name}: notify script `{command}` still ran after {timeout:?} and was killed with \
             its process group (raise notify_timeout if it needs longer); stdout: {out:?}; stderr: {err:?}"
        ),
        ScriptStatus::Failed(e) => {
            tracing::warn!("VRRP {name}: notify script `{command}` did not run: {e}")
        }
    }
}

fn text(bytes: &[u8], dropped: usize) -> String {
    let t = String::from_utf8_lossy(bytes).trim_end().to_string();
    if dropped > 0 {
        format!("{t}... ({dropped} more bytes)")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::PermissionsExt,
        path::{Path, PathBuf},
        sync::atomic::{AtomicU32, Ordering},
        time::Instant,
    };

    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "lb-notify-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        /// An executable shell script `name` with `body`.
        fn script(&self, name: &str, body: &str) -> Script {
            let path = self.0.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let line = path.display().to_string();
            Script {
                argv: vec![line.clone()],
                line,
            }
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[tokio::test]
    async fn scripts_run_in_order_one_at_a_time_without_blocking() {
        let dir = TempDir::new();
        let log = dir.0.join("log");
        // Each run notes its start and end; a slow first script would let
        // a second one overlap or overtake it if runs were concurrent.
        let s = dir.script(
            "note.sh",
            &format!(
                "echo \"start $1\" >> {l}; sleep \"$2\"; echo \"end $1\" >> {l}",
                l = log.display()
            ),
        );
        let n = Notifier::new("VI_1");
        let t0 = Instant::now();
        for (i, delay) in [("1", "0.3"), ("2", "0"), ("3", "0.1")] {
            n.notify(
                s.clone(),
                vec![i.into(), delay.into()],
                Duration::from_secs(5),
            );
        }
        assert!(t0.elapsed() < Duration::from_millis(100), "notify blocked");
        n.flush().await;
        assert_eq!(
            read(&log),
            "start 1\nend 1\nstart 2\nend 2\nstart 3\nend 3\n"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = TempDir::new();
        let pidfile = dir.0.join("child.pid");
        // The script's background child would outlive a kill of the
        // script alone.
        let s = dir.script(
            "hang.sh",
            &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
        );
        let t0 = Instant::now();
        let o = run_script(&s, &[], Duration::from_millis(300)).await;
        assert_eq!(o.status, ScriptStatus::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let child: i32 = read(&pidfile).trim().parse().unwrap();
        // Reaped by init or a zombie at most: not running `sleep`.
        std::thread::sleep(Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "background child {child} survived: {state}"
        );
    }

    #[tokio::test]
    async fn output_is_bounded_and_status_reported() {
        let dir = TempDir::new();
        let s = dir.script(
            "chatty.sh",
            "head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3",
        );
        let o = run_script(&s, &[], Duration::from_secs(5)).await;
        assert_eq!(o.status, ScriptStatus::Exited(3));
        assert_eq!(o.stdout.len(), OUTPUT_LIMIT);
        assert_eq!(o.dropped.0, 100_000 - OUTPUT_LIMIT);
        assert_eq!(o.stderr, b"oops\n");
    }

    #[tokio::test]
    async fn extra_arguments_follow_the_configured_ones() {
        let dir = TempDir::new();
        let mut s = dir.script("args.sh", "echo \"$@\"");
        s.argv.push("master".into());
        let o = run_script(
            &s,
            &[
                "INSTANCE".into(),
                "VI_1".into(),
                "MASTER".into(),
                "150".into(),
            ],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(o.status, ScriptStatus::Exited(0));
        assert_eq!(o.stdout, b"master INSTANCE VI_1 MASTER 150\n");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_not_a_panic() {
        let s = Script {
            line: "/nonexistent/notify.sh".into(),
            argv: vec!["/nonexistent/notify.sh".into()],
        };
        let o = run_script(&s, &[], Duration::from_secs(1)).await;
        assert!(matches!(o.status, ScriptStatus::Failed(_)), "{o:?}");
    }
}
