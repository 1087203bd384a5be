//! The TOML configuration: parsing, defaults and validation.
//!
//! `load`/`parse` return a fully validated [`Config`]: every later stage may
//! rely on its invariants (addresses of one family per service, DR real
//! servers on the VIP's port, Maglev table size prime, unique services...).
//! Errors name the file, line, column and field and say what to fix, in
//! one format: `origin:line:column: field `path`: what is wrong: what to do`,
//! where `path` counts from 0 (`virtual_server[1].real_server[0].weight`).
//!
//! Rules beyond the types (each with its message in `validate`):
//! - required: `agent.interfaces` (non-empty) — except in a config with
//!   VRRP instances and no virtual servers, which loads no XDP program and
//!   may leave out `[agent]` or its interfaces — and per virtual server
//!   `name` (unique), `address`, `port`, `protocol`, `forwarding`: a guessed
//!   protocol or forwarding method would misroute silently;
//! - one service per (address, port, protocol); a real server once per
//!   service; a NAT real server's (address, port, protocol) in one NAT
//!   service only (replies are translated back without per-flow state);
//! - VIP, real servers and sorry server of a service share one family;
//!   with DR, real servers and the sorry server use the VIP's port;
//! - weight 0..=65535 as in ipvsadm; ports 1..=65535;
//! - `maglev_table_size` a prime in 101..=16777213 and at least 100 slots
//!   per configured real server (drained ones count: draining must not
//!   make a config invalid).
//!
//! - health checks: see [`health`](self::health) for their rules; no
//!   `health_check` = kind "none" (always up), so configs written before
//!   health checks keep their meaning.
//! - VRRP (`[[vrrp_instance]]`, `[[vrrp_sync_group]]`): see
//!   `validate_vrrp` for their rules and [`VrrpInstance`] for the types.
//! - `[announce]`: see `announce` for its rules.
//! - a value that cannot be read is named, but never a secret's
//!   (`auth_pass`, `bind_password`).
//!
//! Layout: `raw` mirrors the file (serde, unknown keys rejected),
//! `validate` (and `validate_vrrp`, `health`) turn it into [`Config`],
//! [`validate_host`] checks what
//! depends on the machine (interfaces) separately, so a config can be
//! parsed and tested on a host that lacks its interfaces.

mod announce;
mod error;
mod health;
mod host;
mod raw;
pub(crate) mod reverse_nat;
mod validate;
mod validate_vrrp;
mod vrrp;
pub(crate) mod words;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

pub use announce::{
    Announce, DEFAULT_ANNOUNCE_INTERFACE, DEFAULT_ANNOUNCE_PROTOCOL, DEFAULT_ANNOUNCE_TABLE,
    DEFAULT_DRAIN_MIN, DEFAULT_DRAIN_QUIET,
};
pub use error::Location;
pub use health::{
    parse_duration, show as show_duration, CheckKind, ExecCheck, HealthCheck, HttpCheck, KindName,
    LdapBind, LdapCheck, LdapTls, Secret, DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_RISE, DEFAULT_HEALTH_TIMEOUT, DEFAULT_HTTP_EXPECT_STATUS, DEFAULT_HTTP_PATH,
    DEFAULT_LDAP_BASE, DEFAULT_LDAP_FILTER, EXEC_PLACEHOLDERS, MAX_HEALTH_COUNT,
    MAX_HEALTH_INTERVAL, MIN_HEALTH_INTERVAL, MIN_HEALTH_TIMEOUT,
};
pub use host::validate_host;
pub use vrrp::{
    Script, ScriptError, VirtualAddress, VrrpInitialState, VrrpInstance, VrrpSyncGroup,
    VrrpVersion, DEFAULT_ADVERT_INTERVAL, DEFAULT_GARP_DELAY, DEFAULT_GARP_REPEAT,
    DEFAULT_NOTIFY_TIMEOUT, DEFAULT_TRACK_WEIGHT, DEFAULT_VRRP_PRIORITY, DEFAULT_VRRP_VERSION,
    MAX_ADVERT_ADDRESSES, MAX_ADVERT_INTERVAL_V2, MAX_ADVERT_INTERVAL_V3, MAX_AUTH_PASS_LEN,
    MAX_GARP_DELAY, MAX_GARP_REPEAT, MAX_NOTIFY_TIMEOUT, MAX_PREEMPT_DELAY, MIN_ADVERT_INTERVAL_V3,
    MIN_NOTIFY_TIMEOUT, VRRP_GROUP_V4,
};
use words::config_words;
pub use words::UnknownWord;

