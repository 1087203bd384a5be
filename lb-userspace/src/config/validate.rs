//! From the file as written ([`raw`](super::raw)) to a [`Config`] every
//! later stage can trust: defaults filled in, every value range-checked,
//! cross-field rules enforced. The first problem found is reported, at the
//! position of the value to edit.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::PathBuf,
};

use toml::Spanned;

use super::{
    error::{Location, Source},
    health::{self, Layer},
    raw::{RawAgent, RawConfig, RawRealServer, RawVirtualServer},
    reverse_nat::{Claim, ReverseNatOwners},
    validate_vrrp, AgentConfig, Config, ConfigError, EbpfLog, Forwarding, Protocol, RealServer,
    Scheduler, SourceMap, VirtualServer, XdpMode, DEFAULT_CONTROL_SOCKET, DEFAULT_EBPF_LOG,
    DEFAULT_FLOW_TABLE_SIZE, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_SCHEDULER, DEFAULT_WEIGHT,
    DEFAULT_XDP_MODE, MAGLEV_SLOTS_PER_REAL_SERVER, MAX_FLOW_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE,
    MAX_WEIGHT, MIN_MAGLEV_TABLE_SIZE,
};
use crate::maglev::is_prime;

type Result<T> = std::result::Result<T, ConfigError>;

/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

