//! Bounds-checked header parsing: Ethernet with at most one 802.1Q tag,
//! IPv4, IPv6, and the ports of TCP and UDP.
//!
//! Every read is preceded by a check against `data_end` (the verifier insists,
//! and a short frame must never be read past its end). Parsers return early
//! with the verdict for what they cannot or must not handle; all such
//! verdicts are XDP_PASS with the frame untouched.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::{event, FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP};

use crate::verdict::{Verdict, NONE};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;
const IPV6_FRAGMENT: u8 = 44;
/// IPv6 extension headers we do not walk (hop-by-hop, routing, destination
/// options, AH, mobility, HIP, shim6): such packets go to the kernel.
const IPV6_EXT: [u8; 7] = [0, 43, 60, 51, 135, 139, 140];

// Header layouts with byte-array fields only: alignment 1, so any offset in
// the frame (an 802.1Q tag shifts everything by 4) is a valid place to read.

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: [u8; 2],
}

#[repr(C)]
pub struct VlanHdr {
    pub tci: [u8; 2],
    pub proto: [u8; 2],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub vihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag: [u8; 2],
    /// TTL and protocol: one 16-bit word of the header checksum.
    pub ttl_proto: [u8; 2],
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub vcf: [u8; 4],
    pub payload_len: [u8; 2],
    pub next: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// The leading part of TCP and UDP: ports.
#[repr(C)]
pub struct PortsHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
}

#[repr(C)]
pub struct TcpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub off_flags: [u8; 2],
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg: [u8; 2],
}

#[repr(C)]
pub struct UdpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

pub const IPV4_HLEN: usize = size_of::<Ipv4Hdr>();
pub const IPV6_HLEN: usize = size_of::<Ipv6Hdr>();
/// Offset of the checksum in a TCP / UDP header.
pub const TCP_CHECK_OFF: usize = 16;
pub const UDP_CHECK_OFF: usize = 6;

/// A pointer to a `T` at `off` in the frame, if the frame holds all of it.
/// `T` must be at least two bytes long (see `icmp::about_vip`).
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Four address words as stored in the packet (network order in memory).
#[inline(always)]
pub fn words16(b: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

#[inline(always)]
pub fn bytes16(w: &[u32; 4]) -> [u8; 16] {
    let a = w[0].to_ne_bytes();
    let b = w[1].to_ne_bytes();
    let c = w[2].to_ne_bytes();
    let d = w[3].to_ne_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

/// Where the network header starts and what it is.
pub struct L2 {
    pub l3_off: usize,
    pub ethertype: u16,
    pub vlan: bool,
}

#[inline(always)]
pub fn ethernet(ctx: &XdpContext) -> Result<L2, Verdict> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Verdict::pass(event::TRUNCATED))?;
    // SAFETY: bounds checked by ptr_at.
    let ethertype = u16::from_be_bytes(unsafe { (*eth).proto });
    if ethertype != ETH_P_8021Q {
        return Ok(L2 {
            l3_off: size_of::<EthHdr>(),
            ethertype,
            vlan: false,
        });
    }
    let tag: *const VlanHdr =
        ptr_at(ctx, size_of::<EthHdr>()).ok_or(Verdict::pass(event::TRUNCATED))?;
    Ok(L2 {
        l3_off: size_of::<EthHdr>() + size_of::<VlanHdr>(),
        ethertype: u16::from_be_bytes(unsafe { (*tag).proto }),
        vlan: true,
    })
}

/// What the first test (`filter::may_be_ours`) needs of an IP packet:
/// read in one bounds check, before anything is validated. Addresses as
/// stored in the packet.
pub struct Glance {
    pub family: u8,
    /// IPv4 protocol / IPv6 next header.
    pub proto: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
}

