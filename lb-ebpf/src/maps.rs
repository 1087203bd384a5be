//! The maps of the data plane: the contract with the agent.
//!
//! Types and names come from `lb_common`; the sizes compiled in here are the
//! defaults, and the agent overrides them at load time from the config
//! (`EbpfLoader::set_max_entries`), so memory follows the configuration.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, ProgramArray},
};
use lb_common::{
    defaults, event, flow_table, verdict, AddrKey, Backend, Counters, DrNextHop, EndpointKey,
    FlowSet, ReverseNat, Service, ServiceSlot, ENDPOINT_FILTER_WORDS, SERVICE_INDEX_ENTRIES,
};

use crate::fib::NextHop;

/// `BPF_F_MMAPABLE`: an array whose values start on a page, so that each
/// 64-byte flow set is one cache line.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Virtual services by (VIP, port, protocol, family).
/// Written by the agent, one whole-value update per change (that is how a
/// service switches atomically to a new Maglev range); read by XDP.
#[map]
pub static SERVICES: HashMap<EndpointKey, Service> =
    HashMap::with_max_entries(defaults::MAX_SERVICES, 0);

/// Each service of `SERVICES` by its id, with its VIP
/// (`lb_common::ServiceSlot`). Written by the agent (before the service
/// enters `SERVICES`, cleared before it leaves); read by XDP for packets
/// of established flows, which thus skip the `SERVICES` hash lookup: an
/// array lookup is an index the verifier inlines.
#[map]
pub static SERVICES_BY_ID: Array<ServiceSlot> = Array::with_max_entries(defaults::MAX_SERVICES, 0);

/// Real servers by backend id. Written by the agent; read by XDP. An array
/// so the per-packet lookup is an index, not a hash.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Maglev lookup tables of all services, back to back: backend ids.
/// Written by the agent (a new table goes to a free range before the service
/// is switched to it); read by XDP for new flows only.
#[map]
pub static MAGLEV_RING: Array<u32> = Array::with_max_entries(defaults::MAGLEV_RING_SLOTS, 0);

/// Established IPv4 flows: which backend a client's 5-tuple was given, in
/// sets of four chosen by the flow's tag (`lb_common::flow_table`).
/// Written by XDP (new or rescheduled flows); read by the agent for status.
/// A full set forgets its least recently used flow, whose next packet is
/// scheduled again by the same Maglev ring (a random-tuple flood costs
/// established flows only that). Sized by the agent (`flow_table_size`
/// entries per family, `FLOW_SETS_V4` sets).
#[map]
pub static FLOWS_V4: Array<FlowSet> = Array::with_max_entries(
    flow_table::flow_sets(defaults::FLOW_TABLE_SIZE),
    BPF_F_MMAPABLE,
);

/// Established IPv6 flows, as `FLOWS_V4` (`FLOW_SETS_V6` sets).
#[map]
pub static FLOWS: Array<FlowSet> = Array::with_max_entries(
    flow_table::flow_sets(defaults::FLOW_TABLE_SIZE),
    BPF_F_MMAPABLE,
);

// Set by the loader with the maps' sizes (`EbpfLoader::set_global`, in
// `dataplane::loader::flow_tables`), read as constants: the number of sets
// of each flow table (a power of two) and the seed of the tags.
#[no_mangle]
static FLOW_SETS_V4: u32 = flow_table::flow_sets(defaults::FLOW_TABLE_SIZE);
#[no_mangle]
static FLOW_SETS_V6: u32 = flow_table::flow_sets(defaults::FLOW_TABLE_SIZE);
#[no_mangle]
static FLOW_SEED: u64 = flow_table::DEFAULT_FLOW_SEED;

/// Sets of `FLOWS_V4`.
#[inline(always)]
pub fn flow_sets_v4() -> u32 {
    // SAFETY: a read of a constant the loader may have set.
    unsafe { core::ptr::read_volatile(&FLOW_SETS_V4) }
}

/// Sets of `FLOWS`.
#[inline(always)]
pub fn flow_sets_v6() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&FLOW_SETS_V6) }
}