// Defaults, written once. A user's file that leaves a key out gets these.

/// Try native (driver) XDP, fall back to generic with a log line.
pub const DEFAULT_XDP_MODE: XdpMode = XdpMode::Auto;
/// Flow table entries per family (`lb_common::flow_table`: sets of four,
/// 16 bytes an entry): 2^19 entries, 8 MiB of kernel memory, which keeps
/// 131,072 concurrent IPv4 flows with under 1% of them forgotten early (a
/// set that draws a fifth flow forgets its least recent one), and as many
/// IPv6 flows when the config has an IPv6 virtual server at start-up, else
/// 4,096 entries (`dataplane::loader::IPV6_FLOWS_WITHOUT_IPV6`); README
/// "Small boards" has what all maps take; `flow_table_size` changes it.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 1 << 19;
/// The data plane logs nothing unless asked: a switch a user turns on
/// while looking at a problem.
pub const DEFAULT_EBPF_LOG: EbpfLog = EbpfLog::Off;
/// Default path of the agent's control socket (root-only).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/lb/lb.sock";
pub const DEFAULT_SCHEDULER: Scheduler = Scheduler::Maglev;
/// The Maglev paper's own table size: prime, and 100 slots each for up to
/// 655 real servers.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65537;
/// A real server's weight when not given (its port defaults to the VIP's).
pub const DEFAULT_WEIGHT: u32 = 1;

// Bounds.

/// Largest weight: ipvsadm's range (0..=65535), so IPVS configs port as is.
pub const MAX_WEIGHT: u32 = 65535;
/// The flow table is sized by a u32 (entries beyond 2^31 are not used);
/// larger than RAM is the kernel's call.
pub const MAX_FLOW_TABLE_SIZE: u32 = u32::MAX;
/// Smallest Maglev table accepted: below this a few servers' shares are
/// visibly uneven (one slot is already 1% of the traffic).
pub const MIN_MAGLEV_TABLE_SIZE: u32 = 101;
/// Largest Maglev table accepted: the largest prime below 2^24 (64 MiB of
/// ring per service); larger tables only cost memory and build time.
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 16_777_213;
/// Maglev's guidance: a table at least 100 times the number of servers
/// keeps each server's share within about 1% of its weight.
pub const MAGLEV_SLOTS_PER_REAL_SERVER: u32 = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub agent: AgentConfig,
    pub virtual_servers: Vec<VirtualServer>,
    /// `[[vrrp_instance]]`: high availability (see [`VrrpInstance`]).
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `[[vrrp_sync_group]]`: instances that change state together.
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    /// `[announce]`: VIPs offered to a BGP daemon (see [`Announce`]);
    /// `None` without the table.
    pub announce: Option<Announce>,
    /// Where things were written, for [`validate_host`]'s messages.
    pub sources: SourceMap,
}

/// Positions of values checked after parsing. Not part of the config's
/// meaning: two configs that differ only in layout compare equal.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    /// One per `agent.interfaces` entry, in order.
    pub interfaces: Vec<Location>,
    /// One per `[[vrrp_instance]]`: where its `interface` is.
    pub vrrp_interfaces: Vec<Location>,
}

impl PartialEq for SourceMap {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// Interfaces XDP attaches to; client side first.
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Entries of the flow table (per family; sets of four).
    pub flow_table_size: u32,
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    /// `[agent] control_group`: a group whose members may run `lb status`
    /// (read-only requests) on the control socket; resolved at start-up.
    pub control_group: Option<String>,
    /// `[agent] ebpf_log`: which rare data-plane events the XDP program
    /// logs (through aya-log, printed by the agent). Applied live by a
    /// reload, unlike the other `[agent]` keys.
    pub ebpf_log: EbpfLog,
}

