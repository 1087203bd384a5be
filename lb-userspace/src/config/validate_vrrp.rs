//! `[[vrrp_instance]]` and `[[vrrp_sync_group]]` from the file as written
//! to [`VrrpInstance`] / [`VrrpSyncGroup`]: defaults, ranges, and the rules
//! across instances. Messages use the config's one format and say what to
//! change; the first problem found is reported.
//!
//! Rules (keepalived's where it has one; stricter where it is silent or
//! lenient in a way that hides a mistake):
//! - `name` required, printable without spaces (it is passed to notify
//!   scripts and used as a metrics label), unique among instances; sync
//!   group names are unique among sync groups;
//! - `interface` required, a valid Linux interface name;
//! - `virtual_router_id` required, 1..=255 (a guessed one would join
//!   another router's group);
//! - `priority` 1..=255, default 100 (0 is on the wire only: "the master
//!   is giving up"); 255 = the address owner;
//! - `version` 2 | 3, default 2 (keepalived's);
//! - `advert_interval` default "1s"; version 2: whole seconds 1..=255
//!   (one byte of seconds on the wire); version 3: a multiple of 10 ms in
//!   10ms..=40.95s (12 bits of centiseconds);
//! - `state` "backup" | "master", default "backup"; `preempt` default
//!   true; `preempt = false` with `state = "master"` is refused (a master
//!   at start-up has preempted); `preempt_delay` 0s..=1000s and only with
//!   preemption;
//! - `auth_pass` version 2 only, 1..=8 bytes. Longer is refused where
//!   keepalived silently truncates: a peer configured with the full text
//!   elsewhere would not match. Messages never repeat the password, not
//!   even a wrongly typed one;
//! - `virtual_addresses` required, non-empty, "addr/prefix" or a bare
//!   address (/32, /128); one family per instance; IPv6 needs version 3;
//!   at most 255 (one byte of count) — more go to
//!   `virtual_addresses_excluded`, which may hold either family (how
//!   keepalived adds IPv6 addresses to an IPv4 instance);
//! - an address appears once in an instance (advertised or excluded) and
//!   in one instance per interface (two instances would add and remove it
//!   under each other); the same (interface, VRID, family) is one router,
//!   so it is configured once;
//! - `unicast_peers` of the instance's family, each once; `unicast_source`
//!   of that family and only with `unicast_peers`;
//! - scripts (`notify*`, `fence`, sync group `notify*`): split as keepalived
//!   does (whitespace, double quotes; see [`Script::parse`]), program an
//!   absolute path; `notify_timeout` 1s..=300s, default 10s;
//! - `track_virtual_servers` name existing virtual servers, each once;
//!   `track_weight` 0..=254, default 254 (see [`DEFAULT_TRACK_WEIGHT`];
//!   0 = shown in status, priority unchanged) and only with
//!   `track_virtual_servers`;
//! - `garp_repeat` 1..=100 (default 5), `garp_delay` 0s..=1h (default 5s,
//!   0 = no second block);
//! - a sync group lists at least one instance, each existing and in at
//!   most one group.

use std::{collections::HashMap, net::IpAddr, ops::Range, time::Duration};

use toml::Spanned;

use super::{
    error::{Location, Source},
    health::{duration_error, parse_duration, show},
    raw::{RawVrrpInstance, RawVrrpSyncGroup},
    validate::{bad_ifname, unusable_host},
    vrrp::{
        Script, VirtualAddress, VrrpInitialState, VrrpInstance, VrrpSyncGroup, VrrpVersion,
        DEFAULT_ADVERT_INTERVAL, DEFAULT_GARP_DELAY, DEFAULT_GARP_REPEAT, DEFAULT_NOTIFY_TIMEOUT,
        DEFAULT_TRACK_WEIGHT, DEFAULT_VRRP_PRIORITY, DEFAULT_VRRP_VERSION, MAX_ADVERT_ADDRESSES,
        MAX_ADVERT_INTERVAL_V2, MAX_ADVERT_INTERVAL_V3, MAX_AUTH_PASS_LEN, MAX_GARP_DELAY,
        MAX_GARP_REPEAT, MAX_NOTIFY_TIMEOUT, MAX_PREEMPT_DELAY, MIN_ADVERT_INTERVAL_V3,
        MIN_NOTIFY_TIMEOUT,
    },
    ConfigError, VirtualServer,
};

