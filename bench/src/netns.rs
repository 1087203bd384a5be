//! Network namespaces the benchmarks create, and their removal: on `Drop`,
//! and on Ctrl-C / SIGTERM through [`install_signal_cleanup`], which removes
//! whatever is still registered before the process exits.
//!
//! Every host of a topology (the traffic generator too) lives in its own
//! namespace; the root namespace is never configured. Names carry the
//! process id so two runs (or another helper's tests) never collide.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::Mutex,
};

use anyhow::{bail, Context as _};

/// Namespaces alive right now, for the signal handler thread.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A named namespace (`ip netns add`), deleted on drop together with the
/// processes this run started in it. Created and removed by lb-tests'
/// harness (`lb_tests::netns::Netns`); this adds the bench's naming, the
/// registry the signal handler cleans up from, and string-style `ip`
/// arguments.
pub struct Netns {
    pub name: String,
    inner: lb_tests::netns::Netns,
}

impl Netns {
    /// `lbb<pid>-<tag>`; `tag` should be short (a veth name is limited to 15
    /// bytes, a namespace name is not, but `ip netns list` stays readable).
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("lbb{}-{tag}", std::process::id());
        LIVE.lock().unwrap().push(name.clone());
        let inner = lb_tests::netns::Netns::new(name.clone())?;
        Ok(Netns { name, inner })
    }

    /// `ip -n NAME ARGS` (split on whitespace).
    pub fn ip(&self, args: &str) -> anyhow::Result<String> {
        let v: Vec<&str> = args.split_whitespace().collect();
        self.inner.ip(&v)
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        self.inner.command(program)
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut v = vec![program];
        v.extend(args);
        self.inner.exec(&v)
    }

    /// Writes /proc/sys/KEY (dots as in `sysctl`) inside the namespace,
    /// without needing the sysctl binary (a minimal VM has none).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        // /proc/sys/net belongs to the namespace of the thread that opens it.
        let _in = self.enter()?;
        std::fs::write(&path, value).with_context(|| format!("writing {path} in {}", self.name))
    }

    /// Moves the calling thread into the namespace until the guard drops.
    pub fn enter(&self) -> anyhow::Result<ThreadNs> {
        let f = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening /run/netns/{}", self.name))?;
        ThreadNs::setns(&f)
    }

    /// Interface index of `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> anyhow::Result<u32> {
        let s = self.exec("cat", &[&format!("/sys/class/net/{dev}/ifindex")])?;
        s.trim()
            .parse()
            .with_context(|| format!("ifindex of {dev} in {}: {s:?}", self.name))
    }

    pub fn mac(&self, dev: &str) -> anyhow::Result<[u8; 6]> {
        let s = self.exec("cat", &[&format!("/sys/class/net/{dev}/address")])?;
        parse_mac(s.trim())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // `inner` removes the namespace and what runs in it right after.
        LIVE.lock().unwrap().retain(|n| *n != self.name);
    }
}

/// The signal path's removal, for names alone (no `Netns` at hand).
fn remove(name: &str) {
    // Processes this run started in the namespace (servers, generators)
    // would keep it alive as a detached namespace: end them first, by pid.
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain syscall on a pid listed in our namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Creates a veth pair with one end in each namespace (nothing in the root
/// namespace), both up, with fixed MACs when given.
pub fn veth(
    a: &Netns,
    a_dev: &str,
    b: &Netns,
    b_dev: &str,
    macs: Option<([u8; 6], [u8; 6])>,
) -> anyhow::Result<()> {
    let mut args = vec![
        "link".to_string(),
        "add".into(),
        a_dev.into(),
        "netns".into(),
        a.name.clone(),
    ];
    if let Some((ma, _)) = macs {
        args.extend(["address".into(), mac_str(&ma)]);
    }
    args.extend([
        "type".into(),
        "veth".into(),
        "peer".into(),
        "name".into(),
        b_dev.into(),
        "netns".into(),
        b.name.clone(),
    ]);
    if let Some((_, mb)) = macs {
        args.extend(["address".into(), mac_str(&mb)]);
    }
    let v: Vec<&str> = args.iter().map(String::as_str).collect();
    run("ip", &v)?;
    a.ip(&format!("link set {a_dev} up"))?;
    b.ip(&format!("link set {b_dev} up"))?;
    Ok(())
}

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {s:?}"))?;
    v.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s:?}"))
}

/// Runs a program to completion; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The calling thread's network namespace is changed until this drops; a
/// private (anonymous) one from [`ThreadNs::private`] disappears with its
/// last user.
pub struct ThreadNs {
    orig: File,
}

impl ThreadNs {
    pub fn private() -> anyhow::Result<Self> {
        let orig = File::open("/proc/thread-self/ns/net").context("/proc/thread-self/ns/net")?;
        // SAFETY: plain syscall; affects only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            bail!(
                "unshare(CLONE_NEWNET): {} -- the benchmarks must run as root",
                std::io::Error::last_os_error()
            );
        }
        Ok(ThreadNs { orig })
    }

    fn setns(target: &File) -> anyhow::Result<Self> {
        let orig = File::open("/proc/thread-self/ns/net").context("/proc/thread-self/ns/net")?;
        // SAFETY: plain syscall on a namespace fd we hold.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(ThreadNs { orig })
    }
}

impl Drop for ThreadNs {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a namespace fd we hold.
        unsafe { libc::setns(self.orig.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

static SIGNALLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// On SIGINT/SIGTERM: remove the live namespaces and exit with 130. The
/// handler only sets a flag (nothing else is safe in a handler); a thread
/// watching the flag does the work. A handler, unlike a blocked signal mask,
/// is not inherited by the programs we start, so they still stop on Ctrl-C.
/// Call first thing in `main`.
pub fn install_signal_cleanup() {
    // SAFETY: installing an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(|| loop {
        let sig = SIGNALLED.load(std::sync::atomic::Ordering::SeqCst);
        if sig != 0 {
            eprintln!("\nlb-bench: signal {sig}: removing the namespaces of this run");
            let names: Vec<String> = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
            for n in names {
                remove(&n);
            }
            // The vrrp suite builds its networks with lb-tests' harness,
            // whose namespaces are named lbt<our pid>x<n>: ours too.
            let own = format!("lbt{}x", std::process::id());
            if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let name = line.split_whitespace().next().unwrap_or_default();
                    if name.starts_with(&own) {
                        remove(name);
                    }
                }
            }
            // ...and its scratch directories (configs, logs, sockets).
            if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
                for e in dir.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&own) {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
            std::process::exit(130);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = [0x02, 0, 0, 0, 0x01, 0xfe];
        assert_eq!(mac_str(&m), "02:00:00:00:01:fe");
        assert_eq!(parse_mac("02:00:00:00:01:fe").unwrap(), m);
        assert!(parse_mac("02:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
