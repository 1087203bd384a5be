//! `[announce]`: which VIPs this node offers to a BGP daemon on the same
//! host, through which kernel routes, and how `lb drain` decides that the
//! node may be stopped. From the file as written to [`Announce`], with
//! the config's one message format (file:line:column, field, what to do).
//!
//! Rules:
//! - the table's presence turns announcing on; it needs at least one
//!   virtual server;
//! - `addresses`: VIPs of configured virtual servers, each once, bare
//!   addresses (the route is a host route, /32 or /128); default: every
//!   virtual server's address, in config order, each once;
//! - `table` 1..=4294967295 except 253, 254, 255 (the kernel's default,
//!   main and local tables: routes there would change this host's own
//!   forwarding and delivery), default [`DEFAULT_ANNOUNCE_TABLE`];
//! - `protocol` 1..=255 except the numbers iproute2 names for the kernel
//!   and for routing daemons (`/etc/iproute2/rt_protos`): a daemon treats
//!   routes with its own number as its own and may delete them; default
//!   [`DEFAULT_ANNOUNCE_PROTOCOL`];
//! - `interface` a valid interface name, default "lo" (the routes only
//!   need a device to exist; nothing is forwarded by them);
//! - `drain_min` 0s..=1h (default 10s), `drain_quiet` 1s..=10m (default
//!   5s): see [`Announce::drain_min`].

use std::{net::IpAddr, ops::Range, time::Duration};

use toml::Spanned;

use super::{
    error::Source,
    health::{duration_error, parse_duration, show},
    raw::RawAnnounce,
    validate::bad_ifname,
    ConfigError, VirtualServer,
};

/// The routing table the announced routes go into by default.
pub const DEFAULT_ANNOUNCE_TABLE: u32 = 200;
/// The route protocol number marking lb's routes by default (iproute2
/// leaves 252 unnamed; name it with `252 lb` in `/etc/iproute2/rt_protos.d/`).
pub const DEFAULT_ANNOUNCE_PROTOCOL: u8 = 252;
pub const DEFAULT_ANNOUNCE_INTERFACE: &str = "lo";
/// A draining node is not "safe to stop" before this long.
pub const DEFAULT_DRAIN_MIN: Duration = Duration::from_secs(10);
/// ... nor before this long without a new connection.
pub const DEFAULT_DRAIN_QUIET: Duration = Duration::from_secs(5);
pub const MAX_DRAIN_MIN: Duration = Duration::from_secs(3600);
pub const MIN_DRAIN_QUIET: Duration = Duration::from_secs(1);
pub const MAX_DRAIN_QUIET: Duration = Duration::from_secs(600);

