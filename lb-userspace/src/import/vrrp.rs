//! `vrrp_instance` and `vrrp_sync_group` blocks to `[[vrrp_instance]]` and
//! `[[vrrp_sync_group]]`.
//!
//! Numbers keep keepalived's meaning (virtual_router_id, priority,
//! advert_int, auth_pass) so a converted node and a keepalived node can
//! share one virtual router. keepalived's defaults equal lb's (version 2,
//! priority 100, 1 s adverts, backup, preempt), so only what is written is
//! written out, plus `version = 3` for IPv6, which keepalived implies.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use toml::Value;

use super::{
    emit::{Entry, Section},
    keepalived::{Cx, Globals},
    parse::Node,
    NoteKind, Src,
};
use crate::config::{show_duration, Script, MAX_ADVERT_ADDRESSES};

/// What one instance's conversion tells the next ones (lb refuses what
/// two instances would fight over).
#[derive(Default)]
pub(super) struct State {
    /// (interface, address) and the instance holding it.
    addresses: HashMap<(String, IpAddr), String>,
    /// (interface, virtual_router_id, IPv6): one router.
    routers: HashSet<(String, u8, bool)>,
    /// Instances already in a sync group.
    grouped: HashSet<String>,
}

/// One instance: its section and its interface (for `[agent]`).
pub(super) struct Converted {
    pub name: String,
    pub section: Section,
    pub interface: Option<(String, Src)>,
}

/// Instance keys in lb's order, filled as the block is read.
#[derive(Default)]
struct Fields<'n> {
    entries: Vec<Entry>,
    /// The statement each key came from, for notes on later adjustments.
    from: HashMap<String, &'n Node>,
    /// The instance's family (of its first address) and interface.
    ipv6: bool,
    interface: String,
    /// Addresses seen in this instance.
    seen: HashSet<IpAddr>,
}

impl<'n> Fields<'n> {
    fn set(&mut self, key: &str, value: impl Into<Value>, at: Option<Src>) -> &mut Entry {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry::new(key, value, at));
        self.entries.last_mut().expect("just pushed")
    }

    fn set_from(&mut self, key: &str, value: impl Into<Value>, n: &'n Node) {
        self.set(key, value, Some(n.at));
        self.from.insert(key.to_owned(), n);
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    fn remove(&mut self, key: &str) -> Option<&'n Node> {
        self.entries.retain(|e| e.key != key);
        self.from.remove(key)
    }
}

const ORDER: &[&str] = &[
    "name",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_interval",
    "version",
    "state",
    "preempt",
    "preempt_delay",
    "auth_pass",
    "virtual_addresses",
    "virtual_addresses_excluded",
    "unicast_peers",
    "unicast_source",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "garp_repeat",
    "garp_delay",
];

pub(super) fn instance(cx: &mut Cx, n: &Node, g: &Globals, st: &mut State) -> Option<Converted> {
    let Some(name) = n.values.first() else {
        cx.not_converted(n, "vrrp_instance without a name; not converted");
        return None;
    };
    let first = first_address(n);
    let Some((first_ip, _)) = first else {
        cx.not_converted(
            n,
            "no virtual_ipaddress: an lb instance holds at least one address; not converted",
        );
        return None;
    };
    let ifname = peek(n, "interface").unwrap_or("eth0").to_owned();
    if let Some(vrid) = peek(n, "virtual_router_id").and_then(|v| v.parse::<u8>().ok()) {
        if !st
            .routers
            .insert((ifname.clone(), vrid, first_ip.is_ipv6()))
        {
            cx.not_converted(
                n,
                format!(
                    "virtual_router_id {vrid} on {ifname} is already an earlier instance's: one router is configured once; not converted"
                ),
            );
            return None;
        }
    }
    cx.ok(n);
    let mut f = Fields {
        ipv6: first_ip.is_ipv6(),
        interface: ifname,
        ..Fields::default()
    };
    f.set("name", name.as_str(), Some(n.at));
    let version = version(cx, n, g, &mut f);
    let mut interface = None;
    let mut mcast_src = None;
    for c in n.children() {
        match c.keyword.as_str() {
            "interface" => {
                if let Some(i) = cx.one(c) {
                    cx.ok(c);
                    f.set("interface", i, Some(c.at));
                    interface = Some((i.to_owned(), c.at));
                }
            }
            "version" => {} // read by version()
            "mcast_src_ip" => mcast_src = Some(c),
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                addresses(cx, c, &mut f, &mut st.addresses, name)
            }
            _ => instance_key(cx, c, &mut f, version),
        }
    }
    unicast_source_fallback(cx, &mut f, mcast_src);
    reconcile(cx, &mut f);
    garp_globals(&mut f, g);
    if interface.is_none() {
        f.set("interface", "eth0", None).comment =
            Some("PLACEHOLDER: keepalived.conf names no interface".into());
        cx.edit(
            n.at,
            &n.text(),
            "no `interface`: the output has the placeholder \"eth0\": EDIT IT",
        );
    }
    f.entries
        .sort_by_key(|e| ORDER.iter().position(|k| *k == e.key));
    let mut section = Section::new("[[vrrp_instance]]", Some(n.at));
    section.title = Some(n.text());
    section.entries = f.entries;
    Some(Converted {
        name: name.clone(),
        section,
        interface,
    })
}