impl AgentConfig {
    /// Whether `other` differs in a key that waits for a restart (every
    /// key but `ebpf_log`, which a reload applies).
    pub fn needs_restart_for(&self, other: &AgentConfig) -> bool {
        let live = AgentConfig {
            ebpf_log: self.ebpf_log,
            ..other.clone()
        };
        *self != live
    }
}

/// `[agent] ebpf_log`: the data plane's log switch
/// (`lb_common::ebpf_log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EbpfLog {
    /// Nothing.
    Off,
    /// Packets dropped for lack of a real server, and flows scheduled
    /// again because their real server went down or was removed.
    Info,
    /// Info, and new flows sent to a sorry server, and flows scheduled
    /// again because their address:port moved to another service.
    Debug,
}

impl EbpfLog {
    /// Every level, as written in the config.
    pub const NAMES: [&'static str; 3] = ["off", "info", "debug"];

    /// The value the program reads from its `LOG_LEVEL` map.
    pub fn level(self) -> u32 {
        match self {
            EbpfLog::Off => lb_common::ebpf_log::OFF,
            EbpfLog::Info => lb_common::ebpf_log::INFO,
            EbpfLog::Debug => lb_common::ebpf_log::DEBUG,
        }
    }
}

impl std::fmt::Display for EbpfLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

impl std::str::FromStr for EbpfLog {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "off" => Ok(EbpfLog::Off),
            "info" => Ok(EbpfLog::Info),
            "debug" => Ok(EbpfLog::Debug),
            _ => Err(()),
        }
    }
}

config_words! {
    /// `[agent] xdp_mode`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum XdpMode {
        /// Native, falling back to generic (with a log line).
        Auto = "auto",
        Native = "native",
        Generic = "generic",
    }
}

config_words! {
    /// A virtual server's `protocol`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Protocol {
        Tcp = "tcp",
        Udp = "udp",
    }
}

config_words! {
    /// A virtual server's `forwarding`: ipvsadm's -m and -g.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Forwarding {
        Nat = "nat",
        Dr = "dr",
    }
}

config_words! {
    /// A virtual server's `scheduler`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Scheduler {
        Maglev = "maglev",
    }
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
    /// `[virtual_server.health_check]` as written (kind none without one);
    /// what each real server runs is its own [`RealServer::health_check`].
    pub health_check: HealthCheck,
    pub real_servers: Vec<RealServer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    pub address: IpAddr,
    /// Resolved: for DR always the VIP's port.
    pub port: u16,
    /// 0 = drained: no new flows, existing flows stay.
    pub weight: u32,
    /// The check this real server gets: its own `health_check` merged over
    /// its service's.
    pub health_check: HealthCheck,
}

impl RealServer {
    /// The port the health check probes.
    pub fn health_check_port(&self) -> u16 {
        self.health_check.port.unwrap_or(self.port)
    }
}

/// A config that cannot be used, with where and why. `Display` is the full
/// message a user sees (file:line:column, field, what to fix).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

/// The largest config file read: 16 MiB. A service with 16 real servers
/// takes about 700 bytes of TOML, so this allows over 20,000 such services
/// (or about 200,000 real servers at ~80 bytes each); a bigger file is
/// almost certainly a mistake (or `/dev/zero`), and reading it all would
/// cost memory and seconds before any message.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Read, parse and validate a config file.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let text = read_bounded(path)?;
    parse(&text, &path.display().to_string())
}

/// The config file's text: a regular file (a FIFO would hang, a device
/// never ends) of at most [`MAX_CONFIG_BYTES`], in UTF-8. Checked on the
/// opened file (fstat), then at most the cap plus one byte is read, so a
/// file that grows after the check is still bounded.
pub fn read_bounded(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    let fail = |what: String| ConfigError {
        message: format!("{}: {what}", path.display()),
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer before we could even look at what it is.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(format!("cannot read config: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read config: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(fail(
            "cannot read config: not a regular file (a pipe, device or directory):              name a regular file"
                .to_owned(),
        ));
    }
    let too_big = || {
        fail(format!(
            "config file is larger than {} MiB, the limit: split it or check              that this is the right file",
            MAX_CONFIG_BYTES >> 20
        ))
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read config: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let good_text = std::str::from_utf8(good).unwrap_or_default();
        let column = good_text
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            + 1;
        ConfigError {
            message: format!(
                "{}:{line}:{column}: the file is not UTF-8 text (byte {:#04x}): \
                 save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
                path.display(),
                e.as_bytes()[good.len()]
            ),
        }
    })
}

