//! Keys, values and names of the BPF maps.
//!
//! Who writes and who reads each map is said at its definition in
//! `lb-ebpf/src/maps.rs`. The agent sizes the maps at load time
//! (`EbpfLoader::set_max_entries`) from the config; the constants here are
//! the defaults compiled into the object.
//!
//! Addresses are stored as four `u32` words exactly as they appear in the
//! packet (network byte order in memory). An IPv4 address occupies word 0 and
//! words 1..3 are zero; `family` tells the two apart.

use core::mem::size_of;

/// Names of the maps in the object, shared so that a rename is caught by the
/// compiler on both sides.
pub mod names {
    pub const SERVICES: &str = "SERVICES";
    pub const BACKENDS: &str = "BACKENDS";
    pub const MAGLEV_RING: &str = "MAGLEV_RING";
    /// IPv6 flows (`FlowSet`s, see `crate::flow_table`).
    pub const FLOWS: &str = "FLOWS";
    /// IPv4 flows, likewise (a table per family, sized apart).
    pub const FLOWS_V4: &str = "FLOWS_V4";
    /// `ServiceSlot` by service id: what an established flow's packet reads
    /// instead of the `SERVICES` hash lookup.
    pub const SERVICES_BY_ID: &str = "SERVICES_BY_ID";
    pub const REVERSE_NAT: &str = "REVERSE_NAT";
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    pub const BACKEND_STATS: &str = "BACKEND_STATS";
    pub const VERDICT_STATS: &str = "VERDICT_STATS";
    pub const EVENT_STATS: &str = "EVENT_STATS";
    /// The data plane's own next-hop cache (per CPU, indexed by backend id).
    /// Not part of the contract's contents: the agent only sizes it like
    /// `BACKENDS` and never pins it, since a fresh program may start empty.
    pub const NEXT_HOPS: &str = "NEXT_HOPS";
    /// Next hops of DR real servers from the kernel's neighbour table,
    /// written by the agent: what DR uses where `bpf_fib_lookup` refuses
    /// (forwarding off). Pinned, but optional when adopting a pinned set
    /// from a build that did not have it (created empty then).
    pub const DR_NEXT_HOPS: &str = "DR_NEXT_HOPS";
    /// A bitmap of `endpoint_filter_bit` over every key of `SERVICES` and
    /// `REVERSE_NAT`, written by the agent with those maps: the data plane's
    /// "not ours" test before any hash lookup. Pinned, but optional when
    /// adopting a set from a build that did not have it (created and filled
    /// from the pinned `SERVICES` / `REVERSE_NAT` then).
    pub const ENDPOINT_FILTER: &str = "ENDPOINT_FILTER";
    /// The service id (plus one) of each [`crate::service_index`] that
    /// exactly one key of `SERVICES` has, 0 elsewhere: how a new flow finds
    /// its service without the `SERVICES` hash lookup. Written by the agent
    /// with `SERVICES`. Not pinned: it belongs to the program the agent
    /// loaded, and is filled from `SERVICES` before that program runs.
    pub const SERVICE_INDEX: &str = "SERVICE_INDEX";
    /// The data plane's log switch (`crate::ebpf_log`): written by the
    /// agent, read by the program on rare events only. Not pinned: it
    /// belongs to the program that the agent loaded (an adopting agent
    /// loads its own program, with its own switch).
    pub const LOG_LEVEL: &str = crate::ebpf_log::MAP;
    /// Globals of the program the loader sets (`lb-ebpf/src/maps.rs`): the
    /// sets of `FLOWS_V4` and `FLOWS`, and the seed of the flow tags.
    pub const FLOW_SETS_V4: &str = "FLOW_SETS_V4";
    pub const FLOW_SETS_V6: &str = "FLOW_SETS_V6";
    pub const FLOW_SEED: &str = "FLOW_SEED";
    /// The XDP entry point.
    pub const PROGRAM: &str = "lb_xdp";
    /// The ICMP error path, a program of its own that `PROGRAM` tail-calls
    /// through `JUMP` (its own 512-byte stack: see lb-ebpf/src/icmp.rs).
    pub const ICMP_PROGRAM: &str = "lb_xdp_icmp";
    /// The program array holding `ICMP_PROGRAM` at `JUMP_ICMP`. Filled by
    /// whoever loads the object (`dataplane::loader::link_icmp_path`);
    /// never pinned: it belongs to the program loaded with it.
    pub const JUMP: &str = "JUMP";
    pub const JUMP_ICMP: u32 = 0;
}

