//! Which real server a packet goes to: the flow table first (an established
//! flow stays where it is while its server remains in the service), then
//! the service's Maglev ring, then its fallback (sorry) server.
//!
//! An established flow's packet never reads `SERVICES`: its flow entry
//! names the service by id, and `SERVICES_BY_ID` gives that service's VIP
//! (which must be the packet's) and forwarding method (`established`).
//! Everything else (a miss, a SYN, an entry whose service or real server
//! changed) looks the VIP up in `SERVICES` and is scheduled there
//! (`choose`).
//!
//! IPv4 flows live in `FLOWS_V4`, IPv6 flows in `FLOWS`, both tables of
//! four-way sets under a keyed 64-bit tag of the tuple
//! (`lb_common::flow_table`). The Maglev slot is another hash of the same
//! tuple, with a fixed seed (`lb_common::hash`), so the host predicts it
//! and two balancers agree.
//!
//! A new flow (or a SYN) finds its service through `SERVICE_INDEX` when
//! one service alone has its VIP key's index entry, which names the
//! service's `SERVICES_BY_ID` slot; the slot must hold the packet's VIP
//! (`indexed_service`). Where the index cannot say (no entry, two keys on
//! one entry, a slot being rewritten) `SERVICES` answers, as it always did:
//! the index saves a new flow the hash lookup's cache lines (measured: a
//! quarter of a new flow's cost while another program shares the caches).
//! An array slot is copied without a lock, so a slot the agent rewrites
//! while a packet reads it could mix two versions of its Maglev range; the
//! agent zeroes the index entry while it rewrites a slot, and a real
//! server picked by the ring must belong to the service, or the packet is
//! dropped (`choose`), never sent to another service's real server.
//!
//! A TCP SYN without ACK opens a new connection: it skips the flow table
//! and is scheduled by the ring, overwriting any entry a closed connection
//! on the same ports left behind. So a drained (weight 0) or removed real
//! server, whose flows stay usable until they end, gets no new connection
//! through a client's reused source port (IPVS's conn_reuse_mode does the
//! same for its connection table).

use lb_common::{
    event,
    flow_table::{flow_tag_v4, flow_tag_v6, set_index},
    hash::{flow_hash, flow_hash_v4, MAGLEV_SEED},
    Backend, EndpointKey, Flow, FlowKey, FlowKeyV4, FlowSet, Service, BACKEND_F_ACTIVE,
    FAMILY_IPV4, NO_BACKEND,
};

use crate::{
    log,
    maps::{self, BACKENDS, FLOWS, FLOWS_V4, MAGLEV_RING, SERVICES_BY_ID, SERVICE_INDEX},
    parse::Packet,
    stats,
    verdict::Verdict,
};

pub struct Choice {
    pub id: u32,
    pub backend: Backend,
    /// A flow-table entry was written (counts as a new connection).
    pub new_flow: bool,
}

/// The flow (`src`:`sport` -> `dst`:`dport`) as its client sends it.
#[inline(always)]
pub fn key(
    family: u8,
    proto: u8,
    src: &[u32; 4],
    dst: &[u32; 4],
    sport_be: u16,
    dport_be: u16,
) -> FlowKey {
    FlowKey {
        src: *src,
        dst: *dst,
        src_port_be: sport_be,
        dst_port_be: dport_be,
        proto,
        family,
        _pad: [0; 2],
    }
}

/// The key of the packet `p` (a request).
#[inline(always)]
pub fn key_of(p: &Packet) -> FlowKey {
    key(p.family, p.proto, &p.src, &p.dst, p.sport_be, p.dport_be)
}

/// The IPv4 form of an IPv4 `key` (`FLOWS_V4`'s key).
#[inline(always)]
fn v4(key: &FlowKey) -> FlowKeyV4 {
    FlowKeyV4 {
        src: key.src[0],
        dst: key.dst[0],
        src_port_be: key.src_port_be,
        dst_port_be: key.dst_port_be,
        proto: key.proto,
        _pad: [0; 3],
    }
}

/// The set that holds (or will hold) the flow `key`, and its tag.
#[inline(always)]
fn set_of(key: &FlowKey) -> Option<(*mut FlowSet, u64)> {
    let seed = maps::flow_seed();
    if key.family == FAMILY_IPV4 {
        let tag = flow_tag_v4(&v4(key), seed);
        let set = FLOWS_V4.get_ptr_mut(set_index(tag, maps::flow_sets_v4()))?;
        Some((set, tag))
    } else {
        let tag = flow_tag_v6(key, seed);
        let set = FLOWS.get_ptr_mut(set_index(tag, maps::flow_sets_v6()))?;
        Some((set, tag))
    }
}

