//! The conversion's top level: `global_defs`, the dispatch of the
//! top-level blocks, the `[agent]` table, and the final sweep that lists
//! every statement no converter dealt with.
//!
//! [`Cx`] is the bookkeeping every converter shares: a statement is either
//! converted ([`Cx::ok`]) or gets a note with its reason; the sweep makes
//! the "nothing dropped silently" promise hold even for keywords this
//! importer has never heard of.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    time::Duration,
};

use toml::Value;

use super::{
    emit::{render, Entry, Section},
    lvs,
    parse::Node,
    parse::Parsed,
    vrrp, Import, Note, NoteKind, Src,
};

/// Notes and counts shared by every converter.
#[derive(Default)]
pub(super) struct Cx {
    pub notes: Vec<Note>,
    /// Statements converted as written.
    pub converted: Vec<Src>,
}

impl Cx {
    /// Converted as written.
    pub fn ok(&mut self, n: &Node) {
        if !n.is_done() {
            self.converted.push(n.at);
        }
        n.done();
    }

    /// lb has no equivalent; the statement and its block had no effect.
    pub fn not_converted(&mut self, n: &Node, reason: impl Into<String>) {
        n.done_all();
        self.push(n, NoteKind::NotConverted, reason);
    }

    /// Meaningless for lb; the statement and its block had no effect.
    pub fn ignored(&mut self, n: &Node, reason: impl Into<String>) {
        n.done_all();
        self.push(n, NoteKind::Ignored, reason);
    }

    /// Converted, with the difference the reason names.
    pub fn changed(&mut self, n: &Node, reason: impl Into<String>) {
        n.done();
        self.push(n, NoteKind::Changed, reason);
    }

    /// Takes back an [`Cx::ok`]: the statement gets a note after all.
    pub fn retract(&mut self, n: &Node, kind: NoteKind, reason: impl Into<String>) {
        if let Some(i) = self.converted.iter().position(|at| *at == n.at) {
            self.converted.remove(i);
        }
        n.done();
        self.push(n, kind, reason);
    }

    /// A value in the output the user has to look at.
    pub fn edit(&mut self, at: Src, what: &str, reason: impl Into<String>) {
        self.notes.push(Note {
            at,
            last_line: at.line,
            what: what.to_owned(),
            kind: NoteKind::Edit,
            reason: reason.into(),
        });
    }

    fn push(&mut self, n: &Node, kind: NoteKind, reason: impl Into<String>) {
        // Only a statement dropped with its block covers the block's lines.
        let last_line = match kind {
            NoteKind::NotConverted | NoteKind::Ignored => n.last_line(),
            _ => n.at.line,
        };
        self.notes.push(Note {
            at: n.at,
            last_line,
            what: n.text(),
            kind,
            reason: reason.into(),
        });
    }

    /// The single value of `n`; extra values are reported, none is a note.
    pub fn one<'n>(&mut self, n: &'n Node) -> Option<&'n str> {
        match n.values.as_slice() {
            [] => {
                self.not_converted(n, "no value given");
                None
            }
            [v] => Some(v),
            [v, rest @ ..] => {
                self.changed(
                    n,
                    format!("only the first value is used; `{}` ignored", rest.join(" ")),
                );
                Some(v)
            }
        }
    }

    /// The single value of `n` parsed as `T`; `expected` says what it
    /// should have been when it is not.
    pub fn parse<T: FromStr>(&mut self, n: &Node, expected: &str) -> Option<T> {
        let v = self.one(n)?;
        match v.parse() {
            Ok(t) => Some(t),
            Err(_) => {
                self.not_converted(n, format!("`{v}` is not {expected}"));
                None
            }
        }
    }

    /// keepalived's seconds, fractions allowed ("2.5"), to whole
    /// milliseconds.
    pub fn seconds(&mut self, n: &Node) -> Option<Duration> {
        let v: f64 = self.parse(n, "a number of seconds")?;
        if !(v.is_finite() && (0.0..1e9).contains(&v)) {
            self.not_converted(n, format!("{v} is not a usable number of seconds"));
            return None;
        }
        Some(Duration::from_millis((v * 1000.0).round() as u64))
    }

    /// A keyword that takes no value.
    pub fn flag(&mut self, n: &Node) {
        if n.values.is_empty() {
            self.ok(n);
        } else {
            self.changed(
                n,
                format!("takes no value; `{}` ignored", n.values.join(" ")),
            );
        }
    }
}

/// What `global_defs` sets for the rest of the file.
#[derive(Default)]
pub(super) struct Globals {
    pub vrrp_version: Option<(u8, Src)>,
    pub garp_delay: Option<(Duration, Src)>,
    pub garp_repeat: Option<(u32, Src)>,
}

