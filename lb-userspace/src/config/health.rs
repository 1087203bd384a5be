//! Health-check configuration: the validated [`HealthCheck`], its defaults,
//! and the rules that turn `[virtual_server.health_check]` and a real
//! server's `health_check = { ... }` into one check per real server.
//!
//! Rules (each with its message below):
//! - no `health_check` anywhere = kind `none`: the real server is always
//!   up, as before health checks existed, so every older config keeps its
//!   meaning;
//! - a service-level table must name its `kind` (a guessed kind would
//!   probe the wrong protocol and withdraw healthy servers);
//! - a real server's `health_check` is merged key by key over its
//!   service's: keys it writes win, the others are inherited. When it
//!   names another `kind`, only the kind-independent keys (`interval`,
//!   `timeout`, `rise`, `fall`, `port`) are inherited: an HTTP `path` means
//!   nothing to an LDAP check;
//! - a key of another kind (`path` with kind = "tcp") and any key besides
//!   `kind` with kind = "none" are errors, not ignored;
//! - `timeout` < `interval`: one check ends before the next is due, so
//!   checks of one real server never overlap or pile up;
//! - durations are strings with a unit: "500ms", "2s", "1.5s", "1m", "1h"
//!   (whole milliseconds).

use std::{fmt, ops::Range, path::PathBuf, time::Duration};

use toml::Spanned;

use super::{error::Source, raw::RawHealthCheck, words::config_words, ConfigError};

type Result<T> = std::result::Result<T, ConfigError>;

// Defaults, written once (keepalived's are similar: delay_loop 2..6s,
// connect_timeout 1..5s; ours detect a dead server within
// fall x interval = 6 s and restore it after rise x interval = 4 s).

/// Time from the start of one check to the start of the next.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// A check that has not succeeded within this time has failed.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive successes that bring a down real server up.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Consecutive failures that take an up real server down.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// HTTP: the path requested.
pub const DEFAULT_HTTP_PATH: &str = "/";
/// HTTP: the statuses that count as healthy.
pub const DEFAULT_HTTP_EXPECT_STATUS: &[u16] = &[200];
/// LDAP: the search base; empty = the root DSE, which every LDAPv3 server
/// answers to an anonymous client (searched with scope base).
pub const DEFAULT_LDAP_BASE: &str = "";
/// LDAP: matches any entry.
pub const DEFAULT_LDAP_FILTER: &str = "(objectClass=*)";

// Bounds.

/// Below this a check loop is a load generator, not a health check.
pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(10);
/// Above this a dead server would stay in service for hours.
pub const MAX_HEALTH_INTERVAL: Duration = Duration::from_secs(3600);
pub const MIN_HEALTH_TIMEOUT: Duration = Duration::from_millis(1);
/// Largest `rise` / `fall`.
pub const MAX_HEALTH_COUNT: u32 = 1000;

/// How a real server's health is checked, with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    /// Less than `interval`.
    pub timeout: Duration,
    /// 1..=MAX_HEALTH_COUNT.
    pub rise: u32,
    /// 1..=MAX_HEALTH_COUNT.
    pub fall: u32,
    /// The port probed; `None` = the real server's own port.
    pub port: Option<u16>,
}

impl HealthCheck {
    /// No check: the real server is always up (the default).
    pub fn none() -> Self {
        HealthCheck {
            kind: CheckKind::None,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            rise: DEFAULT_HEALTH_RISE,
            fall: DEFAULT_HEALTH_FALL,
            port: None,
        }
    }

    /// A check of `kind` with every other key at its default.
    pub fn with_kind(kind: CheckKind) -> Self {
        HealthCheck {
            kind,
            ..HealthCheck::none()
        }
    }

    /// The word used in the config file and in `lb status`.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck::none()
    }
}

/// The protocol of a check, with its own keys.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// Never checked: always up.
    None,
    /// A TCP connection is established (then closed).
    Tcp,
    Http(HttpCheck),
    Ldap(LdapCheck),
    Exec(ExecCheck),
}

impl CheckKind {
    /// Which kind, without its keys.
    pub fn word(&self) -> KindName {
        match self {
            CheckKind::None => KindName::None,
            CheckKind::Tcp => KindName::Tcp,
            CheckKind::Http(_) => KindName::Http,
            CheckKind::Ldap(_) => KindName::Ldap,
            CheckKind::Exec(_) => KindName::Exec,
        }
    }

