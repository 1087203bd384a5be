//! The writing half of an apply: a checked [`Plan`] written to the maps in
//! the order of the module doc of [`super`], one method per step, so that
//! no packet sees a half-written table.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Instant,
};

use lb_common::{
    Backend, EndpointKey, ReverseNat, Service, BACKEND_F_ACTIVE, NO_BACKEND, SVC_F_DR, SVC_F_NAT,
};

use super::{
    plan::{DesiredService, Plan},
    ring_range_of, ApplySummary, Drain, InstalledBackend, InstalledService, Linger, ProgramError,
    Programmer, ServiceKey, LINGER,
};
use crate::{
    config::Forwarding,
    dataplane::{
        keys::{addr_words, endpoint_key, family},
        maps::MapWriter,
        ring::RingRange,
    },
    maglev,
};

/// A backend value to write later in the apply.
struct BackendWrite {
    id: u32,
    value: Backend,
}

impl BackendWrite {
    /// `backend` with ACTIVE cleared.
    fn inactive(backend: &InstalledBackend) -> Self {
        Self {
            id: backend.id,
            value: Backend {
                flags: backend.value.flags & !BACKEND_F_ACTIVE,
                ..backend.value
            },
        }
    }
}

/// What the early steps leave for the later ones.
#[derive(Default)]
struct Pending {
    summary: ApplySummary,
    /// Backends to write with ACTIVE cleared once the tables no longer
    /// name them (step 3).
    deactivate: Vec<BackendWrite>,
    /// Removed real servers whose flows drain (see the module doc), with
    /// the value they get when the drain ends.
    drain: Vec<BackendWrite>,
    free_ranges: Vec<RingRange>,
    free_backend_ids: Vec<u32>,
    free_service_ids: Vec<u32>,
}

impl Programmer {
    /// Write `plan`; nothing the user can fix fails any more.
    pub(super) fn commit(
        &mut self,
        plan: &Plan,
        maps: &mut dyn MapWriter,
    ) -> Result<ApplySummary, ProgramError> {
        let mut pending = Pending::default();
        let mut next: HashMap<ServiceKey, InstalledService> = HashMap::new();
        for desired in &plan.services {
            let service = self.write_backends(desired, maps, &mut pending)?;
            next.insert(desired.key, service);
        }
        let want_reverse = self.write_reverse_nat(plan, &next, maps, &mut pending)?;
        // What is left in `self.services` was removed from the config.
        self.remove_services(maps, &mut pending)?;
        self.swap_tables(plan, &mut next, maps, &mut pending)?;
        let reserved = self.deactivate(&want_reverse, maps, &mut pending)?;
        let summary = self.release(pending, &reserved);
        self.services = next;
        self.reverse_nat = want_reverse;
        Ok(summary)
    }

