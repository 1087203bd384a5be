//! Direct routing: the IP packet is left exactly as the client sent it (the
//! real server owns the VIP on `lo`); only the Ethernet header changes, to
//! the real server's MAC as the kernel's neighbour table knows it.

use aya_ebpf::programs::XdpContext;
use lb_common::{event, Backend};

use crate::{
    fib::{self, Fib},
    parse::Packet,
    verdict::{Verdict, NONE},
};

#[inline(always)]
pub fn forward(ctx: &XdpContext, p: &Packet, backend_id: u32, backend: &Backend) -> Verdict {
    // The cached next hop may lag a neighbour change by up to the cache's
    // TTL; a real server whose entry fails is dropped once the entry
    // expires (`fib::to_backend`). With forwarding off the agent's
    // neighbour-table copy answers instead of the kernel's FIB.
    match fib::to_backend(ctx, p, backend_id, backend, p.sport_be, p.dport_be, true) {
        Fib::Forward {
            ifindex,
            smac,
            dmac,
        } => {
            // A tagged frame keeps its tag, which is only right on the link it
            // came from: DR real servers share the client's VLAN.
            let out = if p.vlan {
                ctx.ingress_ifindex() as u32
            } else {
                ifindex
            };
            match fib::send(ctx, out, &smac, &dmac) {
                Some(action) => Verdict::new(action, NONE),
                None => Verdict::aborted(),
            }
        }
        // Passing would deliver the VIP packet to the balancer itself.
        Fib::NoNeigh => Verdict::drop(event::NEIGH_MISS),
        Fib::Miss | Fib::Local | Fib::NoForwarding => Verdict::drop(event::FIB_MISS),
    }
}
