//! keepalived's checkers (HTTP_GET, TCP_CHECK, MISC_CHECK, SSL_GET, ...)
//! to lb's `health_check`.
//!
//! Timing follows keepalived's meaning: a check every `delay_loop`
//! (default 60 s), `connect_timeout` (default 5 s) to answer, and a server
//! taken out after the first failure plus `retry` failed retries (default
//! 1), so `fall = retry + 1`; one success brings it back, so `rise = 1`.
//! lb retries at the next interval rather than after `delay_before_retry`,
//! which is reported. `delay_loop`, `connect_timeout`, `retry` and
//! `delay_before_retry` may be written on the checker, the real server or
//! the virtual server (the nearest wins), as keepalived allows.

use std::time::Duration;

use toml::Value;

use super::{
    emit::{self, Entry},
    keepalived::Cx,
    parse::Node,
    Src,
};
use crate::config::{show_duration, MAX_HEALTH_COUNT, MAX_HEALTH_INTERVAL, MIN_HEALTH_INTERVAL};

/// keepalived's defaults.
const KEEPALIVED_DELAY_LOOP: Duration = Duration::from_secs(60);
const KEEPALIVED_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVED_RETRY: u32 = 1;

/// The checker settings a virtual or real server passes down.
#[derive(Clone, Default)]
pub(super) struct Defaults {
    pub delay_loop: Option<(Duration, Src)>,
    pub connect_timeout: Option<(Duration, Src)>,
    pub retry: Option<(u32, Src)>,
    pub virtualhost: Option<(String, Src)>,
}

/// Every checker keyword keepalived has.
pub(super) fn is_checker(keyword: &str) -> bool {
    matches!(
        keyword,
        "HTTP_GET"
            | "SSL_GET"
            | "TCP_CHECK"
            | "MISC_CHECK"
            | "SMTP_CHECK"
            | "DNS_CHECK"
            | "UDP_CHECK"
            | "PING_CHECK"
            | "FILE_CHECK"
            | "BFD_CHECK"
    )
}

/// Handles a timing key valid at every level; false if `n` is not one.
pub(super) fn default_key(cx: &mut Cx, n: &Node, d: &mut Defaults) -> bool {
    match n.keyword.as_str() {
        "delay_loop" => {
            if let Some(v) = cx.seconds(n) {
                cx.ok(n);
                d.delay_loop = Some((v, n.at));
            }
        }
        "connect_timeout" => {
            if let Some(v) = cx.seconds(n) {
                cx.ok(n);
                d.connect_timeout = Some((v, n.at));
            }
        }
        "retry" | "nb_get_retry" => {
            if let Some(v) = cx.parse::<u32>(n, "a count") {
                cx.ok(n);
                d.retry = Some((v, n.at));
            }
        }
        "virtualhost" => {
            if let Some(v) = cx.one(n) {
                cx.ok(n);
                d.virtualhost = Some((v.to_owned(), n.at));
            }
        }
        "delay_before_retry" => cx.changed(
            n,
            "lb retries a failed check at its next interval (delay_loop), not after \
             delay_before_retry; fall counts the retries",
        ),
        "warmup" => cx.ignored(
            n,
            "lb checks a new real server within a tenth of its interval, then every interval",
        ),
        _ => return false,
    }
    true
}

/// A converted check: its keys in lb's order, and the checker's line.
#[derive(Clone, Debug)]
pub(super) struct Check {
    pub entries: Vec<Entry>,
    pub at: Src,
}

impl Check {
    /// The same check, whatever lines it came from.
    pub fn same_as(&self, other: &Check) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.key == b.key && a.value == b.value)
    }

    /// As one inline table (a real server's own `health_check`), its keys
    /// in lb's order.
    pub fn inline(&self) -> String {
        let keys: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} = {}", e.key, emit::value(&e.value)))
            .collect();
        format!("{{ {} }}", keys.join(", "))
    }
}