    /// The word used in the config file and in `lb status`.
    pub fn name(&self) -> &'static str {
        self.word().name()
    }
}

config_words! {
    /// `kind = "..."`: a [`CheckKind`] without its keys, as written.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum KindName {
        None = "none",
        Tcp = "tcp",
        Http = "http",
        Ldap = "ldap",
        Exec = "exec",
    }
}

/// `GET path` answered with one of `expect_status` (and containing
/// `expect_body`, when set).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCheck {
    /// Starts with '/'.
    pub path: String,
    /// `Host` header; `None` = the real server's "address:port".
    pub host: Option<String>,
    /// Non-empty, each 100..=599.
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            path: DEFAULT_HTTP_PATH.to_owned(),
            host: None,
            expect_status: DEFAULT_HTTP_EXPECT_STATUS.to_vec(),
            expect_body: None,
        }
    }
}

/// A simple bind (anonymous without `bind`), then a search of `base`
/// for `filter`: scope base when `base` is empty (the root DSE), else
/// subtree with a size limit of 1.
#[derive(Clone, Debug, PartialEq)]
pub struct LdapCheck {
    /// `None` = anonymous bind.
    pub bind: Option<LdapBind>,
    pub base: String,
    /// Parses as an RFC 4515 filter.
    pub filter: String,
    /// How the bind (and its password) is protected on the wire.
    pub tls: LdapTls,
    /// PEM CA certificate(s) to verify the server with, the only ones
    /// trusted; `None` = the system roots. The server's certificate must
    /// name the real server's IP address (the check connects by address;
    /// see `health::tls`).
    pub ca_file: Option<PathBuf>,
}

config_words! {
    /// `tls = "none" | "ldaps" | "starttls"`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub enum LdapTls {
        /// Plain LDAP: the default, so configs written before TLS keep their
        /// meaning (and send `bind_password` in clear).
        #[default]
        None = "none",
        /// TLS from the first byte (usually port 636).
        Ldaps = "ldaps",
        /// Plain LDAP, then the StartTLS extended operation before the bind.
        StartTls = "starttls",
    }
}

impl Default for LdapCheck {
    fn default() -> Self {
        LdapCheck {
            bind: None,
            base: DEFAULT_LDAP_BASE.to_owned(),
            filter: DEFAULT_LDAP_FILTER.to_owned(),
            tls: LdapTls::None,
            ca_file: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LdapBind {
    pub dn: String,
    pub password: Secret,
}

/// A string kept out of `Debug` output and logs (passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<hidden>\"")
    }
}

/// A command run without a shell; `{address}` and `{port}` in any argument
/// are replaced by the real server's address and the checked port.
/// Healthy = exit status 0 within the timeout.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecCheck {
    /// Non-empty; `command[0]` is the program (looked up in PATH).
    pub command: Vec<String>,
}

/// Placeholders an exec command may use.
pub const EXEC_PLACEHOLDERS: &[&str] = &["{address}", "{port}"];

/// One `health_check` table with the path its keys are reported under.
#[derive(Clone, Copy)]
pub(super) struct Layer<'a> {
    pub raw: &'a RawHealthCheck,
    /// e.g. `virtual_server[0].real_server[1].health_check`.
    pub path: &'a str,
    pub span: &'a Range<usize>,
}

/// A value and where it was written.
struct Field<'a, T> {
    value: &'a Spanned<T>,
    path: &'a str,
    /// Written in the most specific table (the one being validated).
    own: bool,
}

impl<T> Field<'_, T> {
    fn name(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
    fn span(&self) -> Range<usize> {
        self.value.span()
    }
}

/// The tables a key is looked up in, most specific first, each marked
/// whether it is the one being validated (`own`).
struct Stack<'a>(Vec<(bool, Layer<'a>)>);