/// Default map sizes (overridden by the agent at load time).
pub mod defaults {
    pub const MAX_SERVICES: u32 = 1024;
    pub const MAX_BACKENDS: u32 = 65536;
    /// Slots in the shared Maglev ring array. Each service owns a range of
    /// `maglev_table_size` slots, and a second range while it is rebuilt.
    pub const MAGLEV_RING_SLOTS: u32 = 4 * 65537;
    pub const FLOW_TABLE_SIZE: u32 = 1 << 20;
    pub const MAGLEV_TABLE_SIZE: u32 = 65537;
}

/// How long the data plane reuses a real server's next hop (egress device
/// and MACs from `bpf_fib_lookup`, cached per CPU in `NEXT_HOPS`) before it
/// asks the kernel again: the longest a route or neighbour change of a real
/// server takes to reach its requests. A lookup that fails is never cached.
pub const NEXT_HOP_TTL_NS: u64 = 50_000_000;

/// Words (u64) of `ENDPOINT_FILTER`: 2^18 bits, 32 KiB. Fixed (never
/// resized by the agent) so the bit of a key is a pure function of the key.
pub const ENDPOINT_FILTER_WORDS: u32 = 1 << 12;
const ENDPOINT_FILTER_BITS_LOG2: u32 = 18;
const _: () = assert!(1u64 << ENDPOINT_FILTER_BITS_LOG2 == ENDPOINT_FILTER_WORDS as u64 * 64);

/// The bit of `ENDPOINT_FILTER` that stands for `key`: set when `key` may be
/// in `SERVICES` or `REVERSE_NAT`. A clear bit proves the key is in neither
/// (no false negatives); a set bit only sends the packet on to the hash
/// lookups. Each word is multiplied in and its high bits folded down (a
/// multiply alone never carries a high-byte difference, such as the last
/// byte of an IPv4 address in network order, into the low bits): a
/// handful of ALU instructions, the same on the host and in the kernel.
#[inline(always)]
pub fn endpoint_filter_bit(key: &EndpointKey) -> u32 {
    const K: u32 = 0x9e37_79b1;
    #[inline(always)]
    fn step(h: u32, w: u32) -> u32 {
        let h = (h ^ w).wrapping_mul(K);
        h ^ (h >> 16)
    }
    let tail = ((key.port_be as u32) << 16) | ((key.proto as u32) << 8) | key.family as u32;
    let mut h = step(0, tail);
    h = step(h, key.addr[0]);
    h = step(h, key.addr[1]);
    h = step(h, key.addr[2]);
    h = step(h, key.addr[3]);
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h >> (32 - ENDPOINT_FILTER_BITS_LOG2)
}

/// Entries of `SERVICE_INDEX` (u32 each: 64 KiB). Fixed, like the filter.
pub const SERVICE_INDEX_ENTRIES: u32 = 1 << SERVICE_INDEX_LOG2;
const SERVICE_INDEX_LOG2: u32 = 14;

/// The `SERVICE_INDEX` entry of the key whose filter bit is `filter_bit`
/// (`endpoint_filter_bit`): its high bits, so the data plane reuses the
/// hash its filter test computed.
#[inline(always)]
pub fn service_index_of(filter_bit: u32) -> u32 {
    filter_bit >> (ENDPOINT_FILTER_BITS_LOG2 - SERVICE_INDEX_LOG2)
}

/// The `SERVICE_INDEX` entry of `key`.
#[inline(always)]
pub fn service_index(key: &EndpointKey) -> u32 {
    service_index_of(endpoint_filter_bit(key))
}

/// Which side of a packet an address bit of `ENDPOINT_FILTER` stands for:
/// the destination (a VIP: the address of a `SERVICES` key) or the source
/// (a NAT real server: the address of a `REVERSE_NAT` key). The two get
/// different bits, so a packet *to* a real server or *from* a VIP does not
/// pass the data plane's first test only because the address is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrRole {
    Dst = 0x5eed_0d57,
    Src = 0x5eed_05c0,
}

