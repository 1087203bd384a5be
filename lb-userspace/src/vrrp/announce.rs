//! Telling the segment that the virtual addresses moved: gratuitous ARP
//! for IPv4 and unsolicited neighbour advertisements for IPv6, sent by a
//! new master as whole Ethernet frames over an AF_PACKET socket, in the
//! form keepalived sends them (so switches and hosts that accept
//! keepalived's accept ours):
//!
//! - ARP *request*, sender IP = target IP = the VIP, sender MAC = the
//!   interface's MAC, target MAC ff:ff:ff:ff:ff:ff, to the Ethernet
//!   broadcast address;
//! - ICMPv6 neighbour advertisement from the VIP to ff02::1 (Ethernet
//!   33:33:00:00:00:01), hop limit 255 (RFC 4861 7.1.2 makes receivers
//!   drop anything else), flags O=1 R=0 S=0, target = the VIP, with a
//!   target link-layer address option carrying the MAC.
//!
//! The frame builders are pure; the senders only write them out. The
//! kernel's ARP/NDP stack is not used because it would take the address
//! from the interface's own configuration and rate-limit the repeats.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::io::{unix::AsyncFd, Interest};

pub const ETH_BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet address of ff02::1 (RFC 2464 7).
pub const ETH_ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
pub const IPV6_ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const GARP_LEN: usize = 42;
pub const NA_LEN: usize = 86;

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("cannot open an AF_PACKET socket to announce addresses on {interface}: {source} (needs CAP_NET_RAW)")]
    Open {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("sending {what} for {address} on {interface}: {source}")]
    Send {
        interface: String,
        what: &'static str,
        address: IpAddr,
        #[source]
        source: io::Error,
    },
}

/// The gratuitous ARP announcing that `ip` is at `mac` (42 bytes; the NIC
/// pads it to 60).
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    f[0..6].copy_from_slice(&ETH_BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // Ethernet (1), IPv4 (0x0800), address lengths 6 and 4, request (1).
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&ETH_BROADCAST);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The unsolicited neighbour advertisement announcing that `ip` is at
/// `mac` (86 bytes).
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> [u8; NA_LEN] {
    const ICMP_LEN: u16 = 32;
    let mut f = [0u8; NA_LEN];
    f[0..6].copy_from_slice(&ETH_ALL_NODES);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip6 = &mut f[14..54];
    ip6[0] = 0x60; // version 6, traffic class 0, flow label 0
    ip6[4..6].copy_from_slice(&ICMP_LEN.to_be_bytes());
    ip6[6] = 58; // ICMPv6
    ip6[7] = 255; // hop limit
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&IPV6_ALL_NODES.octets());
    let icmp = &mut f[54..86];
    icmp[0] = 136; // neighbour advertisement, code 0
    icmp[4] = 0x20; // R=0 S=0 O=1
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = 2; // target link-layer address option
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, IPV6_ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// RFC 4443 2.3: over the IPv6 pseudo-header and the message (whose
/// checksum field is zero).
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&b| u32::from(b));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(message);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An AF_PACKET socket that sends announcement frames on one interface.
/// It receives nothing (protocol 0).
pub struct Announcer {
    fd: AsyncFd<OwnedFd>,
    ifindex: u32,
    mac: [u8; 6],
}

impl Announcer {
    /// Needs a tokio runtime and CAP_NET_RAW.
    pub fn new(ifindex: u32, mac: [u8; 6]) -> Result<Announcer, AnnounceError> {
        let open_err = |source| AnnounceError::Open {
            interface: crate::netlink::interface_label(ifindex),
            source,
        };
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd stays open and the same for the AsyncFd's life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| open_err(e.into_parts().1))?;
        Ok(Announcer { fd, ifindex, mac })
    }

    pub async fn gratuitous_arp(&self, ip: Ipv4Addr) -> Result<(), AnnounceError> {
        let frame = garp_frame(self.mac, ip);
        self.send(&frame, ETHERTYPE_ARP, ETH_BROADCAST)
            .await
            .map_err(|source| self.send_err("a gratuitous ARP", ip.into(), source))
    }

    pub async fn unsolicited_na(&self, ip: Ipv6Addr) -> Result<(), AnnounceError> {
        let frame = unsolicited_na_frame(self.mac, ip);
        self.send(&frame, ETHERTYPE_IPV6, ETH_ALL_NODES)
            .await
            .map_err(|source| {
                self.send_err("an unsolicited neighbour advertisement", ip.into(), source)
            })
    }

