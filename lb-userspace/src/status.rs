//! What `lb status` shows: the report the agent sends over the control
//! socket (JSON, shape documented on [`Status`]) and its rendering as text,
//! modelled on `ipvsadm -Ln --stats`, with a block per VRRP instance after
//! the services (see [`VrrpStatus::render`]).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

/// The whole report. JSON shape (stable; tests and scripts read it):
///
/// ```json
/// {"services":[{"name":"web","address":"192.168.253.120","port":80,
///   "protocol":"tcp","forwarding":"nat","scheduler":"maglev",
///   "stats":{"conns":0,"in_packets":0,"in_bytes":0,"out_packets":0,"out_bytes":0},
///   "real_servers":[{"address":"172.16.14.121","port":80,"weight":1,"flows":0,
///     "active":true,"sorry":false,"stats":{...}}]}],
///  "verdicts":{"pass":0,"tx":0,"redirect":0,"drop":0,"aborted":0},
///  "events":{"truncated":0,...},
///  "vrrp":[{"name":"VI_1","interface":"eth0","virtual_router_id":51,
///    "version":2,"state":"master","priority":150,"effective_priority":150,
///    "master":"192.168.1.11","handed_off":false,"sync_group":"G1",
///    "addresses":["192.168.1.10/24"],
///    "last_transition":{"from":"backup","to":"master",
///      "reason":"master down timer expired","at_unix_ms":0,"ms_ago":0},
///    "adverts_sent":0,"adverts_received":0,"rejected":{"auth":0},
///    "master_conflicts":0}]}
/// ```
/// (`vrrp` is absent without VRRP instances; `master`, `sync_group` and
/// `last_transition` when unknown or none.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub services: Vec<ServiceStatus>,
    /// Packets per XDP verdict, named as in `lb_common::verdict::NAMES`.
    pub verdicts: BTreeMap<String, u64>,
    /// Packets per event, named as in `lb_common::event::NAMES`.
    pub events: BTreeMap<String, u64>,
    /// Where the report comes from when it is not a running agent (read
    /// from the pinned maps: no health, names and weights from a config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// One per `[[vrrp_instance]]` (empty without VRRP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrrp: Vec<VrrpStatus>,
    /// How old the real servers' `flows` are (ms since the walk of the flow
    /// table started). A running agent counts a big table in the background
    /// and answers with its last count; absent when no agent counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows_counted_ago_ms: Option<u64>,
    /// `[announce]`: the VIPs offered to the BGP daemon (absent without
    /// the table). See [`AnnounceStatus`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<AnnounceStatus>,
    /// `[agent] ebpf_log` in force ("off", "info", "debug"); absent when
    /// no XDP program is loaded or the report is read from pinned maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebpf_log: Option<String>,
}

/// What this node announces, as `lb status` shows it. JSON:
///
/// ```json
/// {"table":200,"protocol":252,"interface":"lo","drain":"announcing",
///  "vips":[{"address":"192.0.2.10","announced":false,
///    "reason":"no_real_server_up","why":"no real server is up in any of its services",
///    "services":["web"],"services_down":["web"]}]}
/// ```
/// `drain` is "announcing" | "draining" | "drained" ("drained": safe to
/// stop); `drain_for_ms` and `ms_since_new_conn` only while draining.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceStatus {
    pub table: u32,
    pub protocol: u8,
    pub interface: String,
    pub drain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_for_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms_since_new_conn: Option<u64>,
    pub vips: Vec<VipStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub address: String,
    /// Its route is in the table (the daemon announces it).
    pub announced: bool,
    /// Why not, as a label ("draining", "no_real_server_up", "not_attached",
    /// "route_error").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why not, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services_down: Vec<String>,
}