/// The control socket a config names, read from its `[agent]` table alone:
/// `lb reload` and `lb status` need only that, and parsing a config of
/// thousands of services in full took a fifth of a second before the
/// agent even heard the request. `None` when the table cannot be picked
/// out that way (the caller then loads the whole file, for its message).
pub fn control_socket_of(text: &str) -> Option<std::path::PathBuf> {
    #[derive(serde::Deserialize)]
    struct Agent {
        control_socket: Option<std::path::PathBuf>,
    }
    #[derive(serde::Deserialize)]
    struct OnlyAgent {
        agent: Option<Agent>,
    }
    let mut lines = text.lines();
    lines.find(|l| l.trim() == "[agent]")?;
    let mut table = String::from("[agent]\n");
    for line in lines.take_while(|l| !l.trim_start().starts_with('[')) {
        table.push_str(line);
        table.push('\n');
    }
    // serde ignores the agent's other keys.
    let only: OnlyAgent = toml::from_str(&table).ok()?;
    Some(
        only.agent
            .and_then(|a| a.control_socket)
            .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into()),
    )
}

/// Parse and validate config text; `origin` names it in messages.
///
/// Does not look at the host: see [`validate_host`].
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let src = error::Source { text, origin };
    let raw: raw::RawConfig = match serde_path_to_error::deserialize(toml::Deserializer::new(text))
    {
        Ok(raw) => raw,
        Err(e) => {
            // A syntax error is reported as such rather than as whatever
            // the struct mapping tripped over. Checked only once the
            // mapping failed: a second parse of every valid file was a
            // quarter of a reload of 1,000 services x 16 real servers.
            if let Err(e) = text.parse::<toml::Table>() {
                let what = match one_line(e.message()) {
                    m if m.is_empty() => "a value is missing or malformed here".to_owned(),
                    m => m,
                };
                return Err(src.plain_error(e.span(), format_args!("TOML syntax error: {what}")));
            }
            return Err(mapping_error(&src, e));
        }
    };
    validate::validate(raw, &src)
}

/// An error of the mapping from TOML to the `raw` structs (unknown key,
/// wrong type), in our format and with the field's full path.
fn mapping_error(
    src: &error::Source<'_>,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let mut field = field_path(e.path());
    let inner = e.into_inner();
    let key = field.rsplit(['.', ']']).next().unwrap_or_default();
    // serde quotes the value it could not use: never a secret's.
    if SECRET_KEYS.contains(&key) {
        return src.field_error(
            inner.span().unwrap_or(0..0),
            &field,
            "expected a string in quotes (the value is not repeated here: it is a secret)",
        );
    }
    let mut message = one_line(inner.message());
    // keepalived writes `advert_int 1`: say how a duration is written.
    if DURATION_KEYS.contains(&key) && message.starts_with("invalid type") {
        message.push_str(": a duration is a string with a unit, e.g. \"1s\" or \"100ms\"");
    }
    // The path may stop at the key's table; make sure it names the key.
    if let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if !(field == key || field.ends_with(&format!(".{key}"))) {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(key);
        }
        let accepted = message
            .split_once(", expected ")
            .map_or(String::new(), |(_, list)| {
                format!(" (accepted here: {list})")
            });
        return src.field_error(
            inner.span().unwrap_or(0..0),
            &field,
            format_args!("unknown field: remove it or fix its spelling{accepted}"),
        );
    }
    // `[virtual_server]` where `[[virtual_server]]` was meant.
    let list_of_tables = matches!(
        field.as_str(),
        "virtual_server" | "vrrp_instance" | "vrrp_sync_group"
    ) || field.ends_with(".real_server");
    if list_of_tables && message.contains("invalid type: map") {
        let key = field
            .rsplit(['.', ']'])
            .next()
            .unwrap_or_default()
            .to_owned();
        let header = if key == "real_server" {
            "virtual_server.real_server"
        } else {
            key.as_str()
        };
        return src.field_error(
            inner.span().unwrap_or(0..0),
            &field,
            format_args!(
                "a single table where a list of tables is expected: write \
                 `[[{header}]]` (double brackets), once per {}",
                key.replace('_', " ")
            ),
        );
    }
    if field.is_empty() {
        src.plain_error(inner.span(), message)
    } else {
        src.field_error(inner.span().unwrap_or(0..0), &field, message)
    }
}

