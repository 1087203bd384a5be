//! Keeping the neighbour (ARP/ND) entries of DR real servers resolved.
//!
//! In DR mode the XDP program only rewrites MAC addresses, taking them from
//! `bpf_fib_lookup`. When the kernel has no valid neighbour entry for the
//! real server, the program must drop the packet (handing it to the kernel
//! would deliver the VIP packet locally), so the agent makes sure those
//! entries exist before traffic needs them and stay valid afterwards:
//!
//! - every [`PERIOD`], for each DR real server, it sends one 1-byte UDP
//!   datagram to port 9 (discard) from a socket connected to that address.
//!   Sending makes the kernel resolve the neighbour (ARP for IPv4, ND for
//!   IPv6) or, for an existing entry, confirm it, so it never ages out of
//!   the table. The real server at most answers with an ICMP port
//!   unreachable.
//! - shortly after, it reads the neighbour table (`ip -j neigh show`; for
//!   IPv4 `/proc/net/arp` when `ip` is missing) and logs each real server's
//!   resolution once per change, so an unreachable real server shows up in
//!   the log instead of only in the `neigh_miss` counter;
//! - and copies each resolved entry's device and MAC into `DR_NEXT_HOPS`
//!   ([`super::dr_next_hops`]), which the program uses when forwarding is
//!   off on the balancer (the kernel's FIB lookup then refuses to answer).
//!
//! Everything runs in one tokio task with timeouts on each step: a real
//! server that does not answer never blocks the agent.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::{net::UdpSocket, sync::watch};

use super::dr_next_hops::{self, DrNextHops, NeighLink};

/// How often the neighbours are refreshed. Well below the kernel's
/// `base_reachable_time` (30 s) and `gc_stale_time` (60 s).
pub const PERIOD: Duration = Duration::from_secs(5);
/// Time given to ARP/ND between the datagrams and reading the table.
const SETTLE: Duration = Duration::from_millis(500);
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
const DISCARD_PORT: u16 = 9;

/// Resolution of one neighbour as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeighState {
    /// Usable by `bpf_fib_lookup` (REACHABLE, STALE, DELAY, PROBE,
    /// PERMANENT, NOARP).
    Resolved(String),
    /// Present but not usable (INCOMPLETE, FAILED) or absent.
    Unresolved(String),
}

/// The neighbour table: each address's state, and where resolved, its
/// device and MAC.
#[derive(Debug, Default)]
struct Table {
    states: HashMap<IpAddr, NeighState>,
    links: HashMap<IpAddr, NeighLink>,
}

/// Run until `targets` is closed: keep every address in it resolved, and
/// (with `next_hops`) mirror the resolved entries into `DR_NEXT_HOPS`.
pub async fn keep_resolved(
    mut targets: watch::Receiver<Vec<IpAddr>>,
    mut next_hops: Option<DrNextHops>,
) {
    let mut known: HashMap<IpAddr, NeighState> = HashMap::new();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = targets.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let list = targets.borrow_and_update().clone();
        if list.is_empty() {
            known.clear();
            write_next_hops(&mut next_hops, &[], &Table::default());
            continue;
        }
        for addr in &list {
            if let Err(e) = poke(*addr).await {
                tracing::debug!("neighbour warm-up datagram to {addr}: {e}");
            }
        }
        tokio::time::sleep(SETTLE).await;
        let table = match tokio::time::timeout(STEP_TIMEOUT, read_table()).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::debug!("reading the neighbour table: {e}");
                continue;
            }
            Err(_) => {
                tracing::debug!("reading the neighbour table timed out");
                continue;
            }
        };
        write_next_hops(&mut next_hops, &list, &table);
        known.retain(|a, _| list.contains(a));
        for addr in &list {
            let state = table
                .states
                .get(addr)
                .cloned()
                .unwrap_or_else(|| NeighState::Unresolved("absent".into()));
            if known.get(addr) != Some(&state) {
                match &state {
                    NeighState::Resolved(s) => {
                        tracing::info!("DR real server {addr}: neighbour entry resolved ({s})")
                    }
                    NeighState::Unresolved(s) => tracing::warn!(
                        "DR real server {addr}: neighbour entry not resolved ({s}); the balancer \
                         drops its packets (event neigh_miss) until it answers ARP/ND on the \
                         balancer's segment"
                    ),
                }
                known.insert(*addr, state);
            }
        }
    }
}

fn write_next_hops(next_hops: &mut Option<DrNextHops>, list: &[IpAddr], table: &Table) {
    let Some(next_hops) = next_hops else {
        return;
    };
    let want = dr_next_hops::desired(list, &table.links, &dr_next_hops::device);
    match next_hops.apply(want) {
        Ok(0) => {}
        Ok(n) => tracing::debug!("{n} DR next hops written"),
        Err(e) => tracing::error!("writing the DR next hops: {e}"),
    }
}

/// One datagram to the discard port: enough for the kernel to resolve or
/// confirm the neighbour.
async fn poke(addr: IpAddr) -> std::io::Result<()> {
    let local: SocketAddr = match addr {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect((addr, DISCARD_PORT)).await?;
    match tokio::time::timeout(STEP_TIMEOUT, socket.send(&[0])).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "send timed out",
        )),
    }
}

