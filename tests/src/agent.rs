//! The `lb` agent under test: its config written from Rust values, `lb run`
//! inside the balancer's namespace, and `lb status` / `lb check`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::{run, Netns};
use crate::process::{wait_until, ChildGuard};
use crate::topology::{Forwarding, Topology};

/// The `lb` binary the tests drive: `$LB_BIN`. Panics, saying how to get
/// one, when it is not set or not there: these tests never skip silently.
pub fn lb_bin() -> PathBuf {
    let Some(path) = std::env::var_os("LB_BIN") else {
        panic!(
            "LB_BIN is not set: the end-to-end tests need the lb binary. Run them with \
             `cargo xtask test`, or `cargo build --release -p lb-userspace` and set \
             LB_BIN=<target dir>/release/lb"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "LB_BIN={} does not exist: build it with `cargo build --release -p lb-userspace`",
        path.display()
    );
    path
}

#[derive(Clone, Debug)]
pub struct RealServer {
    pub address: IpAddr,
    /// None: the config leaves the port out (DR, or same as the VIP's).
    pub port: Option<u16>,
    pub weight: u32,
}

impl RealServer {
    /// On the service's port (the config leaves it out).
    pub fn new(address: IpAddr, weight: u32) -> RealServer {
        RealServer {
            address,
            port: None,
            weight,
        }
    }
}

#[derive(Clone, Debug)]
pub struct VirtualServer {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// "tcp" | "udp"
    pub protocol: String,
    pub forwarding: Forwarding,
    pub real_servers: Vec<RealServer>,
    /// Where new flows go while no real server is up.
    pub sorry_server: Option<SocketAddr>,
    /// `[virtual_server.health_check]`; None: no checks (kind none).
    pub health_check: Option<HealthCheck>,
}

/// A service's `[virtual_server.health_check]` table.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    /// http | tcp | ldap | exec
    pub kind: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Checked port, when not the real server's.
    pub port: Option<u16>,
}

impl HealthCheck {
    /// An HTTP GET of `/` expecting 200, fast enough for tests.
    pub fn http(interval: Duration, timeout: Duration, rise: u32, fall: u32) -> HealthCheck {
        HealthCheck {
            kind: "http".into(),
            interval,
            timeout,
            rise,
            fall,
            port: None,
        }
    }
}

impl VirtualServer {
    /// A NAT service `name` on `address:port`/tcp over `real_servers`
    /// (each on the service's port), without health checks.
    pub fn nat_tcp(
        name: &str,
        address: IpAddr,
        port: u16,
        real_servers: Vec<RealServer>,
    ) -> VirtualServer {
        VirtualServer {
            name: name.into(),
            address,
            port,
            protocol: "tcp".into(),
            forwarding: Forwarding::Nat,
            real_servers,
            sorry_server: None,
            health_check: None,
        }
    }

    /// A TCP service on the topology's VIP with its real servers weighted
    /// `weights` (one per real server, in order).
    pub fn tcp(topo: &Topology, port: u16, weights: &[u32]) -> VirtualServer {
        VirtualServer::for_topology(topo, "web", IpAddr::V4(topo.vip), port, "tcp", weights)
    }

    pub fn for_topology(
        topo: &Topology,
        name: &str,
        vip: IpAddr,
        port: u16,
        protocol: &str,
        weights: &[u32],
    ) -> VirtualServer {
        assert_eq!(
            weights.len(),
            topo.reals.len(),
            "one weight per real server"
        );
        let real_servers = topo
            .reals
            .iter()
            .zip(weights)
            .map(|(h, &weight)| RealServer {
                address: match vip {
                    IpAddr::V4(_) => IpAddr::V4(h.addr),
                    IpAddr::V6(_) => IpAddr::V6(h.addr6.expect("real server without IPv6")),
                },
                port: match topo.forwarding {
                    Forwarding::Nat => Some(port),
                    Forwarding::Dr => None,
                },
                weight,
            })
            .collect();
        VirtualServer {
            name: name.into(),
            address: vip,
            port,
            protocol: protocol.into(),
            forwarding: topo.forwarding,
            real_servers,
            sorry_server: None,
            health_check: None,
        }
    }
}