/// The value of the first child named `key`, without marking it.
fn peek<'n>(n: &'n Node, key: &str) -> Option<&'n str> {
    n.children()
        .iter()
        .find(|c| c.keyword == key)
        .and_then(|c| c.values.first())
        .map(String::as_str)
}

/// The first address of `virtual_ipaddress`: it sets the family.
fn first_address(n: &Node) -> Option<(IpAddr, Option<u8>)> {
    n.children()
        .iter()
        .filter(|c| c.keyword == "virtual_ipaddress")
        .flat_map(|b| b.children())
        .find_map(|a| address(&a.keyword))
}

/// What lb refuses and keepalived tolerates, adjusted with a note.
fn reconcile(cx: &mut Cx, f: &mut Fields<'_>) {
    let no_preempt = f.get("preempt") == Some(&Value::Boolean(false));
    if no_preempt && f.get("state").and_then(Value::as_str) == Some("master") {
        if let Some(n) = f.remove("state") {
            cx.retract(
                n,
                NoteKind::Changed,
                "nopreempt needs the initial state BACKUP (keepalived says so too): backup used",
            );
        }
    }
    if no_preempt {
        if let Some(n) = f.remove("preempt_delay") {
            cx.retract(n, NoteKind::Ignored, "no effect with nopreempt");
        }
    }
    if f.get("unicast_peers").is_none() {
        if let Some(n) = f.remove("unicast_source") {
            cx.retract(
                n,
                NoteKind::Ignored,
                "without unicast_peer adverts are multicast, from the interface's address",
            );
        }
    }
}

/// The instance's version (its own, else global_defs' vrrp_version, else
/// 3 for IPv6 as keepalived implies, else 2), written out when not 2.
fn version(cx: &mut Cx, n: &Node, g: &Globals, f: &mut Fields<'_>) -> u8 {
    let ipv6 = f.ipv6;
    let own = n.children().iter().find(|c| c.keyword == "version");
    if let Some(c) = own {
        match cx.parse::<u8>(c, "2 or 3") {
            Some(3) => {
                cx.ok(c);
                f.set("version", 3, Some(c.at));
                return 3;
            }
            Some(2) if ipv6 => cx.changed(c, "VRRP version 2 has no IPv6: keepalived and lb use 3"),
            Some(2) => {
                cx.ok(c);
                f.set("version", 2, Some(c.at));
                return 2;
            }
            Some(_) => cx.not_converted(c, "VRRP version must be 2 or 3"),
            None => {}
        }
    }
    match g.vrrp_version {
        Some((v, at)) if !(ipv6 && v == 2) => {
            f.set("version", i64::from(v), Some(at)).comment =
                Some("global_defs vrrp_version".into());
            v
        }
        _ if ipv6 => {
            f.set("version", 3, None).comment =
                Some("keepalived uses VRRP version 3 for IPv6".into());
            3
        }
        _ => 2,
    }
}