/// Tables the kernel itself uses (unspec, default, main, local).
const RESERVED_TABLES: [i64; 4] = [0, 253, 254, 255];
/// Route protocol numbers named by iproute2 (kernel and daemons).
const RESERVED_PROTOCOLS: &[(i64, &str)] = &[
    (0, "unspec"),
    (1, "redirect"),
    (2, "kernel"),
    (3, "boot"),
    (4, "static"),
    (8, "gated"),
    (9, "ra"),
    (10, "mrt"),
    (11, "zebra (FRR)"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp (FRR)"),
    (187, "isis (FRR)"),
    (188, "ospf (FRR)"),
    (189, "rip (FRR)"),
    (192, "eigrp (FRR)"),
];

/// `[announce]`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Announce {
    /// The VIPs that may be announced, each once, in config order.
    pub addresses: Vec<IpAddr>,
    /// The routing table the routes go into (the daemon imports it).
    pub table: u32,
    /// The route protocol number of lb's routes in that table.
    pub protocol: u8,
    /// The device the routes name.
    pub interface: String,
    /// `lb drain` reports "safe to stop" once at least `drain_min` has
    /// passed since the withdrawal (time for the daemons to withdraw and
    /// the router to move the flows) ...
    pub drain_min: Duration,
    /// ... and no new connection reached this node for `drain_quiet`.
    pub drain_quiet: Duration,
}

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn announce(
    raw: Option<Spanned<RawAnnounce>>,
    virtual_servers: &[VirtualServer],
    src: &Source<'_>,
) -> Result<Option<Announce>> {
    let Some(raw) = raw else { return Ok(None) };
    let span = raw.span();
    let raw = raw.into_inner();
    let err = |span: Range<usize>, key: &str, what: String| {
        src.field_error(span, &format!("announce.{key}"), what)
    };
    if virtual_servers.is_empty() {
        return Err(src.field_error(
            span,
            "announce",
            "there is no virtual server to announce: add a [[virtual_server]] or remove \
             [announce]",
        ));
    }
    let addresses = match raw.addresses {
        None => {
            let mut all: Vec<IpAddr> = Vec::new();
            for vs in virtual_servers {
                if !all.contains(&vs.address) {
                    all.push(vs.address);
                }
            }
            all
        }
        Some(list) => addresses(list, virtual_servers, src)?,
    };
    let table = match raw.table {
        None => DEFAULT_ANNOUNCE_TABLE,
        Some(t) => {
            let n = *t.get_ref();
            if !(1..=i64::from(u32::MAX)).contains(&n) || RESERVED_TABLES.contains(&n) {
                return Err(err(
                    t.span(),
                    "table",
                    format!(
                        "{n} cannot be used: use a table number from 1 to 4294967295 other than \
                         253, 254 and 255 (the kernel's default, main and local tables), e.g. \
                         {DEFAULT_ANNOUNCE_TABLE}"
                    ),
                ));
            }
            n as u32
        }
    };
    let protocol = match raw.protocol {
        None => DEFAULT_ANNOUNCE_PROTOCOL,
        Some(p) => {
            let n = *p.get_ref();
            if !(1..=255).contains(&n) {
                return Err(err(
                    p.span(),
                    "protocol",
                    format!(
                        "{n} is out of range: use a route protocol number from 1 to 255 that \
                         no routing daemon uses, e.g. {DEFAULT_ANNOUNCE_PROTOCOL}"
                    ),
                ));
            }
            if let Some((_, owner)) = RESERVED_PROTOCOLS.iter().find(|(v, _)| *v == n) {
                return Err(err(
                    p.span(),
                    "protocol",
                    format!(
                        "{n} is the route protocol of {owner}, which would take lb's routes \
                         for its own: use a number no daemon uses, e.g. \
                         {DEFAULT_ANNOUNCE_PROTOCOL}"
                    ),
                ));
            }
            n as u8
        }
    };
    let interface = match raw.interface {
        None => DEFAULT_ANNOUNCE_INTERFACE.to_owned(),
        Some(i) => {
            if let Some(problem) = bad_ifname(i.get_ref()) {
                return Err(err(
                    i.span(),
                    "interface",
                    format!("`{}` {problem}", i.get_ref().escape_debug()),
                ));
            }
            i.into_inner()
        }
    };
    let drain_min = duration(
        raw.drain_min.as_ref(),
        "drain_min",
        (Duration::ZERO, MAX_DRAIN_MIN, DEFAULT_DRAIN_MIN),
        src,
    )?;
    let drain_quiet = duration(
        raw.drain_quiet.as_ref(),
        "drain_quiet",
        (MIN_DRAIN_QUIET, MAX_DRAIN_QUIET, DEFAULT_DRAIN_QUIET),
        src,
    )?;
    Ok(Some(Announce {
        addresses,
        table,
        protocol,
        interface,
        drain_min,
        drain_quiet,
    }))
}

fn addresses(
    list: Spanned<Vec<Spanned<String>>>,
    virtual_servers: &[VirtualServer],
    src: &Source<'_>,
) -> Result<Vec<IpAddr>> {
    if list.get_ref().is_empty() {
        return Err(src.field_error(
            list.span(),
            "announce.addresses",
            "is empty: name at least one VIP, or leave `addresses` out to announce every \
             virtual server's address (remove [announce] to announce none)",
        ));
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, a) in list.into_inner().into_iter().enumerate() {
        let field = format!("announce.addresses[{i}]");
        let text = a.get_ref().trim();
        let Ok(address) = text.parse::<IpAddr>() else {
            let hint = if text.contains('/') {
                "write the address without a prefix length: lb announces host routes (/32, /128)"
            } else {
                "write an IPv4 or IPv6 address, e.g. \"192.0.2.10\""
            };
            return Err(src.field_error(
                a.span(),
                &field,
                format!("`{}` is not an address: {hint}", text.escape_debug()),
            ));
        };
        if !virtual_servers.iter().any(|vs| vs.address == address) {
            return Err(src.field_error(
                a.span(),
                &field,
                format!(
                    "{address} is not the address of any virtual server: announce only VIPs \
                     this node serves (a route attracting other traffic would black-hole it)"
                ),
            ));
        }
        if out.contains(&address) {
            return Err(src.field_error(
                a.span(),
                &field,
                format!("{address} is listed twice: list each VIP once"),
            ));
        }
        out.push(address);
    }
    Ok(out)
}

