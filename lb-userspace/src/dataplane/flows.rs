//! Counting the flow table's entries per real server, for `lb status` and
//! `/metrics`.
//!
//! The flow tables (`FLOWS_V4` for IPv4, `FLOWS` for IPv6) hold up to
//! millions of entries each. Walked one entry at a time it
//! costs two system calls per entry (seconds for a full table), so it is
//! read with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+, as the ring writes need):
//! one system call per few thousand entries. A kernel that refuses batches
//! gets the entry-by-entry walk. The agent walks through a [`FlowCounter`],
//! a handle of its own on the maps, without holding its state lock.

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use aya::maps::{HashMap as BpfHashMap, IterableMap as _, Map, MapData, MapError};
use lb_common::{Flow, FlowKey, FlowKeyV4};

use super::maps::{KernelMaps, MapOpenError};

/// Who a flow belongs to: the service it was scheduled in and its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowOwner {
    pub service_id: u32,
    pub backend_id: u32,
}

/// Flows per [`FlowOwner`], from one walk of the flow tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts(HashMap<FlowOwner, u64>);

impl FlowCounts {
    /// Count the flows `flows` yields.
    pub fn of(flows: impl IntoIterator<Item = Flow>) -> Self {
        let mut counts = Self::default();
        counts.add(flows);
        counts
    }

    fn add(&mut self, flows: impl IntoIterator<Item = Flow>) {
        for flow in flows {
            let owner = FlowOwner {
                service_id: flow.service_id,
                backend_id: flow.backend_id,
            };
            *self.0.entry(owner).or_insert(0) += 1;
        }
    }

    pub fn get(&self, owner: FlowOwner) -> u64 {
        self.0.get(&owner).copied().unwrap_or(0)
    }

    /// Every flow counted.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Add the counts of `other` (the other family's table).
    pub fn merge(&mut self, other: FlowCounts) {
        for (owner, n) in other.0 {
            *self.0.entry(owner).or_insert(0) += n;
        }
    }

    /// Count the flows of the flow-table map `fd`, whose keys are `K`, in
    /// batches; when the kernel refuses, walk `entries` (the same map) one
    /// entry at a time.
    pub fn walk<K: Copy + Default, I: Iterator<Item = Flow>>(
        fd: BorrowedFd<'_>,
        entries: impl FnOnce() -> I,
    ) -> Self {
        match lookup_batched::<K>(fd) {
            Ok(counts) => counts,
            Err(e) => {
                tracing::debug!("counting flows entry by entry (no batch lookup: {e})");
                Self::of(entries())
            }
        }
    }
}

/// Second handles on `FLOWS_V4` and `FLOWS`, with file descriptors of
/// their own, that own nothing else: flows are counted through it by a thread that does not
/// hold the agent's state lock, so a status request or a metrics scrape
/// never makes a health transition, a reload or SIGTERM wait for a walk
/// of the whole flow table.
pub struct FlowCounter {
    v4: BpfHashMap<MapData, FlowKeyV4, Flow>,
    v6: BpfHashMap<MapData, FlowKey, Flow>,
}

/// A handle of its own on the flow-table map `fd` (named `name`).
fn reopen<K: aya::Pod>(
    fd: BorrowedFd<'_>,
    name: &'static str,
) -> Result<BpfHashMap<MapData, K, Flow>, MapOpenError> {
    let reopen = |source| MapOpenError::Reopen { name, source };
    let fd = fd.try_clone_to_owned().map_err(|io_error| {
        reopen(MapError::SyscallError(aya::sys::SyscallError {
            call: "dup",
            io_error,
        }))
    })?;
    let data = MapData::from_fd(fd).map_err(reopen)?;
    // `HashMap` accepts either kind; the loaded object's is an LRU, the
    // standalone maps of the tests a plain hash.
    BpfHashMap::try_from(Map::LruHashMap(data))
        .map_err(|source| MapOpenError::WrongType { name, source })
}

impl FlowCounter {
    /// Open handles on the same kernel maps as `maps`' flow tables.
    pub fn new(maps: &KernelMaps) -> Result<Self, MapOpenError> {
        Ok(Self {
            v4: reopen(maps.flows_v4_fd(), lb_common::names::FLOWS_V4)?,
            v6: reopen(maps.flows_fd(), lb_common::names::FLOWS)?,
        })
    }