pub(super) fn validate(raw: RawConfig, src: &Source<'_>) -> Result<Config> {
    // A VRRP-only node (keepalived used for VRRP alone, seed 003) loads no
    // XDP program, so it needs no interfaces for one.
    let vrrp_only = raw.virtual_server.is_empty() && !raw.vrrp_instance.is_empty();
    let (agent, mut sources) = agent(raw.agent, vrrp_only, src)?;

    let mut virtual_servers = Vec::with_capacity(raw.virtual_server.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut endpoints: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
    // The reverse-NAT ownership rule (see `reverse_nat`).
    let mut nat_owners: ReverseNatOwners<usize> = ReverseNatOwners::default();

    for (i, vs) in raw.virtual_server.into_iter().enumerate() {
        let path = format!("virtual_server[{i}]");
        let span = vs.span();
        let (vs, at) = virtual_server(vs.into_inner(), span.clone(), &path, src)?;

        if let Some(first) = names.insert(vs.name.clone(), i) {
            return Err(src.field_error(
                at.name,
                &format!("{path}.name"),
                format!(
                    "name `{}` is already used by virtual_server[{first}]; \
                     give every virtual server its own name",
                    vs.name
                ),
            ));
        }
        if let Some(first) = endpoints.insert((vs.address, vs.port, vs.protocol), i) {
            return Err(src.field_error(
                at.address.clone(),
                &format!("{path}.address"),
                format!(
                    "duplicate service: {} port {} {} is already virtual_server[{first}]; \
                     one address, port and protocol can be one service only",
                    vs.address,
                    vs.port,
                    vs.protocol.name()
                ),
            ));
        }
        if vs.forwarding == Forwarding::Nat {
            let name_of = |other: usize| -> &str {
                virtual_servers
                    .get(other)
                    .map_or(vs.name.as_str(), |o: &VirtualServer| o.name.as_str())
            };
            for (j, rs) in vs.real_servers.iter().enumerate() {
                let addr = SocketAddr::new(rs.address, rs.port);
                if let Err(other) = nat_owners.claim(addr, vs.protocol, i, Claim::RealServer) {
                    return Err(src.field_error(
                        at.real_servers[j].clone(),
                        &format!("{path}.real_server[{j}]"),
                        format!(
                            "real server {} is already in NAT virtual_server[{other}] \
                             (`{}`): replies from it could not be told apart; \
                             use another port on the real server for this service",
                            endpoint(rs.address, rs.port, vs.protocol),
                            name_of(other)
                        ),
                    ));
                }
            }
            if let (Some(sorry), Some(span)) = (vs.sorry_server, at.sorry_server.clone()) {
                if let Err(other) = nat_owners.claim(sorry, vs.protocol, i, Claim::SorryServer) {
                    return Err(src.field_error(
                        span,
                        &format!("{path}.sorry_server"),
                        format!(
                            "sorry server {} is already in NAT virtual_server[{other}] \
                             (`{}`): replies from it could not be told apart; \
                             give each NAT service's sorry server its own port",
                            endpoint(sorry.ip(), sorry.port(), vs.protocol),
                            name_of(other)
                        ),
                    ));
                }
            }
        }
        virtual_servers.push(vs);
    }

    let vrrp = validate_vrrp::vrrp(
        raw.vrrp_instance,
        raw.vrrp_sync_group,
        &virtual_servers,
        src,
    )?;
    sources.vrrp_interfaces = vrrp.interface_locations;
    let announce = super::announce::announce(raw.announce, &virtual_servers, src)?;

    Ok(Config {
        agent,
        virtual_servers,
        vrrp_instances: vrrp.instances,
        vrrp_sync_groups: vrrp.sync_groups,
        announce,
        sources,
    })
}

fn default_agent() -> AgentConfig {
    AgentConfig {
        interfaces: Vec::new(),
        xdp_mode: DEFAULT_XDP_MODE,
        flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
        control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        metrics_listen: None,
        control_group: None,
        ebpf_log: DEFAULT_EBPF_LOG,
    }
}

/// `vrrp_only`: the config has VRRP instances and no virtual servers, so
/// `[agent]` and its `interfaces` may be left out. One function per key
/// below.
fn agent(
    raw: Option<Spanned<RawAgent>>,
    vrrp_only: bool,
    src: &Source<'_>,
) -> Result<(AgentConfig, SourceMap)> {
    let Some(raw) = raw else {
        if vrrp_only {
            return Ok((default_agent(), SourceMap::default()));
        }
        return Err(src.field_error(
            0..0,
            "agent.interfaces",
            "no [agent] table: add `[agent]` with `interfaces = [\"eth0\"]` \
             naming the interfaces XDP attaches to",
        ));
    };
    let table_span = raw.span();
    let raw = raw.into_inner();
    let (interfaces, interface_locations) = interfaces(raw.interfaces, table_span, vrrp_only, src)?;
    Ok((
        AgentConfig {
            interfaces,
            xdp_mode: xdp_mode(raw.xdp_mode, src)?,
            flow_table_size: flow_table_size(raw.flow_table_size, src)?,
            control_socket: control_socket(raw.control_socket, src)?,
            metrics_listen: metrics_listen(raw.metrics_listen, src)?,
            control_group: control_group(raw.control_group, src)?,
            ebpf_log: ebpf_log(raw.ebpf_log, src)?,
        },
        SourceMap {
            interfaces: interface_locations,
            ..SourceMap::default()
        },
    ))
}

fn xdp_mode(raw: Option<Spanned<String>>, src: &Source<'_>) -> Result<XdpMode> {
    let Some(v) = raw else {
        return Ok(DEFAULT_XDP_MODE);
    };
    match v.get_ref().as_str() {
        "auto" => Ok(XdpMode::Auto),
        "native" => Ok(XdpMode::Native),
        "generic" => Ok(XdpMode::Generic),
        other => Err(src.field_error(
            v.span(),
            "agent.xdp_mode",
            format!(
                "`{other}` is not an XDP mode: use \"auto\" (native, falling back \
                 to generic), \"native\" (driver) or \"generic\" (skb)"
            ),
        )),
    }
}

fn flow_table_size(raw: Option<Spanned<i64>>, src: &Source<'_>) -> Result<u32> {
    let Some(v) = raw else {
        return Ok(DEFAULT_FLOW_TABLE_SIZE);
    };
    let n = *v.get_ref();
    if !(1..=i64::from(MAX_FLOW_TABLE_SIZE)).contains(&n) {
        return Err(src.field_error(
            v.span(),
            "agent.flow_table_size",
            format!(
                "{n} is out of range: the flow table holds 1 to {MAX_FLOW_TABLE_SIZE} \
                 flows (default {DEFAULT_FLOW_TABLE_SIZE})"
            ),
        ));
    }
    Ok(n as u32)
}

fn control_socket(raw: Option<Spanned<String>>, src: &Source<'_>) -> Result<PathBuf> {
    let Some(v) = raw else {
        return Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET));
    };
    let p = PathBuf::from(v.get_ref());
    if !p.is_absolute() || v.get_ref().ends_with('/') {
        return Err(src.field_error(
            v.span(),
            "agent.control_socket",
            format!(
                "`{}` is not an absolute file path: use a path such as \"{DEFAULT_CONTROL_SOCKET}\"",
                v.get_ref()
            ),
        ));
    }
    Ok(p)
}