    /// The announcement of the address's family.
    pub async fn announce(&self, ip: IpAddr) -> Result<(), AnnounceError> {
        match ip {
            IpAddr::V4(a) => self.gratuitous_arp(a).await,
            IpAddr::V6(a) => self.unsolicited_na(a).await,
        }
    }

    fn send_err(&self, what: &'static str, address: IpAddr, source: io::Error) -> AnnounceError {
        AnnounceError::Send {
            interface: crate::netlink::interface_label(self.ifindex),
            what,
            address,
            source,
        }
    }

    async fn send(&self, frame: &[u8], ethertype: u16, dst: [u8; 6]) -> io::Result<()> {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst);
        self.fd
            .async_io(Interest::WRITABLE, |fd| {
                // SAFETY: frame and sll are live for the call.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&sll as *const libc::sockaddr_ll).cast(),
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            })
            .await
    }
}

/// One gratuitous ARP for `ip` on interface `ifindex` (see [`Announcer`]
/// to send many).
pub async fn gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), AnnounceError> {
    Announcer::new(ifindex, mac)?.gratuitous_arp(ip).await
}

/// One unsolicited neighbour advertisement for `ip` on interface `ifindex`.
pub async fn unsolicited_na(ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> Result<(), AnnounceError> {
    Announcer::new(ifindex, mac)?.unsolicited_na(ip).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const LB1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const LB2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// The frames keepalived sent, byte for byte, from
    /// ../shared/data/vrrp/decode/: (file, frame, MAC, VIP, bytes).
    const GARPS: &[(&str, [u8; 6], [u8; 4], &str)] = &[
        (
            "vrrpv2-pass frame 2",
            LB1,
            [10, 200, 0, 10],
            "ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0ac8000a \
             ffffffffffff 0ac8000a",
        ),
        (
            "failover-v2 frame 5",
            LB2,
            [10, 200, 0, 10],
            "ffffffffffff 020000000002 0806 0001 0800 06 04 0001 020000000002 0ac8000a \
             ffffffffffff 0ac8000a",
        ),
        (
            "vrrp-multi-vip frame 2",
            LB1,
            [10, 200, 0, 20],
            "ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0ac80014 \
             ffffffffffff 0ac80014",
        ),
    ];

    const NAS: &[(&str, [u8; 6], &str)] = &[
        (
            "vrrpv3-ipv6 frame 2",
            LB1,
            "333300000001 020000000001 86dd 60000000 0020 3a ff \
             fd000200000000000000000000000010 ff020000000000000000000000000001 \
             88 00 567d 20000000 fd000200000000000000000000000010 0201 020000000001",
        ),
        (
            "vrrpv3-ipv6 frame 11",
            LB2,
            "333300000001 020000000002 86dd 60000000 0020 3a ff \
             fd000200000000000000000000000010 ff020000000000000000000000000001 \
             88 00 567c 20000000 fd000200000000000000000000000010 0201 020000000002",
        ),
    ];

    #[test]
    fn gratuitous_arps_match_keepalived_byte_for_byte() {
        for (name, mac, ip, bytes) in GARPS {
            assert_eq!(
                garp_frame(*mac, Ipv4Addr::from(*ip)).to_vec(),
                hex(bytes),
                "{name}"
            );
        }
    }

    #[test]
    fn neighbour_advertisements_match_keepalived_byte_for_byte() {
        let vip: Ipv6Addr = "fd00:200::10".parse().unwrap();
        for (name, mac, bytes) in NAS {
            assert_eq!(
                unsolicited_na_frame(*mac, vip).to_vec(),
                hex(bytes),
                "{name}"
            );
        }
    }

    #[test]
    fn icmpv6_checksum_verifies_to_zero() {
        // Summing a message with its checksum in place gives 0 (RFC 1071).
        let vip: Ipv6Addr = "2001:db8::1:2:3".parse().unwrap();
        let f = unsolicited_na_frame([0x52, 0x54, 0, 0xab, 0xcd, 0xef], vip);
        assert_eq!(icmpv6_checksum(vip, IPV6_ALL_NODES, &f[54..]), 0);
    }
}
