//! The XDP program `lb_xdp`: parses a frame, and forwards packets of
//! configured virtual services (DR or NAT) and NAT replies; everything else
//! goes to the kernel untouched.
//!
//! One module per concern: `parse` (headers), `schedule` (flow table and
//! Maglev), `nat` / `dr` (rewrites), `fib` (next hop and transmit), `icmp`,
//! `stats` (counters), `maps` (the contract with the agent).
//!
//! What happens to which packet (the fixtures in
//! `tests/tests/xdp_fixtures.rs` check every line):
//!
//! | packet                                   | verdict            | event             |
//! |------------------------------------------|--------------------|-------------------|
//! | IPv4/IPv6, not ICMP, neither to a VIP address nor from a NAT real server's (`filter`) | PASS, untouched, **not counted** | - |
//! | not IPv4/IPv6 (ARP, LLDP, 2nd VLAN tag)  | PASS, untouched    | -                 |
//! | shorter than a header it announces       | PASS, untouched    | `TRUNCATED`       |
//! | bad version / IHL, IPv6 extension header | PASS, untouched    | `MALFORMED`       |
//! | TCP/UDP fragment (to a VIP address, or from a NAT real server's) | PASS, untouched | `FRAGMENT` |
//! | ICMP / ICMPv6 (echo, the host's own errors) | PASS, untouched  | -                 |
//! | ICMP error quoting a VIP:port reply, or (NAT) quoting a client's packet to a real server | sent on like the flow's packets (`icmp`) | `ICMP_TO_REAL` / `ICMP_FROM_REAL` |
//! | TCP/UDP not for a service, not a reply   | PASS, untouched    | -                 |
//! | "reply" on a device the route to its real server does not leave by | PASS, untouched | `REPLY_WRONG_INGRESS` |
//! | NAT reply, 802.1Q tagged                 | PASS, rewritten (the kernel judges) | (`NAT_REPLY`) |
//! | NAT request/reply with TTL <= 1          | PASS, untouched    | `TTL_EXPIRED`     |
//! | service request, no real server, no sorry server | DROP        | `NO_BACKEND`      |
//! | new flow whose ring pick is another service's real server (a torn read of a slot being rewritten) | DROP | `NO_BACKEND` |
//! | NAT request/reply, next hop resolved     | TX / REDIRECT, TTL-1 | (`NAT_REPLY`)   |
//! | NAT, neighbour unresolved / no route     | PASS, rewritten    | `NEIGH_MISS` / `FIB_MISS` |
//! | NAT, 802.1Q tagged, egress != ingress    | PASS, rewritten    | -                 |
//! | DR, next hop resolved                    | TX / REDIRECT, MACs only (tagged: TX) | - |
//! | DR, forwarding off on the balancer      | as above, next hop from `DR_NEXT_HOPS` (the agent's neighbour copy) | - |
//! | DR, neighbour unresolved / no route      | DROP               | `NEIGH_MISS` / `FIB_MISS` |
//! | IPv4 options on a service packet         | forwarded as above | `IP_OPTIONS`      |
//! | agent bug (unknown forwarding flag, backend of the other family) | ABORTED | - |
//!
//! The first row is the first test, before any other; every other row is
//! about packets that pass it (a frame too short for its addresses takes
//! the full path and counts `TRUNCATED`), so an event such as `MALFORMED`
//! or `FRAGMENT` counts packets to a VIP address or from a NAT real
//! server's, not every packet of the host.
//!
//! A packet that may be for a service (its VIP:port passes the filter)
//! looks its flow up first: an established flow's entry names its service
//! by id and `SERVICES_BY_ID` confirms the VIP, so the `SERVICES` hash
//! lookup is paid only by new flows, SYNs and entries that went stale
//! (`to_service`, `schedule`).
//!
//! A request's next hop comes from a per-CPU cache of `bpf_fib_lookup`
//! answers per real server (`fib::to_backend`): a neighbour or route change
//! reaches requests within `lb_common::NEXT_HOP_TTL_NS`, while a missing
//! neighbour or route is asked again on every packet.
#![no_std]
#![no_main]

