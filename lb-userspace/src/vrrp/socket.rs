//! The raw IP socket VRRP adverts travel on (IP protocol 112), one per
//! instance interface and address family, in the form keepalived sends and
//! expects: TTL / hop limit 255 (receivers drop anything else, RFC 3768
//! 7.1 / RFC 5798 7.1), TOS / traffic class 0xc0, to 224.0.0.18 / ff02::12
//! or to unicast peers, from the interface's primary IPv4 or link-local
//! IPv6 address. The payload is the VRRP message as the codec encoded it
//! (checksum included); this module neither builds nor checks it.
//!
//! IPv4 headers are built by the kernel, not with IP_HDRINCL: the kernel
//! fills the ID and the header checksum, and the socket options give the
//! fields that matter (TTL 255, TOS 0xc0, DF clear as keepalived sends it).
//! The only thing keepalived does differently is its per-instance IP ID
//! counter, which no receiver looks at. The source address is pinned per
//! packet with IP_PKTINFO / IPV6_PKTINFO, so the address the v3 checksum's
//! pseudo-header was computed with is the one on the wire.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Mutex,
};

use tokio::io::{unix::AsyncFd, Interest};

use crate::netlink::{Netlink, NetlinkError};

/// IANA's protocol number for VRRP.
pub const IPPROTO_VRRP: i32 = 112;
/// The IPv4 multicast group of VRRP (RFC 3768 5.2.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP (RFC 5798 5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every advert carries and every receiver requires.
pub const VRRP_TTL: u8 = 255;
/// DSCP CS6 (network control), keepalived's TOS / traffic class.
pub const VRRP_TOS: u8 = 0xc0;
/// Larger than any advert (8 + 255 IPv6 addresses + 8 bytes of
/// authentication + a 60-byte IPv4 header); anything longer is truncated.
const RECV_BUFFER: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The VRRP multicast group of the family.
    pub fn group(self) -> IpAddr {
        match self {
            Family::V4 => VRRP_GROUP_V4.into(),
            Family::V6 => VRRP_GROUP_V6.into(),
        }
    }

    /// The kind of address adverts of the family come from, for messages
    /// ("no IPv4 address on eth1").
    pub fn source_kind(self) -> &'static str {
        match self {
            Family::V4 => "IPv4 address",
            Family::V6 => "link-local IPv6 address",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot open a raw {family} VRRP socket (IP protocol 112) on {interface}: {source} (needs CAP_NET_RAW)")]
    Open {
        interface: String,
        family: Family,
        #[source]
        source: io::Error,
    },
    #[error("setting {option} on the VRRP socket of {interface}: {source}")]
    Option {
        interface: String,
        option: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("sending a VRRP advert to {dst} on {interface}: {source}")]
    Send {
        interface: String,
        dst: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("receiving on the VRRP socket of {interface}: {source}")]
    Recv {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{address} is not an {family} address, and the VRRP socket of {interface} is {family}"
    )]
    WrongFamily {
        interface: String,
        family: Family,
        address: IpAddr,
    },
    #[error("{interface} has no {what}: VRRP needs one as the source of its adverts")]
    NoSource {
        interface: String,
        what: &'static str,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// One advert as it arrived, with the IP fields validation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl_or_hoplimit: u8,
    pub ifindex: u32,
    /// The VRRP message (for IPv4, the IP header already stripped).
    pub payload: Vec<u8>,
}

/// A raw VRRP socket bound to one interface.
pub struct VrrpSocket {
    fd: AsyncFd<OwnedFd>,
    interface: String,
    ifindex: u32,
    family: Family,
    /// Behind a lock so the driver can re-pin it on a shared socket when
    /// the interface's address changes (the receiver task holds the same
    /// `Arc`); taken for a copy, never across an await.
    source: Mutex<Option<IpAddr>>,
}

impl VrrpSocket {
    /// Opens the socket on `interface` (index `ifindex`). `unicast` = the
    /// source address of unicast mode (keepalived's `unicast_src_ip`): no
    /// group is joined and every advert leaves from it. Without it the
    /// socket joins the family's VRRP group on the interface; pin the
    /// source with [`VrrpSocket::set_source`] (see [`source_for`]) so it is
    /// the one the checksum was computed with. Needs a tokio runtime.
    pub fn open(
        interface: &str,
        ifindex: u32,
        family: Family,
        unicast: Option<IpAddr>,
    ) -> Result<VrrpSocket, SocketError> {
        VrrpSocket::open_mode(interface, ifindex, family, unicast.is_none(), unicast)
    }