/// What a checker block said, before defaults are applied.
#[derive(Default)]
struct Spec {
    kind: &'static str,
    port: Option<(u16, Src)>,
    timeout: Option<(Duration, Src)>,
    path: Option<(String, Src)>,
    expect_status: Option<(Vec<u16>, Src)>,
    command: Option<(Vec<String>, Src)>,
    /// Entries lb import decided (with their comment).
    extra: Vec<Entry>,
}

/// One checker block; `None` when lb cannot run it at all.
pub(super) fn checker(cx: &mut Cx, n: &Node, inherited: &Defaults) -> Option<Check> {
    let mut d = inherited.clone();
    let mut spec = Spec::default();
    match n.keyword.as_str() {
        "HTTP_GET" => spec.kind = "http",
        "TCP_CHECK" => spec.kind = "tcp",
        "MISC_CHECK" => spec.kind = "exec",
        "SSL_GET" => {
            spec.kind = "tcp";
            cx.changed(
                n,
                "lb has no TLS check: converted to a TCP connect check of the same port \
                 (the URL and status are not checked)",
            );
        }
        "SMTP_CHECK" | "DNS_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" | "BFD_CHECK" => {
            cx.not_converted(
                n,
                "lb checks with http, tcp, ldap or exec: this real server gets no check \
                 (always up); an exec check running your own probe can replace it",
            );
            return None;
        }
        _ => return None,
    }
    cx.ok(n);
    let tls = n.keyword == "SSL_GET";
    for c in n.children() {
        if default_key(cx, c, &mut d) {
            continue;
        }
        checker_key(cx, c, &mut spec, tls);
    }
    if spec.kind == "exec" && spec.command.is_none() {
        cx.not_converted(n, "MISC_CHECK without misc_path: nothing to run, no check");
        return None;
    }
    Some(finish(cx, n, spec, &d))
}

fn checker_key(cx: &mut Cx, c: &Node, spec: &mut Spec, tls: bool) {
    match c.keyword.as_str() {
        "connect_port" => {
            if let Some(p) = cx.parse::<u16>(c, "a port") {
                if p == 0 {
                    cx.not_converted(c, "port 0: the real server's port is checked");
                } else {
                    cx.ok(c);
                    spec.port = Some((p, c.at));
                }
            }
        }
        "connect_ip" => cx.not_converted(
            c,
            "lb checks the real server's own address: a check of another address is not \
             converted (an exec check can do it)",
        ),
        "bindto" | "bind_port" | "bind_if" => cx.not_converted(
            c,
            "lb's checks use the host's routing for their source address and port",
        ),
        "fwmark" => cx.not_converted(c, "lb does not mark check packets"),
        "url" if tls => cx.not_converted(c, "needs TLS, which lb's checks do not speak"),
        "url" => url(cx, c, spec),
        "http_protocol" => cx.ignored(c, "lb's HTTP check sends HTTP/1.1 requests"),
        "enable_sni" | "tls_compliant" => cx.ignored(c, "TLS setting; lb's checks have no TLS"),
        "misc_path" => misc_path(cx, c, spec),
        "misc_timeout" => {
            if let Some(v) = cx.seconds(c) {
                cx.ok(c);
                spec.timeout = Some((v, c.at));
            }
        }
        "misc_dynamic" => cx.not_converted(
            c,
            "lb does not set weights from the script's exit status: exit 0 = up, else down",
        ),
        "user" => cx.ignored(c, "lb runs exec checks as the agent's own user (root)"),
        "alpha" | "omega" => cx.not_converted(c, "see the virtual_server's alpha/omega"),
        _ => {} // the sweep lists it
    }
}