/// The protocol and addresses of an IPv4 or IPv6 packet (`None` when the
/// frame is too short for them: the full parse says why). Nothing else is
/// checked: a packet that is not ours passes untouched whatever its header
/// holds, and one that may be ours is parsed in full next.
#[inline(always)]
pub fn glance(ctx: &XdpContext, l2: &L2) -> Option<Glance> {
    if l2.ethertype == ETH_P_IP {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l2.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        let (proto, src, dst) = unsafe {
            (
                (*ip).ttl_proto[1],
                u32::from_ne_bytes((*ip).src),
                u32::from_ne_bytes((*ip).dst),
            )
        };
        Some(Glance {
            family: FAMILY_IPV4,
            proto,
            src: [src, 0, 0, 0],
            dst: [dst, 0, 0, 0],
        })
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l2.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            Some(Glance {
                family: FAMILY_IPV6,
                proto: (*ip).next,
                src: words16(&(*ip).src),
                dst: words16(&(*ip).dst),
            })
        }
    }
}

/// Whether `g` is ICMP of its family: errors about a flow are addressed
/// to and from other hosts than the flow's, so ICMP never takes the
/// address shortcut (`icmp::handle` decides).
#[inline(always)]
pub fn is_icmp(g: &Glance) -> bool {
    if g.family == FAMILY_IPV4 {
        g.proto == PROTO_ICMP
    } else {
        g.proto == PROTO_ICMPV6
    }
}

/// What follows the network header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP or UDP with a complete header: a candidate for balancing.
    Ports,
    /// ICMP / ICMPv6 (for `icmp::handle`).
    Icmp,
    /// Anything else: not ours.
    Other,
}

/// A parsed IP packet. Addresses and ports are as stored in the packet.
pub struct Packet {
    pub l3_off: usize,
    pub l4_off: usize,
    pub family: u8,
    pub proto: u8,
    pub l4: L4,
    pub vlan: bool,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport_be: u16,
    pub dport_be: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Length of the IP packet (header included), host order.
    pub ip_len: u32,
    /// IPv4 header longer than 20 bytes.
    pub ip_options: bool,
}

/// TCP flags (the second byte of `off_flags`).
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// A TCP SYN without ACK: the first packet of a new connection. Read only
/// for service packets (`transport` has checked the whole TCP header lies
/// in the IP packet; this check is the verifier's).
#[inline(always)]
pub fn tcp_syn(ctx: &XdpContext, p: &Packet) -> bool {
    if p.proto != PROTO_TCP {
        return false;
    }
    let Some(tcp) = ptr_at::<TcpHdr>(ctx, p.l4_off) else {
        return false;
    };
    // SAFETY: bounds checked.
    let flags = unsafe { (*tcp).off_flags[1] };
    flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN
}

/// Reads the ports of TCP / UDP; `Other` for the rest. A TCP/UDP header
/// shorter than its fixed part is truncated, since balancing needs the
/// checksum field too.
#[inline(always)]
fn transport(ctx: &XdpContext, p: &mut Packet) -> Result<(), Verdict> {
    match p.proto {
        PROTO_TCP | PROTO_UDP => {
            let need = if p.proto == PROTO_TCP {
                size_of::<TcpHdr>()
            } else {
                size_of::<UdpHdr>()
            };
            // The whole fixed header inside the IP packet (which the caller
            // has checked to lie inside the frame): link-layer padding after
            // a short IP packet is not a TCP header to rewrite.
            if p.l4_off + need > p.l3_off + p.ip_len as usize {
                return Err(Verdict::pass(event::TRUNCATED));
            }
            let ports: *const PortsHdr =
                ptr_at(ctx, p.l4_off).ok_or(Verdict::pass(event::TRUNCATED))?;
            // SAFETY: bounds checked.
            unsafe {
                p.sport_be = u16::from_ne_bytes((*ports).sport);
                p.dport_be = u16::from_ne_bytes((*ports).dport);
            }
            p.l4 = L4::Ports;
        }
        PROTO_ICMP if p.family == FAMILY_IPV4 => p.l4 = L4::Icmp,
        PROTO_ICMPV6 if p.family == FAMILY_IPV6 => p.l4 = L4::Icmp,
        _ => p.l4 = L4::Other,
    }
    Ok(())
}

