//! ICMP and ICMPv6 errors about balanced flows, handled as IPVS does:
//!
//! - An error addressed to a VIP that quotes a packet sent from that
//!   VIP:port (a reply of a real server: "fragmentation needed" / "packet
//!   too big" from a router on the client's path, an unreachable, a time
//!   exceeded) goes to the real server that owns the flow, found from the
//!   quoted tuple as a request would find it: the flow table, then the
//!   service's Maglev ring (stateless, so a balancer that took the flow
//!   over delivers it too). DR sends it on unchanged, only the MACs change;
//!   NAT rewrites the outer destination and the quoted source from
//!   VIP:port to the real server's address:port. Without this, path-MTU
//!   discovery of the real servers black-holes large responses.
//! - An error a NAT real server (or a router on its side) sends to a
//!   client about the client's packet (quoted: client -> real:port) is
//!   rewritten to come from the VIP and to quote VIP:port, under the same
//!   rule as NAT replies (`nat::reply_route`: it must arrive where the
//!   balancer's route to that real server leaves), so clients never see
//!   real-server addresses.
//!
//! Everything else ICMP (echo, errors about the host's own traffic, quotes
//! that are cut short, carry IPv6 extension headers, or are not TCP/UDP,
//! errors about errors) goes to the kernel untouched. Checksums are
//! updated incrementally: the outer IPv4 header, the ICMP checksum over
//! the changed quote (ICMPv6: and its pseudo-header) and the quoted IPv4
//! header checksum. The quoted TCP/UDP checksum is left as it was, as
//! IPVS leaves it: the receivers match errors to sockets by the quoted
//! addresses and ports and do not verify it (and a quote may end before
//! it).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    csum, event, Backend, EndpointKey, FlowKey, ReverseNat, Service, FAMILY_IPV4, PROTO_TCP,
    PROTO_UDP, SVC_F_DR, SVC_F_NAT,
};

use crate::{
    dr, fib,
    maps::{may_hold, BACKENDS, JUMP, REVERSE_NAT, SERVICES},
    nat,
    parse::{bytes16, ptr_at, words16, Ipv4Hdr, Ipv6Hdr, Packet, PortsHdr, IPV4_HLEN, IPV6_HLEN},
    schedule,
    verdict::{Verdict, NONE},
};

/// ICMP header (type, code, checksum, 4 bytes of rest) before the quote.
const ICMP_HLEN: usize = 8;
/// Offset of the checksum in the ICMP / ICMPv6 header.
const ICMP_CHECK_OFF: usize = 2;

#[inline(always)]
fn is_error(family: u8, icmp_type: u8) -> bool {
    if family == FAMILY_IPV4 {
        // Destination unreachable (fragmentation needed among them), time
        // exceeded, parameter problem.
        matches!(icmp_type, 3 | 11 | 12)
    } else {
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        matches!(icmp_type, 1..=4)
    }
}

/// The packet an ICMP error quotes: its TCP/UDP tuple and where its
/// headers are in the frame.
struct Quote {
    /// Offset of the quoted IP header.
    l3_off: usize,
    /// Offset of the quoted TCP/UDP header (its ports at least are there).
    l4_off: usize,
    proto: u8,
    src: [u32; 4],
    dst: [u32; 4],
    sport_be: u16,
    dport_be: u16,
}

/// Which way an error is translated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// To a real server: outer destination and quoted source were the VIP.
    ToReal,
    /// To a client: outer source and quoted destination were the real server.
    ToClient,
}

/// Hands an ICMP packet to `lb_xdp_icmp` (a tail call: this program ends
/// there, and that one counts the verdict). Only when the jump cannot be
/// taken (`JUMP` not filled: an object loaded without
/// `dataplane::loader::link_icmp_path`) does the packet go to the kernel
/// untouched, as it did before ICMP errors were delivered.
#[inline(always)]
pub fn jump(ctx: &XdpContext) -> Verdict {
    // SAFETY: the kernel checks the slot's program type; an empty slot
    // returns here.
    unsafe { JUMP.tail_call(ctx, lb_common::names::JUMP_ICMP) };
    Verdict::pass(NONE)
}

#[inline(always)]
pub fn handle(ctx: &XdpContext, p: &Packet) -> Verdict {
    let Some(q) = quote(ctx, p) else {
        return Verdict::pass(NONE);
    };
    // An error goes to the sender of the packet it quotes; one addressed
    // elsewhere is no business of the flow's (and must not be sent on).
    if q.src != p.dst {
        return Verdict::pass(NONE);
    }
    let vip = EndpointKey {
        addr: q.src,
        port_be: q.sport_be,
        proto: q.proto,
        family: p.family,
    };
    if may_hold(&vip) {
        if let Some(svc) = SERVICES.get_ptr(vip) {
            // SAFETY: a map value pointer; copied as in `lb_xdp`.
            let svc = unsafe { *svc };
            return to_real(ctx, p, &q, &svc);
        }
    }
    let real = EndpointKey {
        addr: q.dst,
        port_be: q.dport_be,
        proto: q.proto,
        family: p.family,
    };
    if may_hold(&real) {
        if let Some(rn) = REVERSE_NAT.get_ptr(real) {
            // SAFETY: as above.
            let rn = unsafe { *rn };
            return to_client(ctx, p, &q, &rn);
        }
    }
    Verdict::pass(NONE)
}