    /// As [`VrrpSocket::open`], with the mode apart from the source: a
    /// unicast instance whose interface has no address yet still needs
    /// a socket that joins no group (its source is pinned once the
    /// address appears).
    pub fn open_mode(
        interface: &str,
        ifindex: u32,
        family: Family,
        multicast: bool,
        source: Option<IpAddr>,
    ) -> Result<VrrpSocket, SocketError> {
        let domain = match family {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        };
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let raw = unsafe {
            libc::socket(
                domain,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                IPPROTO_VRRP,
            )
        };
        if raw < 0 {
            return Err(SocketError::Open {
                interface: interface.to_string(),
                family,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let opt = |option: &'static str, source: io::Error| SocketError::Option {
            interface: interface.to_string(),
            option,
            source,
        };
        let f = fd.as_raw_fd();
        bind_to_device(f, interface).map_err(|e| opt("SO_BINDTODEVICE", e))?;
        match family {
            Family::V4 => configure_v4(f, ifindex, multicast).map_err(|(o, e)| opt(o, e))?,
            Family::V6 => configure_v6(f, ifindex, multicast).map_err(|(o, e)| opt(o, e))?,
        }
        // SAFETY: the OwnedFd stays open and the same for the AsyncFd's life.
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| opt("registration with tokio", e.into_parts().1))?;
        let socket = VrrpSocket {
            fd,
            interface: interface.to_string(),
            ifindex,
            family,
            source: Mutex::new(None),
        };
        if let Some(src) = source {
            socket.set_source(src)?;
        }
        Ok(socket)
    }

    /// Pins the source address of every advert sent from now on.
    pub fn set_source(&self, source: IpAddr) -> Result<(), SocketError> {
        self.check_family(source)?;
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
        Ok(())
    }

    pub fn source(&self) -> Option<IpAddr> {
        *self.source.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn check_family(&self, address: IpAddr) -> Result<(), SocketError> {
        if Family::of(address) != self.family {
            return Err(SocketError::WrongFamily {
                interface: self.interface.clone(),
                family: self.family,
                address,
            });
        }
        Ok(())
    }

    /// Sends one VRRP message to `dst` (the group, or a unicast peer).
    pub async fn send(&self, dst: IpAddr, payload: &[u8]) -> Result<(), SocketError> {
        self.check_family(dst)?;
        let source = self.source();
        let result = self
            .fd
            .async_io(Interest::WRITABLE, |fd| {
                send_to(fd.as_raw_fd(), self.ifindex, source, dst, payload)
            })
            .await;
        result.map_err(|source| SocketError::Send {
            interface: self.interface.clone(),
            dst,
            source,
        })
    }

    /// Waits for the next VRRP packet on the interface.
    pub async fn recv(&self) -> Result<Received, SocketError> {
        loop {
            let result = self
                .fd
                .async_io(Interest::READABLE, |fd| {
                    recv_from(fd.as_raw_fd(), self.family)
                })
                .await;
            match result {
                Ok(Some(r)) => return Ok(r),
                // Not an IP packet the kernel could have delivered; cannot
                // happen on a raw socket, but never worth an error.
                Ok(None) => continue,
                Err(source) => {
                    return Err(SocketError::Recv {
                        interface: self.interface.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// The source VRRP adverts use on interface `ifindex`: the primary IPv4
/// address (the first the kernel lists), or the first link-local IPv6
/// address (RFC 5798 5.1.2.1; keepalived does the same).
pub async fn source_for(
    netlink: &Netlink,
    ifindex: u32,
    family: Family,
) -> Result<IpAddr, SocketError> {
    let addresses = netlink.addresses(ifindex).await?;
    pick_source(&addresses, family, &[]).ok_or_else(|| SocketError::NoSource {
        interface: crate::netlink::interface_label(ifindex),
        what: family.source_kind(),
    })
}

/// The source [`source_for`] would choose among `addresses` (as
/// [`Netlink::addresses`] lists them), leaving out `exclude`: the
/// virtual addresses, so a node whose own address went away while it
/// held a virtual one does not advertise from the virtual address.
pub fn pick_source(
    addresses: &[(IpAddr, u8)],
    family: Family,
    exclude: &[IpAddr],
) -> Option<IpAddr> {
    addresses
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| !exclude.contains(a))
        .find(|a| match (family, a) {
            (Family::V4, IpAddr::V4(_)) => true,
            (Family::V6, IpAddr::V6(v6)) => v6.segments()[0] & 0xffc0 == 0xfe80,
            _ => false,
        })
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind_to_device(fd: RawFd, interface: &str) -> io::Result<()> {
    // SAFETY: the name's bytes and length; the kernel copies at most IFNAMSIZ.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_ptr().cast(),
            interface.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

type OptResult = Result<(), (&'static str, io::Error)>;

fn configure_v4(fd: RawFd, ifindex: u32, multicast: bool) -> OptResult {
    let ttl = i32::from(VRRP_TTL);
    let set = |name: &'static str, opt: i32, value: i32| {
        setsockopt(fd, libc::IPPROTO_IP, opt, &value).map_err(|e| (name, e))
    };
    set("IP_TTL", libc::IP_TTL, ttl)?;
    set("IP_MULTICAST_TTL", libc::IP_MULTICAST_TTL, ttl)?;
    set("IP_TOS", libc::IP_TOS, i32::from(VRRP_TOS))?;
    set("IP_MULTICAST_LOOP", libc::IP_MULTICAST_LOOP, 0)?;
    set("IP_PKTINFO", libc::IP_PKTINFO, 1)?;
    // DF clear, as keepalived sends adverts.
    set(
        "IP_MTU_DISCOVER",
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )?;
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(VRRP_GROUP_V4).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)
        .map_err(|e| ("IP_MULTICAST_IF", e))?;
    if multicast {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| ("IP_ADD_MEMBERSHIP 224.0.0.18", e))?;
    }
    Ok(())
}

fn configure_v6(fd: RawFd, ifindex: u32, multicast: bool) -> OptResult {
    let hops = i32::from(VRRP_TTL);
    let set = |name: &'static str, opt: i32, value: i32| {
        setsockopt(fd, libc::IPPROTO_IPV6, opt, &value).map_err(|e| (name, e))
    };
    set("IPV6_UNICAST_HOPS", libc::IPV6_UNICAST_HOPS, hops)?;
    set("IPV6_MULTICAST_HOPS", libc::IPV6_MULTICAST_HOPS, hops)?;
    set("IPV6_TCLASS", libc::IPV6_TCLASS, i32::from(VRRP_TOS))?;
    set("IPV6_MULTICAST_LOOP", libc::IPV6_MULTICAST_LOOP, 0)?;
    set("IPV6_MULTICAST_IF", libc::IPV6_MULTICAST_IF, ifindex as i32)?;
    set("IPV6_RECVHOPLIMIT", libc::IPV6_RECVHOPLIMIT, 1)?;
    set("IPV6_RECVPKTINFO", libc::IPV6_RECVPKTINFO, 1)?;
    if multicast {
        let mreq = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr {
                s6_addr: VRRP_GROUP_V6.octets(),
            },
            ipv6mr_interface: ifindex,
        };
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| ("IPV6_ADD_MEMBERSHIP ff02::12", e))?;
    }
    Ok(())
}

/// Room for one in6_pktinfo or in_pktinfo control message (and, received,
/// a hop limit), aligned for cmsghdr.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

fn send_to(
    fd: RawFd,
    ifindex: u32,
    source: Option<IpAddr>,
    dst: IpAddr,
    payload: &[u8],
) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: all-zero is a valid msghdr (no buffers yet).
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_control = control.0.as_mut_ptr().cast();
    let name_len;
    let control_len;
    match dst {
        IpAddr::V4(d) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin = unsafe { &mut *(&mut name as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(d).to_be();
            name_len = size_of::<libc::sockaddr_in>();
            let spec_dst = match source {
                Some(IpAddr::V4(s)) => u32::from(s).to_be(),
                _ => 0,
            };
            let info = libc::in_pktinfo {
                ipi_ifindex: ifindex as i32,
                ipi_spec_dst: libc::in_addr { s_addr: spec_dst },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            control_len = put_cmsg(&mut msg, libc::IPPROTO_IP, libc::IP_PKTINFO, &info);
        }
        IpAddr::V6(d) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut name as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = d.octets();
            // Needed for link-local peers and ff02::12; ignored otherwise.
            sin6.sin6_scope_id = ifindex;
            name_len = size_of::<libc::sockaddr_in6>();
            let src = match source {
                Some(IpAddr::V6(s)) => s.octets(),
                _ => [0; 16],
            };
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr { s6_addr: src },
                ipi6_ifindex: ifindex,
            };
            control_len = put_cmsg(&mut msg, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info);
        }
    }
    msg.msg_namelen = name_len as libc::socklen_t;
    msg.msg_controllen = control_len;
    // SAFETY: msg points to live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(fd, &msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes one control message holding `value` at the start of
/// `msg.msg_control`; returns the control length to set.
fn put_cmsg<T>(msg: &mut libc::msghdr, level: i32, kind: i32, value: &T) -> usize {
    // SAFETY: msg_control points to a ControlBuffer (128 bytes, 8-aligned),
    // larger than CMSG_SPACE of either pktinfo struct.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<T>() as u32) as usize;
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<T>() as u32) as usize;
        std::ptr::copy_nonoverlapping(
            (value as *const T).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            size_of::<T>(),
        );
        space
    }
}

/// One recvmsg; `Ok(None)` for a packet too short to carry an IPv4 header.
fn recv_from(fd: RawFd, family: Family) -> io::Result<Option<Received>> {
    let mut buf = vec![0u8; RECV_BUFFER];
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr (no buffers yet).
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: msg points to live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    let info = read_cmsgs(&msg);
    Ok(match family {
        Family::V4 => parse_ipv4(&buf, info.ifindex),
        Family::V6 => {
            // SAFETY: an AF_INET6 socket fills a sockaddr_in6.
            let sin6 = unsafe { &*(&name as *const _ as *const libc::sockaddr_in6) };
            Some(Received {
                src: Ipv6Addr::from(sin6.sin6_addr.s6_addr).into(),
                dst: info.dst.unwrap_or(Ipv6Addr::UNSPECIFIED.into()),
                ttl_or_hoplimit: info.hop_limit.unwrap_or(0),
                ifindex: info.ifindex,
                payload: buf,
            })
        }
    })
}

#[derive(Default)]
struct PacketInfo {
    ifindex: u32,
    dst: Option<IpAddr>,
    hop_limit: Option<u8>,
}

fn read_cmsgs(msg: &libc::msghdr) -> PacketInfo {
    let mut info = PacketInfo::default();
    // SAFETY: walking the control messages the kernel wrote, with the
    // libc macros that bound each to msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    info.ifindex = p.ipi_ifindex as u32;
                    info.dst = Some(Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr)).into());
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    info.ifindex = p.ipi6_ifindex;
                    info.dst = Some(Ipv6Addr::from(p.ipi6_addr.s6_addr).into());
                }
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let h = std::ptr::read_unaligned(data.cast::<i32>());
                    info.hop_limit = Some(h.clamp(0, 255) as u8);
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    info
}