type Result<T> = std::result::Result<T, ConfigError>;

/// The validated VRRP part of a config, with the positions the host check
/// needs.
pub(super) struct Vrrp {
    pub instances: Vec<VrrpInstance>,
    pub sync_groups: Vec<VrrpSyncGroup>,
    /// One per instance: where its `interface` is written.
    pub interface_locations: Vec<Location>,
}

/// Errors about one table's keys: `path` is `vrrp_instance[0]`.
struct Table<'a> {
    src: &'a Source<'a>,
    path: String,
    span: Range<usize>,
}

impl Table<'_> {
    fn err(&self, span: Range<usize>, key: &str, what: impl std::fmt::Display) -> ConfigError {
        self.src
            .field_error(span, &format!("{}.{key}", self.path), what)
    }

    fn missing(&self, key: &str, what: &str, example: &str) -> ConfigError {
        self.err(
            self.span.clone(),
            key,
            format!("missing: every {what} needs `{key}`, e.g. `{key} = {example}`"),
        )
    }

    fn name(
        &self,
        v: Option<Spanned<String>>,
        what: &str,
        example: &str,
    ) -> Result<Spanned<String>> {
        let v = v.ok_or_else(|| self.missing("name", what, example))?;
        let text = v.get_ref();
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                v.span(),
                "name",
                format!(
                    "`{}` is not a usable name: give the {what} a name without spaces, such \
                     as {example} (scripts get it as an argument, metrics as a label)",
                    text.escape_debug()
                ),
            ));
        }
        Ok(v)
    }

    fn duration(&self, v: &Spanned<String>, key: &str) -> Result<Duration> {
        parse_duration(v.get_ref()).ok_or_else(|| {
            self.err(
                v.span(),
                key,
                duration_error(v.get_ref(), "ms, s, m", "\"1s\" or \"100ms\""),
            )
        })
    }

    /// A duration in `min..=max`, `default` when absent.
    fn duration_in(
        &self,
        v: Option<&Spanned<String>>,
        key: &str,
        (min, max, default): (Duration, Duration, Duration),
    ) -> Result<Duration> {
        let Some(v) = v else { return Ok(default) };
        let d = self.duration(v, key)?;
        if !(min..=max).contains(&d) {
            return Err(self.err(
                v.span(),
                key,
                format!(
                    "{} is out of range: use {} to {} (default {})",
                    show(d),
                    show(min),
                    show(max),
                    show(default)
                ),
            ));
        }
        Ok(d)
    }

    /// An integer in `min..=max`, `default` when absent.
    fn int_in(
        &self,
        v: Option<&Spanned<i64>>,
        key: &str,
        (min, max, default): (i64, i64, i64),
        why: &str,
    ) -> Result<i64> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if !(min..=max).contains(&n) {
            return Err(self.err(
                v.span(),
                key,
                format!("{n} is out of range: use {min} to {max}{why}"),
            ));
        }
        Ok(n)
    }

    fn script(&self, v: Option<&Spanned<String>>, key: &str) -> Result<Option<Script>> {
        v.map(|v| Script::parse(v.get_ref()).map_err(|e| self.err(v.span(), key, e)))
            .transpose()
    }
}

/// Where an instance's values are, for the checks across instances.
struct InstanceSpans {
    name: Range<usize>,
    virtual_router_id: Range<usize>,
    /// One per address, advertised then excluded, with its field path.
    addresses: AddressSpans,
}

