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
//! - shortly after, it reads the neighbour table (through [`Netlink`]) and
//!   logs each real server's resolution once per change, so an unreachable
//!   real server shows up in the log instead of only in the `neigh_miss`
//!   counter;
//! - and copies each usable entry's device and MAC into `DR_NEXT_HOPS`
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

use super::dr_next_hops::{self, DrNextHops};
use crate::netlink::{Neighbour, Netlink};

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

/// Run until `targets` is closed: keep every address in it resolved, and
/// (with `next_hops`) mirror the usable entries into `DR_NEXT_HOPS`.
pub async fn keep_resolved(
    mut targets: watch::Receiver<Vec<IpAddr>>,
    mut next_hops: Option<DrNextHops>,
) {
    let mut known: HashMap<IpAddr, NeighState> = HashMap::new();
    let netlink = match Netlink::new() {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(
                "DR neighbour resolution will not be logged, nor DR next hops written (DR \
                 then needs forwarding on): {e}"
            );
            None
        }
    };
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
            if let (Some(netlink), Some(next_hops)) = (&netlink, &mut next_hops) {
                write_next_hops(netlink, next_hops, &[], &[]).await;
            }
            continue;
        }
        for addr in &list {
            if let Err(e) = poke(*addr).await {
                tracing::debug!("neighbour warm-up datagram to {addr}: {e}");
            }
        }
        tokio::time::sleep(SETTLE).await;
        let Some(netlink) = &netlink else { continue };
        let table = match tokio::time::timeout(STEP_TIMEOUT, netlink.neighbours()).await {
            Ok(Ok(t)) => {
                if let Some(next_hops) = &mut next_hops {
                    write_next_hops(netlink, next_hops, &list, &t).await;
                }
                classify_table(&t)
            }
            Ok(Err(e)) => {
                tracing::debug!("reading the neighbour table: {e}");
                continue;
            }
            Err(_) => {
                tracing::debug!("reading the neighbour table timed out");
                continue;
            }
        };
        known.retain(|a, _| list.contains(a));
        for addr in &list {
            let state = table
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

/// `DR_NEXT_HOPS` from the neighbour entries of the DR real servers `list`,
/// with the MAC of each device they are on.
async fn write_next_hops(
    netlink: &Netlink,
    next_hops: &mut DrNextHops,
    list: &[IpAddr],
    neighbours: &[Neighbour],
) {
    let mut macs = HashMap::new();
    for n in neighbours.iter().filter(|n| list.contains(&n.ip)) {
        if let std::collections::hash_map::Entry::Vacant(slot) = macs.entry(n.ifindex) {
            let link = tokio::time::timeout(STEP_TIMEOUT, netlink.link(n.ifindex)).await;
            if let Ok(Ok(link)) = link {
                slot.insert(link.mac);
            }
        }
    }
    let want = dr_next_hops::desired(list, neighbours, &|i| macs.get(&i).copied());
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

/// The state of each address in the table. The same address on two
/// interfaces: one usable entry is enough.
fn classify_table(neighbours: &[Neighbour]) -> HashMap<IpAddr, NeighState> {
    let mut table = HashMap::new();
    for n in neighbours {
        let label = n.state.to_string();
        let state = if n.state.is_usable() {
            NeighState::Resolved(label)
        } else {
            NeighState::Unresolved(label)
        };
        if !matches!(table.get(&n.ip), Some(NeighState::Resolved(_))) {
            table.insert(n.ip, state);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::netlink::NudState;

    fn entry(ip: &str, ifindex: u32, state: NudState) -> Neighbour {
        Neighbour {
            ifindex,
            ip: ip.parse().unwrap(),
            mac: state.is_usable().then_some([2, 0, 0, 0, 0, 2]),
            state,
        }
    }

    #[test]
    fn kernel_states_are_classified() {
        let t = classify_table(&[
            entry("10.0.0.2", 3, NudState::Reachable),
            entry("10.0.0.3", 3, NudState::Failed),
            entry("10.0.0.4", 3, NudState::Stale),
            entry("fd00::5", 3, NudState::Incomplete),
            entry("10.0.0.6", 3, NudState::Permanent),
        ]);
        let at = |a: &str| t[&a.parse::<IpAddr>().unwrap()].clone();
        assert_eq!(at("10.0.0.2"), NeighState::Resolved("REACHABLE".into()));
        assert_eq!(at("10.0.0.3"), NeighState::Unresolved("FAILED".into()));
        assert_eq!(at("10.0.0.4"), NeighState::Resolved("STALE".into()));
        assert_eq!(at("fd00::5"), NeighState::Unresolved("INCOMPLETE".into()));
        assert_eq!(at("10.0.0.6"), NeighState::Resolved("PERMANENT".into()));
    }

    #[test]
    fn one_usable_entry_on_any_interface_is_enough() {
        for order in [[0, 1], [1, 0]] {
            let entries = [
                entry("10.0.0.2", 3, NudState::Failed),
                entry("10.0.0.2", 4, NudState::Reachable),
            ];
            let t = classify_table(&order.map(|i| entries[i].clone()));
            assert!(matches!(
                t[&"10.0.0.2".parse::<IpAddr>().unwrap()],
                NeighState::Resolved(_)
            ));
        }
    }
}