fn metrics_listen(raw: Option<Spanned<String>>, src: &Source<'_>) -> Result<Option<SocketAddr>> {
    let Some(v) = raw else {
        return Ok(None);
    };
    let addr = parse_socket_addr(v.get_ref()).map_err(|why| {
        src.field_error(
            v.span(),
            "agent.metrics_listen",
            format!("{why}, e.g. \"127.0.0.1:9469\""),
        )
    })?;
    Ok(Some(addr))
}

fn control_group(raw: Option<Spanned<String>>, src: &Source<'_>) -> Result<Option<String>> {
    let Some(v) = raw else {
        return Ok(None);
    };
    let name = v.get_ref();
    if let Some(why) = bad_group_name(name) {
        return Err(src.field_error(
            v.span(),
            "agent.control_group",
            format!("`{name}` {why}, e.g. \"lb\" (a group from /etc/group)"),
        ));
    }
    Ok(Some(name.clone()))
}

fn ebpf_log(raw: Option<Spanned<String>>, src: &Source<'_>) -> Result<EbpfLog> {
    let Some(v) = raw else {
        return Ok(DEFAULT_EBPF_LOG);
    };
    v.get_ref().parse().map_err(|()| {
        src.field_error(
            v.span(),
            "agent.ebpf_log",
            format!(
                "`{}` is not a data-plane log level: use \"off\" (the default), \"info\" \
                 (packets dropped for lack of a real server, flows moved off a real server that \
                 went down or was removed) or \"debug\" (also new flows sent to a sorry server \
                 and flows whose address:port moved to another service)",
                v.get_ref()
            ),
        )
    })
}

/// Why `name` cannot be a group name (or gid), if it cannot. Whether the
/// group exists is checked when the agent starts: `lb check` may run on
/// another host.
fn bad_group_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty: name a group");
    }
    if name.len() > 32 {
        return Some("is too long for a group name (at most 32 bytes)");
    }
    if name
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b':' || b == b'/')
    {
        return Some("is not a group name (no spaces, `:` or `/`)");
    }
    None
}

/// `agent.interfaces` (`table`: the `[agent]` table, where a missing list
/// is reported): valid names, each once; and where each is written.
fn interfaces(
    raw: Option<Spanned<Vec<Spanned<String>>>>,
    table_span: Range<usize>,
    vrrp_only: bool,
    src: &Source<'_>,
) -> Result<(Vec<String>, Vec<Location>)> {
    let list = match raw {
        Some(list) => list,
        None if vrrp_only => Spanned::new(table_span.clone(), Vec::new()),
        None => {
            return Err(src.field_error(
                table_span,
                "agent.interfaces",
                "missing: list the interfaces XDP attaches to, client side first, \
                 e.g. `interfaces = [\"eth0\", \"eth1\"]`",
            ));
        }
    };
    let list_span = list.span();
    let list = list.into_inner();
    if list.is_empty() && !vrrp_only {
        return Err(src.field_error(
            list_span,
            "agent.interfaces",
            "no interfaces: name at least one interface XDP attaches to, \
             e.g. `interfaces = [\"eth0\"]`",
        ));
    }
    let mut interfaces = Vec::with_capacity(list.len());
    let mut interface_locations = Vec::with_capacity(list.len());
    for (i, name) in list.into_iter().enumerate() {
        let field = format!("agent.interfaces[{i}]");
        let span = name.span();
        let name = name.into_inner();
        if let Some(why) = bad_ifname(&name) {
            return Err(src.field_error(span, &field, format!("`{name}` {why}")));
        }
        if interfaces.contains(&name) {
            return Err(src.field_error(
                span,
                &field,
                format!("interface `{name}` is listed twice; list each interface once"),
            ));
        }
        interfaces.push(name);
        interface_locations.push(Location::new(src, &span));
    }
    Ok((interfaces, interface_locations))
}

