//! NAT: requests VIP:port -> real:port, replies real:port -> VIP:port, with
//! incremental checksum updates (IPv4 header, TCP, UDP, and the IPv6
//! pseudo-header), then routed like a router would: TTL / hop limit
//! decremented, next hop from `bpf_fib_lookup` (for requests through the
//! per-real-server cache `fib::to_backend`; replies go to clients, too many
//! destinations to cache, and are looked up packet by packet).
//!
//! When the kernel's tables cannot give a next hop (neighbour unresolved,
//! no route, MTU exceeded) the *rewritten* packet is passed, so the kernel
//! forwards it itself and resolves the neighbour for the packets after it.

use aya_ebpf::programs::XdpContext;
use lb_common::{csum, event, Backend, ReverseNat, FAMILY_IPV4, PROTO_TCP, PROTO_UDP};

use crate::{
    fib::{self, Fib},
    parse::{bytes16, ptr_at, Ipv4Hdr, Ipv6Hdr, Packet, PortsHdr, TCP_CHECK_OFF, UDP_CHECK_OFF},
    stats,
    verdict::{Verdict, NONE},
};

/// Which end of the packet a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Request: the destination (VIP:port -> real:port).
    Dst,
    /// Reply: the source (real:port -> VIP:port).
    Src,
}

/// A request for a NAT service, its backend already chosen.
#[inline(always)]
pub fn request(ctx: &XdpContext, p: &Packet, backend_id: u32, backend: &Backend) -> Verdict {
    if rewrite(ctx, p, Side::Dst, &backend.addr, backend.port_be).is_none() {
        return Verdict::aborted();
    }
    let fib = fib::to_backend(
        ctx,
        p,
        backend_id,
        backend,
        p.sport_be,
        backend.port_be,
        false,
    );
    forward(ctx, p, fib)
}

/// A packet from a NAT real server's (address, port, protocol).
#[inline(always)]
pub fn reply(ctx: &XdpContext, p: &Packet, rn: &ReverseNat) -> Verdict {
    let fib = match reply_route(ctx, p, rn, &p.src, rn.vip_port_be, p.dport_be) {
        Ok(fib) => fib,
        Err(v) => return v,
    };
    stats::event(event::NAT_REPLY);
    stats::reply(
        rn.service_id,
        rn.backend_id,
        crate::parse::frame_len(ctx) as u64,
    );
    if rewrite(ctx, p, Side::Src, &rn.vip, rn.vip_port_be).is_none() {
        return Verdict::aborted();
    }
    if p.vlan {
        // See `reply_route`: the kernel forwards (and filters) tagged replies.
        return Verdict::pass(NONE);
    }
    forward(ctx, p, fib)
}

/// Whether `p`, sent by (or, for an ICMP error, about a packet sent to)
/// the NAT real server `real` of `rn`, may be rewritten to come from the
/// VIP, and where it then goes (looked up from the VIP with ports
/// `sport_be` -> `dport_be`). `Err` is the verdict of a packet that must
/// not be: it goes to the kernel untouched. Shared by replies and by the
/// real servers' ICMP errors (`icmp`), so both obey the same rule.
#[inline(always)]
pub fn reply_route(
    ctx: &XdpContext,
    p: &Packet,
    rn: &ReverseNat,
    real: &[u32; 4],
    sport_be: u16,
    dport_be: u16,
) -> Result<Fib, Verdict> {
    // Reverse NAT is stateless (another balancer can take over flows it
    // never saw), so the source address and port alone prove nothing:
    // anyone could send "from" a real server to any host and have lb
    // rewrite it to come from the VIP and send it past netfilter and
    // rp_filter. A genuine reply arrives where the balancer's own route to
    // that real server leaves; anything else goes to the kernel untouched.
    let ingress = ctx.ingress_ifindex() as u32;
    let same_device = fib::reply_device(ctx, p, rn.backend_id, real) == Some(ingress);
    if !same_device && !p.vlan {
        return Err(Verdict::pass(event::REPLY_WRONG_INGRESS));
    }
    // A tagged frame arrives on the trunk while the route names a VLAN
    // device, which XDP cannot relate to the tag: one whose route is the
    // trunk itself came from another network than the real server's, and
    // any other is rewritten but handed to the kernel (never sent past it
    // with TX/REDIRECT), so its VLAN device, rp_filter and netfilter judge.
    if p.vlan && same_device {
        return Err(Verdict::pass(event::REPLY_WRONG_INGRESS));
    }
    // Checked before any change so that the kernel sees the packet as it came
    // and its ICMP time exceeded quotes it correctly.
    if p.ttl <= 1 {
        return Err(Verdict::pass(event::TTL_EXPIRED));
    }
    // The balancer's own connections to a real server's service port (its
    // health checks, an administrator's curl) are answered from the same
    // address and port as NAT replies. They are for this host: looking the
    // destination up before touching the packet tells them apart.
    let fib = fib::lookup(ctx, p, &rn.vip, &p.dst, sport_be, dport_be);
    if let Fib::Local = fib {
        return Err(Verdict::pass(NONE));
    }
    Ok(fib)
}