/// An `lb` config file's contents.
#[derive(Clone, Debug)]
pub struct LbConfig {
    pub interfaces: Vec<String>,
    /// auto | native | generic
    pub xdp_mode: String,
    pub flow_table_size: u32,
    pub control_socket: PathBuf,
    /// `[agent] metrics_listen`, inside the balancer's namespace.
    pub metrics_listen: Option<SocketAddr>,
    pub services: Vec<VirtualServer>,
    /// `[[vrrp_instance]]` sections (high availability).
    pub vrrp: Vec<VrrpInstanceConfig>,
    /// `[[vrrp_sync_group]]` sections.
    pub vrrp_sync_groups: Vec<VrrpSyncGroupConfig>,
}

impl LbConfig {
    pub fn new(topo: &Topology, control_socket: PathBuf, services: Vec<VirtualServer>) -> Self {
        LbConfig {
            interfaces: topo.interfaces.clone(),
            xdp_mode: topo.xdp_mode.into(),
            flow_table_size: 65536,
            control_socket,
            metrics_listen: None,
            services,
            vrrp: Vec::new(),
            vrrp_sync_groups: Vec::new(),
        }
    }

    /// A config outside the seeds' topologies (the agent's own tests):
    /// `interfaces` in `xdp_mode`, a 65,536-flow table, no metrics, no VRRP.
    pub fn for_interfaces(
        interfaces: &[&str],
        xdp_mode: &str,
        control_socket: PathBuf,
        services: Vec<VirtualServer>,
    ) -> Self {
        LbConfig {
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
            xdp_mode: xdp_mode.into(),
            flow_table_size: 65536,
            control_socket,
            metrics_listen: None,
            services,
            vrrp: Vec::new(),
            vrrp_sync_groups: Vec::new(),
        }
    }

    pub fn to_toml(&self) -> String {
        self.to_toml_with_agent("")
    }

    /// The config with `agent_lines` (TOML `key = value` lines, e.g. a key
    /// this struct does not model, or a wrong value a test wants refused)
    /// at the end of the `[agent]` table.
    pub fn to_toml_with_agent(&self, agent_lines: &str) -> String {
        let mut s = String::new();
        let ifaces: Vec<String> = self.interfaces.iter().map(|i| format!("{i:?}")).collect();
        let _ = writeln!(s, "[agent]");
        let _ = writeln!(s, "interfaces = [{}]", ifaces.join(", "));
        let _ = writeln!(s, "xdp_mode = {:?}", self.xdp_mode);
        let _ = writeln!(s, "flow_table_size = {}", self.flow_table_size);
        let _ = writeln!(
            s,
            "control_socket = {:?}",
            self.control_socket.display().to_string()
        );
        if let Some(addr) = self.metrics_listen {
            let _ = writeln!(s, "metrics_listen = \"{addr}\"");
        }
        for line in agent_lines.lines() {
            let _ = writeln!(s, "{line}");
        }
        for v in &self.services {
            let _ = writeln!(s, "\n[[virtual_server]]");
            let _ = writeln!(s, "name = {:?}", v.name);
            let _ = writeln!(s, "address = \"{}\"", v.address);
            let _ = writeln!(s, "port = {}", v.port);
            let _ = writeln!(s, "protocol = {:?}", v.protocol);
            let _ = writeln!(s, "forwarding = \"{}\"", v.forwarding);
            let _ = writeln!(s, "scheduler = \"maglev\"");
            if let Some(sorry) = v.sorry_server {
                let _ = writeln!(s, "sorry_server = \"{sorry}\"");
            }
            if let Some(h) = &v.health_check {
                let _ = writeln!(s, "\n  [virtual_server.health_check]");
                let _ = writeln!(s, "  kind = {:?}", h.kind);
                let _ = writeln!(s, "  interval = \"{}ms\"", h.interval.as_millis());
                let _ = writeln!(s, "  timeout = \"{}ms\"", h.timeout.as_millis());
                let _ = writeln!(s, "  rise = {}", h.rise);
                let _ = writeln!(s, "  fall = {}", h.fall);
                if let Some(p) = h.port {
                    let _ = writeln!(s, "  port = {p}");
                }
            }
            for r in &v.real_servers {
                let _ = writeln!(s, "\n  [[virtual_server.real_server]]");
                let _ = writeln!(s, "  address = \"{}\"", r.address);
                if let Some(p) = r.port {
                    let _ = writeln!(s, "  port = {p}");
                }
                let _ = writeln!(s, "  weight = {}", r.weight);
            }
        }
        for v in &self.vrrp {
            v.write_toml(&mut s);
        }
        for g in &self.vrrp_sync_groups {
            g.write_toml(&mut s);
        }
        s
    }
}