/// The seed of the flow tags.
#[inline(always)]
pub fn flow_seed() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&FLOW_SEED) }
}

/// NAT replies: (real address, real port, protocol, family) -> VIP:port.
/// Written by the agent for NAT services; read by XDP. Stateless on purpose,
/// so another balancer can rewrite replies of flows it never saw.
#[map]
pub static REVERSE_NAT: HashMap<EndpointKey, ReverseNat> =
    HashMap::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Traffic per service, indexed by `Service::id`. Written by XDP; read by
/// the agent (summed over CPUs).
#[map]
pub static SERVICE_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(defaults::MAX_SERVICES, 0);

/// Traffic per real server, indexed by backend id. Written by XDP; read by
/// the agent.
#[map]
pub static BACKEND_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Packets per XDP action (`lb_common::verdict`). Written by XDP for every
/// packet that passes the first test (`filter`: packets neither to a VIP
/// address nor from a NAT real server's are passed uncounted); read by
/// the agent.
#[map]
pub static VERDICT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(verdict::COUNT, 0);

/// Why packets got their verdict (`lb_common::event`). Written by XDP; read
/// by the agent.
#[map]
pub static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(event::COUNT, 0);

/// The next hop of each real server as `bpf_fib_lookup` last answered it,
/// indexed by backend id (see `fib::to_backend`). Written and read by XDP
/// only; the agent sizes it like `BACKENDS` and never reads it. Per CPU so
/// that refreshing an entry needs no lock and a reader never sees half of
/// one.
#[map]
pub static NEXT_HOPS: PerCpuArray<NextHop> =
    PerCpuArray::with_max_entries(defaults::MAX_BACKENDS, 0);

/// Next hops of DR real servers as the kernel's neighbour table has them
/// (`lb_common::DrNextHop`). Written by the agent; read by XDP only when
/// `bpf_fib_lookup` answers "forwarding disabled" (see `fib::to_backend`).
#[map]
pub static DR_NEXT_HOPS: HashMap<AddrKey, DrNextHop> =
    HashMap::with_max_entries(defaults::MAX_BACKENDS, 0);

/// One bit per possible key of `SERVICES` and `REVERSE_NAT`
/// (`lb_common::endpoint_filter_bit`). Written by the agent (a bit is set
/// before its key is inserted and cleared after the last such key is
/// removed); read by XDP first, so a packet that is neither for a service
/// nor a NAT reply leaves after array reads the verifier inlines, without a
/// hash lookup.
#[map]
pub static ENDPOINT_FILTER: Array<u64> = Array::with_max_entries(ENDPOINT_FILTER_WORDS, 0);

/// A service id plus one for each `lb_common::service_index` that exactly
/// one key of `SERVICES` has, else 0 (see `schedule::indexed_service`).
/// Written by the agent: an entry is zeroed before its service's value
/// changes or leaves `SERVICES`, and set after its `SERVICES_BY_ID` slot.
#[map]
pub static SERVICE_INDEX: Array<u32> = Array::with_max_entries(SERVICE_INDEX_ENTRIES, 0);

/// Whether `key` may be in `SERVICES` or `REVERSE_NAT` (false: certainly not).
#[inline(always)]
pub fn may_hold(key: &EndpointKey) -> bool {
    may_hold_bit(lb_common::endpoint_filter_bit(key))
}

/// [`may_hold`] of the key whose bit is `bit`.
#[inline(always)]
pub fn may_hold_bit(bit: u32) -> bool {
    match ENDPOINT_FILTER.get(bit >> 6) {
        Some(w) => *w & (1u64 << (bit & 63)) != 0,
        None => true,
    }
}

/// `lb_common::names::JUMP`: slot `JUMP_ICMP` holds `lb_xdp_icmp`, which
/// `lb_xdp` tail-calls for ICMP (see `icmp`). Filled by the loader.
#[map]
pub static JUMP: ProgramArray = ProgramArray::with_max_entries(1, 0);