mod dr;
mod fib;
mod filter;
mod icmp;
mod log;
mod maps;
mod nat;
mod parse;
mod schedule;
mod stats;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{event, Backend, EndpointKey, SVC_F_DR, SVC_F_NAT};

use crate::{
    filter::Ours,
    maps::{may_hold, may_hold_bit, REVERSE_NAT, SERVICES},
    parse::{Packet, L4},
    verdict::{Outcome, Verdict, NONE},
};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    // Before everything, counters included: a packet to and from other
    // addresses than ours is the host's, and it should cost the host as
    // little as we can make it (see `filter`). Not counted in
    // VERDICT_STATS: its "pass" is what the program passed after a look.
    let to_vip = match first_test(&ctx) {
        Ours::No => return xdp_action::XDP_PASS,
        Ours::ToVip => true,
        Ours::FromReal => false,
    };
    finish(try_lb_xdp(&ctx, to_vip))
}

/// ICMP, reached from `lb_xdp` by a tail call (`icmp::jump`): the same
/// parse again, then `icmp::handle`, counted like `lb_xdp`'s verdicts. A
/// program of its own so that the error path's rewrites get a stack frame
/// of their own: inlined into `lb_xdp` they made its frame the deepest
/// path, and the flow-first lookup and the log records no longer fit the
/// kernel's 512 bytes beside them.
#[xdp]
pub fn lb_xdp_icmp(ctx: XdpContext) -> u32 {
    finish(icmp_path(&ctx))
}

#[inline(always)]
fn icmp_path(ctx: &XdpContext) -> Outcome {
    let l2 = parse::ethernet(ctx)?;
    let p = match l2.ethertype {
        parse::ETH_P_IP => parse::ipv4(ctx, &l2)?,
        parse::ETH_P_IPV6 => parse::ipv6(ctx, &l2)?,
        _ => return Ok(Verdict::pass(NONE)),
    };
    match p.l4 {
        L4::Icmp => Ok(icmp::handle(ctx, &p)),
        _ => Ok(Verdict::pass(NONE)),
    }
}

/// Counts a verdict (and its event) and returns its action.
#[inline(always)]
fn finish(outcome: Outcome) -> u32 {
    let v = match outcome {
        Ok(v) | Err(v) => v,
    };
    if v.event != NONE {
        stats::event(v.event);
    }
    stats::verdict(v.action);
    v.action
}

/// The first test (`filter`): `Ours::No` for a TCP/UDP (or any non-ICMP)
/// IPv4/IPv6 packet that is neither to a VIP address nor from a NAT real
/// server's address, read up to its addresses, nothing validated, ports
/// not parsed. Everything the test cannot judge (ICMP, other ethertypes,
/// short frames) is `ToVip`: the full path decides.
#[inline(always)]
fn first_test(ctx: &XdpContext) -> Ours {
    let Ok(l2) = parse::ethernet(ctx) else {
        return Ours::ToVip;
    };
    if l2.ethertype != parse::ETH_P_IP && l2.ethertype != parse::ETH_P_IPV6 {
        return Ours::ToVip;
    }
    match parse::glance(ctx, &l2) {
        Some(g) if !parse::is_icmp(&g) => filter::ours(g.family, &g.src, &g.dst),
        _ => Ours::ToVip,
    }
}

/// `to_vip`: the first test found the destination may be a VIP address
/// (false: only the source may be a NAT real server's).
#[inline(always)]
fn try_lb_xdp(ctx: &XdpContext, to_vip: bool) -> Outcome {
    let l2 = parse::ethernet(ctx)?;
    let p = match l2.ethertype {
        parse::ETH_P_IP => parse::ipv4(ctx, &l2)?,
        parse::ETH_P_IPV6 => parse::ipv6(ctx, &l2)?,
        // ARP, LLDP, a second VLAN tag...: the host's business.
        _ => return Ok(Verdict::pass(NONE)),
    };
    match p.l4 {
        L4::Ports => {}
        L4::Icmp => return Ok(icmp::jump(ctx)),
        L4::Other => return Ok(Verdict::pass(NONE)),
    }

    let vip = EndpointKey {
        addr: p.dst,
        port_be: p.dport_be,
        proto: p.proto,
        family: p.family,
    };
    if to_vip {
        if let Some(outcome) = to_service(ctx, &p, &vip) {
            return outcome;
        }
    }

    let real = EndpointKey {
        addr: p.src,
        port_be: p.sport_be,
        proto: p.proto,
        family: p.family,
    };
    if !may_hold(&real) {
        return Ok(Verdict::pass(NONE));
    }
    if let Some(rn) = REVERSE_NAT.get_ptr(real) {
        let rn = unsafe { *rn };
        return Ok(nat::reply(ctx, &p, &rn));
    }
    Ok(Verdict::pass(NONE))
}

