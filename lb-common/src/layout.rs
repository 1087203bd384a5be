//! The table of the data plane's maps: the one list the agent's loader
//! (sizes), pinning (which maps, required or optional), adoption (the shape
//! a pinned map must have) and map opening (its kernel type) read. The
//! program declares the same maps as `static`s in `lb-ebpf/src/maps.rs`;
//! a map added there is added here, and the agent follows.
//!
//! [`LAYOUT_VERSION`] is pinned with the maps (in the [`VERSION_MAP`]
//! array). Bump it when a map's key or value changes meaning without
//! changing its size, or when a pinned map is removed: a pinned set with
//! another version is refused (adopting it would misread the maps), with a
//! message asking for `lb unload`. Changes adoption copes with need no
//! bump: a new map with [`Pin::Optional`], events appended
//! ([`Entries::AppendOnly`]), and any change of a size, which the shape
//! check catches by itself.

use core::mem::size_of;

use crate::{
    names, AddrKey, Backend, Counters, DrNextHop, EndpointKey, FlowSet, ReverseNat, Service,
    ServiceSlot, ENDPOINT_FILTER_WORDS, SERVICE_INDEX_ENTRIES,
};

/// The layout of the pinned maps this build reads and writes. 1 was the
/// layout of the builds that pinned no version (the same maps as 2).
/// 3: IPv4 flows moved from `FLOWS` to `FLOWS_V4` (`FLOWS` kept its shape
/// and now holds IPv6 flows only) and `SERVICES_BY_ID` was added; a set of
/// version 2 would be adopted with its IPv4 flows where nothing reads them.
/// 4: `FLOWS_V4` and `FLOWS` became arrays of four-way sets
/// (`crate::flow_table`) instead of LRU hash maps.
pub const LAYOUT_VERSION: u32 = 4;

/// The pinned one-entry `u32` array holding the layout version of a pinned
/// set. Written by the agent (the program never reads it).
pub const VERSION_MAP: &str = "LAYOUT_VERSION";

/// The pinned one-entry `u64` array holding the seed of the flow tags
/// (`crate::flow_table`) of a pinned set: the program takes it as a
/// constant at load, so an agent that adopts the set must load its program
/// with the same seed to find the flows. Written by the agent before the
/// maps are loaded (the program never reads it).
pub const FLOW_SEED_MAP: &str = "FLOW_SEED";

/// The kernel map type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Hash,
    LruHash,
    Array,
    PerCpuArray,
}

/// Where a map's number of entries comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entries {
    /// Sized by the agent from its config (`MapSizes`), or taken from the
    /// pinned map when adopting.
    Services,
    Backends,
    RingSlots,
    /// `FLOWS_V4`: the sets of `flow_table_size` entries.
    Flows,
    /// `FLOWS` (IPv6 flows): `flow_table_size` when the config has an IPv6
    /// virtual server at start-up, else a small table (in sets too).
    FlowsV6,
    /// Compiled into the program; a pinned map must have exactly this many.
    Exactly(u32),
    /// Compiled in and only ever appended to: a pinned map with fewer
    /// entries (an older build's) is adopted, the newer entries unused.
    AppendOnly(u32),
}

/// Whether the map is pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Pinned; a pinned set without it is incomplete.
    Required,
    /// Pinned; a pinned set of an older build may lack it (adoption
    /// creates it empty and the agent fills it).
    Optional,
    /// The program's own state: a fresh program may start empty.
    No,
}

/// One map of the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    pub kind: MapKind,
    /// Type names, for messages.
    pub key_type: &'static str,
    pub value_type: &'static str,
    pub key_size: usize,
    pub value_size: usize,
    pub entries: Entries,
    pub pin: Pin,
}

macro_rules! spec {
    ($name:expr, $kind:ident, $key:ty, $value:ty, $entries:expr, $pin:ident) => {
        MapSpec {
            name: $name,
            kind: MapKind::$kind,
            key_type: stringify!($key),
            value_type: stringify!($value),
            key_size: size_of::<$key>(),
            value_size: size_of::<$value>(),
            entries: $entries,
            pin: Pin::$pin,
        }
    };
}

