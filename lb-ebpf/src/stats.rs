//! Counters: per verdict, per event, per service and per real server.
//!
//! All maps are per-CPU, so plain increments are race-free; the agent sums
//! the CPUs when it reads them.

use lb_common::Counters;

use crate::maps::{BACKEND_STATS, EVENT_STATS, SERVICE_STATS, VERDICT_STATS};

#[inline(always)]
fn bump(map: &aya_ebpf::maps::PerCpuArray<u64>, index: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot, only this CPU touches it now.
        unsafe { *c += 1 };
    }
}

/// Every packet's final XDP action.
#[inline(always)]
pub fn verdict(action: u32) {
    bump(&VERDICT_STATS, action);
}

/// One `lb_common::event`.
#[inline(always)]
pub fn event(event: u32) {
    bump(&EVENT_STATS, event);
}

#[inline(always)]
fn add(map: &aya_ebpf::maps::PerCpuArray<Counters>, index: u32, f: impl Fn(&mut Counters)) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: as above.
        f(unsafe { &mut *c });
    }
}

/// A request packet forwarded to a backend; `new_flow` when it opened a
/// flow-table entry (that is what `conns` counts).
#[inline(always)]
pub fn request(service_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    let f = |c: &mut Counters| {
        c.in_packets += 1;
        c.in_bytes += bytes;
        if new_flow {
            c.conns += 1;
        }
    };
    add(&SERVICE_STATS, service_id, f);
    add(&BACKEND_STATS, backend_id, f);
}

/// A NAT reply rewritten back to the VIP.
#[inline(always)]
pub fn reply(service_id: u32, backend_id: u32, bytes: u64) {
    let f = |c: &mut Counters| {
        c.out_packets += 1;
        c.out_bytes += bytes;
    };
    add(&SERVICE_STATS, service_id, f);
    add(&BACKEND_STATS, backend_id, f);
}