    /// Step 1: backends that are new or stay/become active are written;
    /// the service comes out of `self.services` into what it will be.
    fn write_backends(
        &mut self,
        desired: &DesiredService,
        maps: &mut dyn MapWriter,
        pending: &mut Pending,
    ) -> Result<InstalledService, ProgramError> {
        let old = self.services.remove(&desired.key);
        let id = match &old {
            Some(s) => s.id,
            None => {
                let id = self.service_ids.allocate().expect("capacity checked");
                maps.reset_service_stats(id)?;
                pending.summary.services_added += 1;
                id
            }
        };
        let mut old_backends = old.as_ref().map(|s| s.backends.clone()).unwrap_or_default();
        let mut backends = BTreeMap::new();
        for (addr, d) in &desired.backends {
            let prev = old_backends.remove(addr);
            let bid = match &prev {
                Some(b) => b.id,
                None => {
                    let bid = self.backend_ids.allocate().expect("capacity checked");
                    maps.reset_backend_stats(bid)?;
                    pending.summary.backends_added += 1;
                    bid
                }
            };
            let value = Backend {
                addr: addr_words(addr.ip()),
                port_be: addr.port().to_be(),
                family: family(addr.ip()),
                flags: if d.active() { BACKEND_F_ACTIVE } else { 0 },
                service_id: id,
            };
            match &prev {
                None => maps.set_backend(bid, &value)?,
                Some(p) if p.value != value => {
                    if d.active() {
                        maps.set_backend(bid, &value)?;
                    } else {
                        pending.deactivate.push(BackendWrite { id: bid, value });
                    }
                }
                Some(_) => {}
            }
            if prev.as_ref().is_some_and(|p| {
                let o = p.desired;
                (o.weight, o.up, o.role) != (d.weight, d.up, d.role)
            }) {
                pending.summary.backends_updated += 1;
            }
            let installed = InstalledBackend {
                id: bid,
                desired: *d,
                value,
            };
            backends.insert(*addr, installed);
        }
        // Real servers that left the service: out of the table in step 2;
        // an active one drains (inactive and its id freed when `expire`
        // ends the drain), a down one is inactive already.
        for gone in old_backends.values() {
            if gone.value.flags & BACKEND_F_ACTIVE != 0 {
                pending.drain.push(BackendWrite::inactive(gone));
            } else {
                pending.deactivate.push(BackendWrite::inactive(gone));
                pending.free_backend_ids.push(gone.id);
            }
            pending.summary.backends_removed += 1;
        }
        let vs = desired.config;
        let service = InstalledService {
            id,
            position: Some(desired.position),
            name: vs.name.clone(),
            forwarding: vs.forwarding,
            scheduler: vs.scheduler,
            table_size: vs.maglev_table_size,
            value: old.as_ref().map(|s| s.value).unwrap_or_default(),
            ring: old.as_ref().and_then(|s| s.ring),
            ring_inputs: old.as_ref().and_then(|s| s.ring_inputs.clone()),
            backends,
        };
        if old.as_ref().is_some_and(|o| {
            o.name != service.name
                || o.forwarding != service.forwarding
                || o.table_size != service.table_size
                || o.position != service.position
        }) {
            pending.summary.services_updated += 1;
        }
        Ok(service)
    }

    /// Step 1 (continued): reverse NAT entries that are new or changed.
    fn write_reverse_nat(
        &mut self,
        plan: &Plan,
        next: &HashMap<ServiceKey, InstalledService>,
        maps: &mut dyn MapWriter,
        pending: &mut Pending,
    ) -> Result<HashMap<EndpointKey, ReverseNat>, ProgramError> {
        let mut want_reverse: HashMap<EndpointKey, ReverseNat> = HashMap::new();
        for (rkey, owner) in &plan.reverse_owners {
            let s = &next[&owner.service];
            want_reverse.insert(
                *rkey,
                ReverseNat {
                    vip: addr_words(owner.service.address),
                    vip_port_be: owner.service.port.to_be(),
                    _pad: 0,
                    service_id: s.id,
                    backend_id: s.backends[&owner.real].id,
                },
            );
            debug_assert_eq!(endpoint_key(owner.real, owner.service.protocol), *rkey);
        }
        for (rkey, value) in &want_reverse {
            if self.reverse_nat.get(rkey) != Some(value) {
                maps.set_reverse_nat(rkey, value)?;
            }
            // Back before its linger ended: the entry now names the new id.
            if let Some(linger) = self.lingering.remove(rkey) {
                pending.free_backend_ids.push(linger.backend_id);
            }
        }
        Ok(want_reverse)
    }

    /// Step 2a: removed services leave SERVICES first (their VIP packets
    /// go to the kernel); their backends are deactivated in step 3.
    fn remove_services(
        &mut self,
        maps: &mut dyn MapWriter,
        pending: &mut Pending,
    ) -> Result<(), ProgramError> {
        for (key, gone) in self.services.drain() {
            maps.remove_service(&key.endpoint())?;
            pending.free_ranges.extend(gone.ring);
            pending.free_service_ids.push(gone.id);
            pending.summary.services_removed += 1;
            for b in gone.backends.values() {
                pending.deactivate.push(BackendWrite::inactive(b));
                pending.free_backend_ids.push(b.id);
                pending.summary.backends_removed += 1;
            }
            // No packet reaches a removed service's backends any more: the
            // drain of its earlier removed real servers ends now too.
            let ended: Vec<u32> = self
                .draining
                .iter()
                .filter(|(_, d)| d.value.service_id == gone.id)
                .map(|(id, _)| *id)
                .collect();
            for id in ended {
                let drain = self.draining.remove(&id).expect("collected above");
                pending.deactivate.push(BackendWrite {
                    id,
                    value: drain.value,
                });
                pending.free_backend_ids.push(id);
            }
        }
        Ok(())
    }