/// One `[[vrrp_instance]]`, in the names of issue 9. The VRRP harness
/// (`crate::vrrp`) also renders it as a keepalived `vrrp_instance`, so an
/// lb node and a keepalived node of one test share the same numbers.
#[derive(Clone, Debug)]
pub struct VrrpInstanceConfig {
    pub name: String,
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    /// 2 | 3
    pub version: u8,
    /// "backup" | "master"
    pub state: String,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub auth_pass: Option<String>,
    /// `address/prefix`
    pub virtual_addresses: Vec<String>,
    pub unicast_peers: Vec<IpAddr>,
    pub unicast_source: Option<IpAddr>,
    /// Called as keepalived's `notify`: `INSTANCE <name> <STATE> <priority>`.
    pub notify: Option<String>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    /// lb only: called with `INSTANCE <name> <other master>` when two
    /// masters are seen.
    pub fence: Option<String>,
    pub track_virtual_servers: Vec<String>,
    pub track_weight: Option<u8>,
}

impl VrrpInstanceConfig {
    /// Version 2, 1 s adverts, starting as backup, preempting: keepalived's
    /// defaults.
    pub fn new(
        name: &str,
        interface: &str,
        virtual_router_id: u8,
        priority: u8,
        virtual_addresses: &[&str],
    ) -> Self {
        VrrpInstanceConfig {
            name: name.into(),
            interface: interface.into(),
            virtual_router_id,
            priority,
            advert_interval: Duration::from_secs(1),
            version: 2,
            state: "backup".into(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth_pass: None,
            virtual_addresses: virtual_addresses.iter().map(|a| a.to_string()).collect(),
            unicast_peers: Vec::new(),
            unicast_source: None,
            notify: None,
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            fence: None,
            track_virtual_servers: Vec::new(),
            track_weight: None,
        }
    }

    fn write_toml(&self, s: &mut String) {
        let strings = |v: &[String]| -> String {
            v.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "\n[[vrrp_instance]]");
        let _ = writeln!(s, "name = {:?}", self.name);
        let _ = writeln!(s, "interface = {:?}", self.interface);
        let _ = writeln!(s, "virtual_router_id = {}", self.virtual_router_id);
        let _ = writeln!(s, "priority = {}", self.priority);
        let _ = writeln!(
            s,
            "advert_interval = \"{}ms\"",
            self.advert_interval.as_millis()
        );
        let _ = writeln!(s, "version = {}", self.version);
        let _ = writeln!(s, "state = {:?}", self.state);
        let _ = writeln!(s, "preempt = {}", self.preempt);
        // Only with preemption: lb refuses a delay that cannot apply.
        if !self.preempt_delay.is_zero() {
            let _ = writeln!(
                s,
                "preempt_delay = \"{}ms\"",
                self.preempt_delay.as_millis()
            );
        }
        if let Some(p) = &self.auth_pass {
            let _ = writeln!(s, "auth_pass = {p:?}");
        }
        let _ = writeln!(
            s,
            "virtual_addresses = [{}]",
            strings(&self.virtual_addresses)
        );
        if !self.unicast_peers.is_empty() {
            let peers: Vec<String> = self.unicast_peers.iter().map(|p| p.to_string()).collect();
            let _ = writeln!(s, "unicast_peers = [{}]", strings(&peers));
        }
        if let Some(src) = self.unicast_source {
            let _ = writeln!(s, "unicast_source = \"{src}\"");
        }
        for (key, script) in [
            ("notify", &self.notify),
            ("notify_master", &self.notify_master),
            ("notify_backup", &self.notify_backup),
            ("notify_fault", &self.notify_fault),
            ("fence", &self.fence),
        ] {
            if let Some(script) = script {
                let _ = writeln!(s, "{key} = {script:?}");
            }
        }
        if !self.track_virtual_servers.is_empty() {
            let _ = writeln!(
                s,
                "track_virtual_servers = [{}]",
                strings(&self.track_virtual_servers)
            );
        }
        if let Some(w) = self.track_weight {
            let _ = writeln!(s, "track_weight = {w}");
        }
    }
}

/// One `[[vrrp_sync_group]]`.
#[derive(Clone, Debug)]
pub struct VrrpSyncGroupConfig {
    pub name: String,
    pub instances: Vec<String>,
    /// Called with `GROUP <name> <STATE> 0`.
    pub notify: Option<String>,
}

impl VrrpSyncGroupConfig {
    fn write_toml(&self, s: &mut String) {
        let names: Vec<String> = self.instances.iter().map(|i| format!("{i:?}")).collect();
        let _ = writeln!(s, "\n[[vrrp_sync_group]]");
        let _ = writeln!(s, "name = {:?}", self.name);
        let _ = writeln!(s, "instances = [{}]", names.join(", "));
        if let Some(script) = &self.notify {
            let _ = writeln!(s, "notify = {script:?}");
        }
    }
}

/// A running `lb run`, stopped with SIGTERM on drop.
#[derive(Debug)]
pub struct Agent {
    bin: PathBuf,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub log_path: PathBuf,
    process: ChildGuard,
}

impl Agent {
    /// Writes `config` into `dir`, runs `lb run` in `ns`, and waits until
    /// `lb status` answers on the control socket.
    pub fn start(bin: &Path, ns: &Netns, dir: &Path, config: &LbConfig) -> Result<Agent> {
        Agent::start_text(
            bin,
            ns,
            dir,
            &config.to_toml(),
            config.control_socket.clone(),
        )
    }