/// Words of `ENDPOINT_FILTER` that address bits fall in: the first 8, 512
/// bits, one 64-byte cache line, so the data plane's first test ("could
/// this packet's destination or source be ours?") reads one line of the
/// map. Endpoint bits ([`endpoint_filter_bit`]) land there too, now and
/// then: a shared bit only lets more packets on to the next test.
pub const ADDR_FILTER_BITS_LOG2: u32 = 9;

/// The bit of `ENDPOINT_FILTER` that stands for an address in `role`
/// (set by the agent while any key of that map has that address). A clear
/// bit for both the destination and the source proves a TCP/UDP packet is
/// neither for a service nor a NAT reply, before its ports are read. The
/// words are folded by XOR (an IPv4 address is one word, the other three
/// zero), then mixed as in [`endpoint_filter_bit`].
#[inline(always)]
pub fn addr_filter_bit(role: AddrRole, family: u8, addr: &[u32; 4]) -> u32 {
    let x = addr[0] ^ addr[1] ^ addr[2] ^ addr[3] ^ (role as u32) ^ family as u32;
    let mut h = x.wrapping_mul(0x9e37_79b1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h >> (32 - ADDR_FILTER_BITS_LOG2)
}

pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Backend id meaning "none" (e.g. a service without a sorry server).
pub const NO_BACKEND: u32 = u32::MAX;

/// An (address, port, protocol): the key of a virtual service, and the key
/// of the reverse-NAT map for a real server.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointKey {
    /// Network byte order words; IPv4 in word 0, other words zero.
    pub addr: [u32; 4],
    /// Network byte order.
    pub port_be: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `FAMILY_IPV4` or `FAMILY_IPV6`.
    pub family: u8,
}
const _: () = assert!(size_of::<EndpointKey>() == 20);

impl EndpointKey {
    /// The key of `addr` for protocol `proto` (`PROTO_TCP` or `PROTO_UDP`):
    /// the one place a socket address becomes a map key (the agent, the
    /// fixtures and the benchmarks all build keys with it).
    #[inline]
    pub fn new(addr: core::net::SocketAddr, proto: u8) -> Self {
        Self {
            addr: addr_words(addr.ip()),
            port_be: addr.port().to_be(),
            proto,
            family: family(addr.ip()),
        }
    }
}

/// The address as the packet carries it: the words hold the bytes in
/// network order in memory, so they are built with `from_ne_bytes`; IPv4
/// in word 0, the other words zero.
#[inline]
pub fn addr_words(addr: core::net::IpAddr) -> [u32; 4] {
    match addr {
        core::net::IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        core::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// `FAMILY_IPV4` or `FAMILY_IPV6`.
#[inline]
pub fn family(addr: core::net::IpAddr) -> u8 {
    match addr {
        core::net::IpAddr::V4(_) => FAMILY_IPV4,
        core::net::IpAddr::V6(_) => FAMILY_IPV6,
    }
}

/// `Service::flags`: forwarding method.
pub const SVC_F_NAT: u32 = 1 << 0;
pub const SVC_F_DR: u32 = 1 << 1;

/// A virtual service: `SERVICES[EndpointKey] -> Service`.
///
/// The agent replaces the whole value in one map update to swap a service to
/// a freshly built Maglev range, so a packet sees either the old range or the
/// new one, never a half-written table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Service {
    /// Index into `SERVICE_STATS`; also recorded in flows and backends.
    pub id: u32,
    /// `SVC_F_*`.
    pub flags: u32,
    /// First slot of this service's Maglev table in `MAGLEV_RING`.
    pub ring_offset: u32,
    /// Number of slots (a prime); 0 = no real server can take new flows.
    pub ring_size: u32,
    /// Backend used while `ring_size == 0` (sorry server), or `NO_BACKEND`.
    pub fallback_backend: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Service>() == 24);

/// `Backend::flags`: the backend may carry flows (existing ones at least).
/// Cleared when it is declared down, or when the drain of a real server
/// removed from its service ends, so its flows are chosen again.
pub const BACKEND_F_ACTIVE: u8 = 1 << 0;

/// A real server: `BACKENDS[id] -> Backend`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    /// Network byte order words; IPv4 in word 0.
    pub addr: [u32; 4],
    /// Network byte order. For DR it equals the service port.
    pub port_be: u16,
    pub family: u8,
    /// `BACKEND_F_*`.
    pub flags: u8,
    /// The service this backend belongs to (`Service::id`).
    pub service_id: u32,
}
const _: () = assert!(size_of::<Backend>() == 24);

