//! The kernel's neighbour table (ARP and NDP entries).

use std::{fmt, net::IpAddr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use super::{Netlink, NetlinkError, Result};

/// A neighbour's resolution state (the kernel's NUD_* states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NudState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    Noarp,
    Permanent,
    None,
    Other(u16),
}

impl NudState {
    /// Whether the kernel (and `bpf_fib_lookup`) can use the entry's MAC.
    pub fn is_usable(self) -> bool {
        matches!(
            self,
            NudState::Reachable
                | NudState::Stale
                | NudState::Delay
                | NudState::Probe
                | NudState::Permanent
                | NudState::Noarp
        )
    }

    fn from_kernel(s: NeighbourState) -> NudState {
        match s {
            NeighbourState::Incomplete => NudState::Incomplete,
            NeighbourState::Reachable => NudState::Reachable,
            NeighbourState::Stale => NudState::Stale,
            NeighbourState::Delay => NudState::Delay,
            NeighbourState::Probe => NudState::Probe,
            NeighbourState::Failed => NudState::Failed,
            NeighbourState::Noarp => NudState::Noarp,
            NeighbourState::Permanent => NudState::Permanent,
            NeighbourState::None => NudState::None,
            other => NudState::Other(u16::from(other)),
        }
    }
}

/// Names as `ip neigh` prints them.
impl fmt::Display for NudState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            NudState::Incomplete => "INCOMPLETE",
            NudState::Reachable => "REACHABLE",
            NudState::Stale => "STALE",
            NudState::Delay => "DELAY",
            NudState::Probe => "PROBE",
            NudState::Failed => "FAILED",
            NudState::Noarp => "NOARP",
            NudState::Permanent => "PERMANENT",
            NudState::None => "NONE",
            NudState::Other(n) => return write!(f, "0x{n:x}"),
        };
        f.write_str(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// `None` while unresolved (INCOMPLETE, FAILED).
    pub mac: Option<[u8; 6]>,
    pub state: NudState,
}

impl Neighbour {
    fn from_message(m: &NeighbourMessage) -> Option<Neighbour> {
        let mut ip = None;
        let mut mac = None;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    ip = Some((*a).into())
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    ip = Some((*a).into())
                }
                NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                    let mut b = [0; 6];
                    b.copy_from_slice(l);
                    mac = Some(b);
                }
                _ => {}
            }
        }
        Some(Neighbour {
            ifindex: m.header.ifindex,
            ip: ip?,
            mac,
            state: NudState::from_kernel(m.header.state),
        })
    }
}

impl Netlink {
    /// Every IPv4 and IPv6 neighbour entry of every interface.
    pub async fn neighbours(&self) -> Result<Vec<Neighbour>> {
        let mut stream = self.handle.neighbours().get().execute();
        let mut out = Vec::new();
        while let Some(m) = stream.try_next().await.map_err(NetlinkError::Neighbours)? {
            out.extend(Neighbour::from_message(&m));
        }
        Ok(out)
    }
}