/// Splits what an IPv4 raw socket returns (header included) into the
/// fields validation needs and the VRRP message. Nothing is rejected here
/// beyond a buffer that cannot hold the header it announces.
pub fn parse_ipv4(packet: &[u8], ifindex: u32) -> Option<Received> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header_len < 20 || packet.len() < header_len {
        return None;
    }
    let end = total.clamp(header_len, packet.len());
    let addr =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    Some(Received {
        src: addr(12).into(),
        dst: addr(16).into(),
        ttl_or_hoplimit: packet[8],
        ifindex,
        payload: packet[header_len..end].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lb1's first v2 advert in vrrpv2-pass.pcap (frame 1), from its IP
    /// header on (../shared/data/vrrp/decode/vrrpv2-pass.txt).
    const V2_PASS_IP: &str = "45c00028 00010000 ff70cfc9 0ac80001 e0000012 \
                              21339601 0101da95 0ac8000a 31313131 00000000";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn ipv4_header_is_parsed_and_stripped() {
        let r = parse_ipv4(&hex(V2_PASS_IP), 7).unwrap();
        assert_eq!(r.src, "10.200.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, "224.0.0.18".parse::<IpAddr>().unwrap());
        assert_eq!(r.ttl_or_hoplimit, 255);
        assert_eq!(r.ifindex, 7);
        assert_eq!(
            r.payload,
            hex("21339601 0101da95 0ac8000a 31313131 00000000")
        );
    }

    #[test]
    fn ipv4_options_and_trailing_padding_are_not_payload() {
        // IHL 6 (a 4-byte option), total length 28 = 24 + 4 bytes of payload,
        // then 2 bytes of Ethernet padding.
        let mut p = hex("46c0001c00010000ff700000 0a000001 e0000012 94040000 aabbccdd 0000");
        p[0] = 0x46;
        let r = parse_ipv4(&p, 1).unwrap();
        assert_eq!(r.payload, vec![0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn short_or_non_ipv4_buffers_are_refused() {
        assert!(parse_ipv4(&[0x45; 10], 1).is_none());
        assert!(parse_ipv4(&hex(&V2_PASS_IP.replace("45c0", "65c0")), 1).is_none());
        assert!(parse_ipv4(&hex("4f00001c00010000ff700000 0a000001 e0000012"), 1).is_none());
    }

    /// The primary IPv4 address (the kernel lists it first) or the first
    /// link-local, never a virtual address, and nothing when there is none.
    #[test]
    fn source_is_the_first_real_address_of_the_family() {
        let a = |s: &str, p: u8| (s.parse::<IpAddr>().unwrap(), p);
        let list = [
            a("10.0.0.10", 24),
            a("10.0.0.2", 24),
            a("fd00::2", 64),
            a("fe80::1", 64),
        ];
        let vip: IpAddr = "10.0.0.10".parse().unwrap();
        assert_eq!(pick_source(&list, Family::V4, &[]), Some(list[0].0));
        assert_eq!(pick_source(&list, Family::V4, &[vip]), Some(list[1].0));
        assert_eq!(pick_source(&list, Family::V6, &[]), Some(list[3].0));
        assert_eq!(pick_source(&list[..1], Family::V4, &[vip]), None);
        assert_eq!(pick_source(&list[..3], Family::V6, &[]), None);
    }
}