/// The flow-table entry of `key` (in the table of its family), copied; a
/// hit becomes its set's most recent flow.
#[inline(always)]
pub fn lookup(key: &FlowKey) -> Option<Flow> {
    let (set, tag) = set_of(key)?;
    // SAFETY: a map value pointer, valid for this program run (see
    // `lb_common::flow_table` on sets written from several CPUs).
    unsafe { (*set).find_and_touch(tag) }
}

/// Records `flow` for `key`. There is always room: a full set gives up
/// its least recently used flow.
#[inline(always)]
fn insert(key: &FlowKey, flow: &Flow) {
    if let Some((set, tag)) = set_of(key) {
        // SAFETY: as in `lookup`.
        unsafe { (*set).insert(tag, *flow) }
    }
}

/// The Maglev hash of the tuple (`flow_hash_v4` is `flow_hash` of the
/// same IPv4 tuple, with fewer loads).
#[inline(always)]
fn hash(key: &FlowKey) -> u32 {
    if key.family == FAMILY_IPV4 {
        flow_hash_v4(&v4(key), MAGLEV_SEED)
    } else {
        flow_hash(key, MAGLEV_SEED)
    }
}

/// `BACKENDS[id]` if it may carry an existing flow of service `service_id`.
#[inline(always)]
pub fn flow_backend(id: u32, service_id: u32) -> Option<Backend> {
    let b = BACKENDS.get(id)?;
    (b.flags & BACKEND_F_ACTIVE != 0 && b.service_id == service_id).then_some(*b)
}

/// The fast path of an established flow: the forwarding flags of the
/// service `flow` names and its real server, when that service is still the
/// one at the packet's `vip` and the real server is still in it. `None`
/// sends the packet to `choose`, which decides from `SERVICES` (a stale
/// slot, one being written, or a real server that left: as before this
/// path existed).
#[inline(always)]
pub fn established(vip: &EndpointKey, flow: &Flow) -> Option<(u32, Backend)> {
    let slot = SERVICES_BY_ID.get(flow.service_id)?;
    // Only `vip` and `flags` are read (see `lb_common::ServiceSlot`).
    if slot.vip != *vip {
        return None;
    }
    let flags = slot.service.flags;
    Some((flags, flow_backend(flow.backend_id, flow.service_id)?))
}

/// The service at `vip` (whose filter bit is `bit`) as `SERVICE_INDEX`
/// and `SERVICES_BY_ID` have it, without a hash lookup; `None` when the
/// index has no single service there or the slot is not `vip`'s (the
/// caller asks `SERVICES` then).
#[inline(always)]
pub fn indexed_service(vip: &EndpointKey, bit: u32) -> Option<Service> {
    let id = SERVICE_INDEX
        .get(lb_common::service_index_of(bit))?
        .checked_sub(1)?;
    let slot = SERVICES_BY_ID.get(id)?;
    if slot.vip != *vip || slot.service.id != id {
        return None;
    }
    Some(slot.service)
}

/// The real server of a packet of `svc` whose flow entry (`known`, already
/// looked up; `None` for a SYN) did not take the fast path: the entry while
/// it is still good for `svc`, else the ring, and the entry is written.
#[inline(always)]
pub fn choose(
    p: &Packet,
    svc: &Service,
    key: &FlowKey,
    known: Option<Flow>,
) -> Result<Choice, Verdict> {
    if let Some(flow) = known {
        if flow.service_id == svc.id {
            if let Some(backend) = flow_backend(flow.backend_id, svc.id) {
                return Ok(Choice {
                    id: flow.backend_id,
                    backend,
                    new_flow: false,
                });
            }
        }
        stats::event(event::FLOW_RESCHEDULED);
        log::rescheduled(p, flow, svc);
    }
    let id = match ring_choice(svc, key) {
        Some(id) => {
            if svc.ring_size == 0 {
                log::sorry(p, svc, id);
            }
            id
        }
        None => {
            log::no_backend(p, svc);
            return Err(Verdict::drop(event::NO_BACKEND));
        }
    };
    let backend = *BACKENDS.get(id).ok_or(Verdict::drop(event::NO_BACKEND))?;
    // Only when the agent rewrote the service while this packet read it
    // (see the module doc): never another service's real server.
    if backend.service_id != svc.id {
        return Err(Verdict::drop(event::NO_BACKEND));
    }
    insert(
        key,
        &Flow {
            backend_id: id,
            service_id: svc.id,
        },
    );
    Ok(Choice {
        id,
        backend,
        new_flow: true,
    })
}

/// The backend id a new flow of `svc` gets: its Maglev slot, or the
/// fallback (sorry) server while the ring is empty.
#[inline(always)]
pub fn ring_choice(svc: &Service, key: &FlowKey) -> Option<u32> {
    if svc.ring_size > 0 {
        let slot = hash(key) % svc.ring_size;
        MAGLEV_RING.get(svc.ring_offset.wrapping_add(slot)).copied()
    } else if svc.fallback_backend != NO_BACKEND {
        Some(svc.fallback_backend)
    } else {
        None
    }
}