#[inline(always)]
pub fn ipv4(ctx: &XdpContext, l2: &L2) -> Result<Packet, Verdict> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l2.l3_off).ok_or(Verdict::pass(event::TRUNCATED))?;
    // SAFETY: bounds checked by ptr_at.
    let (vihl, tot_len, frag, ttl_proto, src, dst) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len) as usize,
            u16::from_be_bytes((*ip).frag),
            (*ip).ttl_proto,
            u32::from_ne_bytes((*ip).src),
            u32::from_ne_bytes((*ip).dst),
        )
    };
    let hlen = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || hlen < IPV4_HLEN || tot_len < hlen {
        return Err(Verdict::pass(event::MALFORMED));
    }
    // The frame must hold the whole IP packet (link padding may follow):
    // forwarding a packet shorter than its header says would corrupt it.
    if l2.l3_off + tot_len > frame_len(ctx) {
        return Err(Verdict::pass(event::TRUNCATED));
    }
    let proto = ttl_proto[1];
    // MF set or a fragment offset: not balanced, the kernel reassembles.
    if frag & 0x3fff != 0 {
        let e = if proto == PROTO_TCP || proto == PROTO_UDP {
            event::FRAGMENT
        } else {
            NONE
        };
        return Err(Verdict::pass(e));
    }
    let mut p = Packet {
        l3_off: l2.l3_off,
        l4_off: l2.l3_off + hlen,
        family: FAMILY_IPV4,
        proto,
        l4: L4::Other,
        vlan: l2.vlan,
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        sport_be: 0,
        dport_be: 0,
        ttl: ttl_proto[0],
        ip_len: tot_len as u32,
        ip_options: hlen > IPV4_HLEN,
    };
    transport(ctx, &mut p)?;
    Ok(p)
}

#[inline(always)]
pub fn ipv6(ctx: &XdpContext, l2: &L2) -> Result<Packet, Verdict> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l2.l3_off).ok_or(Verdict::pass(event::TRUNCATED))?;
    // SAFETY: bounds checked by ptr_at.
    let (version, payload_len, next, hop_limit) = unsafe {
        (
            (*ip).vcf[0] >> 4,
            u16::from_be_bytes((*ip).payload_len) as usize,
            (*ip).next,
            (*ip).hop_limit,
        )
    };
    if version != 6 {
        return Err(Verdict::pass(event::MALFORMED));
    }
    if l2.l3_off + IPV6_HLEN + payload_len > frame_len(ctx) {
        return Err(Verdict::pass(event::TRUNCATED));
    }
    if next == IPV6_FRAGMENT {
        // Its first byte names the fragmented protocol (read with the
        // reserved byte: a one-byte bounds check compiles to a compare the
        // verifier cannot use).
        let inner: *const [u8; 2] =
            ptr_at(ctx, l2.l3_off + IPV6_HLEN).ok_or(Verdict::pass(event::TRUNCATED))?;
        let inner = unsafe { (*inner)[0] };
        let e = if inner == PROTO_TCP || inner == PROTO_UDP {
            event::FRAGMENT
        } else {
            NONE
        };
        return Err(Verdict::pass(e));
    }
    if IPV6_EXT.contains(&next) {
        return Err(Verdict::pass(event::MALFORMED));
    }
    let (src, dst) = unsafe { (words16(&(*ip).src), words16(&(*ip).dst)) };
    let mut p = Packet {
        l3_off: l2.l3_off,
        l4_off: l2.l3_off + IPV6_HLEN,
        family: FAMILY_IPV6,
        proto: next,
        l4: L4::Other,
        vlan: l2.vlan,
        src,
        dst,
        sport_be: 0,
        dport_be: 0,
        ttl: hop_limit,
        ip_len: (IPV6_HLEN + payload_len) as u32,
        ip_options: false,
    };
    transport(ctx, &mut p)?;
    Ok(p)
}