pub(super) fn vrrp(
    instances: Vec<Spanned<RawVrrpInstance>>,
    groups: Vec<Spanned<RawVrrpSyncGroup>>,
    virtual_servers: &[VirtualServer],
    src: &Source<'_>,
) -> Result<Vrrp> {
    let mut out = Vrrp {
        instances: Vec::with_capacity(instances.len()),
        sync_groups: Vec::with_capacity(groups.len()),
        interface_locations: Vec::with_capacity(instances.len()),
    };
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut routers: HashMap<(String, u8, bool), usize> = HashMap::new();
    let mut addresses: HashMap<(String, IpAddr), usize> = HashMap::new();

    for (i, raw) in instances.into_iter().enumerate() {
        let t = Table {
            src,
            path: format!("vrrp_instance[{i}]"),
            span: raw.span(),
        };
        let interface_span = raw.get_ref().interface.as_ref().map(Spanned::span);
        let (vi, at) = instance(raw.into_inner(), &t, virtual_servers)?;
        out.interface_locations.push(Location::new(
            src,
            &interface_span.unwrap_or_else(|| t.span.clone()),
        ));

        if let Some(first) = names.insert(vi.name.clone(), i) {
            return Err(t.err(
                at.name,
                "name",
                format!(
                    "name `{}` is already used by vrrp_instance[{first}]; give every \
                     instance its own name",
                    vi.name
                ),
            ));
        }
        let router = (vi.interface.clone(), vi.virtual_router_id, vi.is_ipv6());
        if let Some(first) = routers.insert(router, i) {
            return Err(t.err(
                at.virtual_router_id,
                "virtual_router_id",
                format!(
                    "virtual router {} ({}) on `{}` is already vrrp_instance[{first}] (`{}`): \
                     one interface carries one router per VRID and family; choose another \
                     virtual_router_id (1 to 255, unused on this network)",
                    vi.virtual_router_id,
                    family(vi.is_ipv6()),
                    vi.interface,
                    out.instances[first].name
                ),
            ));
        }
        for (address, (span, field)) in vi.all_addresses().zip(at.addresses) {
            let key = (vi.interface.clone(), address.address);
            if let Some(&first) = addresses.get(&key) {
                return Err(src.field_error(
                    span,
                    &field,
                    format!(
                        "{} is already an address of vrrp_instance[{first}] (`{}`) on `{}`: \
                         two instances would add and remove it under each other; keep it \
                         in one instance",
                        address.address, out.instances[first].name, vi.interface
                    ),
                ));
            }
            addresses.insert(key, i);
        }
        out.instances.push(vi);
    }

    let mut group_names: HashMap<String, usize> = HashMap::new();
    let mut member_of: HashMap<String, usize> = HashMap::new();
    for (g, raw) in groups.into_iter().enumerate() {
        let t = Table {
            src,
            path: format!("vrrp_sync_group[{g}]"),
            span: raw.span(),
        };
        let group = sync_group(raw.into_inner(), &t, &out.instances, &mut member_of, g)?;
        if let Some(first) = group_names.insert(group.0.name.clone(), g) {
            return Err(t.err(
                group.1,
                "name",
                format!(
                    "name `{}` is already used by vrrp_sync_group[{first}]; give every \
                     sync group its own name",
                    group.0.name
                ),
            ));
        }
        out.sync_groups.push(group.0);
    }
    Ok(out)
}

fn family(ipv6: bool) -> &'static str {
    if ipv6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