/// The quoted packet of an ICMP error, when it is a TCP/UDP packet whose
/// ports lie inside the ICMP message.
#[inline(always)]
fn quote(ctx: &XdpContext, p: &Packet) -> Option<Quote> {
    // Type and code together: a one-byte bounds check compiles to a compare
    // the verifier cannot use (`end > ptr` gives no range).
    let type_code: *const [u8; 2] = ptr_at(ctx, p.l4_off)?;
    // SAFETY: bounds checked by ptr_at (here and below).
    if !is_error(p.family, unsafe { (*type_code)[0] }) {
        return None;
    }
    let l3_off = p.l4_off + ICMP_HLEN;
    let mut q = Quote {
        l3_off,
        l4_off: 0,
        proto: 0,
        src: [0; 4],
        dst: [0; 4],
        sport_be: 0,
        dport_be: 0,
    };
    if p.family == FAMILY_IPV4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3_off)?;
        let (vihl, frag, proto, src, dst) = unsafe {
            (
                (*ip).vihl,
                u16::from_be_bytes((*ip).frag),
                (*ip).ttl_proto[1],
                u32::from_ne_bytes((*ip).src),
                u32::from_ne_bytes((*ip).dst),
            )
        };
        let hlen = ((vihl & 0x0f) as usize) * 4;
        // A later fragment has no ports; options are skipped like the
        // outer header's.
        if vihl >> 4 != 4 || hlen < IPV4_HLEN || frag & 0x1fff != 0 {
            return None;
        }
        q.proto = proto;
        q.src = [src, 0, 0, 0];
        q.dst = [dst, 0, 0, 0];
        q.l4_off = l3_off + hlen;
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off)?;
        // An extension header (fragment included) makes `next` something
        // else than TCP/UDP: not walked, the kernel gets it.
        unsafe {
            if (*ip).vcf[0] >> 4 != 6 {
                return None;
            }
            q.proto = (*ip).next;
            q.src = words16(&(*ip).src);
            q.dst = words16(&(*ip).dst);
        }
        q.l4_off = l3_off + IPV6_HLEN;
    }
    if q.proto != PROTO_TCP && q.proto != PROTO_UDP {
        return None;
    }
    // The ports inside the IP packet, not in link-layer padding after it:
    // they are rewritten and covered by the ICMP checksum.
    if q.l4_off + 4 > p.l3_off + p.ip_len as usize {
        return None;
    }
    let ports: *const PortsHdr = ptr_at(ctx, q.l4_off)?;
    unsafe {
        q.sport_be = u16::from_ne_bytes((*ports).sport);
        q.dport_be = u16::from_ne_bytes((*ports).dport);
    }
    Some(q)
}

/// An error about a reply of `svc`: to the real server that owns the flow.
#[inline(always)]
fn to_real(ctx: &XdpContext, p: &Packet, q: &Quote, svc: &Service) -> Verdict {
    let is_nat = svc.flags & SVC_F_NAT != 0;
    if !is_nat && svc.flags & SVC_F_DR == 0 {
        return Verdict::aborted();
    }
    // The flow as its client sends it: the quoted reply reversed.
    let key = schedule::key(p.family, q.proto, &q.dst, &q.src, q.dport_be, q.sport_be);
    let Some((id, backend)) = owner(svc, &key) else {
        return Verdict::pass(event::ICMP_VIP);
    };
    if backend.family != p.family {
        return Verdict::aborted();
    }
    let v = if is_nat {
        // Routed like the flow's requests (see `service` in main.rs).
        if p.ttl <= 1 {
            return Verdict::pass(event::TTL_EXPIRED);
        }
        if translate(ctx, p, q, Dir::ToReal, &backend.addr, backend.port_be).is_none() {
            return Verdict::aborted();
        }
        let hop = fib::to_backend(ctx, p, id, &backend, 0, 0, false);
        nat::forward(ctx, p, hop)
    } else {
        dr::forward(ctx, p, id, &backend)
    };
    with_event(v, event::ICMP_TO_REAL)
}

