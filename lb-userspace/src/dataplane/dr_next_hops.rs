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

use std::{
    collections::HashMap,
    ffi::CString,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Ebpf,
};
use lb_common::{names, AddrKey, DrNextHop};

use super::{
    keys::{addr_words, family},
    maps::{MapOpenError, MapWriteError},
};

/// A resolved neighbour entry: the device it is on and the neighbour's MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighLink {
    pub dev: String,
    pub lladdr: [u8; 6],
}

/// A device's index and MAC address.
pub type Device = (u32, [u8; 6]);

/// What `DR_NEXT_HOPS` should hold for the DR real servers `targets`, from
/// the resolved neighbour entries `links` and `device` (name -> index and
/// MAC). A target without a resolved entry, or whose device has vanished,
/// gets no entry: the program then drops its packets (`neigh_miss`) rather
/// than hand a VIP packet to the local stack.
pub fn desired(
    targets: &[IpAddr],
    links: &HashMap<IpAddr, NeighLink>,
    device: &dyn Fn(&str) -> Option<Device>,
) -> HashMap<AddrKey, DrNextHop> {
    let mut want = HashMap::new();
    for addr in targets {
        let Some(link) = links.get(addr) else {
            continue;
        };
        let Some((ifindex, smac)) = device(&link.dev) else {
            continue;
        };
        want.insert(
            addr_key(*addr),
            DrNextHop {
                ifindex,
                smac,
                dmac: link.lladdr,
            },
        );
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

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Index and MAC of the device `name` in the agent's namespace (ioctls, so
/// neither a process nor a /sys of the right namespace is needed).
pub fn device(name: &str) -> Option<Device> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 || c.as_bytes().len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(c.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR writes into the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(data.iter()) {
        *d = *s as u8;
    }
    Some((ifindex, mac))
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_resolved_targets_on_known_devices_get_an_entry() {
        let links = HashMap::from([
            (
                ip("10.0.0.2"),
                NeighLink {
                    dev: "eth0".into(),
                    lladdr: [2, 0, 0, 0, 0, 2],
                },
            ),
            (
                ip("10.0.0.3"),
                NeighLink {
                    dev: "gone0".into(),
                    lladdr: [2, 0, 0, 0, 0, 3],
                },
            ),
            (
                ip("10.0.0.9"),
                NeighLink {
                    dev: "eth0".into(),
                    lladdr: [2, 0, 0, 0, 0, 9],
                },
            ),
        ]);
        let device = |name: &str| (name == "eth0").then_some((7, [2, 0, 0, 0, 0, 0xfe]));
        let want = desired(
            &[ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")],
            &links,
            &device,
        );
        assert_eq!(want.len(), 1, "{want:?}");
        assert_eq!(
            want[&addr_key(ip("10.0.0.2"))],
            DrNextHop {
                ifindex: 7,
                smac: [2, 0, 0, 0, 0, 0xfe],
                dmac: [2, 0, 0, 0, 0, 2],
            }
        );
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01"),
            Some([2, 0, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }

    #[test]
    fn loopback_is_a_device() {
        let (index, _) = device("lo").expect("lo exists in every namespace");
        assert!(index > 0);
        assert_eq!(device("no-such-dev0"), None);
    }
}
