//! The TOML configuration: parsing, defaults and validation.
//!
//! `load`/`parse` return a fully validated [`Config`]: every later stage may
//! rely on its invariants (addresses of one family per service, DR real
//! servers on the VIP's port, Maglev table size prime, unique services...).
//! Errors name the file, line, column and field and say what to fix.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

/// Default path of the agent's control socket (root-only).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/lb/lb.sock";

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub agent: AgentConfig,
    pub virtual_servers: Vec<VirtualServer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Interfaces XDP attaches to; client side first.
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Entries of the LRU flow table.
    pub flow_table_size: u32,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native, falling back to generic (with a log line).
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    Nat,
    Dr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    Maglev,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServer {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    pub scheduler: Scheduler,
    /// A prime.
    pub maglev_table_size: u32,
    pub sorry_server: Option<SocketAddr>,
    pub real_servers: Vec<RealServer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    pub address: IpAddr,
    /// Resolved: for DR always the VIP's port.
    pub port: u16,
    /// 0 = drained: no new flows, existing flows stay.
    pub weight: u32,
}

/// A config that cannot be used, with where and why. `Display` is the full
/// message a user sees (file:line:column, field, what to fix).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

/// Read, parse and validate a config file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        message: format!("{}: cannot read config: {e}", path.display()),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse and validate config text; `origin` names it in messages.
pub fn parse(_text: &str, _origin: &str) -> Result<Config, ConfigError> {
    todo!("config parsing")
}