fn instance(
    raw: RawVrrpInstance,
    t: &Table<'_>,
    virtual_servers: &[VirtualServer],
) -> Result<(VrrpInstance, InstanceSpans)> {
    let name = t.name(raw.name.clone(), "VRRP instance", "\"VI_1\"")?;

    let interface = raw
        .interface
        .as_ref()
        .ok_or_else(|| t.missing("interface", "VRRP instance", "\"eth0\""))?;
    if let Some(why) = bad_ifname(interface.get_ref()) {
        return Err(t.err(
            interface.span(),
            "interface",
            format!("`{}` {why}", interface.get_ref()),
        ));
    }

    let vrid = raw.virtual_router_id.as_ref().ok_or_else(|| {
        t.missing(
            "virtual_router_id",
            "VRRP instance",
            "51 (the same on every node of the router, as keepalived's)",
        )
    })?;
    let virtual_router_id = t.int_in(
        Some(vrid),
        "virtual_router_id",
        (1, 255, 0),
        " (the same on every node of one virtual router, different from other routers \
         on the network)",
    )? as u8;
    let priority = t.int_in(
        raw.priority.as_ref(),
        "priority",
        (1, 255, i64::from(DEFAULT_VRRP_PRIORITY)),
        " (default 100; 255 = the address owner; 0 is reserved for a master giving up)",
    )? as u8;

    let version = match &raw.version {
        None => DEFAULT_VRRP_VERSION,
        Some(v) => VrrpVersion::try_from(*v.get_ref()).map_err(|()| {
            t.err(
                v.span(),
                "version",
                format!(
                    "{} is not a VRRP version: use 2 (RFC 3768, keepalived's default) or 3 \
                     (RFC 5798: IPv6, sub-second adverts)",
                    v.get_ref()
                ),
            )
        })?,
    };
    let advert_interval = advert_interval(raw.advert_interval.as_ref(), version, t)?;
    let (initial_state, preempt, preempt_delay) = election(&raw, t)?;
    let auth_pass = auth_pass(raw.auth_pass.as_ref(), version, t)?;
    let (addrs, spans) = addresses(&raw, version, t)?;
    let (unicast_peers, unicast_source) = unicast(&raw, addrs.is_ipv6, t)?;

    let more = tracking_and_announcements(&raw, virtual_servers, t)?;

    let name_span = name.span();
    let instance = VrrpInstance {
        name: name.into_inner(),
        interface: interface.get_ref().clone(),
        virtual_router_id,
        priority,
        advert_interval,
        version,
        initial_state,
        preempt,
        preempt_delay,
        auth_pass,
        virtual_addresses: addrs.advertised,
        virtual_addresses_excluded: addrs.excluded,
        unicast_peers,
        unicast_source,
        notify_master: t.script(raw.notify_master.as_ref(), "notify_master")?,
        notify_backup: t.script(raw.notify_backup.as_ref(), "notify_backup")?,
        notify_fault: t.script(raw.notify_fault.as_ref(), "notify_fault")?,
        notify_stop: t.script(raw.notify_stop.as_ref(), "notify_stop")?,
        notify: t.script(raw.notify.as_ref(), "notify")?,
        fence: t.script(raw.fence.as_ref(), "fence")?,
        notify_timeout: more.notify_timeout,
        track_virtual_servers: more.track_virtual_servers,
        track_weight: more.track_weight,
        garp_repeat: more.garp_repeat,
        garp_delay: more.garp_delay,
    };
    Ok((
        instance,
        InstanceSpans {
            name: name_span,
            virtual_router_id: vrid.span(),
            addresses: spans,
        },
    ))
}

/// The keys that do not change the election's rules.
struct More {
    track_virtual_servers: Vec<String>,
    track_weight: u8,
    garp_repeat: u32,
    garp_delay: Duration,
    notify_timeout: Duration,
}

