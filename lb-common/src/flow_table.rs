//! The flow table: which real server each connection was given, in a
//! set-associative array (`FLOWS_V4` for IPv4, `FLOWS` for IPv6) instead
//! of the kernel's LRU hash map.
//!
//! Why not the LRU hash map (what the tables were before layout 4): a new
//! flow's insert there pops a node from the LRU's free lists, links it into
//! a hash bucket and, every so many inserts, moves batches of nodes between
//! the LRU's lists under a lock: several cold cache lines per new flow. In
//! the packet suite that was most of a new flow's cost (BENCHMARKS.md,
//! "flow table"). Here a flow lives in one 64-byte set of [`FLOW_WAYS`]
//! entries chosen by a hash of its tuple: a lookup reads that one line and
//! an insert writes into it.
//!
//! Each entry holds a 64-bit tag (a keyed hash of the whole tuple, never 0;
//! 0 marks an empty way) instead of the tuple itself: 16 bytes an entry, a
//! fifth of an LRU entry. The set index is taken from the tag's high half,
//! so two flows of one set still differ in at least 44 bits of tag for any
//! table this agent creates; a false match is as likely as a 64-bit hash
//! collision of two live flows in one set.
//!
//! Order within a set is recency: a lookup that finds a flow in a later way
//! moves it to way 0, and an insert puts the new flow in way 0 and drops
//! the last way. So a flow is forgotten when [`FLOW_WAYS`] flows used more
//! recently share its set (the LRU map forgot the least recent flow of the
//! whole table): an idle flow, after K newer flows in a table of N entries,
//! with probability P(Poisson(4K/N) >= 4) (1.9% at K = N/4, 14% at N/2).
//! A forgotten flow's next packet is scheduled again by the Maglev ring: to
//! the same real server unless the set of servers changed.
//!
//! Concurrency: the program writes the sets in place, as the LRU map's
//! nodes were reused in place. A packet that reads a set while another CPU
//! reorders it may miss its flow, which is then scheduled by the ring as
//! above and written again (the insert finds and reuses an entry with its
//! tag, so a set never holds one flow twice for long). Two CPUs inserting
//! into one set within the same few nanoseconds can lose one of its
//! entries, with the same outcome for that flow.
//!
//! This module is the pure core, shared by the program (on map memory) and
//! the host (tests, counting): no I/O.

use crate::{Flow, FlowKey, FlowKeyV4};

/// Entries per set: four 16-byte entries fill one cache line.
pub const FLOW_WAYS: usize = 4;

/// The fewest entries a table gets (`flow_sets` rounds up to it).
pub const MIN_FLOW_ENTRIES: u32 = 4096;

/// One way of a set: a flow's tag and where it goes. `tag == 0`: empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEntry {
    pub tag: u64,
    pub flow: Flow,
}
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 16);

/// A set of [`FLOW_WAYS`] entries, most recently used first: the value of
/// `FLOWS_V4` / `FLOWS` (ARRAY maps indexed by [`set_index`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowSet {
    pub ways: [FlowEntry; FLOW_WAYS],
}
const _: () = assert!(core::mem::size_of::<FlowSet>() == 64);

/// Sets of a table of `entries` flows: `entries` rounded up to a power of
/// two, at least [`MIN_FLOW_ENTRIES`], over [`FLOW_WAYS`].
pub const fn flow_sets(entries: u32) -> u32 {
    let e = if entries < MIN_FLOW_ENTRIES {
        MIN_FLOW_ENTRIES
    } else if entries > (1 << 31) {
        1 << 31
    } else {
        entries.next_power_of_two()
    };
    e / FLOW_WAYS as u32
}

/// The set of the flow tagged `tag` in a table of `sets` sets (a power of
/// two): the tag's high half, so that the low half still tells the
/// flows of one set apart.
#[inline(always)]
pub const fn set_index(tag: u64, sets: u32) -> u32 {
    ((tag >> 32) as u32) & sets.wrapping_sub(1)
}