    /// Like `start`, with the config's text as it is (one `lb import`
    /// wrote, say) and the control socket it names.
    pub fn start_text(
        bin: &Path,
        ns: &Netns,
        dir: &Path,
        text: &str,
        socket: PathBuf,
    ) -> Result<Agent> {
        let config_path = dir.join("lb.toml");
        std::fs::write(&config_path, text)?;
        let mut cmd = ns.command(bin);
        cmd.args(["run", "--config"]).arg(&config_path);
        let mut agent = Agent::spawn(bin, cmd, config_path, socket, dir.join("lb.log"))?;
        agent.wait_serving(Duration::from_secs(20))?;
        Ok(agent)
    }

    /// Starts `run`, a command that runs `lb run --config CONFIG_PATH`
    /// however the test needs (`ip netns exec`, `nsenter`, a resource
    /// limit), with its output going to `log_path`; does not wait for it
    /// (see [`Agent::wait_serving`]). `bin` is the `lb` the status and
    /// reload commands run; `socket` the control socket the config names.
    pub fn spawn(
        bin: &Path,
        mut run: Command,
        config_path: PathBuf,
        socket: PathBuf,
        log_path: PathBuf,
    ) -> Result<Agent> {
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        run.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let process = ChildGuard::spawn("lb run", &mut run)?;
        Ok(Agent {
            bin: bin.to_path_buf(),
            config_path,
            socket,
            log_path,
            process,
        })
    }

    /// Waits until `lb status` answers on the control socket: it is bound
    /// before the program is loaded (so a second agent fails early) but
    /// served only once XDP is attached, so an answer means the agent is
    /// up. Fails with the log when the agent exits or does not answer
    /// within `limit`.
    pub fn wait_serving(&mut self, limit: Duration) -> Result<()> {
        let mut exited = None;
        let up = wait_until(limit, || {
            exited = self.process.try_wait();
            exited.is_some() || self.status_json().is_ok()
        });
        // An agent that answered and then died is no better.
        let exited = exited.or_else(|| self.process.try_wait());
        if let Some(status) = exited {
            bail!(
                "lb run exited ({status}) instead of staying in the foreground:\n{}",
                self.log()
            );
        }
        if !up {
            let why = self.status_json().err().map(|e| format!("{e:#}"));
            bail!(
                "lb status --json --socket {} gives no JSON {limit:?} after lb run started ({}):\n{}",
                self.socket.display(),
                why.unwrap_or_default(),
                self.log()
            );
        }
        Ok(())
    }

    /// The agent's resident memory, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in:\n{status}"))
    }

    fn status_output(&self) -> Result<Output> {
        Command::new(&self.bin)
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .context("running lb status")
    }