pub(super) fn convert(parsed: Parsed) -> Import {
    let mut cx = Cx {
        notes: parsed.notes,
        // An include line is converted by reading its files.
        converted: parsed.includes,
    };
    let nodes = &parsed.nodes;
    let mut globals = Globals::default();
    for n in nodes.iter().filter(|n| n.keyword == "global_defs") {
        global_defs(&mut cx, n, &mut globals);
    }
    let mut services = Vec::new();
    let mut instances = Vec::new();
    let mut groups = Vec::new();
    let mut lvs_state = lvs::State::default();
    let mut vrrp_state = vrrp::State::default();
    let vs_groups: HashMap<&str, &Node> = nodes
        .iter()
        .filter(|n| n.keyword == "virtual_server_group")
        .filter_map(|n| Some((n.values.first()?.as_str(), n)))
        .collect();
    for n in nodes {
        match n.keyword.as_str() {
            "global_defs" | "virtual_server_group" => {}
            "virtual_server" => {
                services.push(lvs::virtual_server(&mut cx, n, &mut lvs_state, &vs_groups))
            }
            "vrrp_instance" => {
                instances.extend(vrrp::instance(&mut cx, n, &globals, &mut vrrp_state))
            }
            "vrrp_sync_group" => {} // once every instance is known
            _ => other_top_level(&mut cx, n),
        }
    }
    for n in nodes.iter().filter(|n| n.keyword == "virtual_server_group") {
        if !n.is_done() {
            cx.ignored(n, "no virtual_server uses this group");
        }
    }
    services.retain(|s| !s.is_empty());
    let names: HashSet<String> = instances.iter().map(|i| i.name.clone()).collect();
    for n in nodes.iter().filter(|n| n.keyword == "vrrp_sync_group") {
        groups.extend(vrrp::sync_group(&mut cx, n, &names, &mut vrrp_state));
    }
    let interfaces: Vec<(String, Src)> = instances
        .iter()
        .filter_map(|i: &vrrp::Converted| i.interface.clone())
        .collect();
    let mut sections = Vec::new();
    if services.is_empty() && instances.is_empty() {
        cx.edit(
            Src { file: 0, line: 1 },
            "(the whole file)",
            "no virtual_server and no vrrp_instance converted: the output is no config \
             lb can run (lb check refuses it)",
        );
    }
    if !services.is_empty() {
        sections.push(agent(&mut cx, &interfaces, &lvs_state, nodes));
    }
    for s in services {
        sections.extend(s);
    }
    sections.extend(instances.into_iter().map(|i| i.section));
    sections.extend(groups);
    sweep(&mut cx, nodes);
    // A group's members share their block's statements: one note each.
    cx.notes
        .sort_by(|a, b| (a.at, &a.what, &a.reason).cmp(&(b.at, &b.what, &b.reason)));
    cx.notes.dedup();
    cx.converted.sort();
    let preamble = preamble(&cx, &parsed.files);
    Import {
        toml: render(&preamble, &sections, &parsed.files),
        notes: cx.notes,
        files: parsed.files,
        converted: cx.converted,
    }
}

fn preamble(cx: &Cx, files: &[std::path::PathBuf]) -> Vec<String> {
    let not = cx
        .notes
        .iter()
        .filter(|n| matches!(n.kind, NoteKind::NotConverted))
        .count();
    let edit = cx
        .notes
        .iter()
        .filter(|n| matches!(n.kind, NoteKind::Edit))
        .count();
    vec![
        "Written by `lb import keepalived`. Each table and key names the keepalived".into(),
        format!("line it came from (in {}); what could not be converted was listed on stderr", files.first().map(|f| f.display().to_string()).unwrap_or_default()),
        format!(
            "(not converted: {not}; values to check: {edit}). Validate with `lb check --config FILE`."
        ),
    ]
}