/// `virtual_server[1].real_server[0].weight` from serde's path, without the
/// internal keys `toml::Spanned` deserializes through.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key.starts_with("$__serde_spanned_private") {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Keys whose values must never appear in a message.
const SECRET_KEYS: &[&str] = &["auth_pass", "bind_password"];
/// Keys that hold a duration string.
const DURATION_KEYS: &[&str] = &[
    "drain_min",
    "drain_quiet",
    "interval",
    "timeout",
    "advert_interval",
    "preempt_delay",
    "notify_timeout",
    "garp_delay",
];

/// serde's words, made one line and readable to someone who writes TOML
/// rather than Rust.
fn one_line(s: &str) -> String {
    s.trim()
        .replace('\n', "; ")
        .replace("expected i64", "expected an integer")
        .replace("expected a string", "expected a string in quotes")
        .replace("expected a sequence", "expected an array `[...]`")
        .replace("expected struct RawAgent", "expected a table `[agent]`")
        .replace("expected struct RawVirtualServer", "expected a table")
        .replace("expected struct RawRealServer", "expected a table")
        .replace("expected struct RawHealthCheck", "expected a table")
        .replace("expected struct RawVrrpInstance", "expected a table")
        .replace("expected struct RawVrrpSyncGroup", "expected a table")
        .replace(
            "expected struct RawAnnounce",
            "expected a table `[announce]`",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_applies_ebpf_log_and_leaves_the_other_agent_keys_for_a_restart() {
        let running = parse("[agent]\ninterfaces = [\"eth0\"]\n", "a.toml")
            .unwrap()
            .agent;
        let switched = parse(
            "[agent]\ninterfaces = [\"eth0\"]\nebpf_log = \"debug\"\n",
            "b.toml",
        )
        .unwrap();
        assert_eq!(switched.agent.ebpf_log, EbpfLog::Debug);
        assert!(!running.needs_restart_for(&switched.agent));
        let moved = parse(
            "[agent]\ninterfaces = [\"eth0\"]\nebpf_log = \"info\"\nxdp_mode = \"generic\"\n",
            "c.toml",
        )
        .unwrap();
        assert!(running.needs_restart_for(&moved.agent));
        assert_eq!(EbpfLog::Info.to_string(), "info");
        assert_eq!("off".parse::<EbpfLog>(), Ok(EbpfLog::Off));
        assert!("trace".parse::<EbpfLog>().is_err());
        assert_eq!(EbpfLog::Debug.level(), lb_common::ebpf_log::DEBUG);
    }

    #[test]
    fn control_socket_from_the_agent_table_alone() {
        let text = "[agent]\ninterfaces = [\n  \"eth0\",\n]\ncontrol_socket = \"/tmp/x.sock\"\n\n\
                    [[virtual_server]]\nname = 1\n";
        // The rest of the file is not even valid: only [agent] is read.
        assert_eq!(control_socket_of(text), Some("/tmp/x.sock".into()));
        assert_eq!(
            control_socket_of("[[virtual_server]]\n[agent]\ninterfaces = [\"e0\"]\n"),
            Some(DEFAULT_CONTROL_SOCKET.into())
        );
        // Not picked out this way: the caller loads the whole file.
        assert_eq!(
            control_socket_of("agent = { control_socket = \"/x\" }\n"),
            None
        );
        assert_eq!(control_socket_of("[agent]\ncontrol_socket = \n"), None);
    }
}