impl<'a> Stack<'a> {
    /// Every layer: for the kind-independent keys.
    fn all(layers: &[Layer<'a>]) -> Self {
        Stack(
            layers
                .iter()
                .enumerate()
                .map(|(i, l)| (i == 0, *l))
                .collect(),
        )
    }

    /// The layers whose kind-specific keys apply: the top one, and
    /// inherited ones of the same `kind`.
    fn of_kind(layers: &[Layer<'a>], kind: KindName) -> Self {
        Stack(
            layers
                .iter()
                .enumerate()
                .filter(|(i, l)| *i == 0 || written_kind(l.raw) == Some(kind))
                .map(|(i, l)| (i == 0, *l))
                .collect(),
        )
    }

    /// The most specific value of a key.
    fn pick<T>(
        &self,
        key: impl Fn(&'a RawHealthCheck) -> Option<&'a Spanned<T>>,
    ) -> Option<Field<'a, T>> {
        self.0.iter().find_map(|(own, l)| {
            key(l.raw).map(|value| Field {
                value,
                path: l.path,
                own: *own,
            })
        })
    }
}

/// The kind a table names, if it names a valid one.
fn written_kind(raw: &RawHealthCheck) -> Option<KindName> {
    raw.kind.as_ref()?.get_ref().parse().ok()
}

const COMMON_KEYS: &[&str] = &["interval", "timeout", "rise", "fall", "port"];

/// The kind-specific keys present in `raw`, with the kind they belong to.
fn specific_keys(raw: &RawHealthCheck) -> Vec<(&'static str, KindName, Range<usize>)> {
    use KindName::{Exec, Http, Ldap};
    [
        ("path", Http, raw.path.as_ref().map(Spanned::span)),
        ("host", Http, raw.host.as_ref().map(Spanned::span)),
        (
            "expect_status",
            Http,
            raw.expect_status.as_ref().map(Spanned::span),
        ),
        (
            "expect_body",
            Http,
            raw.expect_body.as_ref().map(Spanned::span),
        ),
        ("bind_dn", Ldap, raw.bind_dn.as_ref().map(Spanned::span)),
        (
            "bind_password",
            Ldap,
            raw.bind_password.as_ref().map(Spanned::span),
        ),
        ("base", Ldap, raw.base.as_ref().map(Spanned::span)),
        ("filter", Ldap, raw.filter.as_ref().map(Spanned::span)),
        ("tls", Ldap, raw.tls.as_ref().map(Spanned::span)),
        ("ca_file", Ldap, raw.ca_file.as_ref().map(Spanned::span)),
        ("command", Exec, raw.command.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(key, kind, s)| s.map(|s| (key, kind, s)))
    .collect()
}

fn common_key_spans(raw: &RawHealthCheck) -> Vec<(&'static str, Range<usize>)> {
    [
        raw.interval.as_ref().map(Spanned::span),
        raw.timeout.as_ref().map(Spanned::span),
        raw.rise.as_ref().map(Spanned::span),
        raw.fall.as_ref().map(Spanned::span),
        raw.port.as_ref().map(Spanned::span),
    ]
    .into_iter()
    .zip(COMMON_KEYS)
    .filter_map(|(s, k)| s.map(|s| (*k, s)))
    .collect()
}

/// Validates `layers[0]` merged over `layers[1..]` (the service's table).
/// `layers` is empty when neither the real server nor its service has a
/// `health_check`: kind `none`.
///
/// Errors come in this order, as users fix them one at a time: the kind,
/// keys of another kind, the kind-independent keys, then the kind's own.
pub(super) fn health_check(layers: &[Layer<'_>], src: &Source<'_>) -> Result<HealthCheck> {
    let Some(top) = layers.first() else {
        return Ok(HealthCheck::none());
    };
    let kind = resolve_kind(layers, src)?;
    refuse_other_kinds_keys(top, kind, src)?;
    if kind == KindName::None {
        return none_check(top, src);
    }
    let all = Stack::all(layers);
    let (interval, timeout) = timing(&all, src)?;
    let rise = count(
        all.pick(|r| r.rise.as_ref()),
        "rise",
        DEFAULT_HEALTH_RISE,
        src,
    )?;
    let fall = count(
        all.pick(|r| r.fall.as_ref()),
        "fall",
        DEFAULT_HEALTH_FALL,
        src,
    )?;
    let port = check_port(all.pick(|r| r.port.as_ref()), src)?;

    let same_kind = Stack::of_kind(layers, kind);
    let kind = match kind {
        // Returned above: kind none has no keys to read.
        KindName::None => CheckKind::None,
        KindName::Tcp => CheckKind::Tcp,
        KindName::Http => CheckKind::Http(http_check(&same_kind, src)?),
        KindName::Ldap => CheckKind::Ldap(ldap_check(&same_kind, src)?),
        KindName::Exec => CheckKind::Exec(exec_check(top, &same_kind, src)?),
    };
    Ok(HealthCheck {
        kind,
        interval,
        timeout,
        rise,
        fall,
        port,
    })
}

/// The kind: the most specific table that names one.
fn resolve_kind(layers: &[Layer<'_>], src: &Source<'_>) -> Result<KindName> {
    let named = layers.iter().enumerate().find_map(|(i, l)| {
        l.raw.kind.as_ref().map(|value| Field {
            value,
            path: l.path,
            own: i == 0,
        })
    });
    let Some(f) = named else {
        let top = &layers[0];
        return Err(src.field_error(
            top.span.clone(),
            &format!("{}.kind", top.path),
            "missing: say how to check, e.g. `kind = \"tcp\"` \
             (http | tcp | ldap | exec | none)",
        ));
    };
    f.value.get_ref().parse().map_err(|_| {
        let kind = f.value.get_ref();
        src.field_error(
            f.span(),
            &f.name("kind"),
            format!(
                "`{kind}` is not a health check kind: use \"http\", \"tcp\", \"ldap\", \
                 \"exec\" (run a command) or \"none\" (always up)"
            ),
        )
    })
}

/// A table's kind-specific keys count only where its kind is the
/// resolved one; the most specific table may not hold keys of another
/// kind at all.
fn refuse_other_kinds_keys(top: &Layer<'_>, kind: KindName, src: &Source<'_>) -> Result<()> {
    match specific_keys(top.raw)
        .into_iter()
        .find(|(_, k, _)| *k != kind)
    {
        None => Ok(()),
        Some((key, key_kind, span)) => Err(src.field_error(
            span,
            &format!("{}.{key}", top.path),
            format!(
                "`{key}` belongs to kind = \"{key_kind}\" checks, but this check is \
                 kind = \"{kind}\": remove it or change `kind`"
            ),
        )),
    }
}

/// Kind `none`: never checked, so a kind-independent key in its own
/// table is a mistake (inherited ones are the service's business).
fn none_check(top: &Layer<'_>, src: &Source<'_>) -> Result<HealthCheck> {
    if let Some((key, span)) = common_key_spans(top.raw).into_iter().next() {
        return Err(src.field_error(
            span,
            &format!("{}.{key}", top.path),
            format!(
                "`{key}` has no effect with kind = \"none\" (never checked, always up): \
                 remove it or choose a kind that checks"
            ),
        ));
    }
    Ok(HealthCheck::none())
}

// With neither key written the defaults apply, and they are ordered.
const _: () = assert!(DEFAULT_HEALTH_TIMEOUT.as_millis() < DEFAULT_HEALTH_INTERVAL.as_millis());

/// `interval` and `timeout`, each in range and the timeout shorter.
fn timing(all: &Stack<'_>, src: &Source<'_>) -> Result<(Duration, Duration)> {
    let interval = all.pick(|r| r.interval.as_ref());
    let timeout = all.pick(|r| r.timeout.as_ref());
    let interval_v = match &interval {
        None => DEFAULT_HEALTH_INTERVAL,
        Some(f) => interval_value(f, src)?,
    };
    let timeout_v = match &timeout {
        None => DEFAULT_HEALTH_TIMEOUT,
        Some(f) => timeout_value(f, src)?,
    };
    if timeout_v < interval_v {
        return Ok((interval_v, timeout_v));
    }
    // Point at whichever of the two the user wrote most specifically.
    let (span, name) = match (&timeout, &interval) {
        (Some(t), Some(i)) if i.own && !t.own => (i.span(), i.name("interval")),
        (Some(t), _) => (t.span(), t.name("timeout")),
        (None, Some(i)) => (i.span(), i.name("interval")),
        // Both defaults: ordered (asserted above).
        (None, None) => return Ok((interval_v, timeout_v)),
    };
    Err(src.field_error(
        span,
        &name,
        format!(
            "timeout {} is not less than interval {}: a check must end before the \
             next one is due; shorten `timeout` or lengthen `interval`",
            show(timeout_v),
            show(interval_v)
        ),
    ))
}

fn interval_value(f: &Field<'_, String>, src: &Source<'_>) -> Result<Duration> {
    let d = duration(f, "interval", src)?;
    if !(MIN_HEALTH_INTERVAL..=MAX_HEALTH_INTERVAL).contains(&d) {
        return Err(src.field_error(
            f.span(),
            &f.name("interval"),
            format!(
                "{} is out of range: use {} to {} (default {})",
                show(d),
                show(MIN_HEALTH_INTERVAL),
                show(MAX_HEALTH_INTERVAL),
                show(DEFAULT_HEALTH_INTERVAL)
            ),
        ));
    }
    Ok(d)
}

fn timeout_value(f: &Field<'_, String>, src: &Source<'_>) -> Result<Duration> {
    let d = duration(f, "timeout", src)?;
    if d < MIN_HEALTH_TIMEOUT {
        return Err(src.field_error(
            f.span(),
            &f.name("timeout"),
            format!("{} is too short: use at least 1ms", show(d)),
        ));
    }
    Ok(d)
}

/// `rise` or `fall`.
fn count(f: Option<Field<'_, i64>>, key: &str, default: u32, src: &Source<'_>) -> Result<u32> {
    let Some(f) = f else { return Ok(default) };
    let n = *f.value.get_ref();
    if !(1..=i64::from(MAX_HEALTH_COUNT)).contains(&n) {
        return Err(src.field_error(
            f.span(),
            &f.name(key),
            format!("{n} is out of range: use 1 to {MAX_HEALTH_COUNT} (default {default})"),
        ));
    }
    Ok(n as u32)
}

fn check_port(f: Option<Field<'_, i64>>, src: &Source<'_>) -> Result<Option<u16>> {
    let Some(f) = f else { return Ok(None) };
    let n = *f.value.get_ref();
    if !(1..=65535).contains(&n) {
        return Err(src.field_error(
            f.span(),
            &f.name("port"),
            format!("port {n} is out of range: use 1 to 65535 (default: the real server's port)"),
        ));
    }
    Ok(Some(n as u16))
}

/// The keys of kind = "http".
fn http_check(same_kind: &Stack<'_>, src: &Source<'_>) -> Result<HttpCheck> {
    let mut http = HttpCheck::default();
    if let Some(f) = same_kind.pick(|r| r.path.as_ref()) {
        let p = f.value.get_ref();
        if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(src.field_error(
                f.span(),
                &f.name("path"),
                format!(
                    "`{p}` is not an absolute request path: write it like \"/health\" (no spaces)"
                ),
            ));
        }
        http.path = p.clone();
    }
    if let Some(f) = same_kind.pick(|r| r.host.as_ref()) {
        let h = f.value.get_ref();
        if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(src.field_error(
                f.span(),
                &f.name("host"),
                format!("`{h}` is not a host name for the Host header, e.g. \"www.example.org\""),
            ));
        }
        http.host = Some(h.clone());
    }
    if let Some(f) = same_kind.pick(|r| r.expect_status.as_ref()) {
        http.expect_status = expect_status(&f, src)?;
    }
    if let Some(f) = same_kind.pick(|r| r.expect_body.as_ref()) {
        if f.value.get_ref().is_empty() {
            return Err(src.field_error(
                f.span(),
                &f.name("expect_body"),
                "empty text matches every body: remove `expect_body` or give the text to find",
            ));
        }
        http.expect_body = Some(f.value.get_ref().clone());
    }
    Ok(http)
}

fn expect_status(f: &Field<'_, Vec<Spanned<i64>>>, src: &Source<'_>) -> Result<Vec<u16>> {
    let list = f.value.get_ref();
    if list.is_empty() {
        return Err(src.field_error(
            f.span(),
            &f.name("expect_status"),
            "empty list: name the statuses that mean healthy, e.g. [200]",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(k, s)| {
            let n = *s.get_ref();
            if !(100..=599).contains(&n) {
                return Err(src.field_error(
                    s.span(),
                    &format!("{}[{k}]", f.name("expect_status")),
                    format!("{n} is not an HTTP status: use 100 to 599"),
                ));
            }
            Ok(n as u16)
        })
        .collect()
}

/// The keys of kind = "ldap".
fn ldap_check(same_kind: &Stack<'_>, src: &Source<'_>) -> Result<LdapCheck> {
    let mut ldap = LdapCheck {
        bind: ldap_bind(
            same_kind.pick(|r| r.bind_dn.as_ref()),
            same_kind.pick(|r| r.bind_password.as_ref()),
            src,
        )?,
        ..LdapCheck::default()
    };
    if let Some(f) = same_kind.pick(|r| r.base.as_ref()) {
        ldap.base = f.value.get_ref().clone();
    }
    if let Some(f) = same_kind.pick(|r| r.filter.as_ref()) {
        let text = f.value.get_ref();
        if ldap3::parse_filter(text).is_err() {
            return Err(src.field_error(
                f.span(),
                &f.name("filter"),
                format!("`{text}` is not an LDAP search filter: write it like \"(objectClass=*)\" or \"(&(objectClass=person)(uid=probe))\""),
            ));
        }
        ldap.filter = text.clone();
    }
    (ldap.tls, ldap.ca_file) = ldap_transport(
        same_kind.pick(|r| r.tls.as_ref()),
        same_kind.pick(|r| r.ca_file.as_ref()),
        src,
    )?;
    Ok(ldap)
}

/// `bind_dn` and `bind_password`: both or neither (anonymous).
fn ldap_bind(
    dn: Option<Field<'_, String>>,
    pw: Option<Field<'_, String>>,
    src: &Source<'_>,
) -> Result<Option<LdapBind>> {
    match (dn, pw) {
        (None, None) => Ok(None),
        (Some(dn), Some(pw)) => {
            if dn.value.get_ref().trim().is_empty() {
                return Err(src.field_error(
                    dn.span(),
                    &dn.name("bind_dn"),
                    "empty DN: remove `bind_dn` and `bind_password` for an anonymous \
                     bind, or name the entry to bind as",
                ));
            }
            Ok(Some(LdapBind {
                dn: dn.value.get_ref().clone(),
                password: Secret::new(pw.value.get_ref().clone()),
            }))
        }
        (Some(dn), None) => Err(src.field_error(
            dn.span(),
            &dn.name("bind_dn"),
            "`bind_dn` without `bind_password`: servers refuse a bind with a DN \
             and no password; add `bind_password` or remove `bind_dn` for an \
             anonymous bind",
        )),
        (None, Some(pw)) => Err(src.field_error(
            pw.span(),
            &pw.name("bind_password"),
            "`bind_password` without `bind_dn`: add the DN to bind as",
        )),
    }
}

/// `tls` and `ca_file` of an LDAP check. `ca_file` must be absolute (the
/// agent runs from `/` under systemd; a path relative to where `lb check`
/// ran would mean another file there) and hold PEM certificates, checked
/// here so that `lb check` reports a missing or unreadable file.
fn ldap_transport(
    tls: Option<Field<'_, String>>,
    ca_file: Option<Field<'_, String>>,
    src: &Source<'_>,
) -> Result<(LdapTls, Option<PathBuf>)> {
    let mode = match &tls {
        None => LdapTls::None,
        Some(f) => f.value.get_ref().parse().map_err(|_| {
            src.field_error(
                f.span(),
                &f.name("tls"),
                format!(
                    "`{}` is not an LDAP TLS mode: use \"none\" (plain LDAP), \
                     \"ldaps\" (TLS from the start, usually port 636) or \"starttls\"",
                    f.value.get_ref()
                ),
            )
        })?,
    };
    let Some(f) = ca_file else {
        return Ok((mode, None));
    };
    if mode == LdapTls::None {
        return Err(src.field_error(
            f.span(),
            &f.name("ca_file"),
            "`ca_file` with `tls = \"none\"` is never used: add `tls = \"ldaps\"` or \
             `tls = \"starttls\"`, or remove `ca_file`",
        ));
    }
    let path = PathBuf::from(f.value.get_ref());
    if !path.is_absolute() {
        return Err(src.field_error(
            f.span(),
            &f.name("ca_file"),
            format!(
                "`{}` is a relative path: write it from the root, e.g. \"/etc/lb/ldap-ca.pem\"",
                path.display()
            ),
        ));
    }
    if let Err(e) = crate::health::tls::read_ca_file(&path) {
        return Err(src.field_error(f.span(), &f.name("ca_file"), e));
    }
    Ok((mode, Some(path)))
}

/// The keys of kind = "exec": `command` is required.
fn exec_check(top: &Layer<'_>, same_kind: &Stack<'_>, src: &Source<'_>) -> Result<ExecCheck> {
    let Some(f) = same_kind.pick(|r| r.command.as_ref()) else {
        return Err(src.field_error(
            top.span.clone(),
            &format!("{}.command", top.path),
            "missing: kind = \"exec\" needs the command to run, e.g. \
             `command = [\"/usr/local/bin/check\", \"{address}\", \"{port}\"]`",
        ));
    };
    let list = f.value.get_ref();
    if list.is_empty() || list[0].get_ref().trim().is_empty() {
        return Err(src.field_error(
            f.span(),
            &f.name("command"),
            "no program: the first element is the program to run, the others its arguments",
        ));
    }
    for (k, arg) in list.iter().enumerate() {
        if let Some(bad) = unknown_placeholder(arg.get_ref()) {
            return Err(src.field_error(
                arg.span(),
                &format!("{}[{k}]", f.name("command")),
                format!(
                    "unknown placeholder `{bad}`: the placeholders are {}",
                    EXEC_PLACEHOLDERS.join(" and ")
                ),
            ));
        }
    }
    Ok(ExecCheck {
        command: list.iter().map(|a| a.get_ref().clone()).collect(),
    })
}

/// Refuses an LDAP check over TLS of an IPv6 real server: the LDAP
/// library hands the TLS layer the address in URL form (`[2001:db8::1]`),
/// which no certificate can match, so every check would fail. Said here
/// rather than as a real server that is always down.
pub(super) fn tls_reaches(
    check: &HealthCheck,
    address: std::net::IpAddr,
    span: Range<usize>,
    field: &str,
    src: &Source<'_>,
) -> Result<()> {
    match &check.kind {
        CheckKind::Ldap(l) if l.tls != LdapTls::None && address.is_ipv6() => Err(src.field_error(
            span,
            field,
            "LDAP checks over TLS (`tls = \"ldaps\"` or \"starttls\") cannot verify an IPv6 \
                 real server's certificate yet: use `kind = \"tcp\"` for it, or `tls = \"none\"`",
        )),
        _ => Ok(()),
    }
}

/// A `{word}` that looks like a placeholder but is not one of ours
/// (`${VAR}` in a shell script argument is left alone).
fn unknown_placeholder(arg: &str) -> Option<&str> {
    let mut rest = arg;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let start = offset + open;
        let after = &arg[start + 1..];
        let close = after.find('}')?;
        let word = &after[..close];
        let candidate = &arg[start..start + close + 2];
        let dollar = start > 0 && arg.as_bytes()[start - 1] == b'$';
        if !dollar
            && !word.is_empty()
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !EXEC_PLACEHOLDERS.contains(&candidate)
        {
            return Some(candidate);
        }
        offset = start + 1;
        rest = &arg[offset..];
    }
    None
}

fn duration(f: &Field<'_, String>, key: &str, src: &Source<'_>) -> Result<Duration> {
    parse_duration(f.value.get_ref()).ok_or_else(|| {
        src.field_error(
            f.span(),
            &f.name(key),
            duration_error(f.value.get_ref(), "ms, s, m, h", "\"500ms\" or \"2s\""),
        )
    })
}

/// What is wrong with `text`, which [`parse_duration`] refused: a number
/// with a unit that is too large (past 10^9 s, about 31 years) says so;
/// anything else is not a duration. `units` and `example` are the
/// caller's, as their keys accept different ranges.
pub fn duration_error(text: &str, units: &str, example: &str) -> String {
    if split_duration(text).is_some() {
        format!("`{text}` is too large for a duration: write at most the limit this key allows, e.g. {example}")
    } else {
        format!("`{text}` is not a duration: write a number with a unit ({units}), e.g. {example}")
    }
}

/// The number and the unit's length in seconds, if `text` has the form of a
/// duration (whatever its size).
fn split_duration(text: &str) -> Option<(f64, f64)> {
    let text = text.trim();
    let (number, unit_secs) = if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some((value, unit_secs))
}

/// "500ms", "2s", "1.5s", "1m", "1h".
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (value, unit_secs) = split_duration(text)?;
    let secs = value * unit_secs;
    // Whole milliseconds: finer is noise for a health check.
    (secs.is_finite() && secs < 1e9).then(|| Duration::from_millis((secs * 1000.0).round() as u64))
}

/// A duration the way a user writes it.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0ms".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        for bad in ["2", "s", "-1s", "2 h", "1e3s", "", "ms"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show(Duration::from_secs(2)), "2s");
        assert_eq!(show(Duration::from_secs(120)), "2m");
        assert_eq!(show(Duration::from_secs(3600)), "1h");
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn placeholders() {
        assert_eq!(unknown_placeholder("{address}:{port}"), None);
        assert_eq!(unknown_placeholder("${HOME}/x ${port}"), None);
        assert_eq!(unknown_placeholder("--host={adress}"), Some("{adress}"));
        assert_eq!(unknown_placeholder("awk '{print $1}'"), None);
        assert_eq!(unknown_placeholder("{"), None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let b = LdapBind {
            dn: "cn=admin".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