fn instance_key<'n>(cx: &mut Cx, c: &'n Node, f: &mut Fields<'n>, version: u8) {
    match c.keyword.as_str() {
        "virtual_router_id" => number(cx, c, f, "virtual_router_id", 1, 255),
        "priority" => number(cx, c, f, "priority", 1, 255),
        "advert_int" => advert(cx, c, f, version),
        "state" => match c.values.first().map(|s| s.to_ascii_uppercase()).as_deref() {
            Some("MASTER") => {
                cx.ok(c);
                f.set_from("state", "master", c);
            }
            Some("BACKUP") => {
                cx.ok(c);
                f.set("state", "backup", Some(c.at));
            }
            _ => cx.not_converted(c, "the state is MASTER or BACKUP; lb starts as backup"),
        },
        "nopreempt" => {
            cx.flag(c);
            f.set_from("preempt", false, c);
        }
        "preempt" => {
            cx.flag(c);
            f.set_from("preempt", true, c);
        }
        "preempt_delay" => {
            if let Some(d) = cx.seconds(c) {
                let d = bounded(cx, c, d, Duration::ZERO, Duration::from_secs(1000));
                f.set_from("preempt_delay", show_duration(d), c);
            }
        }
        "authentication" => authentication(cx, c, f, version),
        "unicast_src_ip" => {
            if let Some(ip) = cx.parse::<IpAddr>(c, "an IP address") {
                if ip.is_ipv6() == f.ipv6 {
                    cx.ok(c);
                    f.set_from("unicast_source", ip.to_string(), c);
                } else {
                    cx.not_converted(c, "not the instance's address family");
                }
            }
        }
        "unicast_peer" => peers(cx, c, f),
        "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
            script(cx, c, f)
        }
        "garp_master_delay" => {
            if let Some(d) = cx.seconds(c) {
                let d = bounded(cx, c, d, Duration::ZERO, Duration::from_secs(3600));
                f.set("garp_delay", show_duration(d), Some(c.at));
            }
        }
        "garp_master_repeat" => {
            if let Some(r) = cx.parse::<u32>(c, "a count") {
                let used = r.clamp(1, 100);
                if used == r {
                    cx.ok(c);
                } else {
                    cx.changed(c, format!("lb repeats 1-100 times: {used} used"));
                }
                f.set("garp_repeat", i64::from(used), Some(c.at));
            }
        }
        _ => instance_other(cx, c),
    }
}

/// Instance keys lb has no value for.
fn instance_other(cx: &mut Cx, c: &Node) {
    let reason = match c.keyword.as_str() {
        "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd" => {
            "lb tracks no interfaces, scripts, files or processes: an instance can track \
             virtual servers' health instead (track_virtual_servers, track_weight)"
        }
        "use_vmac" | "vmac_xmit_base" => {
            "lb keeps the interface's own MAC address: gratuitous ARP / unsolicited \
             neighbour advertisements announce the move"
        }
        "garp_master_refresh"
        | "garp_master_refresh_repeat"
        | "garp_lower_prio_delay"
        | "garp_lower_prio_repeat"
        | "lower_prio_no_advert"
        | "higher_prio_send_advert"
        | "notify_master_rx_lower_pri" => "lb has no such setting",
        "virtual_routes" | "virtual_rules" => {
            "lb moves addresses only, no routes or rules: configure them with the system \
             or a notify script"
        }
        "strict_mode" | "accept" | "no_accept" | "skip_check_adv_addr" => {
            "lb has no strict mode: the master holds the addresses as ordinary local \
             addresses"
        }
        "lvs_sync_daemon_interface" => {
            "an IPVS connection sync setting: lb keeps flows in its own pinned maps"
        }
        "dont_track_primary" | "smtp_alert" | "debug" | "native_ipv6" | "kernel_rx_buf_size" => {
            cx.ignored(c, "no meaning for lb");
            return;
        }
        _ => return, // the sweep lists it
    };
    cx.not_converted(c, reason);
}

/// `d` within lb's bounds, with a note when it was not.
fn bounded(cx: &mut Cx, c: &Node, d: Duration, lo: Duration, hi: Duration) -> Duration {
    let used = d.clamp(lo, hi);
    if used == d {
        cx.ok(c);
    } else {
        cx.changed(
            c,
            format!(
                "lb takes {}..{}: {} used",
                show_duration(lo),
                show_duration(hi),
                show_duration(used)
            ),
        );
    }
    used
}

fn number(cx: &mut Cx, c: &Node, f: &mut Fields<'_>, key: &str, lo: i64, hi: i64) {
    if let Some(v) = cx.parse::<i64>(c, "a number") {
        if (lo..=hi).contains(&v) {
            cx.ok(c);
            f.set(key, v, Some(c.at));
        } else {
            cx.not_converted(c, format!("must be {lo}-{hi}"));
        }
    }
}

