//! `virtual_server` and `real_server` blocks to `[[virtual_server]]` and
//! `[[virtual_server.real_server]]`. A `virtual_server group NAME` becomes
//! one service per address of its `virtual_server_group` (lb has no
//! groups; address ranges are expanded, fwmark members are not converted).
//!
//! keepalived's defaults are written out (protocol TCP, lb_kind NAT,
//! weight 1, delay_loop 60 s) so the output means what the input meant.
//! Where lb would refuse what keepalived accepts (a NAT real server in two
//! services, a DR real server on another port) the statement is adjusted
//! or left out with a note, so the output passes `lb check`.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use super::{
    checks::{self, Check, Defaults},
    emit::{Entry, Section},
    keepalived::Cx,
    parse::Node,
    Src,
};
use crate::config::MAX_WEIGHT;

/// What one service's conversion tells the next ones and `[agent]`.
#[derive(Default)]
pub(super) struct State {
    pub has_nat: bool,
    pub first_at: Option<Src>,
    services: HashSet<(IpAddr, u16, &'static str)>,
    /// NAT endpoints (real and sorry servers) and the service that has them.
    nat_endpoints: HashMap<(IpAddr, u16, &'static str), String>,
}

/// The service's settings read from its block.
struct Service {
    address: IpAddr,
    port: u16,
    protocol: &'static str,
    dr: bool,
    name: String,
}

/// The sections of one `virtual_server` block: one service, or one per
/// member of its `virtual_server_group`; none when it cannot be converted.
pub(super) fn virtual_server(
    cx: &mut Cx,
    n: &Node,
    st: &mut State,
    groups: &HashMap<&str, &Node>,
) -> Vec<Section> {
    let [kind, name] = n.values.as_slice() else {
        return header(cx, n)
            .and_then(|(a, p)| service(cx, n, st, a, p, None))
            .unwrap_or_default();
    };
    if kind != "group" {
        return header(cx, n)
            .and_then(|(a, p)| service(cx, n, st, a, p, None))
            .unwrap_or_default();
    }
    let Some(group) = groups.get(name.as_str()) else {
        cx.not_converted(
            n,
            format!("no virtual_server_group {name} in the file; not converted"),
        );
        return Vec::new();
    };
    cx.ok(group);
    let members = group_members(cx, group);
    if members.is_empty() {
        cx.not_converted(
            n,
            "its group has no address and port lb can serve; not converted",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (address, port, at) in members {
        out.extend(service(cx, n, st, address, port, Some(at)).unwrap_or_default());
    }
    out
}

/// `IP PORT` and `IP-LAST PORT` (a range of the last byte, or the last
/// 16 bits for IPv6) members of a `virtual_server_group`.
fn group_members(cx: &mut Cx, group: &Node) -> Vec<(IpAddr, u16, Src)> {
    let mut out = Vec::new();
    for m in group.children() {
        if m.keyword == "fwmark" {
            cx.not_converted(
                m,
                "lb matches services by address, port and protocol, not by firewall mark",
            );
            continue;
        }
        let port = match m.values.as_slice() {
            [p] => p.parse::<u16>().ok().filter(|p| *p > 0),
            _ => None,
        };
        let (Some(port), Some(addresses)) = (port, address_range(&m.keyword)) else {
            cx.not_converted(
                m,
                "expected `IP PORT` or `IP-LAST PORT` with a port 1-65535",
            );
            continue;
        };
        cx.ok(m);
        out.extend(addresses.into_iter().map(|a| (a, port, m.at)));
    }
    out
}

fn address_range(text: &str) -> Option<Vec<IpAddr>> {
    let Some((first, last)) = text.split_once('-') else {
        return Some(vec![text.parse().ok()?]);
    };
    match first.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let [x, y, z, lo] = a.octets();
            let hi: u8 = last.parse().ok()?;
            (lo <= hi).then(|| (lo..=hi).map(|o| IpAddr::from([x, y, z, o])).collect())
        }
        IpAddr::V6(a) => {
            let mut segs = a.segments();
            let lo = segs[7];
            let hi = u16::from_str_radix(last, 16).ok()?;
            if lo > hi || hi - lo > 1024 {
                return None;
            }
            Some(
                (lo..=hi)
                    .map(|s| {
                        segs[7] = s;
                        IpAddr::from(segs)
                    })
                    .collect(),
            )
        }
    }
}

/// One service from the block `n` at `address`:`port` (`member`: the
/// group line it came from).
fn service(
    cx: &mut Cx,
    n: &Node,
    st: &mut State,
    address: IpAddr,
    port: u16,
    member: Option<Src>,
) -> Option<Vec<Section>> {
    let protocol = match peek(n, &["protocol"])
        .map(|p| p.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("TCP") => "tcp",
        Some("UDP") => "udp",
        Some(other) => {
            cx.not_converted(
                n,
                format!("protocol {other}: lb balances TCP and UDP only; this virtual server and its real servers are not converted"),
            );
            return None;
        }
    };
    let dr = match peek(n, &["lb_kind", "lvs_method"])
        .map(|p| p.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("NAT") => false,
        Some("DR") => true,
        Some(other) => {
            cx.not_converted(
                n,
                format!("lb_kind {other}: lb forwards with NAT or DR only; this virtual server and its real servers are not converted"),
            );
            return None;
        }
    };
    if !st.services.insert((address, port, protocol)) {
        cx.not_converted(
            n,
            format!("{address} port {port} {protocol} is already an earlier virtual_server"),
        );
        return None;
    }
    cx.ok(n);
    let svc = Service {
        address,
        port,
        protocol,
        dr,
        name: match address {
            IpAddr::V4(a) => format!("{a}:{port}/{protocol}"),
            IpAddr::V6(a) => format!("[{a}]:{port}/{protocol}"),
        },
    };
    st.first_at.get_or_insert(n.at);
    st.has_nat |= !dr;

    let mut section = Section::new("[[virtual_server]]", Some(n.at));
    section.title = Some(n.text());
    let from = member.or(Some(n.at));
    if let Some(m) = member {
        section
            .comments
            .push(format!("one member (line {}) of its group", m.line));
    }
    section.push(Entry::new("name", svc.name.as_str(), from));
    section.push(Entry::new("address", address.to_string(), from));
    section.push(Entry::new("port", i64::from(port), from));
    let mut defaults = Defaults::default();
    let mut proto_at = None;
    let mut kind_at = None;
    let mut sorry = None;
    for c in n.children() {
        if checks::default_key(cx, c, &mut defaults) {
            continue;
        }
        match c.keyword.as_str() {
            "protocol" => {
                cx.ok(c);
                proto_at = Some(c.at);
            }
            "lb_kind" | "lvs_method" => {
                cx.ok(c);
                kind_at = Some(c.at);
            }
            "sorry_server" => sorry = sorry_server(cx, c, &svc, st),
            "real_server" => {}
            _ => service_key(cx, c),
        }
    }
    let mut proto = Entry::new("protocol", protocol, proto_at);
    if proto_at.is_none() {
        proto = proto.note("keepalived's default protocol");
    }
    section.push(proto);
    let mut fwd = Entry::new("forwarding", if dr { "dr" } else { "nat" }, kind_at);
    if kind_at.is_none() {
        fwd = fwd.note("keepalived's default lb_kind NAT");
    }
    section.push(fwd);
    section.push(Entry::new("scheduler", "maglev", None).note("lb's only scheduler"));
    if let Some(e) = sorry {
        section.push(e);
    }
    let reals = real_servers(cx, n, &svc, &defaults, st);
    Some(assemble(section, reals))
}

/// `virtual_server IP PORT`; groups and fwmarks are not converted.
fn header(cx: &mut Cx, n: &Node) -> Option<(IpAddr, u16)> {
    match n.values.as_slice() {
        [kind, _] if kind == "fwmark" => {
            cx.not_converted(n, "lb matches services by address, port and protocol, not by firewall mark; not converted");
            None
        }
        [ip, port] => {
            let Ok(address) = ip.parse::<IpAddr>() else {
                cx.not_converted(n, format!("`{ip}` is not an IP address; not converted"));
                return None;
            };
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Some((address, p)),
                _ => {
                    cx.not_converted(
                        n,
                        format!("port `{port}`: lb needs a port 1-65535 (no all-ports service); not converted"),
                    );
                    None
                }
            }
        }
        _ => {
            cx.not_converted(n, "expected `virtual_server IP PORT`; not converted");
            None
        }
    }
}

/// The value of the first child named one of `keys`, without marking it.
fn peek<'n>(n: &'n Node, keys: &[&str]) -> Option<&'n str> {
    n.children()
        .iter()
        .find(|c| keys.contains(&c.keyword.as_str()))
        .and_then(|c| c.values.first())
        .map(String::as_str)
}