/// The seed of the tags when the loader sets none (tests, the bench).
/// The agent draws one per pinned table (`FLOW_SEED`), so that nobody can
/// choose tuples that share a set with somebody else's flow.
pub const DEFAULT_FLOW_SEED: u64 = 0x6c62_666c_6f77_0004;

/// A 64-bit finalizer (from MurmurHash3's fmix64): every input bit moves
/// every output bit.
#[inline(always)]
const fn fmix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline(always)]
const fn words(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline(always)]
const fn ports(sport_be: u16, dport_be: u16, proto: u8) -> u64 {
    ((sport_be as u64) << 24) | ((dport_be as u64) << 8) | proto as u64
}

/// The tag of an IPv4 flow (never 0).
#[inline(always)]
pub fn flow_tag_v4(key: &FlowKeyV4, seed: u64) -> u64 {
    let h = fmix(seed ^ words(key.src, key.dst));
    fmix(h ^ ports(key.src_port_be, key.dst_port_be, key.proto)) | 1
}

/// The tag of an IPv6 flow (never 0); IPv4 keys in this form are tagged
/// by [`flow_tag_v4`] of their narrow form instead.
#[inline(always)]
pub fn flow_tag_v6(key: &FlowKey, seed: u64) -> u64 {
    let mut h = fmix(seed ^ words(key.src[0], key.src[1]));
    h = fmix(h ^ words(key.src[2], key.src[3]));
    h = fmix(h ^ words(key.dst[0], key.dst[1]));
    h = fmix(h ^ words(key.dst[2], key.dst[3]));
    fmix(h ^ ports(key.src_port_be, key.dst_port_be, key.proto)) | 1
}

impl FlowSet {
    /// The flow tagged `tag`, moved to the front (way 0) when it was
    /// further back. Returns it as it was found.
    #[inline(always)]
    pub fn find_and_touch(&mut self, tag: u64) -> Option<Flow> {
        if self.ways[0].tag == tag {
            return Some(self.ways[0].flow);
        }
        let mut i = 1;
        while i < FLOW_WAYS {
            if self.ways[i].tag == tag {
                let hit = self.ways[i];
                self.shift_back(i);
                self.ways[0] = hit;
                return Some(hit.flow);
            }
            i += 1;
        }
        None
    }

    /// The flow tagged `tag`, without reordering (host side).
    pub fn find(&self, tag: u64) -> Option<Flow> {
        self.ways.iter().find(|w| w.tag == tag).map(|w| w.flow)
    }

    /// Record `flow` under `tag` in way 0: the way that held `tag` already
    /// (a rescheduled flow), else the last way, is given up and the ways
    /// before it move back by one.
    #[inline(always)]
    pub fn insert(&mut self, tag: u64, flow: Flow) {
        let mut i = 0;
        // The way to give up: `tag`'s own, else the least recent.
        while i < FLOW_WAYS - 1 && self.ways[i].tag != tag {
            i += 1;
        }
        self.shift_back(i);
        self.ways[0] = FlowEntry { tag, flow };
    }

    /// Ways `0..i` move to `1..=i` (way `i` is overwritten).
    #[inline(always)]
    fn shift_back(&mut self, i: usize) {
        let mut j = i;
        while j > 0 {
            self.ways[j] = self.ways[j - 1];
            j -= 1;
        }
    }

    /// The flows held (host side: counting).
    pub fn flows(&self) -> impl Iterator<Item = Flow> + '_ {
        self.ways.iter().filter(|w| w.tag != 0).map(|w| w.flow)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    fn flow(b: u32) -> Flow {
        Flow {
            backend_id: b,
            service_id: 7,
        }
    }