/// A NAT real server's error about a client's packet: to the client, as
/// if the VIP had sent it.
#[inline(always)]
fn to_client(ctx: &XdpContext, p: &Packet, q: &Quote, rn: &ReverseNat) -> Verdict {
    let hop = match nat::reply_route(ctx, p, rn, &q.dst, 0, 0) {
        Ok(hop) => hop,
        Err(v) => return v,
    };
    // The outer source becomes the VIP whoever sent the error (the real
    // server or a router behind the balancer), as IPVS does: the client
    // knows only the VIP, and the server side's addresses stay private.
    if translate(ctx, p, q, Dir::ToClient, &rn.vip, rn.vip_port_be).is_none() {
        return Verdict::aborted();
    }
    if p.vlan {
        // As tagged NAT replies: the kernel's VLAN device forwards it.
        return Verdict::pass(event::ICMP_FROM_REAL);
    }
    with_event(nat::forward(ctx, p, hop), event::ICMP_FROM_REAL)
}

/// `v`, with `event` when nothing more telling (a miss) explains it.
#[inline(always)]
fn with_event(v: Verdict, event: u32) -> Verdict {
    if v.event == NONE {
        Verdict::new(v.action, event)
    } else {
        v
    }
}

/// The real server of the flow `key` of `svc`: its flow-table entry while
/// that real server may still carry it, else the one the Maglev ring (or
/// the sorry server) gives a request of this flow. Never writes the flow
/// table: an error does not open a flow.
#[inline(always)]
fn owner(svc: &Service, key: &FlowKey) -> Option<(u32, Backend)> {
    if let Some(flow) = schedule::lookup(key) {
        if flow.service_id == svc.id {
            if let Some(b) = schedule::flow_backend(flow.backend_id, svc.id) {
                return Some((flow.backend_id, b));
            }
        }
    }
    let id = schedule::ring_choice(svc, key)?;
    Some((id, *BACKENDS.get(id)?))
}

/// Rewrites one address in the outer header and in the quote, and one
/// quoted port, to `addr` / `port_be` (see `Dir`), fixing the outer IPv4
/// header checksum, the quoted IPv4 header checksum and the ICMP checksum.
/// `None` only if a header checked before is no longer in bounds.
#[inline(always)]
fn translate(
    ctx: &XdpContext,
    p: &Packet,
    q: &Quote,
    dir: Dir,
    addr: &[u32; 4],
    port_be: u16,
) -> Option<()> {
    let (outer_old, quoted_old, port_old) = match dir {
        Dir::ToReal => (&p.dst, &q.src, q.sport_be),
        Dir::ToClient => (&p.src, &q.dst, q.dport_be),
    };
    let check: *mut [u8; 2] = ptr_at(ctx, p.l4_off + ICMP_CHECK_OFF)?;
    // SAFETY: bounds checked by ptr_at (here and below).
    let mut c = u16::from_ne_bytes(unsafe { *check });
    if p.family == FAMILY_IPV4 {
        let qip: *mut Ipv4Hdr = ptr_at(ctx, q.l3_off)?;
        let ip: *mut Ipv4Hdr = ptr_at(ctx, p.l3_off)?;
        unsafe {
            let old_qcheck = u16::from_ne_bytes((*qip).check);
            let new_qcheck = csum::replace4(old_qcheck, quoted_old[0], addr[0]);
            (*qip).check = new_qcheck.to_ne_bytes();
            // ICMPv4's checksum has no pseudo-header: only the quote's
            // changes count (its address and its header checksum).
            c = csum::replace4(c, quoted_old[0], addr[0]);
            c = csum::replace2(c, old_qcheck, new_qcheck);
            let outer_check =
                csum::replace4(u16::from_ne_bytes((*ip).check), outer_old[0], addr[0]);
            (*ip).check = outer_check.to_ne_bytes();
            match dir {
                Dir::ToReal => {
                    (*qip).src = addr[0].to_ne_bytes();
                    (*ip).dst = addr[0].to_ne_bytes();
                }
                Dir::ToClient => {
                    (*qip).dst = addr[0].to_ne_bytes();
                    (*ip).src = addr[0].to_ne_bytes();
                }
            }
        }
    } else {
        let qip: *mut Ipv6Hdr = ptr_at(ctx, q.l3_off)?;
        let ip: *mut Ipv6Hdr = ptr_at(ctx, p.l3_off)?;
        // ICMPv6's checksum covers the outer addresses (pseudo-header)
        // and the quote.
        c = csum::replace16(c, quoted_old, addr);
        c = csum::replace16(c, outer_old, addr);
        unsafe {
            match dir {
                Dir::ToReal => {
                    (*qip).src = bytes16(addr);
                    (*ip).dst = bytes16(addr);
                }
                Dir::ToClient => {
                    (*qip).dst = bytes16(addr);
                    (*ip).src = bytes16(addr);
                }
            }
        }
    }
    let ports: *mut PortsHdr = ptr_at(ctx, q.l4_off)?;
    c = csum::replace2(c, port_old, port_be);
    unsafe {
        match dir {
            Dir::ToReal => (*ports).sport = port_be.to_ne_bytes(),
            Dir::ToClient => (*ports).dport = port_be.to_ne_bytes(),
        }
        *check = c.to_ne_bytes();
    }
    Some(())
}