fn tracking_and_announcements(
    raw: &RawVrrpInstance,
    virtual_servers: &[VirtualServer],
    t: &Table<'_>,
) -> Result<More> {
    let track_virtual_servers = tracked(raw.track_virtual_servers.as_ref(), virtual_servers, t)?;
    if let (Some(w), true) = (&raw.track_weight, track_virtual_servers.is_empty()) {
        return Err(t.err(
            w.span(),
            "track_weight",
            "`track_weight` has no effect without `track_virtual_servers`: name the virtual \
             servers to track, or remove it",
        ));
    }
    let track_weight = t.int_in(
        raw.track_weight.as_ref(),
        "track_weight",
        (0, 254, i64::from(DEFAULT_TRACK_WEIGHT)),
        " (how far the priority drops while a tracked service is down; default 254: \
         down to 1, so any healthy peer takes over)",
    )? as u8;

    let garp_repeat = t.int_in(
        raw.garp_repeat.as_ref(),
        "garp_repeat",
        (
            1,
            i64::from(MAX_GARP_REPEAT),
            i64::from(DEFAULT_GARP_REPEAT),
        ),
        " gratuitous ARPs / neighbour advertisements per address (default 5)",
    )? as u32;
    let garp_delay = t.duration_in(
        raw.garp_delay.as_ref(),
        "garp_delay",
        (Duration::ZERO, MAX_GARP_DELAY, DEFAULT_GARP_DELAY),
    )?;
    let notify_timeout = t.duration_in(
        raw.notify_timeout.as_ref(),
        "notify_timeout",
        (
            MIN_NOTIFY_TIMEOUT,
            MAX_NOTIFY_TIMEOUT,
            DEFAULT_NOTIFY_TIMEOUT,
        ),
    )?;

    Ok(More {
        track_virtual_servers,
        track_weight,
        garp_repeat,
        garp_delay,
        notify_timeout,
    })
}

fn advert_interval(
    v: Option<&Spanned<String>>,
    version: VrrpVersion,
    t: &Table<'_>,
) -> Result<Duration> {
    let Some(v) = v else {
        return Ok(DEFAULT_ADVERT_INTERVAL);
    };
    let d = t.duration(v, "advert_interval")?;
    let ms = d.as_millis();
    match version {
        VrrpVersion::V2 => {
            if !ms.is_multiple_of(1000) || d.is_zero() || d > MAX_ADVERT_INTERVAL_V2 {
                let sub_second = if d < Duration::from_secs(1) || !ms.is_multiple_of(1000) {
                    "; sub-second adverts need `version = 3`"
                } else {
                    ""
                };
                return Err(t.err(
                    v.span(),
                    "advert_interval",
                    format!(
                        "{} cannot be sent by VRRP version 2, which carries whole seconds: \
                         use \"1s\" to \"255s\"{sub_second}",
                        show(d)
                    ),
                ));
            }
        }
        VrrpVersion::V3 => {
            if !ms.is_multiple_of(10) || d < MIN_ADVERT_INTERVAL_V3 || d > MAX_ADVERT_INTERVAL_V3 {
                return Err(t.err(
                    v.span(),
                    "advert_interval",
                    format!(
                        "{} cannot be sent by VRRP version 3, which carries centiseconds: \
                         use a multiple of 10ms from \"10ms\" to \"40950ms\" (40.95 s)",
                        show(d)
                    ),
                ));
            }
        }
    }
    Ok(d)
}

fn election(raw: &RawVrrpInstance, t: &Table<'_>) -> Result<(VrrpInitialState, bool, Duration)> {
    let initial_state = match &raw.state {
        None => VrrpInitialState::Backup,
        Some(v) => v.get_ref().parse().map_err(|_| {
            t.err(
                v.span(),
                "state",
                format!(
                    "`{}` is not a start-up state: use \"backup\" (elect first, the \
                     default) or \"master\" (lower case)",
                    v.get_ref()
                ),
            )
        })?,
    };
    let preempt = raw.preempt.as_ref().is_none_or(|p| *p.get_ref());
    if let (Some(p), false, VrrpInitialState::Master) = (&raw.preempt, preempt, initial_state) {
        return Err(t.err(
            p.span(),
            "preempt",
            "preempt = false with state = \"master\": a node that starts as master has \
             preempted already; set state = \"backup\" on a node that must not preempt",
        ));
    }
    if let (Some(d), false) = (&raw.preempt_delay, preempt) {
        return Err(t.err(
            d.span(),
            "preempt_delay",
            "`preempt_delay` has no effect with preempt = false: remove it, or allow \
             preemption",
        ));
    }
    let preempt_delay = t.duration_in(
        raw.preempt_delay.as_ref(),
        "preempt_delay",
        (Duration::ZERO, MAX_PREEMPT_DELAY, Duration::ZERO),
    )?;
    Ok((initial_state, preempt, preempt_delay))
}