impl AnnounceStatus {
    /// The block `lb status` prints after the services.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let drain = match (self.drain.as_str(), self.drain_for_ms) {
            ("drained", Some(ms)) => {
                format!("DRAINED (safe to stop), withdrawn {} s ago", ms / 1000)
            }
            ("draining", Some(ms)) => format!(
                "DRAINING for {} s, last new connection {} s ago",
                ms / 1000,
                self.ms_since_new_conn.unwrap_or(ms) / 1000
            ),
            (other, _) => other.to_uppercase(),
        };
        let _ = writeln!(
            out,
            "Announce (routes in table {} proto {} dev {}): {drain}",
            self.table, self.protocol, self.interface
        );
        for v in &self.vips {
            let state = if v.announced {
                "announced"
            } else {
                "withdrawn"
            };
            let _ = write!(out, "  {:<40} {state}", v.address);
            if let Some(why) = &v.why {
                let _ = write!(out, ": {why}");
            }
            let _ = write!(out, " [{}]", v.services.join(", "));
            if !v.services_down.is_empty() && v.announced {
                let _ = write!(out, " (no real server up: {})", v.services_down.join(", "));
            }
            out.push('\n');
        }
        out
    }
}

/// A VRRP instance as `lb status` shows it: filled by the `vrrp` module's
/// driver, rendered here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub virtual_router_id: u8,
    /// 2 | 3
    pub version: u8,
    /// "init" | "backup" | "master" | "fault" | "stopped"
    pub state: String,
    /// As configured.
    pub priority: u8,
    /// What adverts carry now: configured, less track_weight while a
    /// tracked virtual server is down, 0 while handed off.
    pub effective_priority: u8,
    /// The current master's address: this node's own when master, the
    /// last advert's source when backup, absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// `lb vrrp handoff` is in force (stays backup until `lb vrrp resume`).
    #[serde(default)]
    pub handed_off: bool,
    /// The sync group this instance belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_group: Option<String>,
    /// The virtual addresses as `address/prefix`.
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<VrrpTransition>,
    /// Adverts sent and received (accepted) since start.
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Adverts ignored, per reason ("ttl", "checksum", "auth", "version",
    /// "vrid", "interval", "address_count", "addresses", "length", ...).
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    /// Times another master was seen while this node was master.
    #[serde(default)]
    pub master_conflicts: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpTransition {
    /// "backup" etc.
    pub from: String,
    pub to: String,
    /// Why, in words ("master down timer expired", "higher priority 150
    /// from 10.0.0.2", "handoff", "priority 0 from 10.0.0.1", ...).
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Milliseconds since the transition when the report was made.
    pub ms_ago: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// "tcp" | "udp"
    pub protocol: String,
    /// "nat" | "dr"
    pub forwarding: String,
    pub scheduler: String,
    pub stats: Stats,
    pub real_servers: Vec<RealServerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerStatus {
    pub address: String,
    pub port: u16,
    pub weight: u32,
    /// Entries of the flow table pointing at this real server. Entries are
    /// not aged, so this counts recent flows (closed ones included until
    /// their set needs the way), not only open connections.
    pub flows: u64,
    /// May carry flows (false while removed or down).
    pub active: bool,
    /// This entry is the service's sorry server.
    #[serde(default)]
    pub sorry: bool,
    pub stats: Stats,
    /// Health checks: absent for the sorry server and in reports of agents
    /// without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
}

/// A real server's health as `lb status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// "unknown" | "up" | "down"
    pub state: String,
    /// "http" | "tcp" | "ldap" | "exec" | "none"
    pub kind: String,
    /// Seconds in `state`.
    pub for_secs: u64,
    /// "ok", the last check's error, or absent before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    pub transitions: u64,
}

/// Counters summed over the CPUs (`lb_common::Counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
}

impl From<lb_common::Counters> for Stats {
    fn from(c: lb_common::Counters) -> Self {
        Self {
            conns: c.conns,
            in_packets: c.in_packets,
            in_bytes: c.in_bytes,
            out_packets: c.out_packets,
            out_bytes: c.out_bytes,
        }
    }
}