    #[test]
    fn sets_are_a_power_of_two_and_never_below_the_minimum() {
        assert_eq!(flow_sets(0), MIN_FLOW_ENTRIES / 4);
        assert_eq!(flow_sets(1), 1024);
        assert_eq!(flow_sets(131_072), 32_768);
        assert_eq!(flow_sets(131_073), 65_536);
        assert_eq!(flow_sets(u32::MAX), 1 << 29);
        for s in [flow_sets(5000), flow_sets(1 << 20)] {
            assert!(s.is_power_of_two());
        }
    }

    #[test]
    fn a_set_keeps_the_most_recently_used_flows() {
        let mut s = FlowSet::default();
        for t in 1..=4u64 {
            s.insert(t * 2 + 1, flow(t as u32));
        }
        // Way order now 9, 7, 5, 3; touching 3 brings it to the front.
        assert_eq!(s.find_and_touch(3), Some(flow(1)));
        assert_eq!(s.ways[0].tag, 3);
        // A fifth flow drops the least recent one, 5.
        s.insert(11, flow(5));
        assert_eq!(s.find(5), None);
        for (t, b) in [(3, 1), (7, 3), (9, 4), (11, 5)] {
            assert_eq!(s.find(t), Some(flow(b)), "tag {t}");
        }
        assert_eq!(s.flows().count(), 4);
    }

    #[test]
    fn inserting_a_known_tag_replaces_it_without_dropping_another() {
        let mut s = FlowSet::default();
        for t in [3u64, 5, 7, 9] {
            s.insert(t, flow(1));
        }
        s.insert(5, flow(2));
        assert_eq!(
            s.ways[0],
            FlowEntry {
                tag: 5,
                flow: flow(2)
            }
        );
        assert_eq!(s.ways.iter().filter(|w| w.tag == 5).count(), 1);
        for t in [3u64, 7, 9] {
            assert_eq!(s.find(t), Some(flow(1)));
        }
    }

    #[test]
    fn an_empty_set_finds_nothing_and_fills_from_the_front() {
        let mut s = FlowSet::default();
        assert_eq!(s.find_and_touch(3), None);
        s.insert(3, flow(1));
        assert_eq!(s.flows().count(), 1);
        assert_eq!(s.ways[1].tag, 0);
    }

    #[test]
    fn tags_are_never_zero_and_differ_per_tuple_and_seed() {
        let mut seen = std::collections::HashSet::new();
        for port in 0..20_000u16 {
            let k = FlowKeyV4 {
                src: 0x0a00_0001,
                dst: 0x0a00_0002,
                src_port_be: port.to_be(),
                dst_port_be: 80u16.to_be(),
                proto: 6,
                _pad: [0; 3],
            };
            let t = flow_tag_v4(&k, DEFAULT_FLOW_SEED);
            assert_ne!(t, 0);
            assert!(seen.insert(t));
            assert_ne!(t, flow_tag_v4(&k, DEFAULT_FLOW_SEED ^ 1));
        }
    }

    #[test]
    fn tuples_spread_evenly_over_the_sets() {
        let sets = flow_sets(1 << 17);
        let mut counts: Vec<u32> = vec![0u32; sets as usize];
        let n = 4 * sets;
        for i in 0..n {
            let k = FlowKeyV4 {
                src: 0xc0a8_fd00 + i / 20_000,
                dst: 0xc0a8_fd78,
                src_port_be: ((i % 20_000) as u16).to_be(),
                dst_port_be: 80u16.to_be(),
                proto: 6,
                _pad: [0; 3],
            };
            counts[set_index(flow_tag_v4(&k, DEFAULT_FLOW_SEED), sets) as usize] += 1;
        }
        // Four flows a set on average: a uniform hash puts more than 16
        // into no set (Poisson(4) beyond 16 is about 1e-6).
        assert!(counts.iter().all(|&c| c <= 16), "{:?}", counts.iter().max());
        let empty = counts.iter().filter(|&&c| c == 0).count() as f64 / sets as f64;
        assert!((0.01..0.03).contains(&empty), "empty sets {empty}");
    }
}