/// Never puts the password in a message: a message may end up in a log
/// or a bug report.
fn auth_pass(
    v: Option<&Spanned<String>>,
    version: VrrpVersion,
    t: &Table<'_>,
) -> Result<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    if version != VrrpVersion::V2 {
        return Err(t.err(
            v.span(),
            "auth_pass",
            "version 3 has no authentication (RFC 5798 removed it): remove `auth_pass`, \
             or set `version = 2` to match a keepalived peer using auth_type PASS",
        ));
    }
    let len = v.get_ref().len();
    if len == 0 {
        return Err(t.err(
            v.span(),
            "auth_pass",
            "empty password: remove `auth_pass` for no authentication, or give 1 to 8 bytes",
        ));
    }
    if len > MAX_AUTH_PASS_LEN {
        return Err(t.err(
            v.span(),
            "auth_pass",
            format!(
                "the password is {len} bytes long; an advert carries {MAX_AUTH_PASS_LEN}: \
                 keepalived silently keeps the first {MAX_AUTH_PASS_LEN}, lb refuses; \
                 shorten it to {MAX_AUTH_PASS_LEN} bytes (and use the same on every node)"
            ),
        ));
    }
    Ok(Some(v.get_ref().clone()))
}

struct Addresses {
    advertised: Vec<VirtualAddress>,
    excluded: Vec<VirtualAddress>,
    is_ipv6: bool,
}

/// Where each address is, and its field path.
type AddressSpans = Vec<(Range<usize>, String)>;

fn addresses(
    raw: &RawVrrpInstance,
    version: VrrpVersion,
    t: &Table<'_>,
) -> Result<(Addresses, AddressSpans)> {
    let list = raw.virtual_addresses.as_ref().ok_or_else(|| {
        t.missing(
            "virtual_addresses",
            "VRRP instance",
            "[\"192.168.1.10/24\"]",
        )
    })?;
    if list.get_ref().is_empty() {
        return Err(t.err(
            list.span(),
            "virtual_addresses",
            "no addresses: list the addresses the master holds, e.g. [\"192.168.1.10/24\"]",
        ));
    }
    let mut spans = Vec::new();
    let mut seen: HashMap<IpAddr, String> = HashMap::new();
    let mut one = |v: &Spanned<String>, key: &str, t: &Table<'_>| -> Result<VirtualAddress> {
        let field = format!("{}.{key}", t.path);
        let a = virtual_address(v, key, t)?;
        if let Some(first) = seen.insert(a.address, field.clone()) {
            return Err(t.err(
                v.span(),
                key,
                format!(
                    "{} is already listed as {first}: list each address once",
                    a.address
                ),
            ));
        }
        spans.push((v.span(), field));
        Ok(a)
    };

    let mut advertised = Vec::with_capacity(list.get_ref().len());
    let mut is_ipv6 = false;
    for (k, v) in list.get_ref().iter().enumerate() {
        let key = format!("virtual_addresses[{k}]");
        let a = one(v, &key, t)?;
        if k == 0 {
            is_ipv6 = a.address.is_ipv6();
            if is_ipv6 && version == VrrpVersion::V2 {
                return Err(t.err(
                    v.span(),
                    &key,
                    format!(
                        "{} is IPv6, which VRRP version 2 cannot carry: set `version = 3`",
                        a.address
                    ),
                ));
            }
        } else if a.address.is_ipv6() != is_ipv6 {
            return Err(t.err(
                v.span(),
                &key,
                format!(
                    "{} is {} but virtual_addresses[0] is {}: an advert carries one family; \
                     define one instance per family (or hold it without advertising it in \
                     `virtual_addresses_excluded`)",
                    a.address,
                    family(a.address.is_ipv6()),
                    family(is_ipv6)
                ),
            ));
        }
        if k == MAX_ADVERT_ADDRESSES {
            return Err(t.err(
                v.span(),
                &key,
                format!(
                    "more than {MAX_ADVERT_ADDRESSES} addresses: an advert carries at most \
                     {MAX_ADVERT_ADDRESSES}; move the rest to `virtual_addresses_excluded` \
                     (held by the master, not advertised)"
                ),
            ));
        }
        advertised.push(a);
    }
    let mut excluded = Vec::new();
    if let Some(list) = &raw.virtual_addresses_excluded {
        for (k, v) in list.get_ref().iter().enumerate() {
            excluded.push(one(v, &format!("virtual_addresses_excluded[{k}]"), t)?);
        }
    }
    Ok((
        Addresses {
            advertised,
            excluded,
            is_ipv6,
        },
        spans,
    ))
}

