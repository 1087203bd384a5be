//! The `lb` agent under test: its config written from Rust values, `lb run`
//! inside the balancer's namespace, and `lb status` / `lb check`.

use std::fmt::Write as _;
use std::net::IpAddr;
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

#[derive(Clone, Debug)]
pub struct VirtualServer {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// "tcp" | "udp"
    pub protocol: String,
    pub forwarding: Forwarding,
    pub real_servers: Vec<RealServer>,
}

impl VirtualServer {
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
    pub services: Vec<VirtualServer>,
}

impl LbConfig {
    pub fn new(topo: &Topology, control_socket: PathBuf, services: Vec<VirtualServer>) -> Self {
        LbConfig {
            interfaces: topo.interfaces.clone(),
            xdp_mode: "auto".into(),
            flow_table_size: 65536,
            control_socket,
            services,
        }
    }

    pub fn to_toml(&self) -> String {
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
        for v in &self.services {
            let _ = writeln!(s, "\n[[virtual_server]]");
            let _ = writeln!(s, "name = {:?}", v.name);
            let _ = writeln!(s, "address = \"{}\"", v.address);
            let _ = writeln!(s, "port = {}", v.port);
            let _ = writeln!(s, "protocol = {:?}", v.protocol);
            let _ = writeln!(s, "forwarding = \"{}\"", v.forwarding);
            let _ = writeln!(s, "scheduler = \"maglev\"");
            for r in &v.real_servers {
                let _ = writeln!(s, "\n  [[virtual_server.real_server]]");
                let _ = writeln!(s, "  address = \"{}\"", r.address);
                if let Some(p) = r.port {
                    let _ = writeln!(s, "  port = {p}");
                }
                let _ = writeln!(s, "  weight = {}", r.weight);
            }
        }
        s
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
        let config_path = dir.join("lb.toml");
        std::fs::write(&config_path, config.to_toml())?;
        let log_path = dir.join("lb.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = ns.command(bin);
        cmd.args(["run", "--config"])
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let process = ChildGuard::spawn("lb run", &mut cmd)?;
        let mut agent = Agent {
            bin: bin.to_path_buf(),
            config_path,
            socket: config.control_socket.clone(),
            log_path,
            process,
        };
        let mut exited = None;
        let up = wait_until(Duration::from_secs(20), || {
            exited = agent.process.try_wait();
            exited.is_some() || agent.status_json().is_ok()
        });
        // An agent that answered and then died is no better.
        let exited = exited.or_else(|| agent.process.try_wait());
        if let Some(status) = exited {
            bail!(
                "lb run exited ({status}) instead of staying in the foreground:\n{}",
                agent.log()
            );
        }
        if !up {
            let why = agent.status_json().err().map(|e| format!("{e:#}"));
            bail!(
                "lb status --json --socket {} gives no JSON 20 s after lb run started ({}):\n{}",
                agent.socket.display(),
                why.unwrap_or_default(),
                agent.log()
            );
        }
        Ok(agent)
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

    /// Everything `lb run` printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the agent is still running.
    pub fn running(&mut self) -> bool {
        self.process.try_wait().is_none()
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
