//! What a packet's handling ends in: an XDP action and, when there is one,
//! the event that explains it. `lb_xdp` counts both.

use aya_ebpf::bindings::xdp_action;

#[derive(Clone, Copy)]
pub struct Verdict {
    pub action: u32,
    /// `lb_common::event`, or `NONE`.
    pub event: u32,
}

/// No event: the verdict counter alone records it.
pub const NONE: u32 = u32::MAX;

impl Verdict {
    #[inline(always)]
    pub const fn new(action: u32, event: u32) -> Self {
        Self { action, event }
    }

    /// To the kernel, untouched or (NAT) rewritten.
    #[inline(always)]
    pub const fn pass(event: u32) -> Self {
        Self::new(xdp_action::XDP_PASS, event)
    }

    #[inline(always)]
    pub const fn drop(event: u32) -> Self {
        Self::new(xdp_action::XDP_DROP, event)
    }

    /// A state the agent must never create (e.g. an IPv6 backend behind an
    /// IPv4 VIP): ABORTED fires the `xdp:xdp_exception` tracepoint.
    #[inline(always)]
    pub const fn aborted() -> Self {
        Self::new(xdp_action::XDP_ABORTED, NONE)
    }
}

/// Early return of the handlers: `Err` carries the verdict of a packet that
/// stopped before the end.
pub type Outcome = Result<Verdict, Verdict>;