/// Service keys with no lb value: each gets its note.
fn service_key(cx: &mut Cx, c: &Node) {
    match c.keyword.as_str() {
        "lb_algo" | "lvs_sched" => cx.changed(
            c,
            "lb schedules with Maglev consistent hashing (weights honoured; an established \
             flow stays on its real server)",
        ),
        "persistence_timeout" | "persistence_granularity" | "persistence_engine" => cx.not_converted(
            c,
            "lb has no client persistence: a flow stays on its real server, but a client's \
             next connection is hashed on its own ports",
        ),
        "ha_suspend" => cx.not_converted(
            c,
            "lb checks real servers whether or not this node holds the VIP",
        ),
        "alpha" => cx.changed(
            c,
            "lb starts each real server as unknown (counted up) and its first check decides",
        ),
        "omega" | "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => cx.not_converted(
            c,
            "lb has no quorum: the service has the real servers that are up, else the sorry server",
        ),
        "sorry_server_inhibit" | "sorry_server_lvs_method" => cx.not_converted(
            c,
            "lb's sorry server takes new flows while no real server can, with the service's forwarding",
        ),
        "ops" | "one_packet_scheduling" => cx.not_converted(
            c,
            "lb keeps UDP flows in its flow table; it does not schedule each datagram on its own",
        ),
        "smtp_alert" => cx.ignored(c, "lb sends no mail"),
        "ip_family" => cx.ignored(c, "lb takes the family from the addresses"),
        _ => {} // the sweep lists it
    }
}