    /// Walk both tables once. Entries that vanish during the walk (the LRU
    /// evicts under load) are skipped.
    pub fn count(&self) -> FlowCounts {
        let mut counts = FlowCounts::walk::<FlowKeyV4, _>(self.v4.map().fd().as_fd(), || {
            self.v4.iter().filter_map(Result::ok).map(|(_, f)| f)
        });
        counts.merge(FlowCounts::walk::<FlowKey, _>(
            self.v6.map().fd().as_fd(),
            || self.v6.iter().filter_map(Result::ok).map(|(_, f)| f),
        ));
        counts
    }
}

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

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// One batch command. The kernel updates `attr.count` to the number of
/// entries it processed, on success and on failure.
///
/// # Safety
/// `attr`'s pointers must refer to buffers of `attr.count` keys and values
/// of the map's types (and 8 bytes for each batch position) that outlive
/// the call.
unsafe fn bpf_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix; its pointers are the
    // caller's promise.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Write `flows` into the flow-table map `fd` (keys `K`: `FlowKeyV4` for
/// `FLOWS_V4`, `FlowKey` for `FLOWS`) with `BPF_MAP_UPDATE_BATCH` (one
/// system call for all): the tests and the benchmarks fill large tables
/// with it (`KernelMaps::insert_flows` picks the table by family). The
/// agent never writes flows (the data plane does).
pub fn insert_batched<K: Copy>(fd: BorrowedFd<'_>, flows: &[(K, Flow)]) -> std::io::Result<()> {
    if flows.is_empty() {
        return Ok(());
    }
    let keys: Vec<K> = flows.iter().map(|(k, _)| *k).collect();
    let values: Vec<Flow> = flows.iter().map(|(_, v)| *v).collect();
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: flows.len() as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: `keys` and `values` hold `count` entries of the map's types
    // (the caller's `K` and `Flow`) and outlive the call.
    unsafe { bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    if attr.count as usize != flows.len() {
        return Err(std::io::Error::other(format!(
            "BPF_MAP_UPDATE_BATCH wrote {} of {} flows",
            attr.count,
            flows.len()
        )));
    }
    Ok(())
}

/// Entries read per system call: at most 48 bytes each (key and value), so
/// a few hundred kilobytes of buffers.
const BATCH: usize = 8192;

/// One pass over the hash map `fd` with `BPF_MAP_LOOKUP_BATCH`. The kernel
/// walks bucket by bucket and hands back a position to resume from; entries
/// added or evicted meanwhile may or may not be seen, as with any walk of a
/// table the data plane keeps changing.
fn lookup_batched<K: Copy + Default>(fd: BorrowedFd<'_>) -> std::io::Result<FlowCounts> {
    let mut keys = vec![K::default(); BATCH];
    let mut values = vec![Flow::default(); BATCH];
    // The resume position: opaque to userspace (a bucket index for hash
    // maps), written by the kernel into `out_batch`, passed back in
    // `in_batch`; absent on the first call.
    let mut position = [0u64; 1];
    let mut next = [0u64; 1];
    let mut first = true;
    let mut counts = FlowCounts::default();
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { position.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: `keys` and `values` hold `count` entries of the map's key
        // and value types, and `position`/`next` 8 bytes each (the kernel
        // uses 4), all of which outlive the call.
        let error = unsafe { bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr) }.err();
        let read = (attr.count as usize).min(BATCH);
        match error {
            // ENOENT: the walk is over; `count` says what this last call read.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                counts.add(values[..read].iter().copied());
                return Ok(counts);
            }
            Some(e) => return Err(e),
            None if read == 0 => {
                return Err(std::io::Error::other("a batch lookup read nothing"));
            }
            None => counts.add(values[..read].iter().copied()),
        }
        position = next;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    //! Against a real kernel map (needs CAP_BPF: run as root, as `cargo
    //! xtask test` does).

    use super::*;
    use crate::dataplane::loader::MapSizes;

    fn flows(total: u32) -> Vec<(FlowKey, Flow)> {
        (0..total)
            .map(|i| {
                // Every third flow IPv6, the others IPv4.
                let v6 = i % 3 == 0;
                let key = FlowKey {
                    src: [i, u32::from(v6), 0, 0],
                    proto: 17,
                    family: if v6 { 6 } else { 4 },
                    ..FlowKey::default()
                };
                let flow = Flow {
                    backend_id: i % 7,
                    service_id: i % 2,
                };
                (key, flow)
            })
            .collect()
    }

    /// An LRU hash map of `FLOWS`' types, as the loaded object has (the
    /// standalone maps make a plain hash; aya creates no LRU map alone).
    fn lru_flows_map(max_entries: u32) -> std::os::fd::OwnedFd {
        /// `union bpf_attr`'s map-create member, as far as needed.
        #[repr(C)]
        #[derive(Default)]
        struct CreateAttr {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
            map_flags: u32,
            _rest: [u32; 27],
        }
        const BPF_MAP_CREATE: libc::c_long = 0;
        const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
        let mut attr = CreateAttr {
            map_type: BPF_MAP_TYPE_LRU_HASH,
            key_size: std::mem::size_of::<FlowKey>() as u32,
            value_size: std::mem::size_of::<Flow>() as u32,
            max_entries,
            ..Default::default()
        };
        // SAFETY: a zeroed `bpf_attr` with the map-create fields set; on
        // success the kernel returns a new fd this process owns.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                &mut attr as *mut CreateAttr,
                std::mem::size_of::<CreateAttr>(),
            )
        };
        assert!(
            fd >= 0,
            "creating an LRU hash map failed (run as root): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) }
    }

    #[test]
    fn batched_walk_of_an_lru_map_counts_every_flow() {
        let total = BATCH as u32 + 500;
        // Room to spare: an LRU map may evict before it is full.
        let fd = lru_flows_map(4 * total);
        insert_batched(fd.as_fd(), &flows(total)).expect("BPF_MAP_UPDATE_BATCH");
        let batched = lookup_batched::<FlowKey>(fd.as_fd()).expect("BPF_MAP_LOOKUP_BATCH failed");
        assert_eq!(batched.total(), u64::from(total));
        let map: BpfHashMap<MapData, FlowKey, Flow> =
            BpfHashMap::try_from(Map::LruHashMap(MapData::from_fd(fd).unwrap())).unwrap();
        let one_by_one = FlowCounts::of(map.iter().map(|e| e.unwrap().1));
        assert_eq!(batched, one_by_one);
    }

    #[test]
    fn batched_walk_counts_every_flow_as_the_entry_by_entry_walk_does() {
        // More than two batches, a last one partly filled.
        let total = 2 * BATCH as u32 + 1000;
        let sizes = MapSizes {
            services: 4,
            backends: 16,
            ring_slots: 64,
            flows: total,
            flows_v6: total,
        };
        let maps = KernelMaps::standalone(&sizes)
            .unwrap_or_else(|e| panic!("creating BPF maps failed (run as root): {e}"));
        maps.insert_flows(&flows(total))
            .expect("BPF_MAP_UPDATE_BATCH");

        let mut batched =
            lookup_batched::<FlowKeyV4>(maps.flows_v4_fd()).expect("BPF_MAP_LOOKUP_BATCH failed");
        assert_eq!(batched.total(), u64::from(total - total.div_ceil(3)));
        batched.merge(lookup_batched::<FlowKey>(maps.flows_fd()).expect("BPF_MAP_LOOKUP_BATCH"));
        assert_eq!(batched.total(), u64::from(total));
        let one_by_one = FlowCounts::of(maps.flows().map(|(_, f)| f));
        assert_eq!(batched, one_by_one);
        let owner = FlowOwner {
            service_id: 1,
            backend_id: 3,
        };
        // i % 2 == 1 and i % 7 == 3: i = 3 (mod 14).
        let expected = (0..total).filter(|i| i % 14 == 3).count() as u64;
        assert_eq!(batched.get(owner), expected);
        assert_eq!(FlowCounter::new(&maps).unwrap().count(), batched);
    }
}
