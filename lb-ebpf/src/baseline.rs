//! Baseline XDP programs for the benchmarks (`lb-bench`): the least work an
//! XDP forwarder can do, so the balancer's cost is reported as a ratio to it.
//!
//! - `xdp_baseline_tx`: swaps the Ethernet addresses and sends the frame back
//!   out of the device it came in on (XDP_TX). The per-packet cost suite
//!   times it next to `lb_xdp` through BPF_PROG_TEST_RUN.
//! - `xdp_baseline_redirect`: gives IPv4 frames fixed MACs and redirects
//!   them to a fixed device, both taken from `BASELINE_FWD[0]` (written by
//!   the benchmark). No parsing beyond the EtherType, no route lookup: the
//!   packet rate suite uses it as the XDP limit of the balancer's path.
//! - `xdp_count_drop`: counts IPv4 frames in `BASELINE_COUNT` and drops
//!   them: the packet rate suite's sink on the real server side, so what
//!   arrived is counted without a socket or an ICMP reply in the way.
//!
//! Neither program is part of the load balancer; they live in this crate
//! only so aya-build compiles them with the same toolchain and flags.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: [u8; 2] = [0x08, 0x00];

/// Where `xdp_baseline_redirect` sends frames. Mirrored (same layout, with a
/// size assert) in `lb-bench`; kept out of `lb-common` because the balancer
/// has no use for it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BaselineFwd {
    /// Egress device; 0 = not configured yet (frames pass to the kernel).
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<BaselineFwd>() == 16);

/// Written by the benchmark before it attaches the program; read per packet.
#[map]
pub static BASELINE_FWD: Array<BaselineFwd> = Array::with_max_entries(1, 0);

/// IPv4 frames seen by `xdp_count_drop`, per CPU. Read by the benchmark.
#[map]
pub static BASELINE_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    proto: [u8; 2],
}

#[inline(always)]
fn eth(ctx: &XdpContext) -> Option<*mut EthHdr> {
    if ctx.data() + ETH_HLEN > ctx.data_end() {
        return None;
    }
    Some(ctx.data() as *mut EthHdr)
}

#[xdp]
pub fn xdp_baseline_tx(ctx: XdpContext) -> u32 {
    let Some(eth) = eth(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: the 14 bytes were bounds checked by `eth`.
    unsafe { core::mem::swap(&mut (*eth).src, &mut (*eth).dst) };
    xdp_action::XDP_TX
}

#[xdp]
pub fn xdp_baseline_redirect(ctx: XdpContext) -> u32 {
    let Some(eth) = eth(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by `eth`.
    if unsafe { (*eth).proto } != ETH_P_IP {
        // ARP and the like stay with the kernel, as they do under lb_xdp.
        return xdp_action::XDP_PASS;
    }
    let Some(fwd) = BASELINE_FWD.get(0) else {
        return xdp_action::XDP_PASS;
    };
    if fwd.ifindex == 0 {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bounds checked by `eth`.
    unsafe {
        (*eth).src = fwd.smac;
        (*eth).dst = fwd.dmac;
    }
    // SAFETY: plain helper call; flags 0 is valid.
    unsafe { bpf_redirect(fwd.ifindex, 0) as u32 }
}

#[xdp]
pub fn xdp_count_drop(ctx: XdpContext) -> u32 {
    let Some(eth) = eth(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by `eth`.
    if unsafe { (*eth).proto } != ETH_P_IP {
        return xdp_action::XDP_PASS;
    }
    if let Some(n) = BASELINE_COUNT.get_ptr_mut(0) {
        // SAFETY: a per-CPU value: no other writer while this CPU runs us.
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