/// A service as an established flow finds it: `SERVICES_BY_ID[Service::id]`.
///
/// A flow-table entry names its service by id; the packet's own VIP must
/// equal `vip` for the entry to be used, so an id that a reload gave to
/// another VIP never sends a stale flow to the wrong service. The agent
/// writes the slot before the service enters `SERVICES` and clears it
/// (`vip.family == 0`) before the service leaves `SERVICES`; a reader that
/// finds no matching slot falls back to the `SERVICES` lookup. An array
/// value is copied by the kernel without a lock, so the program reads
/// only fields whose mix of two versions is harmless: `vip` (compared
/// whole; a clear and a reuse of an id are at least one apply apart) and
/// `service.flags` (one word). The Maglev range is always taken from
/// `SERVICES`, whose updates are atomic.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceSlot {
    pub vip: EndpointKey,
    pub service: Service,
}
const _: () = assert!(size_of::<ServiceSlot>() == 44);

/// An IPv4 connection as the client sent it: `FLOWS_V4[FlowKeyV4] -> Flow`.
/// The same tuple as [`FlowKey`] in 16 bytes instead of 40 (the hash and
/// the compare of the lookup scale with the key); [`FlowKeyV4::widen`]
/// gives the `FlowKey` whose hash picks the Maglev slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKeyV4 {
    /// Client address, network byte order.
    pub src: u32,
    /// Virtual IP, network byte order.
    pub dst: u32,
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FlowKeyV4>() == 16);

impl FlowKeyV4 {
    /// The same flow as a [`FlowKey`] (IPv4 in word 0).
    #[inline(always)]
    pub fn widen(&self) -> FlowKey {
        FlowKey {
            src: [self.src, 0, 0, 0],
            dst: [self.dst, 0, 0, 0],
            src_port_be: self.src_port_be,
            dst_port_be: self.dst_port_be,
            proto: self.proto,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        }
    }
}

impl FlowKey {
    /// The `FLOWS_V4` key of an IPv4 flow; `None` for IPv6.
    #[inline(always)]
    pub fn narrow(&self) -> Option<FlowKeyV4> {
        (self.family == FAMILY_IPV4).then_some(FlowKeyV4 {
            src: self.src[0],
            dst: self.dst[0],
            src_port_be: self.src_port_be,
            dst_port_be: self.dst_port_be,
            proto: self.proto,
            _pad: [0; 3],
        })
    }
}

/// An IPv6 connection as the client sent it: `FLOWS[FlowKey] -> Flow`
/// (IPv4 ones are in `FLOWS_V4`, see [`FlowKeyV4`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Client address, network byte order words.
    pub src: [u32; 4],
    /// Virtual IP, network byte order words.
    pub dst: [u32; 4],
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    pub backend_id: u32,
    /// Service the flow was scheduled in; a flow is only reused when the
    /// backend still belongs to this service and is active. A TCP SYN
    /// without ACK never reuses an entry: it starts a new flow.
    pub service_id: u32,
}
const _: () = assert!(size_of::<Flow>() == 8);

/// Reverse NAT: `REVERSE_NAT[EndpointKey of the real server] -> ReverseNat`.
///
/// Stateless on purpose: a (real address, port, protocol) belongs to one
/// service, so replies can be rewritten without a flow entry, and a second
/// balancer can take over established NAT flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReverseNat {
    /// The VIP, network byte order words.
    pub vip: [u32; 4],
    pub vip_port_be: u16,
    pub _pad: u16,
    pub service_id: u32,
    /// Backend whose `out_*` counters the reply counts into.
    pub backend_id: u32,
}
const _: () = assert!(size_of::<ReverseNat>() == 28);

/// An address alone (IPv4 in word 0): the key of `DR_NEXT_HOPS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AddrKey {
    /// Network byte order words; IPv4 in word 0, other words zero.
    pub addr: [u32; 4],
    /// `FAMILY_IPV4` or `FAMILY_IPV6`.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<AddrKey>() == 20);

