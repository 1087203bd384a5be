//! Which real server a packet goes to: the flow table first (an established
//! flow stays where it is while its server remains in the service), then
//! the service's Maglev ring, then its fallback (sorry) server.
//!
//! A TCP SYN without ACK opens a new connection: it skips the flow table
//! and is scheduled by the ring, overwriting any entry a closed connection
//! on the same ports left behind. So a drained (weight 0) or removed real
//! server, whose flows stay usable until they end, gets no new connection
//! through a client's reused source port (IPVS's conn_reuse_mode does the
//! same for its connection table).

use aya_ebpf::programs::XdpContext;
use lb_common::{
    event, hash::flow_hash, hash::MAGLEV_SEED, Backend, Flow, FlowKey, Service, BACKEND_F_ACTIVE,
    NO_BACKEND,
};

use crate::{
    log,
    maps::{BACKENDS, FLOWS, MAGLEV_RING},
    parse::{self, Packet},
    stats,
    verdict::Verdict,
};

pub struct Choice {
    pub id: u32,
    pub backend: Backend,
    /// A flow-table entry was written (counts as a new connection).
    pub new_flow: bool,
}

#[inline(always)]
pub fn choose(ctx: &XdpContext, p: &Packet, svc: &Service) -> Result<Choice, Verdict> {
    let key = FlowKey {
        src: p.src,
        dst: p.dst,
        src_port_be: p.sport_be,
        dst_port_be: p.dport_be,
        proto: p.proto,
        family: p.family,
        _pad: [0; 2],
    };
    let known = if parse::tcp_syn(ctx, p) {
        None
    } else {
        FLOWS.get_ptr(key)
    };
    if let Some(flow) = known {
        // SAFETY: a map value pointer, valid for this program run.
        let flow = unsafe { *flow };
        if flow.service_id == svc.id {
            if let Some(b) = BACKENDS.get(flow.backend_id) {
                if b.flags & BACKEND_F_ACTIVE != 0 && b.service_id == svc.id {
                    return Ok(Choice {
                        id: flow.backend_id,
                        backend: *b,
                        new_flow: false,
                    });
                }
            }
        }
        stats::event(event::FLOW_RESCHEDULED);
        log::rescheduled(p, flow, svc);
    }

    let id = if svc.ring_size > 0 {
        let slot = flow_hash(&key, MAGLEV_SEED) % svc.ring_size;
        *MAGLEV_RING
            .get(svc.ring_offset.wrapping_add(slot))
            .ok_or(Verdict::drop(event::NO_BACKEND))?
    } else if svc.fallback_backend != NO_BACKEND {
        log::sorry(p, svc, svc.fallback_backend);
        svc.fallback_backend
    } else {
        log::no_backend(p, svc);
        return Err(Verdict::drop(event::NO_BACKEND));
    };
    let backend = *BACKENDS.get(id).ok_or(Verdict::drop(event::NO_BACKEND))?;
    // A failed insert (only possible under memory pressure: the map is LRU)
    // costs nothing now: the next packet hashes to the same slot.
    let _ = FLOWS.insert(
        key,
        Flow {
            backend_id: id,
            service_id: svc.id,
        },
        0,
    );
    Ok(Choice {
        id,
        backend,
        new_flow: true,
    })
}