/// Why `name` cannot be a Linux interface name, if it cannot.
pub(super) fn bad_ifname(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty: name an interface such as \"eth0\"".into());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Some(format!(
            "is too long for an interface name (at most {MAX_IFNAME_LEN} bytes)"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
    {
        return Some("is not a valid interface name (no '/', ':' or spaces)".into());
    }
    None
}

/// Where a virtual server's parts are, for the checks across services.
struct Spans {
    name: Range<usize>,
    address: Range<usize>,
    real_servers: Vec<Range<usize>>,
    sorry_server: Option<Range<usize>>,
}

fn virtual_server(
    raw: RawVirtualServer,
    table: Range<usize>,
    path: &str,
    src: &Source<'_>,
) -> Result<(VirtualServer, Spans)> {
    let missing = |key: &str, example: &str| {
        src.field_error(
            table.clone(),
            &format!("{path}.{key}"),
            format!("missing: every virtual server needs `{key}`, e.g. `{key} = {example}`"),
        )
    };

    let name = raw.name.ok_or_else(|| missing("name", "\"web\""))?;
    if name.get_ref().trim().is_empty() {
        return Err(src.field_error(
            name.span(),
            &format!("{path}.name"),
            "empty name: give the virtual server a name, used in `lb status` and metrics",
        ));
    }
    if name.get_ref().chars().any(char::is_control) {
        return Err(src.field_error(
            name.span(),
            &format!("{path}.name"),
            "the name contains control characters: use printable text",
        ));
    }
    let name_span = name.span();
    let name = name.into_inner();

    let address = raw
        .address
        .ok_or_else(|| missing("address", "\"192.168.253.120\""))?;
    let address_span = address.span();
    let address = ip_addr(&address, &format!("{path}.address"), "VIP", src)?;

    let port = raw.port.ok_or_else(|| missing("port", "80"))?;
    let port = port_number(&port, &format!("{path}.port"), src)?;

    let protocol = raw.protocol.ok_or_else(|| missing("protocol", "\"tcp\""))?;
    let protocol = protocol.get_ref().parse::<Protocol>().map_err(|e| {
        src.field_error(
            protocol.span(),
            &format!("{path}.protocol"),
            format!(
                "`{}` is not a supported protocol: use \"tcp\" or \"udp\"",
                e.word
            ),
        )
    })?;

    let forwarding = raw
        .forwarding
        .ok_or_else(|| missing("forwarding", "\"nat\""))?;
    let forwarding = forwarding_method(&forwarding, path, src)?;

    let scheduler = scheduler(raw.scheduler.as_ref(), path, src)?;

    // The service's check on its own first: its errors are reported once,
    // not once per real server inheriting it.
    let hc_path = format!("{path}.health_check");
    let hc_span = raw.health_check.as_ref().map(Spanned::span);
    let service_layer = raw
        .health_check
        .as_ref()
        .zip(hc_span.as_ref())
        .map(|(h, span)| Layer {
            raw: h.get_ref(),
            path: &hc_path,
            span,
        });
    let health_check = health::health_check(service_layer.as_slice(), src)?;

    let table_size = raw.maglev_table_size;
    // Without the key there is nothing closer to point at than the table.
    let table_size_span = table_size.as_ref().map_or(table.clone(), |v| v.span());
    let (real_servers, real_server_spans) = real_servers(
        raw.real_server,
        path,
        (address, port, forwarding),
        service_layer,
        src,
    )?;

    let maglev_table_size =
        maglev_table_size(table_size, table_size_span, real_servers.len(), path, src)?;

    let sorry_span = raw.sorry_server.as_ref().map(|v| v.span());
    let sorry_server = match raw.sorry_server {
        None => None,
        Some(v) => Some(sorry_server(&v, path, (address, port, forwarding), src)?),
    };
    Ok((
        VirtualServer {
            name,
            address,
            port,
            protocol,
            forwarding,
            scheduler,
            maglev_table_size,
            sorry_server,
            health_check,
            real_servers,
        },
        Spans {
            name: name_span,
            address: address_span,
            real_servers: real_server_spans,
            sorry_server: sorry_span,
        },
    ))
}

/// The real servers of the service at `path` (VIP, port and forwarding as
/// given), each listed once; and where each table is written.
fn real_servers(
    raw: Vec<Spanned<RawRealServer>>,
    path: &str,
    (address, port, forwarding): (IpAddr, u16, Forwarding),
    service_layer: Option<Layer<'_>>,
    src: &Source<'_>,
) -> Result<(Vec<RealServer>, Vec<Range<usize>>)> {
    let mut real_server_spans = Vec::with_capacity(raw.len());

    let mut real_servers = Vec::with_capacity(raw.len());
    // Index of each (address, port) seen: a scan of the list per real
    // server made 100,000 of them take 13 s.
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::with_capacity(raw.len());
    for (j, rs) in raw.into_iter().enumerate() {
        let rs_path = format!("{path}.real_server[{j}]");
        let rs_span = rs.span();
        let rs = real_server(
            rs.into_inner(),
            rs_span.clone(),
            &rs_path,
            (address, port, forwarding),
            service_layer,
            src,
        )?;
        if let Some(k) = seen.insert((rs.address, rs.port), j) {
            return Err(src.field_error(
                rs_span,
                &rs_path,
                format!(
                    "real server {} is already {path}.real_server[{k}]: list each real \
                     server once (use `weight` to give it a bigger share)",
                    SocketAddr::new(rs.address, rs.port)
                ),
            ));
        }
        real_servers.push(rs);
        real_server_spans.push(rs_span);
    }
    Ok((real_servers, real_server_spans))
}

/// `sorry_server` of the service at `path`: an address with a port, of the
/// VIP's family, not the service itself, and on the VIP's port under DR.
fn sorry_server(
    v: &Spanned<String>,
    path: &str,
    (address, port, forwarding): (IpAddr, u16, Forwarding),
    src: &Source<'_>,
) -> Result<SocketAddr> {
    let field = format!("{path}.sorry_server");
    let addr = parse_socket_addr(v.get_ref()).map_err(|why| {
        src.field_error(v.span(), &field, format!("{why}, e.g. \"172.16.14.99:80\""))
    })?;
    if let Some(why) = unusable_host(addr.ip()) {
        return Err(src.field_error(v.span(), &field, format!("{} {why}", addr.ip())));
    }
    if addr.is_ipv4() != address.is_ipv4() {
        return Err(src.field_error(
            v.span(),
            &field,
            family_mismatch("sorry server", addr.ip(), address),
        ));
    }
    if addr.ip() == address && addr.port() == port {
        return Err(src.field_error(
            v.span(),
            &field,
            format!(
                "the sorry server {addr} is the service's own VIP and port: \
                 traffic would loop; name a server behind the balancer"
            ),
        ));
    }
    if forwarding == Forwarding::Dr && addr.port() != port {
        return Err(src.field_error(
            v.span(),
            &field,
            format!(
                "forwarding = \"dr\" delivers packets unchanged, so the sorry server \
                 must listen on the VIP's port {port}: use \"{}\"",
                SocketAddr::new(addr.ip(), port)
            ),
        ));
    }
    Ok(addr)
}

/// `maglev_table_size` of the service at `path` (`span`: the key, or the
/// table without it), big enough for `real_servers`.
fn maglev_table_size(
    table_size: Option<Spanned<i64>>,
    table_size_span: Range<usize>,
    real_servers: usize,
    path: &str,
    src: &Source<'_>,
) -> Result<u32> {
    let maglev_table_size = match table_size {
        None => DEFAULT_MAGLEV_TABLE_SIZE,
        Some(v) => maglev_size(&v, &format!("{path}.maglev_table_size"), src)?,
    };
    let needed = (real_servers as u64) * u64::from(MAGLEV_SLOTS_PER_REAL_SERVER);
    if u64::from(maglev_table_size) < needed {
        let fix = if needed <= u64::from(MAX_MAGLEV_TABLE_SIZE) {
            format!(
                "set `maglev_table_size` to a prime of at least {needed}, e.g. {}",
                next_prime(needed as u32)
            )
        } else {
            "split the real servers over several services".to_owned()
        };
        return Err(src.field_error(
            table_size_span,
            &format!("{path}.maglev_table_size"),
            format!(
                "a Maglev table of {maglev_table_size} slots is too small for {} real \
                 servers (needs at least {MAGLEV_SLOTS_PER_REAL_SERVER} slots each to \
                 keep shares even): {fix}",
                real_servers
            ),
        ));
    }
    Ok(maglev_table_size)
}

/// `forwarding` of the service at `path`.
fn forwarding_method(
    forwarding: &Spanned<String>,
    path: &str,
    src: &Source<'_>,
) -> Result<Forwarding> {
    forwarding.get_ref().parse::<Forwarding>().map_err(|e| {
        let other = e.word.as_str();
        let tunnel = if matches!(other, "tun" | "tunnel" | "ipip" | "gre") {
            " (tunnel mode is not supported)"
        } else {
            ""
        };
        src.field_error(
            forwarding.span(),
            &format!("{path}.forwarding"),
            format!(
                "`{other}` is not a forwarding method{tunnel}: use \"nat\" \
                 (ipvsadm -m, masquerading) or \"dr\" (ipvsadm -g, direct routing)"
            ),
        )
    })
}

/// `scheduler` of the service at `path` (default maglev).
fn scheduler(
    scheduler: Option<&Spanned<String>>,
    path: &str,
    src: &Source<'_>,
) -> Result<Scheduler> {
    let Some(v) = scheduler else {
        return Ok(DEFAULT_SCHEDULER);
    };
    v.get_ref().parse::<Scheduler>().map_err(|e| {
        src.field_error(
            v.span(),
            &format!("{path}.scheduler"),
            format!(
                "`{}` is not a scheduler lb has: use \"maglev\" (consistent \
                 hashing that honours weights, like IPVS `mh`)",
                e.word
            ),
        )
    })
}

fn real_server(
    raw: RawRealServer,
    table: Range<usize>,
    path: &str,
    (vip, vip_port, forwarding): (IpAddr, u16, Forwarding),
    service_check: Option<Layer<'_>>,
    src: &Source<'_>,
) -> Result<RealServer> {
    let Some(address) = raw.address else {
        return Err(src.field_error(
            table,
            &format!("{path}.address"),
            "missing: every real server needs `address`, e.g. `address = \"172.16.14.121\"`",
        ));
    };
    let field = format!("{path}.address");
    let addr = ip_addr(&address, &field, "real server", src)?;
    if addr.is_ipv4() != vip.is_ipv4() {
        return Err(src.field_error(
            address.span(),
            &field,
            family_mismatch("real server", addr, vip),
        ));
    }
    if addr == vip {
        return Err(src.field_error(
            address.span(),
            &field,
            "the real server's address is the VIP itself: name the real server's own address",
        ));
    }

    let port = match raw.port {
        // DR cannot change the port, NAT defaults to the VIP's (ipvsadm
        // does the same when -r has no port).
        None => vip_port,
        Some(p) => {
            let n = port_number(&p, &format!("{path}.port"), src)?;
            if forwarding == Forwarding::Dr && n != vip_port {
                return Err(src.field_error(
                    p.span(),
                    &format!("{path}.port"),
                    format!(
                        "port {n} differs from the VIP's port {vip_port}, but forwarding = \"dr\" \
                         delivers packets unchanged: remove `port` or set it to {vip_port} \
                         (use forwarding = \"nat\" to map to another port)"
                    ),
                ));
            }
            n
        }
    };

    let weight = match raw.weight {
        None => DEFAULT_WEIGHT,
        Some(w) => {
            let n = *w.get_ref();
            if !(0..=i64::from(MAX_WEIGHT)).contains(&n) {
                return Err(src.field_error(
                    w.span(),
                    &format!("{path}.weight"),
                    format!(
                        "weight {n} is out of range: use 0 to {MAX_WEIGHT} (0 = drained: \
                         no new flows, existing ones stay)"
                    ),
                ));
            }
            n as u32
        }
    };

    let hc_path = format!("{path}.health_check");
    let hc_span = raw.health_check.as_ref().map(Spanned::span);
    let own = raw
        .health_check
        .as_ref()
        .zip(hc_span.as_ref())
        .map(|(h, span)| Layer {
            raw: h.get_ref(),
            path: &hc_path,
            span,
        });
    let layers: Vec<Layer<'_>> = own.into_iter().chain(service_check).collect();
    let health_check = health::health_check(&layers, src)?;
    health::tls_reaches(&health_check, addr, address.span(), &field, src)?;

    Ok(RealServer {
        address: addr,
        port,
        weight,
        health_check,
    })
}

fn ip_addr(v: &Spanned<String>, field: &str, what: &str, src: &Source<'_>) -> Result<IpAddr> {
    let text = v.get_ref();
    let addr: IpAddr = text.trim().parse().map_err(|_| {
        let hint = if text.contains(':') && text.contains('.') || text.contains('/') {
            " (give the address alone: the port and prefix length are separate keys)"
        } else {
            ""
        };
        src.field_error(
            v.span(),
            field,
            format!("`{text}` is not an IPv4 or IPv6 address{hint}: write the {what} address, e.g. \"192.168.253.120\" or \"2001:db8::1\""),
        )
    })?;
    if let Some(why) = unusable_host(addr) {
        return Err(src.field_error(v.span(), field, format!("{addr} {why}")));
    }
    Ok(addr)
}

/// Why `addr` cannot be a service or server address, if it cannot.
pub(super) fn unusable_host(addr: IpAddr) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("is the unspecified address: name a real host address")
    } else if addr.is_multicast() {
        Some("is a multicast address: name a unicast host address")
    } else if addr == IpAddr::from([255, 255, 255, 255]) {
        Some("is the broadcast address: name a unicast host address")
    } else {
        None
    }
}