/// Every map of the program, in the order the agent reports them.
pub const MAPS: [MapSpec; 16] = [
    spec!(
        names::SERVICES,
        Hash,
        EndpointKey,
        Service,
        Entries::Services,
        Required
    ),
    spec!(
        names::BACKENDS,
        Array,
        u32,
        Backend,
        Entries::Backends,
        Required
    ),
    spec!(
        names::MAGLEV_RING,
        Array,
        u32,
        u32,
        Entries::RingSlots,
        Required
    ),
    spec!(
        names::FLOWS,
        Array,
        u32,
        FlowSet,
        Entries::FlowsV6,
        Required
    ),
    spec!(
        names::FLOWS_V4,
        Array,
        u32,
        FlowSet,
        Entries::Flows,
        Required
    ),
    spec!(
        names::SERVICES_BY_ID,
        Array,
        u32,
        ServiceSlot,
        Entries::Services,
        Required
    ),
    spec!(
        names::REVERSE_NAT,
        Hash,
        EndpointKey,
        ReverseNat,
        Entries::Backends,
        Required
    ),
    spec!(
        names::SERVICE_STATS,
        PerCpuArray,
        u32,
        Counters,
        Entries::Services,
        Required
    ),
    spec!(
        names::BACKEND_STATS,
        PerCpuArray,
        u32,
        Counters,
        Entries::Backends,
        Required
    ),
    spec!(
        names::VERDICT_STATS,
        PerCpuArray,
        u32,
        u64,
        Entries::Exactly(crate::verdict::COUNT),
        Required
    ),
    spec!(
        names::EVENT_STATS,
        PerCpuArray,
        u32,
        u64,
        Entries::AppendOnly(crate::event::COUNT),
        Required
    ),
    // The value type is the program's own (`lb-ebpf/src/fib.rs`): the map
    // is never pinned, so its shape is never checked (value size 0 here).
    MapSpec {
        name: names::NEXT_HOPS,
        kind: MapKind::PerCpuArray,
        key_type: "u32",
        value_type: "lb-ebpf fib::NextHop",
        key_size: size_of::<u32>(),
        value_size: 0,
        entries: Entries::Backends,
        pin: Pin::No,
    },
    spec!(
        names::DR_NEXT_HOPS,
        Hash,
        AddrKey,
        DrNextHop,
        Entries::Backends,
        Optional
    ),
    spec!(
        names::ENDPOINT_FILTER,
        Array,
        u32,
        u64,
        Entries::Exactly(ENDPOINT_FILTER_WORDS),
        Optional
    ),
    // Not pinned, so no layout version bump: rebuilt from `SERVICES` for
    // each program the agent loads (an index the agent cannot see would be
    // one it cannot keep in step).
    spec!(
        names::SERVICE_INDEX,
        Array,
        u32,
        u32,
        Entries::Exactly(SERVICE_INDEX_ENTRIES),
        No
    ),
    // Not pinned, so no layout version bump: the switch belongs to the
    // program. An agent that adopts a pinned set still loads (and swaps
    // into the links) a program of its own, whose switch it writes; the
    // program it replaces, with or without a switch, is gone then.
    spec!(names::LOG_LEVEL, Array, u32, u32, Entries::Exactly(1), No),
];

/// The spec of map `name`.
pub fn spec(name: &str) -> Option<&'static MapSpec> {
    MAPS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_is_listed_once() {
        for (i, m) in MAPS.iter().enumerate() {
            assert!(
                MAPS[i + 1..].iter().all(|o| o.name != m.name),
                "{} twice",
                m.name
            );
        }
        assert!(MAPS
            .iter()
            .all(|m| m.name != VERSION_MAP && m.name != FLOW_SEED_MAP));
        assert_eq!(spec(names::FLOWS).unwrap().kind, MapKind::Array);
        assert_eq!(spec(names::FLOWS_V4).unwrap().kind, MapKind::Array);
    }
}
