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

/// What the first test says of a packet from `src` to `dst`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ours {
    /// Neither to a VIP address nor from a NAT real server's.
    No,
    /// Maybe to a VIP address (and maybe from a NAT real server's too).
    ToVip,
    /// Maybe from a NAT real server's address, certainly not to a VIP's.
    FromReal,
}

/// [`Ours`] of a packet from `src` to `dst`.
#[inline(always)]
pub fn ours(family: u8, src: &[u32; 4], dst: &[u32; 4]) -> Ours {
    if bit_set(addr_filter_bit(AddrRole::Dst, family, dst)) {
        Ours::ToVip
    } else if bit_set(addr_filter_bit(AddrRole::Src, family, src)) {
        Ours::FromReal
    } else {
        Ours::No
    }
}