fn endpoint(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

fn counters(s: &Stats) -> String {
    format!(
        "{:>8} {:>9} {:>11} {:>9} {:>11}",
        s.conns, s.in_packets, s.in_bytes, s.out_packets, s.out_bytes
    )
}

impl Status {
    /// The text `lb status` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "lb {} (XDP)", env!("CARGO_PKG_VERSION"));
        if let Some(source) = &self.source {
            let _ = writeln!(out, "{source}");
        }
        let _ = writeln!(
            out,
            "{:<52} {:>8} {:>9} {:>11} {:>9} {:>11}",
            "Prot LocalAddress:Port Scheduler (Forwarding) Name",
            "Conns",
            "InPkts",
            "InBytes",
            "OutPkts",
            "OutBytes"
        );
        let _ = writeln!(out, "  -> RemoteAddress:Port        Forward Weight  Flows");
        for s in &self.services {
            let head = format!(
                "{:<4} {} {} ({}) {}",
                s.protocol.to_uppercase(),
                endpoint(&s.address, s.port),
                s.scheduler,
                s.forwarding,
                s.name
            );
            let _ = writeln!(out, "{head:<52} {}", counters(&s.stats));
            let forward = if s.forwarding == "dr" {
                "Route"
            } else {
                "Masq"
            };
            for r in &s.real_servers {
                let mut addr = endpoint(&r.address, r.port);
                if r.sorry {
                    addr.push_str(" (sorry)");
                } else if !r.active {
                    addr.push_str(" (inactive)");
                }
                let line = format!(
                    "  -> {addr:<26} {forward:<7} {:>6} {:>6}",
                    r.weight, r.flows
                );
                let _ = writeln!(out, "{line:<52} {}", counters(&r.stats));
                if let Some(h) = &r.health {
                    let _ = writeln!(
                        out,
                        "       health {} ({}) for {}s, last check: {}",
                        h.state,
                        h.kind,
                        h.for_secs,
                        h.last.as_deref().unwrap_or("none yet")
                    );
                }
            }
        }
        if !self.vrrp.is_empty() {
            let _ = writeln!(out, "\nVRRP");
            for (k, v) in self.vrrp.iter().enumerate() {
                if k > 0 {
                    out.push('\n');
                }
                out.push_str(&v.render());
            }
        }
        if let Some(announce) = &self.announce {
            out.push('\n');
            out.push_str(&announce.render());
        }
        let named = |names: &[&str], values: &BTreeMap<String, u64>| {
            names
                .iter()
                .map(|n| format!("{n} {}", values.get(*n).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\nVerdicts: {}",
            named(&lb_common::verdict::NAMES, &self.verdicts)
        );
        let _ = writeln!(
            out,
            "Events:   {}",
            named(&lb_common::event::NAMES, &self.events)
        );
        if let Some(ms) = self.flows_counted_ago_ms {
            let _ = writeln!(out, "Flows counted {} ago", age(ms));
        }
        if let Some(level) = &self.ebpf_log {
            let _ = writeln!(out, "eBPF log: {level}");
        }
        out
    }
}

/// Longest line of the address list before it wraps.
const ADDRESS_LINE: usize = 96;

impl VrrpStatus {
    /// One instance's block, as `lb status` prints it:
    ///
    /// ```text
    /// VI_1 on eth0: MASTER, VRID 51, VRRPv2, sync group G1
    ///   priority 150 (effective 100), master 192.168.1.11, handed off
    ///   addresses (2): 192.168.1.10/24, 192.168.1.101/24
    ///   last transition backup -> master 2m 5s ago: master down timer expired
    ///   adverts sent 125, received 0; rejected: auth 3, ttl 1; master conflicts 0
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        let group = self
            .sync_group
            .as_ref()
            .map_or(String::new(), |g| format!(", sync group {g}"));
        let _ = writeln!(
            out,
            "{} on {}: {}, VRID {}, VRRPv{}{group}",
            self.name,
            self.interface,
            self.state.to_uppercase(),
            self.virtual_router_id,
            self.version
        );
        let effective = if self.effective_priority == self.priority {
            String::new()
        } else {
            format!(" (effective {})", self.effective_priority)
        };
        let handed_off = if self.handed_off {
            ", handed off (until `lb vrrp resume`)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  priority {}{effective}, master {}{handed_off}",
            self.priority,
            self.master.as_deref().unwrap_or("unknown")
        );
        wrap_addresses(&mut out, &self.addresses);
        match &self.last_transition {
            None => {
                let _ = writeln!(out, "  no transition yet");
            }
            Some(t) => {
                let _ = writeln!(
                    out,
                    "  last transition {} -> {} {} ago: {}",
                    t.from,
                    t.to,
                    age(t.ms_ago),
                    t.reason
                );
            }
        }
        let rejected: Vec<String> = self
            .rejected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let rejected = if rejected.is_empty() {
            "none".to_owned()
        } else {
            rejected.join(", ")
        };
        let _ = writeln!(
            out,
            "  adverts sent {}, received {}; rejected: {rejected}; master conflicts {}",
            self.adverts_sent, self.adverts_received, self.master_conflicts
        );
        out
    }
}

/// `  addresses (N): a, b, ...`, wrapped under itself past [`ADDRESS_LINE`].
fn wrap_addresses(out: &mut String, addresses: &[String]) {
    let head = format!("  addresses ({}): ", addresses.len());
    let indent = " ".repeat(head.len());
    let mut line = head;
    let mut first = true;
    for (k, a) in addresses.iter().enumerate() {
        let sep = if k + 1 < addresses.len() { "," } else { "" };
        if !first && line.len() + 1 + a.len() + sep.len() > ADDRESS_LINE {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
            first = true;
        }
        if !first {
            line.push(' ');
        }
        line.push_str(a);
        line.push_str(sep);
        first = false;
    }
    if addresses.is_empty() {
        line.push_str("none");
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// "850ms", "12s", "2m 5s", "3h 2m", "4d 1h".
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_block_says_what_is_announced_and_why_not() {
        let mut a = AnnounceStatus {
            table: 200,
            protocol: 252,
            interface: "lo".into(),
            drain: "announcing".into(),
            vips: vec![
                VipStatus {
                    address: "192.0.2.10".into(),
                    announced: true,
                    services: vec!["web".into(), "tls".into()],
                    services_down: vec!["tls".into()],
                    ..VipStatus::default()
                },
                VipStatus {
                    address: "192.0.2.20".into(),
                    announced: false,
                    reason: Some("no_real_server_up".into()),
                    why: Some("no real server is up in any of its services".into()),
                    services: vec!["api".into()],
                    services_down: vec!["api".into()],
                },
            ],
            ..AnnounceStatus::default()
        };
        let text = a.render();
        assert!(
            text.starts_with("Announce (routes in table 200 proto 252 dev lo): ANNOUNCING\n"),
            "{text}"
        );
        assert!(
            text.contains("192.0.2.10")
                && text.contains("announced [web, tls] (no real server up: tls)"),
            "{text}"
        );
        assert!(
            text.contains("withdrawn: no real server is up in any of its services [api]\n"),
            "{text}"
        );
        a.drain = "draining".into();
        a.drain_for_ms = Some(4200);
        a.ms_since_new_conn = Some(1500);
        assert!(
            a.render()
                .contains("DRAINING for 4 s, last new connection 1 s ago"),
            "{}",
            a.render()
        );
        a.drain = "drained".into();
        assert!(a
            .render()
            .contains("DRAINED (safe to stop), withdrawn 4 s ago"));
        // In the JSON under `announce`, absent without [announce].
        let status = Status {
            announce: Some(a),
            ..Status::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["announce"]["vips"][1]["reason"], "no_real_server_up");
        assert!(serde_json::to_value(Status::default())
            .unwrap()
            .get("announce")
            .is_none());
    }

    fn sample() -> Status {
        let stats = Stats {
            conns: 5,
            in_packets: 30,
            in_bytes: 1890,
            out_packets: 25,
            out_bytes: 40000,
        };
        Status {
            services: vec![ServiceStatus {
                name: "web".into(),
                address: "192.168.253.120".into(),
                port: 80,
                protocol: "tcp".into(),
                forwarding: "nat".into(),
                scheduler: "maglev".into(),
                stats,
                real_servers: vec![RealServerStatus {
                    address: "fd00::121".into(),
                    port: 80,
                    weight: 2,
                    flows: 3,
                    health: None,
                    active: true,
                    sorry: false,
                    stats,
                }],
            }],
            verdicts: [("pass".to_string(), 7u64), ("redirect".to_string(), 30)]
                .into_iter()
                .collect(),
            events: [("nat_reply".to_string(), 25u64)].into_iter().collect(),
            source: None,
            vrrp: Vec::new(),
            announce: None,
            flows_counted_ago_ms: None,
            ebpf_log: None,
        }
    }

    #[test]
    fn the_ebpf_log_switch_is_one_line_and_one_field() {
        let mut status = sample();
        assert!(!status.render().contains("eBPF log"));
        assert!(serde_json::to_value(&status)
            .unwrap()
            .get("ebpf_log")
            .is_none());
        status.ebpf_log = Some("info".into());
        let text = status.render();
        assert!(text.contains("\neBPF log: info\n"), "{text}");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["ebpf_log"], "info");
        let back: Status = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn the_age_of_the_flow_counts_is_shown_when_known() {
        let mut status = sample();
        assert!(!status.render().contains("Flows counted"));
        status.flows_counted_ago_ms = Some(2500);
        let text = status.render();
        assert!(text.contains("\nFlows counted 2s ago\n"), "{text}");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["flows_counted_ago_ms"], 2500);
    }

    #[test]
    fn text_reads_like_ipvsadm() {
        let text = sample().render();
        assert!(
            text.contains("TCP  192.168.253.120:80 maglev (nat) web"),
            "{text}"
        );
        let real = text
            .lines()
            .find(|l| l.contains("-> [fd00::121]:80"))
            .unwrap();
        let fields: Vec<&str> = real.split_whitespace().collect();
        assert_eq!(
            &fields[2..],
            &["Masq", "2", "3", "5", "30", "1890", "25", "40000"]
        );
        assert!(text.contains("pass 7"), "{text}");
        assert!(text.contains("redirect 30"), "{text}");
        assert!(text.contains("nat_reply 25"), "{text}");
    }

    fn vrrp_sample() -> VrrpStatus {
        VrrpStatus {
            name: "VI_1".into(),
            interface: "eth0".into(),
            virtual_router_id: 51,
            version: 2,
            state: "master".into(),
            priority: 150,
            effective_priority: 100,
            master: Some("192.168.1.11".into()),
            handed_off: false,
            sync_group: Some("G1".into()),
            addresses: (0..23)
                .map(|n| format!("192.168.1.{}/24", 100 + n))
                .collect(),
            last_transition: Some(VrrpTransition {
                from: "backup".into(),
                to: "master".into(),
                reason: "master down timer expired".into(),
                at_unix_ms: 1_700_000_000_000,
                ms_ago: 125_400,
            }),
            adverts_sent: 125,
            adverts_received: 7,
            rejected: [
                ("auth".to_string(), 3u64),
                ("ttl".to_string(), 1),
                ("vrid".to_string(), 0),
            ]
            .into_iter()
            .collect(),
            master_conflicts: 2,
        }
    }

    #[test]
    fn vrrp_block_follows_the_services() {
        let mut status = sample();
        let mut backup = vrrp_sample();
        backup.name = "VI_2".into();
        backup.state = "backup".into();
        backup.effective_priority = 0;
        backup.handed_off = true;
        backup.master = None;
        backup.sync_group = None;
        backup.addresses = vec!["fd00::10/64".into()];
        backup.last_transition = None;
        backup.rejected.clear();
        status.vrrp = vec![vrrp_sample(), backup];
        let text = status.render();
        let services = text.find("TCP  192.168.253.120:80").unwrap();
        let vrrp = text.find("\nVRRP\n").expect(&text);
        let verdicts = text.find("Verdicts:").unwrap();
        assert!(services < vrrp && vrrp < verdicts, "{text}");

        let block: Vec<&str> = text[vrrp..verdicts].lines().collect();
        assert_eq!(
            block[2],
            "VI_1 on eth0: MASTER, VRID 51, VRRPv2, sync group G1"
        );
        assert_eq!(
            block[3],
            "  priority 150 (effective 100), master 192.168.1.11"
        );
        assert!(
            block[4].starts_with("  addresses (23): 192.168.1.100/24, "),
            "{text}"
        );
        // 23 addresses wrap under the first one, every one shown once.
        let listed: Vec<&str> = text[vrrp..verdicts]
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| w.starts_with("192.168.1.") && w.ends_with("/24"))
            .collect();
        assert_eq!(listed.len(), 23, "{text}");
        assert!(
            text[vrrp..verdicts]
                .lines()
                .all(|l| l.len() <= ADDRESS_LINE),
            "{text}"
        );
        assert!(
            text.contains(
                "  last transition backup -> master 2m 5s ago: master down timer expired\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  adverts sent 125, received 7; rejected: auth 3, ttl 1; master conflicts 2\n"
            ),
            "{text}"
        );
        // The second instance: handed off, nothing known yet.
        assert!(
            text.contains("VI_2 on eth0: BACKUP, VRID 51, VRRPv2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  priority 150 (effective 0), master unknown, handed off (until `lb vrrp resume`)\n"
            ),
            "{text}"
        );
        assert!(text.contains("  addresses (1): fd00::10/64\n"), "{text}");
        assert!(text.contains("  no transition yet\n"), "{text}");
        assert!(text.contains("rejected: none;"), "{text}");

        // Without VRRP the report is what it was.
        assert!(!sample().render().contains("VRRP"));
    }

    #[test]
    fn ages_read_like_a_clock() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(12_300), "12s");
        assert_eq!(age(125_400), "2m 5s");
        assert_eq!(age(3 * 3_600_000 + 120_000), "3h 2m");
        assert_eq!(age(4 * 86_400_000 + 3_600_000), "4d 1h");
    }

    #[test]
    fn vrrp_json_is_the_struct() {
        let mut status = sample();
        status.vrrp = vec![vrrp_sample()];
        let v = serde_json::to_value(&status).unwrap();
        let i = &v["vrrp"][0];
        assert_eq!(i["name"], "VI_1");
        assert_eq!(i["virtual_router_id"], 51);
        assert_eq!(i["effective_priority"], 100);
        assert_eq!(i["last_transition"]["reason"], "master down timer expired");
        assert_eq!(i["rejected"]["auth"], 3);
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, status);
        // No VRRP: no key, and reports of older agents still read.
        let v = serde_json::to_value(sample()).unwrap();
        assert!(v.get("vrrp").is_none());
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        let s = &v["services"][0];
        for field in [
            "name",
            "address",
            "port",
            "protocol",
            "forwarding",
            "scheduler",
        ] {
            assert!(!s[field].is_null(), "service.{field} missing");
        }
        for field in [
            "conns",
            "in_packets",
            "in_bytes",
            "out_packets",
            "out_bytes",
        ] {
            assert!(s["stats"][field].is_u64(), "stats.{field} missing");
        }
        let r = &s["real_servers"][0];
        for field in ["address", "port", "weight", "flows", "stats"] {
            assert!(!r[field].is_null(), "real_server.{field} missing");
        }
        assert_eq!(v["verdicts"]["pass"], 7);
        assert_eq!(v["events"]["nat_reply"], 25);
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }
}