/// Sends the rewritten packet where the FIB said (also for the ICMP
/// errors `icmp` translates).
#[inline(always)]
pub fn forward(ctx: &XdpContext, p: &Packet, fib: Fib) -> Verdict {
    match fib {
        Fib::Forward {
            ifindex,
            smac,
            dmac,
        } => {
            // A tagged frame sent to another device would carry the tag of the
            // ingress link; the kernel's VLAN devices know the egress tag.
            if p.vlan && ifindex != ctx.ingress_ifindex() as u32 {
                return Verdict::pass(NONE);
            }
            // Only now: a passed packet has its TTL decremented by the kernel.
            if decrement_ttl(ctx, p).is_none() {
                return Verdict::aborted();
            }
            match fib::send(ctx, ifindex, &smac, &dmac) {
                Some(action) => Verdict::new(action, NONE),
                None => Verdict::aborted(),
            }
        }
        Fib::NoNeigh => Verdict::pass(event::NEIGH_MISS),
        // A real server address that is local to the balancer is a
        // configuration the kernel may still make sense of.
        Fib::Miss | Fib::Local | Fib::NoForwarding => Verdict::pass(event::FIB_MISS),
    }
}

/// Replaces one address and port of the packet, fixing the checksums.
/// `None` only if a header checked by the parser is no longer in bounds.
#[inline(always)]
fn rewrite(ctx: &XdpContext, p: &Packet, side: Side, addr: &[u32; 4], port_be: u16) -> Option<()> {
    let (old_addr, old_port) = match side {
        Side::Dst => (&p.dst, p.dport_be),
        Side::Src => (&p.src, p.sport_be),
    };
    let v4 = p.family == FAMILY_IPV4;

    // Transport checksum: covers the ports and, through the pseudo-header,
    // the addresses.
    let check_off = if p.proto == PROTO_TCP {
        TCP_CHECK_OFF
    } else {
        UDP_CHECK_OFF
    };
    let check: *mut [u8; 2] = ptr_at(ctx, p.l4_off + check_off)?;
    // SAFETY: bounds checked by ptr_at (here and below).
    let old_check = u16::from_ne_bytes(unsafe { *check });
    // UDP checksum 0 stays 0: over IPv4 it means "none"; over IPv6 it is
    // invalid except for zero-checksum tunnels (RFC 6936), and the
    // receiver judges it as the sender sent it. Updating it would make a
    // wrong non-zero checksum of it.
    if !(p.proto == PROTO_UDP && old_check == 0) {
        let mut c = if v4 {
            csum::replace4(old_check, old_addr[0], addr[0])
        } else {
            csum::replace16(old_check, old_addr, addr)
        };
        c = csum::replace2(c, old_port, port_be);
        if p.proto == PROTO_UDP {
            c = csum::udp_nonzero(c);
        }
        unsafe { *check = c.to_ne_bytes() };
    }
    let ports: *mut PortsHdr = ptr_at(ctx, p.l4_off)?;
    unsafe {
        match side {
            Side::Dst => (*ports).dport = port_be.to_ne_bytes(),
            Side::Src => (*ports).sport = port_be.to_ne_bytes(),
        }
    }

    if v4 {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, p.l3_off)?;
        unsafe {
            let c = csum::replace4(u16::from_ne_bytes((*ip).check), old_addr[0], addr[0]);
            (*ip).check = c.to_ne_bytes();
            match side {
                Side::Dst => (*ip).dst = addr[0].to_ne_bytes(),
                Side::Src => (*ip).src = addr[0].to_ne_bytes(),
            }
        }
    } else {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, p.l3_off)?;
        unsafe {
            match side {
                Side::Dst => (*ip).dst = bytes16(addr),
                Side::Src => (*ip).src = bytes16(addr),
            }
        }
    }
    Some(())
}

/// One router hop. The caller has made sure TTL > 1.
#[inline(always)]
fn decrement_ttl(ctx: &XdpContext, p: &Packet) -> Option<()> {
    if p.family == FAMILY_IPV4 {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, p.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let old = (*ip).ttl_proto;
            let new = [old[0].wrapping_sub(1), old[1]];
            let c = csum::replace2(
                u16::from_ne_bytes((*ip).check),
                u16::from_ne_bytes(old),
                u16::from_ne_bytes(new),
            );
            (*ip).ttl_proto = new;
            (*ip).check = c.to_ne_bytes();
        }
    } else {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, p.l3_off)?;
        unsafe { (*ip).hop_limit = (*ip).hop_limit.wrapping_sub(1) };
    }
    Some(())
}
