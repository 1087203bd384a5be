//! Route and neighbour lookup with `bpf_fib_lookup`, IPv4 and IPv6, and
//! the step that sends a frame where the lookup said.
//!
//! The lookup runs in the namespace of the ingress device, from that device
//! (as if the kernel were forwarding the packet), so the balancer host's
//! routes, rules and neighbour table decide, as they would for IPVS. The
//! kernel only answers when forwarding is enabled on the ingress device.
//!
//! A balancer with forwarding off (`ip_forward=0`, as seed 000's LVS-DR
//! setup leaves it: IPVS DR does not need it) gets "forwarding disabled"
//! for every lookup. DR requests then take the real server's next hop from
//! `DR_NEXT_HOPS`, which the agent fills from the neighbour table
//! ([`to_backend`] with `dr_fallback`); NAT still needs forwarding.
//!
//! Requests to a real server use a per-CPU cache of that lookup
//! ([`to_backend`], map `NEXT_HOPS`): a full route + neighbour lookup was
//! about half of an established flow's per-packet cost, and its answer for
//! one real server is the same packet after packet.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::generated::{bpf_fib_lookup, bpf_ktime_get_coarse_ns, bpf_redirect},
    programs::XdpContext,
};
use lb_common::{AddrKey, Backend, FAMILY_IPV4, NEXT_HOP_TTL_NS};

use crate::{
    maps::{DR_NEXT_HOPS, NEXT_HOPS},
    parse::{ptr_at, EthHdr, Packet},
};

// `NEXT_HOP_TTL_NS` bounds how late a route or neighbour change (a real
// server's new MAC, a neighbour entry that failed, a new egress route)
// reaches requests of established and new flows alike; one full lookup per
// real server per CPU per period costs nothing measurable at any packet rate.

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

pub enum Fib {
    /// Next hop resolved: send out of `ifindex` with these MACs.
    Forward {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    /// Route found, neighbour not resolved (yet).
    NoNeigh,
    /// The destination is not forwarded: an address of this host (or a
    /// broadcast/multicast route).
    Local,
    /// Forwarding is disabled on the ingress device: the kernel does not
    /// look anything up.
    NoForwarding,
    /// No usable route: unreachable, MTU exceeded...
    Miss,
}

/// A successful `bpf_fib_lookup` towards one real server, as one CPU last
/// made it: `NEXT_HOPS[backend id]`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NextHop {
    /// The real server the entry was resolved for: backend ids are reused
    /// by the agent, so an entry only counts for the same address.
    addr: [u32; 4],
    /// The device the lookup was made from (the route may depend on it).
    ingress: u32,
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
    /// The largest IP packet length the lookup's MTU check has passed: a
    /// longer packet asks the kernel again, so a packet the egress MTU
    /// cannot carry still goes to the kernel (which fragments it or answers
    /// "too big") at once, not only after the entry expires.
    ok_len: u32,
    /// `bpf_ktime_get_coarse_ns` after which the entry is not used.
    expires: u64,
}
const _: () = assert!(size_of::<NextHop>() == 48);

/// [`lookup`] of a request's path to `backend` (id `backend_id`), from the
/// per-CPU cache when it has a fresh entry for this real server, ingress
/// device and a packet this long.
///
/// Only successes are cached: an unresolved neighbour or a missing route is
/// looked up again on every packet, so the kernel's resolution is seen on
/// the first packet after it. The cache is per real server, not per flow:
/// it assumes the path to a real server does not depend on the client's
/// address or the ports (source-based policy routing or a multipath route
/// to a real server would see every flow take the path of whichever
/// packet refreshed the entry). DR real servers share a link with the
/// balancer, where this holds by construction.
///
/// With `dr_fallback` (DR requests), a lookup refused because forwarding is
/// off is answered from the agent's `DR_NEXT_HOPS` instead, and that answer
/// is cached the same way.
#[inline(always)]
pub fn to_backend(
    ctx: &XdpContext,
    p: &Packet,
    backend_id: u32,
    backend: &Backend,
    sport_be: u16,
    dport_be: u16,
    dr_fallback: bool,
) -> Fib {
    let ingress = ctx.ingress_ifindex() as u32;
    // Coarse (tick resolution) is plenty for a TTL of tens of milliseconds,
    // and is a plain read of the timekeeper, not a clock source access.
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let slot = NEXT_HOPS.get_ptr_mut(backend_id);
    if let Some(h) = slot {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        let h = unsafe { &*h };
        if now < h.expires && h.ingress == ingress && h.addr == backend.addr && p.ip_len <= h.ok_len
        {
            return Fib::Forward {
                ifindex: h.ifindex,
                smac: h.smac,
                dmac: h.dmac,
            };
        }
    }
    let mut fib = lookup(ctx, p, &p.src, &backend.addr, sport_be, dport_be);
    if dr_fallback {
        if let Fib::NoForwarding = fib {
            fib = dr_next_hop(backend);
        }
    }
    if let (
        Fib::Forward {
            ifindex,
            smac,
            dmac,
        },
        Some(h),
    ) = (&fib, slot)
    {
        // SAFETY: as above.
        unsafe {
            *h = NextHop {
                addr: backend.addr,
                ingress,
                ifindex: *ifindex,
                smac: *smac,
                dmac: *dmac,
                ok_len: p.ip_len,
                expires: now + NEXT_HOP_TTL_NS,
            }
        };
    }
    fib
}