fn global_defs(cx: &mut Cx, block: &Node, g: &mut Globals) {
    cx.ok(block);
    for n in block.children() {
        match n.keyword.as_str() {
            "vrrp_version" => {
                if let Some(v) = cx.parse::<u8>(n, "2 or 3") {
                    if v == 2 || v == 3 {
                        cx.ok(n);
                        g.vrrp_version = Some((v, n.at));
                    } else {
                        cx.not_converted(n, "VRRP version must be 2 or 3");
                    }
                }
            }
            "vrrp_garp_master_delay" => {
                if let Some(d) = cx.seconds(n) {
                    cx.ok(n);
                    g.garp_delay = Some((d, n.at));
                }
            }
            "vrrp_garp_master_repeat" => {
                if let Some(r) = cx.parse::<u32>(n, "a count") {
                    cx.ok(n);
                    g.garp_repeat = Some((r, n.at));
                }
            }
            "notification_email" | "notification_email_from" | "smtp_server"
            | "smtp_connect_timeout" | "smtp_helo_name" | "email_from" => cx.ignored(
                n,
                "lb sends no mail: a notify script (notify_master, ...) can",
            ),
            "router_id" => cx.ignored(n, "names the host in keepalived's mail and SNMP; lb has neither"),
            "enable_script_security" | "script_user" => cx.ignored(
                n,
                "lb runs notify and exec check scripts as the agent's own user (root), without a shell",
            ),
            "vrrp_strict" => cx.not_converted(
                n,
                "lb has no strict RFC mode: it always sends adverts as the RFC says and accepts \
                 what keepalived accepts",
            ),
            "vrrp_mcast_group4" | "vrrp_mcast_group6" => cx.not_converted(
                n,
                "lb sends adverts to the RFC groups 224.0.0.18 / ff02::12 (or unicast_peer)",
            ),
            "lvs_sync_daemon" | "lvs_flush" | "lvs_flush_onstop" | "lvs_timeouts" => cx.not_converted(
                n,
                "an IPVS setting: lb keeps flows in its own pinned maps, which a restarted agent adopts",
            ),
            _ => cx.ignored(
                n,
                "a global setting of keepalived's daemon that lb has no equivalent for",
            ),
        }
    }
}

fn other_top_level(cx: &mut Cx, n: &Node) {
    let reason = match n.keyword.as_str() {
        "vrrp_script" | "vrrp_track_file" | "track_file" | "vrrp_track_process"
        | "track_process" | "bfd_instance" => {
            "lb tracks no scripts, files, processes or BFD sessions; a vrrp_instance can \
             track virtual servers' health instead (track_virtual_servers)"
        }
        "static_ipaddress" | "static_routes" | "static_rules" => {
            "addresses and routes that do not move with VRRP: configure them with the \
             system's network configuration"
        }
        "garp_group" | "linkbeat_interfaces" => "lb has no equivalent",
        k if k.starts_with('$') => {
            "a parameter ($NAME) with no `$NAME=value` definition before it: define it \
             or write the value out, and import again"
        }
        k if k.starts_with('@') => {
            "a line for some hosts only (@host): lb import does not choose by host name: \
             keep the lines of this host without their @ prefix and import again"
        }
        _ => {
            cx.not_converted(n, "unknown top-level keyword: not converted");
            return;
        }
    };
    cx.not_converted(n, reason);
}

/// `[agent]`: lb needs the interfaces XDP attaches to; keepalived does not
/// name them, so they come from the VRRP instances or are a placeholder.
fn agent(cx: &mut Cx, vrrp: &[(String, Src)], lvs: &lvs::State, nodes: &[Node]) -> Section {
    let mut section = Section::new("[agent]", None);
    let mut names: Vec<String> = Vec::new();
    let mut first_at = None;
    for (name, at) in vrrp {
        if !names.contains(name) {
            names.push(name.clone());
            first_at.get_or_insert(*at);
        }
    }
    let at = nodes
        .first()
        .map(|n| n.at)
        .unwrap_or(Src { file: 0, line: 1 });
    if names.is_empty() {
        section.push(
            Entry::new("interfaces", Value::Array(vec!["eth0".into()]), None)
                .note("PLACEHOLDER: name the interfaces XDP attaches to (client side first)"),
        );
        cx.edit(
            lvs.first_at.unwrap_or(at),
            "[agent] interfaces",
            "keepalived.conf does not say which interfaces carry the virtual servers' \
             traffic and no vrrp_instance names one: the output has the placeholder \
             interfaces = [\"eth0\"]: EDIT IT (client side first; NAT also needs the real \
             servers' side)",
        );
    } else {
        let list = names.iter().map(|n| Value::from(n.as_str())).collect();
        section.push(
            Entry::new("interfaces", Value::Array(list), first_at)
                .note("the vrrp_instance interfaces"),
        );
        if lvs.has_nat && names.len() == 1 {
            cx.edit(
                first_at.unwrap_or(at),
                "[agent] interfaces",
                format!(
                    "taken from the vrrp_instance interface `{}`; NAT also needs the \
                     interface toward the real servers if it is another one: add it",
                    names[0]
                ),
            );
        }
    }
    section
        .comments
        .push("keepalived has no such setting: lb attaches XDP to these interfaces.".into());
    section
}

/// Every statement no converter marked gets a note, so that a keyword
/// this importer does not know is listed rather than lost.
fn sweep(cx: &mut Cx, nodes: &[Node]) {
    for n in nodes {
        if !n.is_done() {
            cx.not_converted(n, "unknown to lb import in this block: not converted");
        } else {
            sweep(cx, n.children());
        }
    }
}