fn duration(
    v: Option<&Spanned<String>>,
    key: &str,
    (min, max, default): (Duration, Duration, Duration),
    src: &Source<'_>,
) -> Result<Duration> {
    let Some(v) = v else { return Ok(default) };
    let field = format!("announce.{key}");
    let d = parse_duration(v.get_ref()).ok_or_else(|| {
        src.field_error(
            v.span(),
            &field,
            duration_error(v.get_ref(), "ms, s, m, h", "\"10s\""),
        )
    })?;
    if !(min..=max).contains(&d) {
        return Err(src.field_error(
            v.span(),
            &field,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const SERVICES: &str = "[agent]\ninterfaces = [\"eth0\"]\n\n\
        [[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\n\
        protocol = \"tcp\"\nforwarding = \"dr\"\n\n\
        [[virtual_server]]\nname = \"tls\"\naddress = \"192.0.2.10\"\nport = 443\n\
        protocol = \"tcp\"\nforwarding = \"dr\"\n\n\
        [[virtual_server]]\nname = \"dns\"\naddress = \"2001:db8::53\"\nport = 53\n\
        protocol = \"udp\"\nforwarding = \"dr\"\n";

    fn with(announce: &str) -> std::result::Result<Option<Announce>, String> {
        parse(&format!("{SERVICES}\n[announce]\n{announce}"), "lb.toml")
            .map(|c| c.announce)
            .map_err(|e| e.message)
    }

    #[test]
    fn defaults_announce_every_vip_once() {
        let a = with("").unwrap().unwrap();
        assert_eq!(
            a.addresses,
            [
                "192.0.2.10".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]
        );
        assert_eq!(a.table, DEFAULT_ANNOUNCE_TABLE);
        assert_eq!(a.protocol, DEFAULT_ANNOUNCE_PROTOCOL);
        assert_eq!(a.interface, "lo");
        assert_eq!(a.drain_min, DEFAULT_DRAIN_MIN);
        assert_eq!(a.drain_quiet, DEFAULT_DRAIN_QUIET);
        // Without the table nothing is announced.
        assert_eq!(parse(SERVICES, "lb.toml").unwrap().announce, None);
    }

    #[test]
    fn keys_are_read() {
        let a = with("addresses = [\"2001:db8::53\"]\ntable = 4000\nprotocol = 99\n");
        // 99 is openr's: refused, at its line.
        let e = a.unwrap_err();
        assert!(
            e.starts_with(
                "lb.toml:28:12: field `announce.protocol`: 99 is the route protocol of openr"
            ),
            "{e}"
        );
        let a = with(
            "addresses = [\"2001:db8::53\"]\ntable = 4000\nprotocol = 77\n\
             interface = \"dummy0\"\ndrain_min = \"0s\"\ndrain_quiet = \"2s\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.addresses, ["2001:db8::53".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            (a.table, a.protocol, a.interface.as_str()),
            (4000, 77, "dummy0")
        );
        assert_eq!(
            (a.drain_min, a.drain_quiet),
            (Duration::ZERO, Duration::from_secs(2))
        );
    }

    #[test]
    fn mistakes_are_named_with_what_to_do() {
        let cases = [
            (
                "addresses = [\"192.0.2.99\"]",
                "announce.addresses[0]`: 192.0.2.99 is not the address of any virtual server",
            ),
            (
                "addresses = [\"192.0.2.10/32\"]",
                "write the address without a prefix length",
            ),
            (
                "addresses = [\"192.0.2.10\", \"192.0.2.10\"]",
                "announce.addresses[1]`: 192.0.2.10 is listed twice",
            ),
            ("addresses = []", "is empty: name at least one VIP"),
            ("table = 254", "253, 254 and 255"),
            ("table = 0", "from 1 to 4294967295"),
            ("protocol = 12", "route protocol of bird"),
            ("protocol = 300", "300 is out of range"),
            ("interface = \"a b\"", "not a valid interface name"),
            ("drain_quiet = \"0s\"", "0ms is out of range: use 1s to 10m"),
            ("drain_min = \"soon\"", "`soon` is not a duration"),
            ("peer = \"x\"", "unknown field"),
        ];
        for (text, expected) in cases {
            let e = with(text).unwrap_err();
            assert!(e.starts_with("lb.toml:26:"), "{text}: {e}");
            assert!(e.contains(expected), "{text}: {e}");
        }
        let e = parse(
            "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 1\n\
             virtual_addresses = [\"192.0.2.1/24\"]\n[announce]\n",
            "lb.toml",
        )
        .unwrap_err()
        .message;
        assert!(e.contains("there is no virtual server to announce"), "{e}");
    }
}