fn url(cx: &mut Cx, c: &Node, spec: &mut Spec) {
    if spec.path.is_some() {
        cx.not_converted(
            c,
            "lb checks one URL per real server: the first url block was converted",
        );
        return;
    }
    cx.ok(c);
    for u in c.children() {
        match u.keyword.as_str() {
            "path" => {
                if let Some(p) = cx.one(u) {
                    cx.ok(u);
                    spec.path = Some((p.to_owned(), u.at));
                }
            }
            "status_code" => match status_codes(&u.values) {
                Some(codes) if !codes.is_empty() => {
                    cx.ok(u);
                    let mut all = spec.expect_status.take().map(|s| s.0).unwrap_or_default();
                    all.extend(codes);
                    spec.expect_status = Some((all, u.at));
                }
                _ => cx.not_converted(u, "not a status code, list or range (e.g. 200-299)"),
            },
            "digest" => cx.not_converted(
                u,
                "lb does not compare a digest of the body: only the status is checked \
                 (expect_body can require a text in the body)",
            ),
            "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
            | "regex_max_offset" => cx.not_converted(
                u,
                "lb matches a fixed text (expect_body), not a regular expression",
            ),
            "virtualhost" => {
                if let Some(v) = cx.one(u) {
                    cx.ok(u);
                    spec.extra.push(Entry::new("host", v, Some(u.at)));
                }
            }
            _ => {}
        }
    }
    if spec.path.is_none() {
        spec.path = Some(("/".into(), c.at));
    }
}

