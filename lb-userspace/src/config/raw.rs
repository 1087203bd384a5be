//! The file as written: serde structs that mirror the TOML keys one to one.
//!
//! Every key is optional here and every value keeps its position
//! (`Spanned`), so that `validate` can report a missing or wrong value at
//! the place the user has to edit, in words of our own rather than serde's.
//! Unknown keys are rejected here (`deny_unknown_fields`): a misspelt key
//! silently ignored would leave a default in force that the user thinks
//! they changed.
//!
//! Adding a key means adding an optional field here and its check in
//! `validate` (or `health` for `health_check`); existing files keep parsing.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub agent: Option<Spanned<RawAgent>>,
    #[serde(default)]
    pub virtual_server: Vec<Spanned<RawVirtualServer>>,
    #[serde(default)]
    pub vrrp_instance: Vec<Spanned<RawVrrpInstance>>,
    #[serde(default)]
    pub vrrp_sync_group: Vec<Spanned<RawVrrpSyncGroup>>,
    pub announce: Option<Spanned<RawAnnounce>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    pub xdp_mode: Option<Spanned<String>>,
    pub flow_table_size: Option<Spanned<i64>>,
    pub control_socket: Option<Spanned<String>>,
    pub metrics_listen: Option<Spanned<String>>,
    pub control_group: Option<Spanned<String>>,
    pub ebpf_log: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtualServer {
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
    pub forwarding: Option<Spanned<String>>,
    pub scheduler: Option<Spanned<String>>,
    pub maglev_table_size: Option<Spanned<i64>>,
    pub sorry_server: Option<Spanned<String>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    #[serde(default)]
    pub real_server: Vec<Spanned<RawRealServer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRealServer {
    pub address: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
}

/// `[virtual_server.health_check]` or a real server's `health_check`:
/// every key of every kind, so that one of another kind can be named as
/// such rather than as unknown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub kind: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub port: Option<Spanned<i64>>,
    // http
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<Vec<Spanned<i64>>>>,
    pub expect_body: Option<Spanned<String>>,
    // ldap
    pub bind_dn: Option<Spanned<String>>,
    pub bind_password: Option<Spanned<String>>,
    pub base: Option<Spanned<String>>,
    pub filter: Option<Spanned<String>>,
    pub tls: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    // exec
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[[vrrp_instance]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrpInstance {
    pub name: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub virtual_router_id: Option<Spanned<i64>>,
    pub priority: Option<Spanned<i64>>,
    pub advert_interval: Option<Spanned<String>>,
    pub version: Option<Spanned<i64>>,
    pub state: Option<Spanned<String>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<String>>,
    pub auth_pass: Option<Spanned<String>>,
    pub virtual_addresses: Option<Spanned<Vec<Spanned<String>>>>,
    pub virtual_addresses_excluded: Option<Spanned<Vec<Spanned<String>>>>,
    pub unicast_peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub unicast_source: Option<Spanned<String>>,
    pub notify_master: Option<Spanned<String>>,
    pub notify_backup: Option<Spanned<String>>,
    pub notify_fault: Option<Spanned<String>>,
    pub notify_stop: Option<Spanned<String>>,
    pub notify: Option<Spanned<String>>,
    pub fence: Option<Spanned<String>>,
    pub notify_timeout: Option<Spanned<String>>,
    pub track_virtual_servers: Option<Spanned<Vec<Spanned<String>>>>,
    pub track_weight: Option<Spanned<i64>>,
    pub garp_repeat: Option<Spanned<i64>>,
    pub garp_delay: Option<Spanned<String>>,
}

/// `[[vrrp_sync_group]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrpSyncGroup {
    pub name: Option<Spanned<String>>,
    pub instances: Option<Spanned<Vec<Spanned<String>>>>,
    pub notify_master: Option<Spanned<String>>,
    pub notify_backup: Option<Spanned<String>>,
    pub notify_fault: Option<Spanned<String>>,
    pub notify: Option<Spanned<String>>,
}

/// `[announce]`: VIPs offered to a BGP daemon (see `announce`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnounce {
    pub addresses: Option<Spanned<Vec<Spanned<String>>>>,
    pub table: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<i64>>,
    pub interface: Option<Spanned<String>>,
    pub drain_min: Option<Spanned<String>>,
    pub drain_quiet: Option<Spanned<String>>,
}
