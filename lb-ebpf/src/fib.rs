//! Route and neighbour lookup with `bpf_fib_lookup`, IPv4 and IPv6, and
//! the step that sends a frame where the lookup said.
//!
//! The lookup runs in the namespace of the ingress device, from that device
//! (as if the kernel were forwarding the packet), so the balancer host's
//! routes, rules and neighbour table decide, as they would for IPVS. The
//! kernel only answers when forwarding is enabled on the ingress device.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_NOT_FWDED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use lb_common::FAMILY_IPV4;

use crate::parse::{ptr_at, EthHdr, Packet};

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
    /// No usable route: unreachable, forwarding disabled, MTU exceeded...
    Miss,
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
    // SAFETY: a plain C struct; all-zero is its "no options" state.
    let mut params: FibParams = unsafe { zeroed() };
    params.l4_protocol = p.proto;
    params.sport = sport_be;
    params.dport = dport_be;
    // Lets the kernel check the egress MTU (FRAG_NEEDED -> the kernel path,
    // which fragments or answers "packet too big").
    params.__bindgen_anon_1.tot_len = if p.ip_len > 0xffff {
        0xffff
    } else {
        p.ip_len as u16
    };
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
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            &mut params,
            size_of::<FibParams>() as i32,
            0,
        )
    };
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
    } else {
        Fib::Miss
    }
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
