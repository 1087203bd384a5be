//! Moving one thread into a network namespace and back ([`ThreadNs`]):
//! sockets, XDP attachments and /proc/sys/net belong to the namespace of
//! the thread that makes or opens them.

use std::fs::File;
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};

/// The calling thread's network namespace is changed until this drops (on
/// unwinding too). A private (anonymous) one from [`ThreadNs::private`]
/// disappears with its last user: nothing to clean up, even after a crash.
#[derive(Debug)]
pub struct ThreadNs {
    orig: File,
}

const SELF_NS: &str = "/proc/thread-self/ns/net";

impl ThreadNs {
    /// A new namespace of this thread alone (`unshare`), e.g. for
    /// BPF_PROG_TEST_RUN, whose FIB lookups answer from the namespace of the
    /// ingress device.
    pub fn private() -> Result<ThreadNs> {
        let orig = File::open(SELF_NS).context(SELF_NS)?;
        // SAFETY: plain syscall; affects only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            bail!(
                "unshare(CLONE_NEWNET): {} (creating a network namespace needs root)",
                std::io::Error::last_os_error()
            );
        }
        Ok(ThreadNs { orig })
    }

    /// Joins the namespace at `path` (`/run/netns/NAME`).
    pub fn join(path: &str) -> Result<ThreadNs> {
        let target = File::open(path).with_context(|| format!("opening {path}"))?;
        let orig = File::open(SELF_NS).context(SELF_NS)?;
        // SAFETY: setns on a namespace fd we hold only changes this
        // thread's network namespace.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({path}): {}", std::io::Error::last_os_error());
        }
        Ok(ThreadNs { orig })
    }
}

impl Drop for ThreadNs {
    fn drop(&mut self) {
        // SAFETY: setns back to the namespace fd we hold.
        unsafe { libc::setns(self.orig.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}