fn advert(cx: &mut Cx, c: &Node, f: &mut Fields<'_>, version: u8) {
    let Some(d) = cx.seconds(c) else { return };
    let ms = d.as_millis() as u64;
    let used = if version == 2 {
        // Version 2 counts whole seconds, as keepalived rounds.
        Duration::from_secs(ms.div_ceil(1000).clamp(1, 255))
    } else {
        Duration::from_millis((ms.div_ceil(10) * 10).clamp(10, 40_950))
    };
    if used != d {
        cx.changed(
            c,
            format!(
                "VRRP version {version} cannot send every {}: {} used",
                show_duration(d),
                show_duration(used)
            ),
        );
    } else {
        cx.ok(c);
    }
    f.set("advert_interval", show_duration(used), Some(c.at));
}

fn authentication(cx: &mut Cx, block: &Node, f: &mut Fields<'_>, version: u8) {
    let ty = block.children().iter().find(|c| c.keyword == "auth_type");
    let pass = block.children().iter().find(|c| c.keyword == "auth_pass");
    if version == 3 {
        cx.ignored(
            block,
            "VRRP version 3 has no authentication (keepalived ignores it too)",
        );
        return;
    }
    match ty
        .and_then(|t| t.values.first())
        .map(|s| s.to_ascii_uppercase())
        .as_deref()
    {
        Some("PASS") => {}
        Some("AH") => {
            cx.not_converted(
                block,
                "auth_type AH: lb has no IPsec AH authentication: the instance is converted \
                 WITHOUT authentication, and keepalived peers using AH will not accept its \
                 adverts: use PASS or none on every node",
            );
            return;
        }
        _ => {
            cx.not_converted(
                block,
                "auth_type must be PASS (or AH): no authentication converted",
            );
            return;
        }
    }
    cx.ok(block);
    for c in block.children() {
        if !matches!(c.keyword.as_str(), "auth_type" | "auth_pass") {
            continue; // the sweep lists it
        }
        cx.ok(c);
    }
    let Some(p) = pass.and_then(|p| p.values.first().map(|v| (p, v))) else {
        cx.not_converted(block, "auth_type PASS without auth_pass: no authentication");
        return;
    };
    let (node, text) = p;
    let mut bytes = text.as_str();
    if bytes.len() > 8 {
        // keepalived sends the first 8 bytes only.
        let mut end = 8;
        while !bytes.is_char_boundary(end) {
            end -= 1;
        }
        bytes = &bytes[..end];
        cx.changed(
            node,
            "longer than 8 bytes: keepalived sends its first 8, so does lb",
        );
    }
    f.set("auth_pass", bytes, Some(node.at));
}

/// `ADDR[/LEN] [dev IF] [label L] [brd B] [scope S] ...` lines, into the
/// advertised or excluded list. As keepalived does, an address of the
/// other family than the instance's, or past the 255 one advert can
/// carry, is held without being advertised (excluded).
fn addresses(
    cx: &mut Cx,
    block: &Node,
    f: &mut Fields<'_>,
    taken: &mut HashMap<(String, IpAddr), String>,
    instance: &str,
) {
    cx.ok(block);
    let excluded_block = block.keyword == "virtual_ipaddress_excluded";
    for a in block.children() {
        let Some((ip, len)) = address(&a.keyword) else {
            cx.not_converted(
                a,
                "not an address with an optional /prefix (ranges are not converted)",
            );
            continue;
        };
        if a.block.is_some() {
            cx.not_converted(a, "unexpected block after an address");
            continue;
        }
        if !f.seen.insert(ip) {
            cx.not_converted(a, "listed twice in this instance");
            continue;
        }
        if let Some(other) = taken.get(&(f.interface.clone(), ip)) {
            cx.not_converted(
                a,
                format!(
                    "already an address of instance {other} on {}: two instances would add and remove it under each other",
                    f.interface
                ),
            );
            continue;
        }
        taken.insert((f.interface.clone(), ip), instance.to_owned());
        let text = match len {
            Some(l) => format!("{ip}/{l}"),
            None => ip.to_string(),
        };
        let advertised = f
            .get("virtual_addresses")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let key = if excluded_block {
            "virtual_addresses_excluded"
        } else if ip.is_ipv6() != f.ipv6 {
            cx.changed(
                a,
                "not the instance's family: held but not advertised (excluded), as keepalived does",
            );
            "virtual_addresses_excluded"
        } else if advertised >= MAX_ADVERT_ADDRESSES {
            cx.changed(
                a,
                "past the 255 addresses an advert carries: held but not advertised (excluded)",
            );
            "virtual_addresses_excluded"
        } else {
            "virtual_addresses"
        };
        push_address(f, key, text, block.at);
        address_options(cx, a, &f.interface);
    }
}