/// A packet to an address that may be a VIP's: its outcome, or `None`
/// when it is not for a service. The flow table first, so an established
/// flow's packet costs a flow lookup and array reads, with no `SERVICES`
/// hash lookup and no filter word (`schedule::established` checks the
/// entry's VIP); everything else asks the filter for its (VIP, port), then
/// finds its service through `SERVICE_INDEX` where it can
/// (`schedule::indexed_service`), through `SERVICES` otherwise.
#[inline(always)]
fn to_service(ctx: &XdpContext, p: &Packet, vip: &EndpointKey) -> Option<Outcome> {
    let key = schedule::key_of(p);
    let known = if parse::tcp_syn(ctx, p) {
        None
    } else {
        schedule::lookup(&key)
    };
    // One call of `forward` below for both paths: it inlines the rewrites
    // and the next-hop lookup, whose stack a second copy would not fit.
    let (service_id, flags, choice) = 'found: {
        if let Some(flow) = &known {
            if let Some((flags, backend)) = schedule::established(vip, flow) {
                let choice = schedule::Choice {
                    id: flow.backend_id,
                    backend,
                    new_flow: false,
                };
                break 'found (flow.service_id, flags, choice);
            }
        }
        // Most packets to a VIP address that are not for a service leave
        // here, before the hash lookup.
        let bit = lb_common::endpoint_filter_bit(vip);
        if !may_hold_bit(bit) {
            return None;
        }
        let svc = match schedule::indexed_service(vip, bit) {
            Some(svc) => svc,
            // SAFETY: a map value pointer; copied because the agent may
            // replace the value while we run, and one packet should see one
            // version.
            None => unsafe { *SERVICES.get_ptr(vip)? },
        };
        // Before scheduling: a packet that goes no further opens no flow.
        if let Err(v) = check(p, svc.flags) {
            return Some(Err(v));
        }
        match schedule::choose(p, &svc, &key, known) {
            Ok(choice) => (svc.id, svc.flags, choice),
            Err(v) => return Some(Err(v)),
        }
    };
    Some(check(p, flags).and_then(|_| forward(ctx, p, service_id, flags, &choice)))
}

/// What a service packet must pass before it is scheduled or forwarded.
#[inline(always)]
fn check(p: &Packet, flags: u32) -> Result<(), Verdict> {
    let nat = flags & SVC_F_NAT != 0;
    if !nat && flags & SVC_F_DR == 0 {
        return Err(Verdict::aborted());
    }
    // Routed (NAT) packets hop like through a router: one that would expire
    // here goes to the kernel unchanged, which answers "time exceeded".
    if nat && p.ttl <= 1 {
        return Err(Verdict::pass(event::TTL_EXPIRED));
    }
    Ok(())
}

/// A packet of service `service_id` (forwarding `flags`) on its way to the
/// real server `choice`, `check`ed: counted and rewritten.
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    p: &Packet,
    service_id: u32,
    flags: u32,
    choice: &schedule::Choice,
) -> Outcome {
    if p.ip_options {
        // Forwarded with the options intact: the rewrite honours the header
        // length and touches neither them nor their checksum coverage.
        stats::event(event::IP_OPTIONS);
    }
    let backend: &Backend = &choice.backend;
    if backend.family != p.family {
        return Err(Verdict::aborted());
    }
    stats::request(
        service_id,
        choice.id,
        parse::frame_len(ctx) as u64,
        choice.new_flow,
    );
    Ok(if flags & SVC_F_NAT != 0 {
        nat::request(ctx, p, choice.id, backend)
    } else {
        dr::forward(ctx, p, choice.id, backend)
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
