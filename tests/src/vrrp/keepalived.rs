//! A real keepalived as the other VRRP node: its `keepalived.conf` written
//! from the same [`VrrpInstanceConfig`] an lb node takes, and the daemon
//! run the way `../shared/data/vrrp/netns-keepalived.sh` runs it (VRRP
//! only, foreground, console log, private pid files so several can run).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::agent::{VrrpInstanceConfig, VrrpSyncGroupConfig};
use crate::netns::Netns;
use crate::process::{wait_until, ChildGuard};

/// keepalived's `advert_int`: whole seconds, or a decimal for VRRPv3's
/// sub-second intervals.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.2}", d.as_secs_f64())
    }
}

fn instance(s: &mut String, v: &VrrpInstanceConfig) {
    let _ = writeln!(s, "vrrp_instance {} {{", v.name);
    let _ = writeln!(s, "    state {}", v.state.to_uppercase());
    let _ = writeln!(s, "    interface {}", v.interface);
    let _ = writeln!(s, "    virtual_router_id {}", v.virtual_router_id);
    let _ = writeln!(s, "    version {}", v.version);
    let _ = writeln!(s, "    priority {}", v.priority);
    let _ = writeln!(s, "    advert_int {}", seconds(v.advert_interval));
    if !v.preempt {
        let _ = writeln!(s, "    nopreempt");
    }
    if !v.preempt_delay.is_zero() {
        let _ = writeln!(s, "    preempt_delay {}", seconds(v.preempt_delay));
    }
    if let Some(pass) = &v.auth_pass {
        let _ = writeln!(
            s,
            "    authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}"
        );
    }
    if let Some(src) = v.unicast_source {
        let _ = writeln!(s, "    unicast_src_ip {src}");
    }
    if !v.unicast_peers.is_empty() {
        let _ = writeln!(s, "    unicast_peer {{");
        for p in &v.unicast_peers {
            let _ = writeln!(s, "        {p}");
        }
        let _ = writeln!(s, "    }}");
    }
    let _ = writeln!(s, "    virtual_ipaddress {{");
    for a in &v.virtual_addresses {
        let _ = writeln!(s, "        {a}");
    }
    let _ = writeln!(s, "    }}");
    for (key, script) in [
        ("notify", &v.notify),
        ("notify_master", &v.notify_master),
        ("notify_backup", &v.notify_backup),
        ("notify_fault", &v.notify_fault),
    ] {
        if let Some(script) = script {
            let _ = writeln!(s, "    {key} \"{script}\"");
        }
    }
    let _ = writeln!(s, "}}");
}

/// A `keepalived.conf` with the given instances and sync groups. `fence`
/// and the tracking of virtual servers have no keepalived equivalent here
/// and are left out.
pub fn render(
    router_id: &str,
    instances: &[VrrpInstanceConfig],
    groups: &[VrrpSyncGroupConfig],
) -> String {
    let mut s = String::new();
    // Scripts run as root without keepalived's warning about a missing
    // keepalived_script user.
    let _ = writeln!(
        s,
        "global_defs {{\n    router_id {router_id}\n    enable_script_security\n    script_user root\n}}\n"
    );
    for g in groups {
        let _ = writeln!(s, "vrrp_sync_group {} {{\n    group {{", g.name);
        for i in &g.instances {
            let _ = writeln!(s, "        {i}");
        }
        let _ = writeln!(s, "    }}");
        if let Some(script) = &g.notify {
            let _ = writeln!(s, "    notify \"{script}\"");
        }
        let _ = writeln!(s, "}}\n");
    }
    for v in instances {
        instance(&mut s, v);
        s.push('\n');
    }
    s
}

/// A running keepalived (its parent process; the VRRP child's pid is in
/// `keepalived-vrrp.pid`). SIGTERM on drop, as keepalived's own stop.
#[derive(Debug)]
pub struct Keepalived {
    process: ChildGuard,
    dir: PathBuf,
    pub log_path: PathBuf,
}

impl Keepalived {
    /// Writes `conf` into `dir` and starts keepalived inside `ns`; returns
    /// once its VRRP process runs.
    pub fn start(ns: &Netns, dir: &Path, conf: &str) -> Result<Keepalived> {
        let conf_path = dir.join("keepalived.conf");
        std::fs::write(&conf_path, conf)?;
        let log_path = dir.join("keepalived.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = ns.command("keepalived");
        // -n foreground, -l -D detailed log on the console, -G no syslog,
        // -P VRRP only; private pid files, so the keepalived of another
        // node (or of the host) is not taken for this one.
        cmd.args(["-n", "-l", "-D", "-G", "-P", "-f"])
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("keepalived-vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = ChildGuard::spawn("keepalived", &mut cmd)?;
        let mut ka = Keepalived {
            process,
            dir: dir.to_path_buf(),
            log_path,
        };
        let up = wait_until(Duration::from_secs(10), || {
            ka.vrrp_pid().is_some() || ka.process.try_wait().is_some()
        });
        if !up || ka.process.try_wait().is_some() {
            let test = ns
                .command("keepalived")
                .arg("-t")
                .arg("-f")
                .arg(&conf_path)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            bail!(
                "keepalived did not start its VRRP process:\n{}\nkeepalived -t: {test}\nconfig:\n{conf}",
                ka.log()
            );
        }
        Ok(ka)
    }

    fn vrrp_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("keepalived-vrrp.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, keepalived's clean stop (a priority-0 advert, addresses
    /// removed); returns once it exited.
    pub fn stop(mut self) {
        self.process.stop(libc::SIGTERM, Duration::from_secs(10));
    }

    /// `kill -9`: no priority-0 advert, addresses left behind. The parent
    /// is frozen first, or it would start a new VRRP child.
    pub fn kill(mut self) {
        let parent = self.process.pid() as i32;
        // SAFETY: kill(2) on our own child and on the VRRP process it
        // started (its pid from keepalived's own pid file).
        unsafe {
            libc::kill(parent, libc::SIGSTOP);
            if let Some(child) = self.vrrp_pid() {
                libc::kill(child, libc::SIGKILL);
            }
        }
        self.process.stop(libc::SIGKILL, Duration::from_secs(5));
    }
}