fn sorry_server(cx: &mut Cx, c: &Node, svc: &Service, st: &mut State) -> Option<Entry> {
    let [ip, port] = c.values.as_slice() else {
        cx.not_converted(c, "expected `sorry_server IP PORT`");
        return None;
    };
    let (Ok(ip), Ok(mut port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) else {
        cx.not_converted(c, "not an address and a port");
        return None;
    };
    if ip.is_ipv4() != svc.address.is_ipv4() {
        cx.not_converted(c, "not the VIP's address family");
        return None;
    }
    if svc.dr && port != svc.port {
        cx.changed(
            c,
            format!("DR delivers to the VIP's port: {} used", svc.port),
        );
        port = svc.port;
    }
    if !svc.dr {
        let key = (ip, port, svc.protocol);
        if let Some(other) = st.nat_endpoints.get(&key) {
            if *other != svc.name {
                cx.not_converted(
                    c,
                    format!(
                        "already a NAT endpoint of `{other}`: lb could not tell its replies apart"
                    ),
                );
                return None;
            }
        }
        st.nat_endpoints.insert(key, svc.name.clone());
    }
    cx.ok(c);
    Some(Entry::new(
        "sorry_server",
        SocketAddr::new(ip, port).to_string(),
        Some(c.at),
    ))
}

/// A converted real server: its section and its check, if any.
struct Real {
    section: Section,
    check: Option<Check>,
}

fn real_servers(cx: &mut Cx, n: &Node, svc: &Service, d: &Defaults, st: &mut State) -> Vec<Real> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in n.children().iter().filter(|c| c.keyword == "real_server") {
        if let Some(r) = real_server(cx, c, svc, d, st, &mut seen) {
            out.push(r);
        }
    }
    if out.is_empty() {
        cx.edit(
            n.at,
            &n.text(),
            "no real server converted: the service drops its traffic (or sends it to the sorry server)",
        );
    }
    out
}