fn push_address(f: &mut Fields<'_>, key: &str, text: String, at: Src) {
    match f.entries.iter_mut().find(|e| e.key == key) {
        Some(e) => {
            if let Value::Array(list) = &mut e.value {
                list.push(Value::from(text));
            }
        }
        None => {
            f.set(key, Value::Array(vec![Value::from(text)]), Some(at));
        }
    }
}

fn address(text: &str) -> Option<(IpAddr, Option<u8>)> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let ip: IpAddr = ip.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_some_and(|l| l > max) {
        return None;
    }
    Some((ip, len))
}

fn address_options(cx: &mut Cx, a: &Node, interface: &str) {
    let mut notes = Vec::new();
    let mut edit = None;
    let mut i = 0;
    while i < a.values.len() {
        let opt = a.values[i].as_str();
        let arg = a.values.get(i + 1).map(String::as_str);
        let takes_arg = matches!(
            opt,
            "dev" | "label" | "brd" | "broadcast" | "scope" | "preferred_lft" | "track_group"
        );
        match (opt, arg) {
            ("dev", Some(dev)) if interface == dev => {}
            ("dev", Some(dev)) => {
                edit = Some(format!(
                    "keepalived put this address on `{dev}`; lb adds every address of an \
                     instance to its `interface`: move it to an instance on `{dev}` if it must \
                     stay there"
                ))
            }
            ("label", Some(l)) => {
                notes.push(format!("label {l}: lb adds addresses without a label"))
            }
            ("brd" | "broadcast", Some(_)) => {
                notes.push("brd: the kernel's default broadcast address is used".into())
            }
            ("scope", Some(s)) => notes.push(format!("scope {s}: added with scope global")),
            (o, _) => notes.push(format!("{o}: lb has no such address option")),
        }
        i += if takes_arg { 2 } else { 1 };
    }
    match (edit, notes.is_empty()) {
        (Some(e), _) => {
            cx.ok(a);
            cx.edit(a.at, &a.text(), e);
            if !notes.is_empty() {
                cx.changed(a, notes.join("; "));
            }
        }
        (None, true) => {
            if !a.is_done() {
                cx.ok(a);
            }
        }
        (None, false) => cx.changed(a, notes.join("; ")),
    }
}

fn peers(cx: &mut Cx, block: &Node, f: &mut Fields<'_>) {
    cx.ok(block);
    let mut list = Vec::new();
    let mut seen = HashSet::new();
    for p in block.children() {
        let Ok(ip) = p.keyword.parse::<IpAddr>() else {
            cx.not_converted(p, "not an IP address");
            continue;
        };
        if ip.is_ipv6() != f.ipv6 {
            cx.not_converted(p, "not the instance's address family");
            continue;
        }
        if !seen.insert(ip) {
            cx.not_converted(p, "listed twice");
            continue;
        }
        list.push(Value::from(ip.to_string()));
        if p.values.is_empty() {
            cx.ok(p);
        } else {
            cx.changed(
                p,
                "min_ttl / max_ttl: lb accepts unicast adverts with any TTL",
            );
        }
    }
    if !list.is_empty() {
        f.set("unicast_peers", Value::Array(list), Some(block.at));
    }
}

/// keepalived uses `mcast_src_ip` as the unicast source when no
/// `unicast_src_ip` is given.
fn unicast_source_fallback<'n>(cx: &mut Cx, f: &mut Fields<'n>, mcast: Option<&'n Node>) {
    let Some(c) = mcast else { return };
    let has_peers = f.entries.iter().any(|e| e.key == "unicast_peers");
    let has_source = f.entries.iter().any(|e| e.key == "unicast_source");
    match cx.parse::<IpAddr>(c, "an IP address") {
        Some(ip) if has_peers && !has_source && ip.is_ipv6() == f.ipv6 => {
            cx.ok(c);
            f.set_from("unicast_source", ip.to_string(), c);
        }
        Some(_) => cx.not_converted(
            c,
            "lb sends multicast adverts from the interface's primary address",
        ),
        None => {}
    }
}

