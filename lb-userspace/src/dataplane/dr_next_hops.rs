//! The DR next-hop map (`DR_NEXT_HOPS`): each DR real server's egress
//! device, that device's MAC and the real server's MAC, as the kernel's
//! neighbour table knows them.
//!
//! The XDP program forwards DR requests with `bpf_fib_lookup`, which the
//! kernel refuses ("forwarding disabled") on a balancer with forwarding
//! off. IPVS DR needs no forwarding (seed 000 never turns it on): a DR real
//! server sits on the balancer's own segment and only its MAC is needed.
//! The agent already keeps those neighbour entries resolved
//! (`neighbour::keep_resolved`); after each read of the table it writes
//! their link-layer addresses here, and the program uses them when the
//! kernel refuses to look up.
//!
//! [`desired`] (pure) turns the table into the map's wanted contents;
//! [`DrNextHops`] owns the map and writes only the difference.

use std::{collections::HashMap, net::IpAddr};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Ebpf,
};
use lb_common::{names, AddrKey, DrNextHop};

use super::{
    keys::{addr_words, family},
    maps::{MapOpenError, MapWriteError},
};
use crate::netlink::Neighbour;

/// What `DR_NEXT_HOPS` should hold for the DR real servers `targets`, from
/// the kernel's neighbour entries and `device_mac` (interface index ->
/// its MAC). A target without a usable entry (or whose device has no MAC
/// any more) gets no entry: the program then drops its packets
/// (`neigh_miss`) rather than hand a VIP packet to the local stack. The
/// same address on two interfaces: the first usable entry.
pub fn desired(
    targets: &[IpAddr],
    neighbours: &[Neighbour],
    device_mac: &dyn Fn(u32) -> Option<[u8; 6]>,
) -> HashMap<AddrKey, DrNextHop> {
    let mut want = HashMap::new();
    for addr in targets {
        let usable = neighbours
            .iter()
            .filter(|n| n.ip == *addr && n.state.is_usable())
            .find_map(|n| Some((n.ifindex, n.mac?, device_mac(n.ifindex)?)));
        if let Some((ifindex, dmac, smac)) = usable {
            want.insert(
                addr_key(*addr),
                DrNextHop {
                    ifindex,
                    smac,
                    dmac,
                },
            );
        }
    }
    want
}

pub fn addr_key(addr: IpAddr) -> AddrKey {
    AddrKey {
        addr: addr_words(addr),
        family: family(addr),
        _pad: [0; 3],
    }
}

/// The agent's handle on `DR_NEXT_HOPS` and what it last wrote there.
pub struct DrNextHops {
    map: BpfHashMap<MapData, AddrKey, DrNextHop>,
    installed: HashMap<AddrKey, DrNextHop>,
}

impl DrNextHops {
    /// Takes the map out of the loaded object. Entries already there (a
    /// pinned map adopted from the previous agent) count as installed, so
    /// they keep forwarding until the first table read says otherwise.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapOpenError> {
        let name = names::DR_NEXT_HOPS;
        let map = ebpf.take_map(name).ok_or(MapOpenError::Missing(name))?;
        let map: BpfHashMap<MapData, AddrKey, DrNextHop> = map
            .try_into()
            .map_err(|source| MapOpenError::WrongType { name, source })?;
        let installed = map.iter().filter_map(Result::ok).collect();
        Ok(Self { map, installed })
    }

    /// Makes the map hold exactly `want`; returns the number of changes.
    pub fn apply(&mut self, want: HashMap<AddrKey, DrNextHop>) -> Result<usize, MapWriteError> {
        let mut changes = 0;
        for (k, v) in &want {
            if self.installed.get(k) != Some(v) {
                self.map.insert(k, v, 0).map_err(|source| MapWriteError {
                    map: names::DR_NEXT_HOPS,
                    op: "update",
                    source,
                })?;
                changes += 1;
            }
        }
        for k in self.installed.keys() {
            if !want.contains_key(k) {
                match self.map.remove(k) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(source) => {
                        return Err(MapWriteError {
                            map: names::DR_NEXT_HOPS,
                            op: "delete",
                            source,
                        })
                    }
                }
                changes += 1;
            }
        }
        self.installed = want;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::NudState;

    fn entry(ip: &str, ifindex: u32, state: NudState, mac: u8) -> Neighbour {
        Neighbour {
            ifindex,
            ip: ip.parse().unwrap(),
            mac: state.is_usable().then_some([2, 0, 0, 0, 0, mac]),
            state,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_usable_entries_on_known_devices_become_next_hops() {
        let table = [
            entry("10.0.0.2", 7, NudState::Stale, 2),
            entry("10.0.0.3", 9, NudState::Reachable, 3),
            entry("10.0.0.4", 7, NudState::Failed, 4),
            entry("10.0.0.5", 7, NudState::Incomplete, 5),
            entry("10.0.0.6", 7, NudState::Failed, 6),
            entry("10.0.0.6", 8, NudState::Reachable, 6),
            entry("10.0.0.9", 7, NudState::Reachable, 9),
        ];
        let device_mac = |i: u32| match i {
            7 => Some([2, 0, 0, 0, 0, 0xf7]),
            8 => Some([2, 0, 0, 0, 0, 0xf8]),
            _ => None,
        };
        let targets = [
            "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7",
        ]
        .map(ip);
        let want = desired(&targets, &table, &device_mac);
        let got = |a: &str| want.get(&addr_key(ip(a))).copied();
        assert_eq!(
            got("10.0.0.2"),
            Some(DrNextHop {
                ifindex: 7,
                smac: [2, 0, 0, 0, 0, 0xf7],
                dmac: [2, 0, 0, 0, 0, 2],
            })
        );
        // Device 9 vanished; failed, incomplete and absent entries: none.
        for a in ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.7"] {
            assert_eq!(got(a), None, "{a}");
        }
        // A failed entry on one device, a usable one on another.
        assert_eq!(got("10.0.0.6").map(|h| h.ifindex), Some(8));
        // Not a target (no DR real server): no entry.
        assert_eq!(got("10.0.0.9"), None);
        assert_eq!(want.len(), 2);
    }
}