    /// `lb status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value> {
        let out = self.status_output()?;
        if !out.status.success() {
            bail!(
                "lb status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("lb status --json printed no JSON")
    }

    /// `lb status` as a user reads it.
    pub fn status_text(&self) -> Result<String> {
        run(Command::new(&self.bin)
            .args(["status", "--socket"])
            .arg(&self.socket))
    }

    /// Writes `config` over the running agent's file and sends SIGHUP,
    /// the conventional "re-read your config" signal (keepalived, nginx).
    pub fn reload(&self, config: &LbConfig) -> Result<()> {
        std::fs::write(&self.config_path, config.to_toml())?;
        // SAFETY: kill(2) on the pid of our own running child.
        if unsafe { libc::kill(self.process.pid() as i32, libc::SIGHUP) } != 0 {
            bail!("SIGHUP to lb run: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes `config` over the running agent's file and runs `lb reload`,
    /// the control-socket way; its output whatever the exit status.
    pub fn reload_command(&self, config: &LbConfig) -> Result<Output> {
        std::fs::write(&self.config_path, config.to_toml())?;
        Command::new(&self.bin)
            .args(["reload", "--socket"])
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .context("running lb reload")
    }

    /// `lb check` on the agent's own config file.
    pub fn check_own_config(&self) -> Result<Output> {
        check(&self.bin, &self.config_path)
    }

    /// The health state ("unknown", "up", "down") `lb status --json`
    /// shows for real server `address` of the first service.
    pub fn health_of(&self, address: &str) -> Result<String> {
        let status = self.status_json()?;
        real_server(&status, address)
            .and_then(|r| r["health"]["state"].as_str().map(str::to_string))
            .with_context(|| format!("no health for {address} in {status}"))
    }

    /// Waits until real server `address` is in health state `want`; how
    /// long that took. Fails with the status after `limit`.
    pub fn wait_health(&self, address: &str, want: &str, limit: Duration) -> Result<Duration> {
        let start = std::time::Instant::now();
        loop {
            if self.health_of(address).is_ok_and(|h| h == want) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "{address} is not {want} after {limit:?}:\n{}\nlb log:\n{}",
                    self.status_text().unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything `lb run` printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the agent is still running.
    pub fn running(&mut self) -> bool {
        self.process.try_wait().is_none()
    }

    /// The pid of `lb run` (for signals a test sends itself).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `kill -9`: the agent dies without any clean-up (a crash); returns
    /// once it is reaped.
    pub fn kill(mut self) {
        self.process.stop(libc::SIGKILL, Duration::from_secs(5));
    }

    /// `lb vrrp ARGS... --socket S` (handoff, resume); its output whatever
    /// the exit status.
    pub fn vrrp_command(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bin)
            .arg("vrrp")
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .context("running lb vrrp")
    }

    /// Stops the agent with SIGTERM and fails unless it exits cleanly.
    pub fn stop(mut self) -> Result<()> {
        let status = self
            .process
            .stop(libc::SIGTERM, Duration::from_secs(10))
            .context("lb run could not be reaped")?;
        if !status.success() {
            bail!("lb run exited with {status} on SIGTERM:\n{}", self.log());
        }
        Ok(())
    }
}

/// Runs `lb check --config PATH`.
pub fn check(bin: &Path, config: &Path) -> Result<Output> {
    Command::new(bin)
        .args(["check", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .context("running lb check")
}

/// Real server `address` of the first service in a `lb status --json`.
pub fn real_server<'a>(
    status: &'a serde_json::Value,
    address: &str,
) -> Option<&'a serde_json::Value> {
    status["services"][0]["real_servers"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
}

/// `GET /metrics` from the agent's `metrics_listen` inside `ns`, with a
/// plain TCP socket (what a Prometheus server sends); the whole answer.
pub fn scrape_metrics(ns: &Netns, addr: SocketAddr) -> Result<String> {
    ns.enter(|| -> Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        if !text.starts_with("HTTP/1.1 200") {
            bail!("the metrics endpoint answered: {text}");
        }
        Ok(text)
    })?
}

/// The value of the sample whose name and labels are exactly `series`
/// (`name{label="v",...}`), or None when the text has no such line.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Flow counts per real server address from `lb status --json`, for the
/// service named `service`.
pub fn flows_by_real(status: &serde_json::Value, service: &str) -> Vec<(String, u64)> {
    status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == service)
        .flat_map(|s| s["real_servers"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["address"].as_str().unwrap_or_default().to_string(),
                r["flows"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}