    /// Step 2b: every changed table is written into a free range and
    /// swapped in with one service update.
    fn swap_tables(
        &mut self,
        plan: &Plan,
        next: &mut HashMap<ServiceKey, InstalledService>,
        maps: &mut dyn MapWriter,
        pending: &mut Pending,
    ) -> Result<(), ProgramError> {
        for desired in &plan.services {
            let s = next.get_mut(&desired.key).expect("built in step 1");
            let inputs = &desired.ring;
            if s.ring_inputs.as_ref() != Some(inputs) {
                pending.free_ranges.extend(s.ring.take());
                if !inputs.entries.is_empty() {
                    let range = self
                        .ring
                        .allocate(inputs.table_size)
                        .expect("ring space checked");
                    let table = self.build_table(s, desired)?;
                    maps.write_ring(range.offset, &table)?;
                    s.ring = Some(range);
                    pending.summary.tables_built += 1;
                }
                s.ring_inputs = Some(inputs.clone());
            }
            let fallback = s
                .backends
                .values()
                .find(|b| b.desired.role.is_sorry())
                .map_or(NO_BACKEND, |b| b.id);
            let value = Service {
                id: s.id,
                flags: match s.forwarding {
                    Forwarding::Nat => SVC_F_NAT,
                    Forwarding::Dr => SVC_F_DR,
                },
                ring_offset: s.ring.map_or(0, |r| r.offset),
                ring_size: s.ring.map_or(0, |r| r.len),
                fallback_backend: fallback,
                _pad: 0,
            };
            if value != s.value {
                maps.set_service(&desired.key.endpoint(), &value)?;
                s.value = value;
            }
            debug_assert_eq!(ring_range_of(&s.value), s.ring);
        }
        Ok(())
    }

    /// The Maglev table of `desired`, over the backend ids of `service`.
    fn build_table(
        &self,
        service: &InstalledService,
        desired: &DesiredService,
    ) -> Result<Vec<u32>, ProgramError> {
        let inputs = &desired.ring;
        let entries: Vec<maglev::Entry> = inputs
            .entries
            .iter()
            .map(|(addr, weight)| maglev::Entry {
                id: service.backends[addr].id,
                addr: addr.ip(),
                port: addr.port(),
                weight: *weight,
            })
            .collect();
        let table = (self.build_table)(&entries, inputs.table_size);
        if table.len() != inputs.table_size as usize {
            return Err(ProgramError::TableSize {
                got: table.len(),
                expected: inputs.table_size,
            });
        }
        Ok(table)
    }

    /// Step 3: nothing new is scheduled to these any more; their flows are
    /// chosen again. Drains and lingering reverse-NAT entries start now;
    /// returns the backend ids the new lingering entries keep reserved.
    fn deactivate(
        &mut self,
        want_reverse: &HashMap<EndpointKey, ReverseNat>,
        maps: &mut dyn MapWriter,
        pending: &mut Pending,
    ) -> Result<HashSet<u32>, ProgramError> {
        for w in &pending.deactivate {
            maps.set_backend(w.id, &w.value)?;
        }
        let until = Instant::now() + LINGER;
        for w in pending.drain.drain(..) {
            self.draining.insert(
                w.id,
                Drain {
                    value: w.value,
                    until,
                },
            );
        }
        let mut reserved = HashSet::new();
        for (rkey, value) in &self.reverse_nat {
            if !want_reverse.contains_key(rkey) {
                let linger = Linger {
                    backend_id: value.backend_id,
                    until,
                };
                self.lingering.insert(*rkey, linger);
                reserved.insert(value.backend_id);
            }
        }
        Ok(reserved)
    }

    /// Step 4: no map value refers to these any more. Ids a new lingering
    /// entry or a drain holds are freed when those end (`expire`).
    fn release(&mut self, pending: Pending, reserved: &HashSet<u32>) -> ApplySummary {
        for range in pending.free_ranges {
            self.ring.free(range);
        }
        for id in pending.free_backend_ids {
            if !reserved.contains(&id) && !self.draining.contains_key(&id) {
                self.backend_ids.free(id);
            }
        }
        for id in pending.free_service_ids {
            self.service_ids.free(id);
        }
        pending.summary
    }
}
