//! ICMP and ICMPv6: never rewritten or balanced, always passed to the
//! kernel. An error message about a VIP flow (its quoted packet was sent
//! from a VIP:port) is counted as `ICMP_VIP`, so path-MTU or unreachable
//! trouble of a service shows up in the counters.

use aya_ebpf::programs::XdpContext;
use lb_common::{event, EndpointKey, FAMILY_IPV4, PROTO_TCP, PROTO_UDP};

use crate::{
    maps::SERVICES,
    parse::{ptr_at, words16, Ipv4Hdr, Ipv6Hdr, Packet, PortsHdr, IPV4_HLEN, IPV6_HLEN},
    verdict::{Verdict, NONE},
};

/// ICMP header (type, code, checksum, 4 bytes of rest) before the quote.
const ICMP_HLEN: usize = 8;

#[inline(always)]
fn is_error(family: u8, icmp_type: u8) -> bool {
    if family == FAMILY_IPV4 {
        // Destination unreachable, time exceeded, parameter problem.
        matches!(icmp_type, 3 | 11 | 12)
    } else {
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        matches!(icmp_type, 1..=4)
    }
}

#[inline(always)]
pub fn handle(ctx: &XdpContext, p: &Packet) -> Verdict {
    let event = if about_vip(ctx, p).is_some() {
        event::ICMP_VIP
    } else {
        NONE
    };
    Verdict::pass(event)
}

/// `Some` when the packet is an ICMP error quoting a packet sent by a VIP.
#[inline(always)]
fn about_vip(ctx: &XdpContext, p: &Packet) -> Option<()> {
    // Type and code together: a one-byte bounds check compiles to a compare
    // the verifier cannot use (`end > ptr` gives no range).
    let type_code: *const [u8; 2] = ptr_at(ctx, p.l4_off)?;
    if !is_error(p.family, unsafe { (*type_code)[0] }) {
        return None;
    }
    let inner_off = p.l4_off + ICMP_HLEN;
    let mut key = EndpointKey {
        family: p.family,
        ..EndpointKey::default()
    };
    let ports_off = if p.family == FAMILY_IPV4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, inner_off)?;
        // SAFETY: bounds checked by ptr_at.
        let (vihl, proto, src) = unsafe {
            (
                (*ip).vihl,
                (*ip).ttl_proto[1],
                u32::from_ne_bytes((*ip).src),
            )
        };
        let hlen = ((vihl & 0x0f) as usize) * 4;
        if hlen < IPV4_HLEN {
            return None;
        }
        key.proto = proto;
        key.addr = [src, 0, 0, 0];
        inner_off + hlen
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, inner_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            key.proto = (*ip).next;
            key.addr = words16(&(*ip).src);
        }
        inner_off + IPV6_HLEN
    };
    if key.proto != PROTO_TCP && key.proto != PROTO_UDP {
        return None;
    }
    let ports: *const PortsHdr = ptr_at(ctx, ports_off)?;
    key.port_be = u16::from_ne_bytes(unsafe { (*ports).sport });
    SERVICES.get_ptr(key).map(|_| ())
}