/// How to reach a DR real server on the balancer's own segment without the
/// kernel's forwarding: `DR_NEXT_HOPS[AddrKey of the real server]`.
///
/// The agent fills it from the neighbour table (the entry's device and
/// link-layer address) and that device's own MAC, for the real servers of
/// DR services whose neighbour entry is resolved, and removes an entry when
/// the neighbour stops being resolved or the real server leaves DR. The
/// program uses it only when `bpf_fib_lookup` answers "forwarding
/// disabled", which is what a balancer with `ip_forward=0` gets (IPVS DR
/// works there, so lb's must too).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DrNextHop {
    /// Egress device (where the neighbour entry lives).
    pub ifindex: u32,
    /// That device's MAC.
    pub smac: [u8; 6],
    /// The real server's MAC.
    pub dmac: [u8; 6],
}
const _: () = assert!(size_of::<DrNextHop>() == 16);

/// Per service and per real server traffic, as `ipvsadm -Ln --stats` shows
/// it. Per-CPU: the agent sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// New flows scheduled.
    pub conns: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    /// Replies (NAT only: in DR mode replies bypass the balancer).
    pub out_packets: u64,
    pub out_bytes: u64,
}
const _: () = assert!(size_of::<Counters>() == 40);

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.conns += other.conns;
        self.in_packets += other.in_packets;
        self.in_bytes += other.in_bytes;
        self.out_packets += other.out_packets;
        self.out_bytes += other.out_bytes;
    }
}

/// XDP verdicts, the index of `VERDICT_STATS` (equal to the kernel's
/// `xdp_action` values).
pub mod verdict {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
    pub const COUNT: u32 = 5;
    pub const NAMES: [&str; COUNT as usize] = ["aborted", "drop", "pass", "tx", "redirect"];
}

/// Why a packet got the verdict it got: the index of `EVENT_STATS`.
pub mod event {
    /// Frame too short for a header it claims to have.
    pub const TRUNCATED: u32 = 0;
    /// Bad IPv4 IHL / version, or an IPv6 extension header chain we do not walk.
    pub const MALFORMED: u32 = 1;
    /// A fragment addressed to a VIP (passed to the kernel).
    pub const FRAGMENT: u32 = 2;
    /// IPv4 header with options addressed to a VIP (forwarded unchanged).
    pub const IP_OPTIONS: u32 = 3;
    /// VIP packet dropped: no real server can take it and no sorry server.
    pub const NO_BACKEND: u32 = 4;
    /// Forwarding needed a neighbour entry that the kernel has not resolved.
    pub const NEIGH_MISS: u32 = 5;
    /// `bpf_fib_lookup` found no route / forwarding disabled.
    pub const FIB_MISS: u32 = 6;
    /// An ICMP error about a VIP flow that no real server could be found
    /// for (passed to the kernel); delivered ones count `ICMP_TO_REAL`.
    pub const ICMP_VIP: u32 = 7;
    /// NAT reply rewritten (real:port -> VIP:port).
    pub const NAT_REPLY: u32 = 8;
    /// Flow table hit whose backend had left the service: chosen again.
    pub const FLOW_RESCHEDULED: u32 = 9;
    /// Packet with TTL/hop limit <= 1 addressed to a VIP (passed to the kernel).
    pub const TTL_EXPIRED: u32 = 10;
    /// A packet from a NAT real server's address:port that did not arrive
    /// on the device the balancer's route to that real server leaves by
    /// (forged, or misrouted): passed to the kernel untouched instead of
    /// being rewritten to come from the VIP (no open reflector).
    pub const REPLY_WRONG_INGRESS: u32 = 11;
    /// An ICMP error about a VIP flow (path MTU, unreachable...) sent on
    /// to the real server that owns the flow (NAT: translated to it).
    pub const ICMP_TO_REAL: u32 = 12;
    /// A NAT real server's ICMP error about a client's packet, translated
    /// to come from the VIP and quote the VIP.
    pub const ICMP_FROM_REAL: u32 = 13;
    pub const COUNT: u32 = 14;
    pub const NAMES: [&str; COUNT as usize] = [
        "truncated",
        "malformed",
        "fragment",
        "ip_options",
        "no_backend",
        "neigh_miss",
        "fib_miss",
        "icmp_vip",
        "nat_reply",
        "flow_rescheduled",
        "ttl_expired",
        "reply_wrong_ingress",
        "icmp_to_real",
        "icmp_from_real",
    ];
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers
    // and have no implicit padding (checked by the size asserts above).
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowKeyV4 {}
    unsafe impl aya::Pod for ServiceSlot {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for ReverseNat {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for DrNextHop {}
    unsafe impl aya::Pod for crate::FlowSet {}
}