/// The agent's next hop for a DR real server; `NoNeigh` when it has none
/// (its neighbour entry is not resolved, or the agent has not run yet).
#[inline(always)]
fn dr_next_hop(backend: &Backend) -> Fib {
    let key = AddrKey {
        addr: backend.addr,
        family: backend.family,
        _pad: [0; 3],
    };
    // SAFETY: a map value pointer, read at once; the agent replaces values
    // whole, so a torn read could mix two MACs of one real server at worst.
    match unsafe { DR_NEXT_HOPS.get(key) } {
        Some(h) => Fib::Forward {
            ifindex: h.ifindex,
            smac: h.smac,
            dmac: h.dmac,
        },
        None => Fib::NoNeigh,
    }
}

/// The device the balancer's own route to a NAT real server leaves by
/// (backend `backend_id`, address `real`, which is the source of the reply
/// `p`): where a genuine reply from it comes in. From the request path's
/// cached next hop when this CPU has a fresh one for that real server,
/// else looked up (as for a request from the reply's client, ports
/// swapped; no MTU check, the route alone matters). `None` when the kernel
/// has no route to it (or refuses to look up).
#[inline(always)]
pub fn reply_device(ctx: &XdpContext, p: &Packet, backend_id: u32, real: &[u32; 4]) -> Option<u32> {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if let Some(h) = NEXT_HOPS.get_ptr(backend_id) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        let h = unsafe { &*h };
        if now < h.expires && h.addr == *real {
            return Some(h.ifindex);
        }
    }
    let (rc, ifindex) = raw_lookup(ctx, p, &p.dst, real, p.dport_be, p.sport_be, 0);
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 || rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Some(ifindex)
    } else {
        None
    }
}

/// Looks up the path of a packet from `src` to `dst` (the addresses it will
/// carry when it leaves), with the ports it will carry.
#[inline(always)]
pub fn lookup(
    ctx: &XdpContext,
    p: &Packet,
    src: &[u32; 4],
    dst: &[u32; 4],
    sport_be: u16,
    dport_be: u16,
) -> Fib {
    // The length lets the kernel check the egress MTU (FRAG_NEEDED -> the
    // kernel path, which fragments or answers "packet too big").
    let tot_len = if p.ip_len > 0xffff {
        0xffff
    } else {
        p.ip_len as u16
    };
    // SAFETY: a plain C struct; all-zero is its "no options" state.
    let mut params: FibParams = unsafe { zeroed() };
    let rc = fib_call(ctx, p, &mut params, src, dst, sport_be, dport_be, tot_len);
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        Fib::Forward {
            ifindex: params.ifindex,
            smac: params.smac,
            dmac: params.dmac,
        }
    } else if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Fib::NoNeigh
    } else if rc == BPF_FIB_LKUP_RET_NOT_FWDED as i64 {
        Fib::Local
    } else if rc == BPF_FIB_LKUP_RET_FWD_DISABLED as i64 {
        Fib::NoForwarding
    } else {
        Fib::Miss
    }
}

/// A lookup whose only answer of interest is the egress device:
/// (return code, `ifindex`).
#[inline(always)]
fn raw_lookup(
    ctx: &XdpContext,
    p: &Packet,
    src: &[u32; 4],
    dst: &[u32; 4],
    sport_be: u16,
    dport_be: u16,
    tot_len: u16,
) -> (i64, u32) {
    // SAFETY: as in `lookup`.
    let mut params: FibParams = unsafe { zeroed() };
    let rc = fib_call(ctx, p, &mut params, src, dst, sport_be, dport_be, tot_len);
    (rc, params.ifindex)
}

/// `bpf_fib_lookup` from the ingress device with these addresses, ports
/// and length (0: no MTU check); the answer is left in `params`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fib_call(
    ctx: &XdpContext,
    p: &Packet,
    params: &mut FibParams,
    src: &[u32; 4],
    dst: &[u32; 4],
    sport_be: u16,
    dport_be: u16,
    tot_len: u16,
) -> i64 {
    params.l4_protocol = p.proto;
    params.sport = sport_be;
    params.dport = dport_be;
    params.__bindgen_anon_1.tot_len = tot_len;
    params.ifindex = ctx.ingress_ifindex() as u32;
    if p.family == FAMILY_IPV4 {
        params.family = AF_INET;
        params.__bindgen_anon_3.ipv4_src = src[0];
        params.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_3.ipv6_src = *src;
        params.__bindgen_anon_4.ipv6_dst = *dst;
    }
    // SAFETY: params is a valid, writable bpf_fib_lookup of the size given.
    unsafe { bpf_fib_lookup(ctx.ctx.cast(), params, size_of::<FibParams>() as i32, 0) }
}

/// Rewrites the MACs and sends the frame: back out of the ingress device
/// (XDP_TX) or to another one (XDP_REDIRECT). Returns the XDP action, or
/// `None` when the Ethernet header is not there (cannot happen after a
/// successful parse, but the verifier wants the check).
#[inline(always)]
pub fn send(ctx: &XdpContext, ifindex: u32, smac: &[u8; 6], dmac: &[u8; 6]) -> Option<u32> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*eth).src = *smac;
        (*eth).dst = *dmac;
    }
    if ifindex == ctx.ingress_ifindex() as u32 {
        Some(xdp_action::XDP_TX)
    } else {
        // SAFETY: plain helper call; returns XDP_REDIRECT, or XDP_ABORTED
        // for invalid flags.
        Some(unsafe { bpf_redirect(ifindex, 0) } as u32)
    }
}