fn garp_globals(f: &mut Fields<'_>, g: &Globals) {
    if let Some((d, at)) = g.garp_delay {
        if !f.entries.iter().any(|e| e.key == "garp_delay") {
            f.set("garp_delay", show_duration(d), Some(at)).comment =
                Some("global_defs vrrp_garp_master_delay".into());
        }
    }
    if let Some((r, at)) = g.garp_repeat {
        if !f.entries.iter().any(|e| e.key == "garp_repeat") {
            f.set("garp_repeat", i64::from(r), Some(at)).comment =
                Some("global_defs vrrp_garp_master_repeat".into());
        }
    }
}

/// A notify script. keepalived splits the line at whitespace, with double
/// or single quotes grouping words; lb splits at whitespace with double
/// quotes only, so the words are written out again with double quotes.
fn script(cx: &mut Cx, c: &Node, f: &mut Fields<'_>) {
    let words = super::checks::split_command(&c.values.join(" "));
    let words = match words {
        Some(w) if !w.is_empty() => w,
        _ => {
            cx.not_converted(c, "no script, or unbalanced quotes");
            return;
        }
    };
    if words.iter().any(|w| w.contains('"')) {
        cx.not_converted(
            c,
            "a double quote inside an argument: lb's script line cannot carry it",
        );
        return;
    }
    cx.ok(c);
    let line = words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(char::is_whitespace) {
                format!("\"{w}\"")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if let Err(e) = Script::parse(&line) {
        cx.retract(c, NoteKind::NotConverted, format!("lb cannot run it: {e}"));
        return;
    }
    f.set(&c.keyword, line, Some(c.at));
}

pub(super) fn sync_group(
    cx: &mut Cx,
    n: &Node,
    instances: &HashSet<String>,
    st: &mut State,
) -> Option<Section> {
    let Some(name) = n.values.first() else {
        cx.not_converted(n, "vrrp_sync_group without a name; not converted");
        return None;
    };
    let mut f = Fields::default();
    f.set("name", name.as_str(), Some(n.at));
    let mut members = Vec::new();
    let mut members_at = None;
    for c in n.children() {
        match c.keyword.as_str() {
            "group" => {
                cx.ok(c);
                members_at.get_or_insert(c.at);
                for m in c.children() {
                    group_member(cx, m, instances, &mut st.grouped, &mut members);
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify" => script(cx, c, &mut f),
            "notify_stop" => cx.not_converted(
                c,
                "lb's sync groups have no notify_stop: each instance's notify_stop runs",
            ),
            "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd" => {
                cx.not_converted(c, "lb tracks no interfaces, scripts, files or processes")
            }
            "smtp_alert" | "global_tracking" | "sync_group_tracking_weight" => {
                cx.ignored(c, "no meaning for lb")
            }
            _ => {}
        }
    }
    if members.is_empty() {
        cx.not_converted(n, "no converted vrrp_instance in this group; not converted");
        return None;
    }
    cx.ok(n);
    let list = members.into_iter().map(Value::from).collect();
    f.entries
        .insert(1, Entry::new("instances", Value::Array(list), members_at));
    let mut section = Section::new("[[vrrp_sync_group]]", Some(n.at));
    section.title = Some(n.text());
    section.entries = f.entries;
    Some(section)
}

fn group_member(
    cx: &mut Cx,
    m: &Node,
    instances: &HashSet<String>,
    grouped: &mut HashSet<String>,
    out: &mut Vec<String>,
) {
    // Names may be written one per line or several on a line.
    let names: Vec<&String> = std::iter::once(&m.keyword).chain(&m.values).collect();
    let mut missing = Vec::new();
    for name in names {
        if instances.contains(name) && grouped.insert(name.clone()) {
            out.push(name.clone());
        } else {
            missing.push(name.as_str());
        }
    }
    if missing.is_empty() {
        cx.ok(m);
    } else {
        cx.not_converted(
            m,
            format!(
                "{}: no converted vrrp_instance of this name, or already in a group: left out",
                missing.join(", ")
            ),
        );
    }
}