fn real_server(
    cx: &mut Cx,
    n: &Node,
    svc: &Service,
    inherited: &Defaults,
    st: &mut State,
    seen: &mut HashSet<(IpAddr, u16)>,
) -> Option<Real> {
    let (ip_text, port_text) = match n.values.as_slice() {
        [ip, port] => (ip, Some(port)),
        [ip] => (ip, None),
        _ => {
            cx.not_converted(n, "expected `real_server IP PORT`; not converted");
            return None;
        }
    };
    let Ok(ip) = ip_text.parse::<IpAddr>() else {
        cx.not_converted(
            n,
            format!("`{ip_text}` is not an IP address; not converted"),
        );
        return None;
    };
    let port = match port_text.map(|p| p.parse::<u16>()) {
        None => None,
        Some(Ok(p)) if p > 0 => Some(p),
        Some(_) => {
            cx.not_converted(n, "not a port 1-65535; not converted");
            return None;
        }
    };
    let port = match port {
        Some(p) if svc.dr && p != svc.port => {
            cx.changed(
                n,
                format!(
                    "DR delivers to the VIP's port {}: port {p} dropped",
                    svc.port
                ),
            );
            svc.port
        }
        Some(p) => p,
        None => svc.port,
    };
    if ip.is_ipv4() != svc.address.is_ipv4() {
        cx.not_converted(n, "not the VIP's address family; not converted");
        return None;
    }
    if !seen.insert((ip, port)) {
        cx.not_converted(n, "listed twice in this virtual server; the first is kept");
        return None;
    }
    if !svc.dr {
        let key = (ip, port, svc.protocol);
        match st.nat_endpoints.get(&key) {
            Some(other) if *other != svc.name => {
                cx.not_converted(
                    n,
                    format!(
                        "already a real server of NAT service `{other}`: lb matches NAT \
                         replies on the real server's address and port alone; give it \
                         another port for this service; not converted"
                    ),
                );
                return None;
            }
            _ => {
                st.nat_endpoints.insert(key, svc.name.clone());
            }
        }
    }
    cx.ok(n);
    let mut section = Section::new("[[virtual_server.real_server]]", Some(n.at));
    section.nested = true;
    section.push(Entry::new("address", ip.to_string(), Some(n.at)));
    section.push(Entry::new("port", i64::from(port), Some(n.at)));
    let mut d = inherited.clone();
    let mut weight = None;
    let mut checkers = Vec::new();
    for c in n.children() {
        if checks::default_key(cx, c, &mut d) {
            continue;
        }
        match c.keyword.as_str() {
            "weight" => weight = weight_of(cx, c),
            k if checks::is_checker(k) => checkers.push(c),
            _ => real_key(cx, c, svc),
        }
    }
    section.push(match weight {
        Some((w, at)) => Entry::new("weight", i64::from(w), Some(at)),
        None => Entry::new("weight", 1, None).note("keepalived's default weight"),
    });
    let mut check = None;
    for c in checkers {
        if let Some(first) = &check {
            let first: &Check = first;
            cx.not_converted(
                c,
                format!(
                    "lb runs one check per real server: the first checker (line {}) was converted",
                    first.at.line
                ),
            );
        } else {
            check = checks::checker(cx, c, &d);
        }
    }
    Some(Real { section, check })
}

fn weight_of(cx: &mut Cx, c: &Node) -> Option<(u32, Src)> {
    let w: i64 = cx.parse(c, "a weight")?;
    let clamped = w.clamp(0, i64::from(MAX_WEIGHT)) as u32;
    if i64::from(clamped) != w {
        cx.changed(
            c,
            format!("lb's weights are 0-{MAX_WEIGHT}: {clamped} used"),
        );
    } else {
        cx.ok(c);
    }
    Some((clamped, c.at))
}

fn real_key(cx: &mut Cx, c: &Node, svc: &Service) {
    match c.keyword.as_str() {
        "inhibit_on_failure" => cx.changed(
            c,
            "a failed real server leaves lb's Maglev table and its flows are scheduled \
             again at once (keepalived kept it with weight 0)",
        ),
        "notify_up" | "notify_down" => cx.not_converted(
            c,
            "lb runs no script on a real server's health change: it logs it and counts it \
             (lb status, lb_real_server_up in metrics)",
        ),
        "uthreshold" | "lthreshold" => {
            cx.not_converted(c, "lb has no connection thresholds per real server")
        }
        "lvs_method" | "lb_kind" => {
            let same = c
                .values
                .first()
                .is_some_and(|v| v.eq_ignore_ascii_case(if svc.dr { "DR" } else { "NAT" }));
            if same {
                cx.ok(c);
            } else {
                cx.not_converted(
                    c,
                    "lb forwards every real server of a service the same way: the service's lb_kind is used",
                );
            }
        }
        "smtp_alert" => cx.ignored(c, "lb sends no mail"),
        _ => {}
    }
}

/// The service section, its check (once, when every real server has the
/// same) and its real servers.
fn assemble(service: Section, mut reals: Vec<Real>) -> Vec<Section> {
    let mut out = vec![service];
    let first = reals.first().and_then(|r| r.check.clone());
    let shared = first.filter(|f| {
        reals
            .iter()
            .all(|r| r.check.as_ref().is_some_and(|c| c.same_as(f)))
    });
    if let Some(check) = shared {
        let mut s = Section::new("[virtual_server.health_check]", Some(check.at));
        s.nested = true;
        s.comments
            .push("every real server had this checker: it is the service's".into());
        s.entries = check.entries;
        out.push(s);
    } else {
        for r in &mut reals {
            if let Some(check) = &r.check {
                r.section.push(
                    Entry::raw("health_check", check.inline(), Some(check.at))
                        .note("this real server's checker"),
                );
            }
        }
    }
    out.extend(reals.into_iter().map(|r| r.section));
    out
}