/// `200`, `200-299`, `200,301` and several of those.
fn status_codes(values: &[String]) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    for part in values.iter().flat_map(|v| v.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
            None => {
                let v = part.parse::<u16>().ok()?;
                (v, v)
            }
        };
        if !(100..=599).contains(&lo) || !(lo..=599).contains(&hi) {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

fn misc_path(cx: &mut Cx, c: &Node, spec: &mut Spec) {
    let line = c.values.join(" ");
    let Some(words) = split_command(&line) else {
        cx.not_converted(c, "unbalanced quotes in the command");
        return;
    };
    if words.is_empty() {
        cx.not_converted(c, "no command");
        return;
    }
    if line.contains(['|', '&', ';', '<', '>', '$', '`', '*']) {
        // keepalived hands such a line to a shell; lb runs no shell itself.
        cx.changed(
            c,
            "the command uses the shell's syntax: lb runs it as `/bin/sh -c \"...\"`",
        );
        spec.command = Some((vec!["/bin/sh".into(), "-c".into(), line], c.at));
        return;
    }
    cx.ok(c);
    spec.command = Some((words, c.at));
}

/// Whitespace-separated words; double or single quotes group words.
pub(super) fn split_command(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The check with keepalived's defaults resolved and lb's bounds kept.
fn finish(cx: &mut Cx, n: &Node, spec: Spec, d: &Defaults) -> Check {
    let mut entries = vec![Entry::new("kind", spec.kind, Some(n.at))];
    let (mut interval, interval_at) = d
        .delay_loop
        .map_or((KEEPALIVED_DELAY_LOOP, None), |(v, at)| (v, Some(at)));
    if interval < MIN_HEALTH_INTERVAL || interval > MAX_HEALTH_INTERVAL {
        let clamped = interval.clamp(MIN_HEALTH_INTERVAL, MAX_HEALTH_INTERVAL);
        cx.edit(
            interval_at.unwrap_or(n.at),
            "delay_loop",
            format!(
                "{} is outside lb's {}..{} range: {} used",
                show_duration(interval),
                show_duration(MIN_HEALTH_INTERVAL),
                show_duration(MAX_HEALTH_INTERVAL),
                show_duration(clamped)
            ),
        );
        interval = clamped;
    }
    let mut e = Entry::new("interval", show_duration(interval), interval_at);
    if interval_at.is_none() {
        e = e.note("keepalived's default delay_loop");
    }
    entries.push(e);
    entries.push(timeout(cx, n, &spec, d, interval));
    entries.push(Entry::new("rise", 1, None).note("keepalived: one success brings a server back"));
    let (retry, retry_at) = d
        .retry
        .map_or((KEEPALIVED_RETRY, None), |(v, at)| (v, Some(at)));
    let fall = retry.saturating_add(1).min(MAX_HEALTH_COUNT);
    entries.push(
        Entry::new("fall", i64::from(fall), retry_at)
            .note(format!("retry {retry} + the first failure")),
    );
    if let Some((p, at)) = spec.port {
        entries.push(Entry::new("port", i64::from(p), Some(at)));
    }
    if spec.kind == "http" {
        http_entries(&spec, d, n.at, &mut entries);
    }
    if let Some((cmd, at)) = &spec.command {
        let list = cmd.iter().map(|w| Value::from(w.as_str())).collect();
        entries.push(Entry::new("command", Value::Array(list), Some(*at)));
    }
    entries.extend(spec.extra);
    Check { entries, at: n.at }
}

fn timeout(cx: &mut Cx, n: &Node, spec: &Spec, d: &Defaults, interval: Duration) -> Entry {
    // MISC_CHECK's default timeout is its delay_loop; others connect_timeout.
    let (wanted, at, default_note) = match (spec.timeout, d.connect_timeout) {
        (Some((v, at)), _) => (v, Some(at), None),
        (None, Some((v, at))) if spec.kind != "exec" => (v, Some(at), None),
        (None, _) if spec.kind == "exec" => {
            (interval, None, Some("keepalived's default misc_timeout"))
        }
        (None, _) => (
            KEEPALIVED_CONNECT_TIMEOUT,
            None,
            Some("keepalived's default connect_timeout"),
        ),
    };
    if wanted < interval && !wanted.is_zero() {
        let e = Entry::new("timeout", show_duration(wanted), at);
        return match default_note {
            Some(note) => e.note(note),
            None => e,
        };
    }
    // lb wants a check over before the next one starts.
    let fitted = Duration::from_millis((interval.as_millis() as u64 * 9 / 10).max(1));
    let why = format!(
        "timeout {} is not below the interval {}: {} used (lb needs one check to end \
         before the next starts)",
        show_duration(wanted),
        show_duration(interval),
        show_duration(fitted)
    );
    if at.is_some() || spec.kind != "exec" {
        cx.edit(
            at.unwrap_or(n.at),
            &format!("{} timeout", n.keyword),
            why.clone(),
        );
    }
    Entry::new("timeout", show_duration(fitted), at).note(why)
}

fn http_entries(spec: &Spec, d: &Defaults, at: Src, entries: &mut Vec<Entry>) {
    let (path, path_at) = spec.path.clone().unwrap_or(("/".into(), at));
    entries.push(Entry::new("path", path, Some(path_at)));
    if !spec.extra.iter().any(|e| e.key == "host") {
        if let Some((h, at)) = &d.virtualhost {
            entries.push(Entry::new("host", h.as_str(), Some(*at)));
        }
    }
    let (codes, codes_at, note) = match &spec.expect_status {
        Some((c, at)) => (c.clone(), Some(*at), None),
        None => (
            (200..=299).collect(),
            None,
            Some("keepalived's default: any 2xx status"),
        ),
    };
    let list = codes.iter().map(|c| Value::from(i64::from(*c))).collect();
    let mut e = Entry::new("expect_status", Value::Array(list), codes_at);
    if let Some(n) = note {
        e = e.note(n);
    }
    entries.push(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_forms() {
        assert_eq!(status_codes(&["200".into()]), Some(vec![200]));
        assert_eq!(
            status_codes(&["200,301".into(), "204-206".into()]),
            Some(vec![200, 301, 204, 205, 206])
        );
        assert_eq!(status_codes(&["abc".into()]), None);
        assert_eq!(status_codes(&["300-200".into()]), None);
    }

    #[test]
    fn commands_split_like_a_shell_without_one() {
        assert_eq!(
            split_command("/usr/bin/check \"a b\" 'c d' e").unwrap(),
            ["/usr/bin/check", "a b", "c d", "e"]
        );
        assert_eq!(split_command("x \"open"), None);
    }
}
