//! The agent's handle on the data plane's maps, and the narrow write
//! interface the programmer uses.
//!
//! [`MapWriter`] is the only way the programmer touches the kernel, so its
//! diff-and-swap logic runs unchanged against [`KernelMaps`] (the real maps
//! of a loaded object) and against an in-memory double in the host tests.

use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use lb_common::{names, Backend, Counters, EndpointKey, Flow, FlowKey, ReverseNat, Service};

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
    flows: HashMap<MapData, FlowKey, Flow>,
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
        Ok(Self {
            services: take(ebpf, names::SERVICES)?,
            backends: take(ebpf, names::BACKENDS)?,
            ring: take(ebpf, names::MAGLEV_RING)?,
            reverse_nat: take(ebpf, names::REVERSE_NAT)?,
            service_stats: take(ebpf, names::SERVICE_STATS)?,
            backend_stats: take(ebpf, names::BACKEND_STATS)?,
            verdict_stats: take(ebpf, names::VERDICT_STATS)?,
            event_stats: take(ebpf, names::EVENT_STATS)?,
            flows: take(ebpf, names::FLOWS)?,
            nr_cpus,
        })
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

    pub fn event_count(&self, index: u32) -> Result<u64, MapWriteError> {
        sum_u64(&self.event_stats, index, names::EVENT_STATS)
    }

    /// Every entry of the flow table. Entries that vanish while the table is
    /// walked (the LRU evicts under load) are skipped.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, Flow)> + '_ {
        self.flows.iter().filter_map(Result::ok)
    }

    fn zero_counters(&self) -> PerCpuValues<Counters> {
        PerCpuValues::try_from(vec![Counters::default(); self.nr_cpus])
            .expect("one value per possible CPU")
    }
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
        for (i, id) in table.iter().enumerate() {
            self.ring
                .set(offset + i as u32, id, 0)
                .map_err(err(names::MAGLEV_RING, "update"))?;
        }
        Ok(())
    }

    fn set_service(&mut self, key: &EndpointKey, value: &Service) -> Result<(), MapWriteError> {
        self.services
            .insert(key, value, 0)
            .map_err(err(names::SERVICES, "update"))
    }

    fn remove_service(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        self.services
            .remove(key)
            .map_err(err(names::SERVICES, "delete"))
    }

    fn set_reverse_nat(
        &mut self,
        key: &EndpointKey,
        value: &ReverseNat,
    ) -> Result<(), MapWriteError> {
        self.reverse_nat
            .insert(key, value, 0)
            .map_err(err(names::REVERSE_NAT, "update"))
    }

    fn remove_reverse_nat(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        self.reverse_nat
            .remove(key)
            .map_err(err(names::REVERSE_NAT, "delete"))
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