async fn read_table() -> std::io::Result<Table> {
    match tokio::process::Command::new("ip")
        .args(["-j", "neigh", "show"])
        .kill_on_drop(true)
        .output()
        .await
    {
        Ok(out) if out.status.success() => Ok(parse_ip_json(&out.stdout)),
        _ => Ok(parse_proc_arp(
            &tokio::fs::read_to_string("/proc/net/arp").await?,
        )),
    }
}

fn classify(states: &[&str]) -> NeighState {
    const VALID: [&str; 6] = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"];
    let label = states.join(",");
    if states.iter().any(|s| VALID.contains(s)) {
        NeighState::Resolved(label)
    } else {
        NeighState::Unresolved(label)
    }
}

/// `ip -j neigh show`: `[{"dst":"10.0.0.2","dev":"eth1","lladdr":"..",
/// "state":["REACHABLE"]}, ...]`.
fn parse_ip_json(json: &[u8]) -> Table {
    let mut table = Table::default();
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_slice(json) else {
        return table;
    };
    for e in entries {
        let Some(dst) = e["dst"].as_str().and_then(|d| d.parse::<IpAddr>().ok()) else {
            continue;
        };
        let states: Vec<&str> = e["state"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let state = classify(&states);
        // The same address on two interfaces: one usable entry is enough.
        if !matches!(table.states.get(&dst), Some(NeighState::Resolved(_))) {
            let link = e["dev"]
                .as_str()
                .zip(e["lladdr"].as_str().and_then(dr_next_hops::parse_mac));
            if let (NeighState::Resolved(_), Some((dev, lladdr))) = (&state, link) {
                let dev = dev.to_string();
                table.links.insert(dst, NeighLink { dev, lladdr });
            }
            table.states.insert(dst, state);
        }
    }
    table
}

/// `/proc/net/arp` (IPv4 only): flags 0x2 (ATF_COM) = resolved.
fn parse_proc_arp(text: &str) -> Table {
    let mut table = Table::default();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(ip), Some(flags)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let (Ok(ip), Ok(flags)) = (
            ip.parse::<IpAddr>(),
            u32::from_str_radix(flags.trim_start_matches("0x"), 16),
        ) else {
            continue;
        };
        let state = if flags & 0x2 != 0 {
            NeighState::Resolved("complete".into())
        } else {
            NeighState::Unresolved("incomplete".into())
        };
        let mac = fields.get(3).and_then(|m| dr_next_hops::parse_mac(m));
        if let (NeighState::Resolved(_), Some(lladdr), Some(dev)) = (&state, mac, fields.get(5)) {
            let dev = dev.to_string();
            table.links.insert(ip, NeighLink { dev, lladdr });
        }
        table.states.insert(ip, state);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_json_states_are_classified() {
        let json = br#"[
            {"dst":"10.0.0.2","dev":"eth1","lladdr":"02:00:00:00:00:02","state":["REACHABLE"]},
            {"dst":"10.0.0.3","dev":"eth1","state":["FAILED"]},
            {"dst":"10.0.0.4","dev":"eth1","lladdr":"02:00:00:00:00:04","state":["STALE"]},
            {"dst":"fd00::5","dev":"eth1","state":["INCOMPLETE"]}
        ]"#;
        let t = parse_ip_json(json);
        let at = |a: &str| t.states[&a.parse::<IpAddr>().unwrap()].clone();
        assert!(matches!(at("10.0.0.2"), NeighState::Resolved(_)));
        assert!(matches!(at("10.0.0.3"), NeighState::Unresolved(_)));
        assert!(matches!(at("10.0.0.4"), NeighState::Resolved(_)));
        assert!(matches!(at("fd00::5"), NeighState::Unresolved(_)));
        // Resolved entries keep their device and MAC (the DR next hops).
        let link = |a: &str| t.links.get(&a.parse::<IpAddr>().unwrap()).cloned();
        assert_eq!(
            link("10.0.0.4"),
            Some(NeighLink {
                dev: "eth1".into(),
                lladdr: [2, 0, 0, 0, 0, 4]
            })
        );
        assert_eq!(link("10.0.0.3"), None);
    }

    #[test]
    fn proc_arp_flags_are_read() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.0.0.2         0x1         0x2         02:00:00:00:00:02     *        eth1\n\
                    10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        eth1\n";
        let t = parse_proc_arp(text);
        assert_eq!(
            t.links[&"10.0.0.2".parse::<IpAddr>().unwrap()],
            NeighLink {
                dev: "eth1".into(),
                lladdr: [2, 0, 0, 0, 0, 2]
            }
        );
        assert!(matches!(
            t.states[&"10.0.0.2".parse::<IpAddr>().unwrap()],
            NeighState::Resolved(_)
        ));
        assert!(matches!(
            t.states[&"10.0.0.3".parse::<IpAddr>().unwrap()],
            NeighState::Unresolved(_)
        ));
    }
}