/// "192.168.1.10/24", "fd00::10/64", or a bare address (/32, /128).
fn virtual_address(v: &Spanned<String>, key: &str, t: &Table<'_>) -> Result<VirtualAddress> {
    let text = v.get_ref().trim();
    let bad = || {
        t.err(
            v.span(),
            key,
            format!(
                "`{text}` is not an address with an optional prefix length: write e.g. \
                 \"192.168.1.10/24\", \"192.168.1.10\" (/32) or \"fd00::10/64\""
            ),
        )
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        None => max,
        Some(p) => {
            let n: u8 = p
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    t.err(
                        v.span(),
                        key,
                        format!(
                            "`/{p}` is not a prefix length for {}: use 1 to {max} (e.g. the \
                             interface's own subnet, /24)",
                            family(address.is_ipv6())
                        ),
                    )
                })?;
            n
        }
    };
    if let Some(why) = unusable_host(address) {
        return Err(t.err(v.span(), key, format!("{address} {why}")));
    }
    if address.is_loopback() {
        return Err(t.err(
            v.span(),
            key,
            format!("{address} is a loopback address: name an address of the network"),
        ));
    }
    Ok(VirtualAddress {
        address,
        prefix_len,
    })
}

fn unicast(
    raw: &RawVrrpInstance,
    ipv6: bool,
    t: &Table<'_>,
) -> Result<(Vec<IpAddr>, Option<IpAddr>)> {
    let host = |v: &Spanned<String>, key: &str| -> Result<IpAddr> {
        let a: IpAddr = v.get_ref().trim().parse().map_err(|_| {
            t.err(
                v.span(),
                key,
                format!(
                    "`{}` is not an IP address: write the address alone, e.g. \"10.0.0.2\"",
                    v.get_ref()
                ),
            )
        })?;
        if let Some(why) = unusable_host(a) {
            return Err(t.err(v.span(), key, format!("{a} {why}")));
        }
        if a.is_ipv6() != ipv6 {
            return Err(t.err(
                v.span(),
                key,
                format!(
                    "{a} is {} but the instance's virtual addresses are {}: adverts go \
                     over one family; use the peer's {} address",
                    family(a.is_ipv6()),
                    family(ipv6),
                    family(ipv6)
                ),
            ));
        }
        Ok(a)
    };
    let mut peers = Vec::new();
    if let Some(list) = &raw.unicast_peers {
        for (k, v) in list.get_ref().iter().enumerate() {
            let key = format!("unicast_peers[{k}]");
            let a = host(v, &key)?;
            if peers.contains(&a) {
                return Err(t.err(
                    v.span(),
                    &key,
                    format!("{a} is listed twice: list each peer once"),
                ));
            }
            peers.push(a);
        }
    }
    let source = match &raw.unicast_source {
        None => None,
        Some(v) if peers.is_empty() => {
            return Err(t.err(
                v.span(),
                "unicast_source",
                "`unicast_source` has no effect without `unicast_peers` (adverts go to the \
                 multicast group): list the peers, or remove it",
            ))
        }
        Some(v) => Some(host(v, "unicast_source")?),
    };
    Ok((peers, source))
}

