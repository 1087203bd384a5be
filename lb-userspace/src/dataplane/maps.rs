//! The agent's handle on the data plane's maps, and the narrow write
//! interface the programmer uses.
//!
//! [`MapWriter`] is the only way the programmer touches the kernel, so its
//! diff-and-swap logic runs unchanged against [`KernelMaps`] (the real maps
//! of a loaded object) and against an in-memory double in the host tests.

use std::os::fd::{AsFd as _, AsRawFd as _, RawFd};

use super::{filter::KernelFilter, service_index::KernelServiceIndex};
use aya::{
    maps::{Array, HashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    sys::SyscallError,
    Ebpf,
};
use lb_common::{
    flow_table::{flow_tag_v4, flow_tag_v6, set_index, DEFAULT_FLOW_SEED},
    layout::MapKind,
    names, Backend, Counters, EndpointKey, Flow, FlowKey, FlowSet, ReverseNat, Service,
    ServiceSlot,
};

/// `BPF_F_MMAPABLE` (linux/bpf.h): the flow tables' flag.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A map operation the kernel refused.
#[derive(Debug, thiserror::Error)]
#[error("{op} on BPF map {map} failed: {source}")]
pub struct MapWriteError {
    pub map: &'static str,
    pub op: &'static str,
    #[source]
    pub source: MapError,
}

fn err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> MapWriteError {
    move |source| MapWriteError { map, op, source }
}

/// Writes the programmer needs; each is one map update (atomic for the
/// reader of that entry).
pub trait MapWriter {
    fn set_backend(&mut self, id: u32, value: &Backend) -> Result<(), MapWriteError>;
    /// Write `table` into `MAGLEV_RING` starting at slot `offset`.
    fn write_ring(&mut self, offset: u32, table: &[u32]) -> Result<(), MapWriteError>;
    fn set_service(&mut self, key: &EndpointKey, value: &Service) -> Result<(), MapWriteError>;
    fn remove_service(&mut self, key: &EndpointKey) -> Result<(), MapWriteError>;
    fn set_reverse_nat(
        &mut self,
        key: &EndpointKey,
        value: &ReverseNat,
    ) -> Result<(), MapWriteError>;
    fn remove_reverse_nat(&mut self, key: &EndpointKey) -> Result<(), MapWriteError>;
    /// Zero a service's counters (its id is new or reused).
    fn reset_service_stats(&mut self, id: u32) -> Result<(), MapWriteError>;
    /// Zero a backend's counters (its id is new or reused).
    fn reset_backend_stats(&mut self, id: u32) -> Result<(), MapWriteError>;
}

/// The maps of the loaded XDP object, taken out of the `Ebpf` so the
/// program and the maps can be owned separately.
pub struct KernelMaps {
    services: HashMap<MapData, EndpointKey, Service>,
    backends: Array<MapData, Backend>,
    ring: Array<MapData, u32>,
    reverse_nat: HashMap<MapData, EndpointKey, ReverseNat>,
    service_stats: PerCpuArray<MapData, Counters>,
    backend_stats: PerCpuArray<MapData, Counters>,
    verdict_stats: PerCpuArray<MapData, u64>,
    event_stats: PerCpuArray<MapData, u64>,
    /// IPv6 flows.
    flows: Array<MapData, FlowSet>,
    flows_v4: Array<MapData, FlowSet>,
    /// `SERVICES_BY_ID`, kept in step with `services` by `set_service` and
    /// `remove_service` (see `lb_common::ServiceSlot` for the order).
    services_by_id: Array<MapData, ServiceSlot>,
    /// `ENDPOINT_FILTER`, kept in step with `services` and `reverse_nat` by
    /// the writes below; absent on read-only handles (`open_pinned`) and
    /// standalone maps (no program reads them).
    filter: Option<KernelFilter>,
    /// `SERVICE_INDEX`, kept in step with `services_by_id` by
    /// `set_service` and `remove_service`; absent where the filter is.
    index: Option<KernelServiceIndex>,
    nr_cpus: usize,
}

/// The object lacks a map the contract names, or it has another type.
#[derive(Debug, thiserror::Error)]
pub enum MapOpenError {
    #[error("the XDP object has no map named {0} (lb-ebpf and lb-common disagree)")]
    Missing(&'static str),
    #[error("BPF map {name} does not have the type the agent expects: {source}")]
    WrongType {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot count the possible CPUs: {0}")]
    Cpus(String),
    #[error("cannot open the pinned BPF map {name}: {source}")]
    Pinned {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot fill BPF map ENDPOINT_FILTER: {0}")]
    Filter(#[source] MapWriteError),
    /// Boxed: a second unboxed `MapWriteError` variant makes every error
    /// that carries this enum larger.
    #[error("cannot fill BPF map SERVICES_BY_ID: {0}")]
    Slots(#[source] Box<MapWriteError>),
    #[error("cannot fill BPF map SERVICE_INDEX: {0}")]
    Index(#[source] Box<MapWriteError>),
    #[error("cannot open a second handle on BPF map {name}: {source}")]
    Reopen {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

fn take<T: TryFrom<Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, MapOpenError> {
    let map = ebpf.take_map(name).ok_or(MapOpenError::Missing(name))?;
    T::try_from(map).map_err(|source| MapOpenError::WrongType { name, source })
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapOpenError> {
        let nr_cpus =
            aya::util::nr_cpus().map_err(|(what, e)| MapOpenError::Cpus(format!("{what}: {e}")))?;
        let services: HashMap<MapData, EndpointKey, Service> = take(ebpf, names::SERVICES)?;
        let reverse_nat: HashMap<MapData, EndpointKey, ReverseNat> =
            take(ebpf, names::REVERSE_NAT)?;
        // Before the program is attached, as the filter below.
        let mut services_by_id = take(ebpf, names::SERVICES_BY_ID)?;
        let pinned: Vec<(EndpointKey, Service)> = services.iter().filter_map(Result::ok).collect();
        sync_slots(&mut services_by_id, &pinned).map_err(|e| MapOpenError::Slots(Box::new(e)))?;
        // After the slots it points into.
        let index = KernelServiceIndex::new(
            take(ebpf, names::SERVICE_INDEX)?,
            &pinned.iter().map(|(k, s)| (*k, s.id)).collect::<Vec<_>>(),
        )
        .map_err(|e| MapOpenError::Index(Box::new(e)))?;
        // Before the program is attached: adopted keys get their bits.
        let filter = KernelFilter::new(
            take(ebpf, names::ENDPOINT_FILTER)?,
            &services.keys().filter_map(Result::ok).collect::<Vec<_>>(),
            &reverse_nat
                .keys()
                .filter_map(Result::ok)
                .collect::<Vec<_>>(),
        )
        .map_err(MapOpenError::Filter)?;
        Ok(Self {
            services,
            backends: take(ebpf, names::BACKENDS)?,
            ring: take(ebpf, names::MAGLEV_RING)?,
            reverse_nat,
            service_stats: take(ebpf, names::SERVICE_STATS)?,
            backend_stats: take(ebpf, names::BACKEND_STATS)?,
            verdict_stats: take(ebpf, names::VERDICT_STATS)?,
            event_stats: take(ebpf, names::EVENT_STATS)?,
            flows: take(ebpf, names::FLOWS)?,
            flows_v4: take(ebpf, names::FLOWS_V4)?,
            services_by_id,
            filter: Some(filter),
            index: Some(index),
            nr_cpus,
        })
    }

    /// The maps a previous agent pinned in `pins`, opened without loading
    /// the program or touching the interfaces: `lb status` reads them when
    /// no agent runs (the data plane keeps forwarding then).
    pub fn open_pinned(pins: &super::pin::PinDir) -> Result<Self, MapOpenError> {
        /// The map pinned as `name`, as the kind the map table gives it.
        fn open<T: TryFrom<Map, Error = MapError>>(
            pins: &super::pin::PinDir,
            name: &'static str,
        ) -> Result<T, MapOpenError> {
            let data = MapData::from_pin(pins.map(name))
                .map_err(|source| MapOpenError::Pinned { name, source })?;
            let kind = lb_common::layout::spec(name)
                .ok_or(MapOpenError::Missing(name))?
                .kind;
            let map = match kind {
                MapKind::Hash => Map::HashMap(data),
                MapKind::LruHash => Map::LruHashMap(data),
                MapKind::Array => Map::Array(data),
                MapKind::PerCpuArray => Map::PerCpuArray(data),
            };
            T::try_from(map).map_err(|source| MapOpenError::WrongType { name, source })
        }
        let nr_cpus =
            aya::util::nr_cpus().map_err(|(what, e)| MapOpenError::Cpus(format!("{what}: {e}")))?;
        Ok(Self {
            services: open(pins, names::SERVICES)?,
            backends: open(pins, names::BACKENDS)?,
            ring: open(pins, names::MAGLEV_RING)?,
            reverse_nat: open(pins, names::REVERSE_NAT)?,
            service_stats: open(pins, names::SERVICE_STATS)?,
            backend_stats: open(pins, names::BACKEND_STATS)?,
            verdict_stats: open(pins, names::VERDICT_STATS)?,
            event_stats: open(pins, names::EVENT_STATS)?,
            flows: open(pins, names::FLOWS)?,
            flows_v4: open(pins, names::FLOWS_V4)?,
            services_by_id: open(pins, names::SERVICES_BY_ID)?,
            filter: None,
            index: None,
            nr_cpus,
        })
    }

    /// Maps of the sizes the loader would give the object, created on
    /// their own (no program): for tests and benchmarks of the programmer
    /// against the kernel's map implementation.
    pub fn standalone(sizes: &super::loader::MapSizes) -> Result<Self, MapWriteError> {
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| MapWriteError {
            map: "possible CPUs",
            op: "read",
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            }),
        })?;
        let create = |map: &'static str| err(map, "create");
        Ok(Self {
            services: HashMap::create(sizes.services, 0).map_err(create(names::SERVICES))?,
            backends: Array::create(sizes.backends, 0).map_err(create(names::BACKENDS))?,
            ring: Array::create(sizes.ring_slots, 0).map_err(create(names::MAGLEV_RING))?,
            reverse_nat: HashMap::create(sizes.backends, 0).map_err(create(names::REVERSE_NAT))?,
            service_stats: PerCpuArray::create(sizes.services, 0)
                .map_err(create(names::SERVICE_STATS))?,
            backend_stats: PerCpuArray::create(sizes.backends, 0)
                .map_err(create(names::BACKEND_STATS))?,
            verdict_stats: PerCpuArray::create(lb_common::verdict::COUNT, 0)
                .map_err(create(names::VERDICT_STATS))?,
            event_stats: PerCpuArray::create(lb_common::event::COUNT, 0)
                .map_err(create(names::EVENT_STATS))?,
            // Mappable, as the program's (`flows::walk` reads them in place).
            flows: Array::create(sizes.flow_sets_v6, BPF_F_MMAPABLE)
                .map_err(create(names::FLOWS))?,
            flows_v4: Array::create(sizes.flow_sets, BPF_F_MMAPABLE)
                .map_err(create(names::FLOWS_V4))?,
            services_by_id: Array::create(sizes.services, 0)
                .map_err(create(names::SERVICES_BY_ID))?,
            filter: None,
            // Kept in step as the agent's own, so the programmer's writes
            // (and their cost) are the agent's.
            index: Some(KernelServiceIndex::new(
                Array::create(lb_common::SERVICE_INDEX_ENTRIES, 0)
                    .map_err(create(names::SERVICE_INDEX))?,
                &[],
            )?),
            nr_cpus,
        })
    }

    /// The value of `SERVICES[key]`, if any.
    pub fn service(&self, key: &EndpointKey) -> Option<Service> {
        self.services.get(key, 0).ok()
    }

    /// `SERVICE_INDEX[service_index(key)]`: the id plus one of the service
    /// a new flow to `key` finds without the hash lookup, 0 for none
    /// (`None` where these maps have no index: read-only handles).
    pub fn service_index_entry(&self, key: &EndpointKey) -> Option<u32> {
        self.index.as_ref().map(|ix| ix.entry(key))
    }

    /// `BACKENDS[id]`.
    pub fn backend(&self, id: u32) -> Result<Backend, MapWriteError> {
        self.backends
            .get(&id, 0)
            .map_err(err(names::BACKENDS, "read"))
    }

    /// `MAGLEV_RING[slot]`.
    pub fn ring_slot(&self, slot: u32) -> Result<u32, MapWriteError> {
        self.ring
            .get(&slot, 0)
            .map_err(err(names::MAGLEV_RING, "read"))
    }

    /// The value of `REVERSE_NAT[key]`, if any.
    pub fn reverse_nat(&self, key: &EndpointKey) -> Option<ReverseNat> {
        self.reverse_nat.get(key, 0).ok()
    }

    /// A service's counters summed over the CPUs.
    pub fn service_counters(&self, id: u32) -> Result<Counters, MapWriteError> {
        sum_counters(&self.service_stats, id, names::SERVICE_STATS)
    }

    /// A backend's counters summed over the CPUs.
    pub fn backend_counters(&self, id: u32) -> Result<Counters, MapWriteError> {
        sum_counters(&self.backend_stats, id, names::BACKEND_STATS)
    }

    /// `VERDICT_STATS[index]` or `EVENT_STATS[index]` summed over the CPUs.
    pub fn verdict_count(&self, index: u32) -> Result<u64, MapWriteError> {
        sum_u64(&self.verdict_stats, index, names::VERDICT_STATS)
    }

    /// Events past the end of the array (a pinned array from an older
    /// build, see `PinDir::probe`) were never counted: 0.
    pub fn event_count(&self, index: u32) -> Result<u64, MapWriteError> {
        if index >= self.event_stats.len() {
            return Ok(0);
        }
        sum_u64(&self.event_stats, index, names::EVENT_STATS)
    }

    /// What a previous agent left in the maps, for adoption: every
    /// service, every backend slot that was ever written (family set), and
    /// every reverse-NAT entry.
    #[allow(clippy::type_complexity)]
    pub fn installed(
        &self,
    ) -> Result<
        (
            Vec<(EndpointKey, Service)>,
            Vec<(u32, Backend)>,
            Vec<(EndpointKey, ReverseNat)>,
        ),
        MapWriteError,
    > {
        let services = self
            .services
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(err(names::SERVICES, "read"))?;
        let mut backends = Vec::new();
        for (i, b) in self.backends.iter().enumerate() {
            let b = b.map_err(err(names::BACKENDS, "read"))?;
            if b.family != 0 {
                backends.push((i as u32, b));
            }
        }
        let reverse = self
            .reverse_nat
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(err(names::REVERSE_NAT, "read"))?;
        Ok((services, backends, reverse))
    }

    /// Every flow of both flow tables (IPv4 first), set by set.
    pub fn flows(&self) -> impl Iterator<Item = Flow> + '_ {
        self.flows_v4
            .iter()
            .chain(self.flows.iter())
            .filter_map(Result::ok)
            .flat_map(|set| set.flows().collect::<Vec<_>>())
    }

    /// Flows per owner in both tables, in batches where the kernel can.
    pub fn flow_counts(&self) -> super::flows::FlowCounts {
        let mut counts = super::flows::FlowCounts::walk(&self.flows_v4);
        counts.merge(super::flows::FlowCounts::walk(&self.flows));
        counts
    }

    /// The flow recorded for `key`, where the data plane looks for it (its
    /// set, under its tag); `None` when the table has none.
    pub fn flow(&self, key: &FlowKey) -> Option<Flow> {
        let (table, tag) = match key.narrow() {
            Some(k) => (&self.flows_v4, flow_tag_v4(&k, DEFAULT_FLOW_SEED)),
            None => (&self.flows, flow_tag_v6(key, DEFAULT_FLOW_SEED)),
        };
        table.get(&set_index(tag, table.len()), 0).ok()?.find(tag)
    }

    /// `FLOWS`' (IPv6 flows) file descriptor, for a second handle on the
    /// map ([`super::flows::FlowCounter`]).
    pub fn flows_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.flows.map().fd().as_fd()
    }

    /// `FLOWS_V4`'s file descriptor, likewise.
    pub fn flows_v4_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.flows_v4.map().fd().as_fd()
    }

    /// Writes `flows` into the table of each one's family, replacing what
    /// the tables held: how tests and benchmarks fill a large table (the
    /// agent never writes flows; the data plane does).
    pub fn insert_flows(&self, flows: &[(FlowKey, Flow)]) -> std::io::Result<()> {
        let (v4, v6): (Vec<_>, Vec<_>) = flows.iter().partition(|(k, _)| k.narrow().is_some());
        super::flows::fill(&self.flows_v4, &v4)?;
        super::flows::fill(&self.flows, &v6)
    }

    /// `SERVICES_BY_ID[id]`.
    pub fn service_slot(&self, id: u32) -> Result<ServiceSlot, MapWriteError> {
        self.services_by_id
            .get(&id, 0)
            .map_err(err(names::SERVICES_BY_ID, "read"))
    }

    fn zero_counters(&self) -> PerCpuValues<Counters> {
        PerCpuValues::try_from(vec![Counters::default(); self.nr_cpus])
            .expect("one value per possible CPU")
    }
}

/// Makes `SERVICES_BY_ID` say exactly what `services` (the pinned
/// `SERVICES` of an adopted set, or nothing) says: adoption starts from a
/// slot table that matches, whatever wrote it.
fn sync_slots(
    slots: &mut Array<MapData, ServiceSlot>,
    services: &[(EndpointKey, Service)],
) -> Result<(), MapWriteError> {
    let mut want = vec![ServiceSlot::default(); slots.len() as usize];
    for (vip, service) in services {
        if let Some(w) = want.get_mut(service.id as usize) {
            *w = ServiceSlot {
                vip: *vip,
                service: *service,
            };
        }
    }
    for (id, w) in want.iter().enumerate() {
        let id = id as u32;
        let have = slots
            .get(&id, 0)
            .map_err(err(names::SERVICES_BY_ID, "read"))?;
        if have != *w {
            slots
                .set(id, w, 0)
                .map_err(err(names::SERVICES_BY_ID, "update"))?;
        }
    }
    Ok(())
}

fn sum_counters(
    map: &PerCpuArray<MapData, Counters>,
    id: u32,
    name: &'static str,
) -> Result<Counters, MapWriteError> {
    let values = map.get(&id, 0).map_err(err(name, "read"))?;
    let mut total = Counters::default();
    for v in values.iter() {
        total.add(v);
    }
    Ok(total)
}

fn sum_u64(
    map: &PerCpuArray<MapData, u64>,
    index: u32,
    name: &'static str,
) -> Result<u64, MapWriteError> {
    let values = map.get(&index, 0).map_err(err(name, "read"))?;
    Ok(values.iter().sum())
}

impl MapWriter for KernelMaps {
    fn set_backend(&mut self, id: u32, value: &Backend) -> Result<(), MapWriteError> {
        self.backends
            .set(id, value, 0)
            .map_err(err(names::BACKENDS, "update"))
    }

    fn write_ring(&mut self, offset: u32, table: &[u32]) -> Result<(), MapWriteError> {
        let fd = self.ring.map().fd().as_fd().as_raw_fd();
        update_array_batch(fd, offset, table).map_err(|io_error| MapWriteError {
            map: names::MAGLEV_RING,
            op: "batch update",
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_update_batch",
                io_error,
            }),
        })
    }

    fn set_service(&mut self, key: &EndpointKey, value: &Service) -> Result<(), MapWriteError> {
        if let Some(f) = &mut self.filter {
            f.add(false, key)?;
        }
        // Nobody follows the index into a slot being rewritten.
        if let Some(ix) = &mut self.index {
            ix.hide(key)?;
        }
        self.services
            .insert(key, value, 0)
            .map_err(err(names::SERVICES, "update"))?;
        // After `SERVICES`: a slot is valid only while `SERVICES` has its
        // VIP under its id (an established flow's packet that finds no valid
        // slot is scheduled from `SERVICES`, as before the slots existed).
        let slot = ServiceSlot {
            vip: *key,
            service: *value,
        };
        self.services_by_id
            .set(value.id, slot, 0)
            .map_err(err(names::SERVICES_BY_ID, "update"))?;
        match &mut self.index {
            Some(ix) => ix.set(key, value.id),
            None => Ok(()),
        }
    }

    fn remove_service(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        // The index first, then the slot, before the service leaves
        // `SERVICES`, so no flow of it is forwarded after it is gone.
        if let Some(ix) = &mut self.index {
            ix.remove(key)?;
        }
        if let Ok(service) = self.services.get(key, 0) {
            let id = service.id;
            if self.service_slot(id).is_ok_and(|s| s.vip == *key) {
                self.services_by_id
                    .set(id, ServiceSlot::default(), 0)
                    .map_err(err(names::SERVICES_BY_ID, "update"))?;
            }
        }
        self.services
            .remove(key)
            .map_err(err(names::SERVICES, "delete"))?;
        match &mut self.filter {
            Some(f) => f.remove(false, key),
            None => Ok(()),
        }
    }

    fn set_reverse_nat(
        &mut self,
        key: &EndpointKey,
        value: &ReverseNat,
    ) -> Result<(), MapWriteError> {
        if let Some(f) = &mut self.filter {
            f.add(true, key)?;
        }
        self.reverse_nat
            .insert(key, value, 0)
            .map_err(err(names::REVERSE_NAT, "update"))
    }

    fn remove_reverse_nat(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        self.reverse_nat
            .remove(key)
            .map_err(err(names::REVERSE_NAT, "delete"))?;
        match &mut self.filter {
            Some(f) => f.remove(true, key),
            None => Ok(()),
        }
    }

    fn reset_service_stats(&mut self, id: u32) -> Result<(), MapWriteError> {
        let zero = self.zero_counters();
        self.service_stats
            .set(id, zero, 0)
            .map_err(err(names::SERVICE_STATS, "update"))
    }

    fn reset_backend_stats(&mut self, id: u32) -> Result<(), MapWriteError> {
        let zero = self.zero_counters();
        self.backend_stats
            .set(id, zero, 0)
            .map_err(err(names::BACKEND_STATS, "update"))
    }
}

/// Writes `values` into the `u32` array map `fd` at indices `first..`, with
/// `BPF_MAP_UPDATE_BATCH` (Linux 5.6+): one system call per chunk instead of
/// one per slot, which is what makes applying thousands of Maglev tables
/// take milliseconds rather than seconds. Readers still see each slot change
/// atomically; the programmer never writes a range a service points at.
fn update_array_batch(fd: RawFd, first: u32, values: &[u32]) -> std::io::Result<()> {
    /// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    /// Bounds the key buffer; the kernel walks a chunk without sleeping for
    /// long (it reschedules between elements).
    const CHUNK: usize = 65536;

    let mut done = 0usize;
    let mut keys: Vec<u32> = Vec::with_capacity(values.len().min(CHUNK));
    while done < values.len() {
        let chunk = &values[done..(done + CHUNK).min(values.len())];
        keys.clear();
        keys.extend((0..chunk.len() as u32).map(|i| first + done as u32 + i));
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix whose pointers refer to
        // `keys` and `chunk`, which outlive the call and hold `count` u32s
        // each (the map's key and value size).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // On success the kernel wrote back how many it processed: all.
        done += (attr.count as usize).max(1).min(chunk.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The programmer against real kernel maps (needs CAP_BPF: run as root,
    //! as `cargo xtask test` does).

    use std::{net::SocketAddr, path::PathBuf};

    use lb_common::{BACKEND_F_ACTIVE, NO_BACKEND, SVC_F_NAT};

    use super::*;
    use crate::{
        config::{
            AgentConfig, Config, Forwarding, Protocol, RealServer, Scheduler, VirtualServer,
            XdpMode,
        },
        dataplane::{keys::endpoint_key, loader::MapSizes, programmer::Programmer, stats},
        maglev,
    };

    fn round_robin(entries: &[maglev::Entry], size: u32) -> Vec<u32> {
        (0..size as usize)
            .map(|i| entries[i % entries.len()].id)
            .collect()
    }

    fn config(reals: &[(&str, u32)], table: u32) -> Config {
        Config {
            sources: Default::default(),
            agent: AgentConfig {
                interfaces: vec!["lo".into()],
                xdp_mode: XdpMode::Auto,
                flow_table_size: 4096,
                control_socket: PathBuf::from("/run/lb/lb.sock"),
                metrics_listen: None,
                control_group: None,
                ebpf_log: crate::config::EbpfLog::Off,
            },
            virtual_servers: vec![VirtualServer {
                name: "web".into(),
                address: "192.168.253.120".parse().unwrap(),
                port: 80,
                protocol: Protocol::Tcp,
                forwarding: Forwarding::Nat,
                scheduler: Scheduler::Maglev,
                maglev_table_size: table,
                sorry_server: None,
                health_check: Default::default(),
                real_servers: reals
                    .iter()
                    .map(|(a, w)| {
                        let a: SocketAddr = a.parse().unwrap();
                        RealServer {
                            address: a.ip(),
                            port: a.port(),
                            weight: *w,
                            health_check: Default::default(),
                        }
                    })
                    .collect(),
            }],
            vrrp_instances: Vec::new(),
            vrrp_sync_groups: Vec::new(),
            announce: None,
        }
    }

    fn kernel_maps(cfg: &Config) -> (KernelMaps, MapSizes) {
        if let Err(e) = super::super::loader::check_privileges() {
            panic!("this test creates BPF maps and needs root: {e}");
        }
        let sizes = MapSizes::for_config(cfg);
        let maps = KernelMaps::standalone(&sizes)
            .unwrap_or_else(|e| panic!("creating BPF maps failed: {e}"));
        (maps, sizes)
    }

    #[test]
    fn programmer_writes_reach_the_kernel_maps_in_the_contract_layout() {
        let cfg = config(&[("172.16.14.121:80", 1), ("172.16.14.122:8080", 1)], 65537);
        let (mut maps, sizes) = kernel_maps(&cfg);
        let mut p = Programmer::with_table_builder(
            sizes.services,
            sizes.backends,
            sizes.ring_slots,
            round_robin,
        );
        let started = std::time::Instant::now();
        p.apply(&cfg, &mut maps).unwrap();
        eprintln!(
            "first apply with a 65537-slot table: {:?}",
            started.elapsed()
        );

        let vip = endpoint_key("192.168.253.120:80".parse().unwrap(), Protocol::Tcp);
        let svc = maps.service(&vip).expect("service not in SERVICES");
        assert_eq!(svc.flags, SVC_F_NAT);
        assert_eq!(svc.ring_size, 65537);
        assert_eq!(svc.fallback_backend, NO_BACKEND);
        // What an established flow's packet reads instead of SERVICES.
        let slot = maps.service_slot(svc.id).unwrap();
        assert_eq!((slot.vip, slot.service), (vip, svc));
        // And how a new flow finds that slot.
        assert_eq!(maps.service_index_entry(&vip), Some(svc.id + 1));
        let views = p.services();
        let ids: Vec<u32> = views[0].backends.iter().map(|b| b.id).collect();
        for slot in [0, 1, 65536] {
            let id = maps.ring_slot(svc.ring_offset + slot).unwrap();
            assert!(ids.contains(&id), "slot {slot} holds {id}, not a backend");
        }
        let b = maps.backend(ids[1]).unwrap();
        assert_eq!(b.flags, BACKEND_F_ACTIVE);
        assert_eq!(b.service_id, svc.id);
        assert_eq!(b.port_be.to_ne_bytes(), 8080u16.to_be_bytes());
        assert_eq!(b.addr[0].to_ne_bytes(), [172, 16, 14, 122]);
        let r = maps
            .reverse_nat(&endpoint_key(
                "172.16.14.122:8080".parse().unwrap(),
                Protocol::Tcp,
            ))
            .expect("no reverse NAT entry");
        assert_eq!(r.vip_port_be.to_ne_bytes(), 80u16.to_be_bytes());
        assert_eq!(r.backend_id, ids[1]);

        // Status reads the per-CPU counters (zeroed) and walks FLOWS.
        let status = stats::snapshot(&maps, &p).unwrap();
        assert_eq!(status.services[0].real_servers.len(), 2);
        assert_eq!(status.services[0].real_servers[1].port, 8080);
        assert_eq!(status.services[0].stats.conns, 0);
        assert_eq!(status.verdicts.len(), lb_common::verdict::COUNT as usize);

        // Removing a real server: it drains (still active in BACKENDS),
        // then is inactive and its reverse entry gone once the linger ends.
        let cfg2 = config(&[("172.16.14.121:80", 1)], 65537);
        p.apply(&cfg2, &mut maps).unwrap();
        assert_eq!(maps.backend(ids[1]).unwrap().flags, BACKEND_F_ACTIVE);
        let later = std::time::Instant::now() + crate::dataplane::programmer::LINGER;
        assert_eq!(p.expire(later, &mut maps).unwrap(), 2);
        assert_eq!(maps.backend(ids[1]).unwrap().flags & BACKEND_F_ACTIVE, 0);
        assert!(maps
            .reverse_nat(&endpoint_key(
                "172.16.14.122:8080".parse().unwrap(),
                Protocol::Tcp
            ))
            .is_none());
        let svc2 = maps.service(&vip).unwrap();
        assert_ne!(svc2.ring_offset, svc.ring_offset);
        assert_eq!(maps.ring_slot(svc2.ring_offset + 7).unwrap(), ids[0]);
        assert_eq!(maps.service_slot(svc.id).unwrap().service, svc2);

        // A service that leaves the config leaves its slot empty: no flow
        // of it is forwarded by id any more.
        let mut none = cfg2.clone();
        none.virtual_servers.clear();
        p.apply(&none, &mut maps).unwrap();
        assert!(maps.service(&vip).is_none());
        assert_eq!(maps.service_slot(svc.id).unwrap(), ServiceSlot::default());
        assert_eq!(maps.service_index_entry(&vip), Some(0));
    }

    #[test]
    fn flows_counted_through_a_second_handle_reach_their_real_servers() {
        let cfg = config(&[("172.16.14.121:80", 1), ("172.16.14.122:80", 1)], 65537);
        let (mut maps, sizes) = kernel_maps(&cfg);
        let mut p = Programmer::with_table_builder(
            sizes.services,
            sizes.backends,
            sizes.ring_slots,
            round_robin,
        );
        p.apply(&cfg, &mut maps).unwrap();
        let view = &p.services()[0];
        let (service, first, second) = (view.id, view.backends[0].id, view.backends[1].id);

        // Flows written as the data plane would: one to the first real
        // server, three to the second, one left by a removed service.
        let flows = [
            (service, first),
            (service, second),
            (service, second),
            (service, second),
            (service + 1, first),
        ];
        let written: Vec<(FlowKey, Flow)> = (40000u16..)
            .zip(flows)
            .map(|(port, (service_id, backend_id))| {
                let key = FlowKey {
                    src: [0x0a00_0001, 0, 0, 0],
                    src_port_be: port.to_be(),
                    proto: 6,
                    family: lb_common::FAMILY_IPV4,
                    ..FlowKey::default()
                };
                let flow = Flow {
                    backend_id,
                    service_id,
                };
                (key, flow)
            })
            .collect();
        maps.insert_flows(&written).unwrap();

        let counter = crate::dataplane::flows::FlowCounter::new(&maps).unwrap();
        let counts = counter.count();
        let status = stats::snapshot_with_flows(&maps, &p, &counts).unwrap();
        let per_real: Vec<u64> = status.services[0]
            .real_servers
            .iter()
            .map(|r| r.flows)
            .collect();
        assert_eq!(per_real, [1, 3]);
        // The same as walking the agent's own handle entry by entry.
        assert_eq!(
            crate::dataplane::flows::FlowCounts::of(maps.flows()),
            counts
        );
    }
}
