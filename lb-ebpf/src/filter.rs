//! The data plane's first test: could this packet be ours at all?
//!
//! `ENDPOINT_FILTER` (written by the agent, see
//! `lb-userspace/src/dataplane/filter.rs`) holds, besides a bit per key of
//! `SERVICES` and `REVERSE_NAT`, a bit per address of those keys
//! (`lb_common::addr_filter_bit`): VIP addresses as destinations, NAT real
//! servers' addresses as sources, all in the map's first cache line. A
//! TCP/UDP packet whose destination and source bits are both clear is
//! neither for a service nor a NAT reply: it goes to the kernel after one
//! header read and two word reads, before its ports are parsed and before
//! any hash lookup. Bits are only ever too many (another address shares
//! one): such a packet takes the full path, as every packet did before.

use lb_common::{addr_filter_bit, AddrRole};

use crate::maps::ENDPOINT_FILTER;

#[inline(always)]
fn bit_set(bit: u32) -> bool {
    match ENDPOINT_FILTER.get(bit >> 6) {
        Some(w) => *w & (1u64 << (bit & 63)) != 0,
        // Cannot happen (the map is never smaller): take the full path.
        None => true,
    }
}

/// False when a packet from `src` to `dst` is certainly not ours.
#[inline(always)]
pub fn may_be_ours(family: u8, src: &[u32; 4], dst: &[u32; 4]) -> bool {
    bit_set(addr_filter_bit(AddrRole::Dst, family, dst))
        || bit_set(addr_filter_bit(AddrRole::Src, family, src))
}