fn parse_socket_addr(text: &str) -> std::result::Result<SocketAddr, String> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        format!("`{text}` is not an address with a port (\"IPv4:port\" or \"[IPv6]:port\")")
    })?;
    if addr.port() == 0 {
        return Err(format!("`{text}` has port 0: name a port from 1 to 65535"));
    }
    Ok(addr)
}

fn port_number(v: &Spanned<i64>, field: &str, src: &Source<'_>) -> Result<u16> {
    let n = *v.get_ref();
    if !(1..=65535).contains(&n) {
        return Err(src.field_error(
            v.span(),
            field,
            format!("port {n} is out of range: use 1 to 65535"),
        ));
    }
    Ok(n as u16)
}

fn maglev_size(v: &Spanned<i64>, field: &str, src: &Source<'_>) -> Result<u32> {
    let n = *v.get_ref();
    if !(i64::from(MIN_MAGLEV_TABLE_SIZE)..=i64::from(MAX_MAGLEV_TABLE_SIZE)).contains(&n) {
        return Err(src.field_error(
            v.span(),
            field,
            format!(
                "{n} is out of range: use a prime from {MIN_MAGLEV_TABLE_SIZE} to \
                 {MAX_MAGLEV_TABLE_SIZE} (default {DEFAULT_MAGLEV_TABLE_SIZE})"
            ),
        ));
    }
    let n = n as u32;
    if !is_prime(n) {
        let below = prev_prime(n).filter(|p| *p >= MIN_MAGLEV_TABLE_SIZE);
        let above = next_prime(n);
        let choice = match below {
            Some(b) => format!("{b} or {above}"),
            None => above.to_string(),
        };
        return Err(src.field_error(
            v.span(),
            field,
            format!(
                "{n} is not prime: Maglev needs a prime table size so every server's \
                 permutation reaches every slot; the nearest primes are {choice}"
            ),
        ));
    }
    Ok(n)
}

fn next_prime(mut n: u32) -> u32 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

fn prev_prime(mut n: u32) -> Option<u32> {
    while n >= 2 {
        if is_prime(n) {
            return Some(n);
        }
        n -= 1;
    }
    None
}

fn family_mismatch(what: &str, addr: IpAddr, vip: IpAddr) -> String {
    let fam = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
    format!(
        "{what} {addr} is {} but the VIP {vip} is {}: a virtual server and its servers \
         must use one address family (define a separate virtual server per family)",
        fam(addr),
        fam(vip)
    )
}

fn endpoint(addr: IpAddr, port: u16, p: Protocol) -> String {
    format!("{}/{p}", SocketAddr::new(addr, port))
}