fn tracked(
    v: Option<&Spanned<Vec<Spanned<String>>>>,
    virtual_servers: &[VirtualServer],
    t: &Table<'_>,
) -> Result<Vec<String>> {
    let Some(list) = v else { return Ok(Vec::new()) };
    let mut out: Vec<String> = Vec::with_capacity(list.get_ref().len());
    for (k, v) in list.get_ref().iter().enumerate() {
        let key = format!("track_virtual_servers[{k}]");
        let name = v.get_ref();
        if !virtual_servers.iter().any(|vs| &vs.name == name) {
            let known: Vec<String> = virtual_servers
                .iter()
                .map(|vs| format!("\"{}\"", vs.name))
                .collect();
            let hint = if known.is_empty() {
                "this config has no virtual servers; remove it".to_owned()
            } else {
                format!("use one of {}", known.join(", "))
            };
            return Err(t.err(
                v.span(),
                &key,
                format!("no virtual server is named `{name}`: {hint}"),
            ));
        }
        if out.contains(name) {
            return Err(t.err(
                v.span(),
                &key,
                format!("`{name}` is listed twice: list each virtual server once"),
            ));
        }
        out.push(name.clone());
    }
    Ok(out)
}

fn sync_group(
    raw: RawVrrpSyncGroup,
    t: &Table<'_>,
    instances: &[VrrpInstance],
    member_of: &mut HashMap<String, usize>,
    g: usize,
) -> Result<(VrrpSyncGroup, Range<usize>)> {
    let name = t.name(raw.name, "sync group", "\"G1\"")?;
    let list = raw
        .instances
        .ok_or_else(|| t.missing("instances", "sync group", "[\"VI_CLIENT\", \"VI_SERVERS\"]"))?;
    if list.get_ref().is_empty() {
        return Err(t.err(
            list.span(),
            "instances",
            "no instances: name the VRRP instances that change state together, e.g. \
             [\"VI_CLIENT\", \"VI_SERVERS\"]",
        ));
    }
    let mut members = Vec::with_capacity(list.get_ref().len());
    for (k, v) in list.get_ref().iter().enumerate() {
        let key = format!("instances[{k}]");
        let member = v.get_ref();
        if !instances.iter().any(|i| &i.name == member) {
            let known: Vec<String> = instances
                .iter()
                .map(|i| format!("\"{}\"", i.name))
                .collect();
            let hint = if known.is_empty() {
                "define it with [[vrrp_instance]]".to_owned()
            } else {
                format!("use one of {}", known.join(", "))
            };
            return Err(t.err(
                v.span(),
                &key,
                format!("no VRRP instance is named `{member}`: {hint}"),
            ));
        }
        if let Some(&other) = member_of.get(member) {
            let where_ = if other == g {
                "is listed twice in this group: list it once".to_owned()
            } else {
                format!(
                    "is already in vrrp_sync_group[{other}]: an instance follows one group; \
                     remove it from one of them"
                )
            };
            return Err(t.err(v.span(), &key, format!("`{member}` {where_}")));
        }
        member_of.insert(member.clone(), g);
        members.push(member.clone());
    }
    let span = name.span();
    Ok((
        VrrpSyncGroup {
            name: name.into_inner(),
            instances: members,
            notify_master: t.script(raw.notify_master.as_ref(), "notify_master")?,
            notify_backup: t.script(raw.notify_backup.as_ref(), "notify_backup")?,
            notify_fault: t.script(raw.notify_fault.as_ref(), "notify_fault")?,
            notify: t.script(raw.notify.as_ref(), "notify")?,
        },
        span,
    ))
}
