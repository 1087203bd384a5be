//! Counting the flow table's entries per real server, for `lb status` and
//! `/metrics`, and filling a table from the host (tests, benchmarks).
//!
//! The flow tables (`FLOWS_V4` for IPv4, `FLOWS` for IPv6) are arrays of
//! four-way sets (`lb_common::flow_table`) of up to millions of entries.
//! Walked one set at a time a table costs a system call per set, so it is
//! read with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+, as the ring writes need):
//! one system call per few thousand sets. A kernel that refuses batches
//! gets the set-by-set walk. The agent walks through a [`FlowCounter`],
//! a handle of its own on the maps, without holding its state lock.

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use aya::maps::{Array, IterableMap as _, Map, MapData, MapError};
use lb_common::{
    flow_table::{flow_tag_v4, flow_tag_v6, set_index, DEFAULT_FLOW_SEED},
    Flow, FlowKey, FlowSet,
};

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

    /// Count the flows of `sets`.
    fn add_sets(&mut self, sets: &[FlowSet]) {
        for set in sets {
            self.add_set(set);
        }
    }

    fn add_set(&mut self, set: &FlowSet) {
        for way in &set.ways {
            if way.tag != 0 {
                self.add([way.flow]);
            }
        }
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

    /// Count the flows of the flow table `table`: read in place through a
    /// read-only mapping of the map (the tables are `BPF_F_MMAPABLE`: no
    /// system call per set, no copy); a table that cannot be mapped (one
    /// made without the flag) in batches; when the kernel refuses those
    /// too, set by set.
    pub fn walk(table: &Array<MapData, FlowSet>) -> Self {
        let fd = table.map().fd().as_fd();
        match Mapped::new(fd, table.len()) {
            Ok(mapped) => return mapped.count(),
            Err(e) => tracing::debug!("counting flows in batches (no mapping: {e})"),
        }
        match lookup_batched(fd) {
            Ok(counts) => counts,
            Err(e) => {
                tracing::debug!("counting flows set by set (no batch lookup: {e})");
                let mut counts = Self::default();
                for set in table.iter().filter_map(Result::ok) {
                    counts.add_set(&set);
                }
                counts
            }
        }
    }
}

/// A read-only mapping of a flow table's sets (`mmap` of a
/// `BPF_F_MMAPABLE` array map: its values start at offset 0, page-aligned).
struct Mapped {
    ptr: *const FlowSet,
    sets: usize,
    len: usize,
}

impl Mapped {
    fn new(fd: BorrowedFd<'_>, sets: u32) -> std::io::Result<Self> {
        let sets = sets as usize;
        let len = sets * std::mem::size_of::<FlowSet>();
        // SAFETY: a fresh shared read-only mapping of the map's values; the
        // kernel checks the fd, the length and that the map is mappable.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            sets,
            len,
        })
    }

    /// Count every flow; each set is copied out with one volatile read, as
    /// the data plane may be rewriting it meanwhile.
    fn count(&self) -> FlowCounts {
        let mut counts = FlowCounts::default();
        for i in 0..self.sets {
            // SAFETY: `i` is within the mapping, which holds `sets`
            // page-aligned, hence 64-byte-aligned, `FlowSet`s of plain
            // integers (any bit pattern is a value).
            let set = unsafe { std::ptr::read_volatile(self.ptr.add(i)) };
            counts.add_set(&set);
        }
        counts
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Second handles on `FLOWS_V4` and `FLOWS`, with file descriptors of
/// their own, that own nothing else: flows are counted through it by a thread that does not
/// hold the agent's state lock, so a status request or a metrics scrape
/// never makes a health transition, a reload or SIGTERM wait for a walk
/// of the whole flow table.
pub struct FlowCounter {
    v4: Array<MapData, FlowSet>,
    v6: Array<MapData, FlowSet>,
}

/// A handle of its own on the flow-table map `fd` (named `name`).
pub(super) fn reopen(
    fd: BorrowedFd<'_>,
    name: &'static str,
) -> Result<Array<MapData, FlowSet>, MapOpenError> {
    let reopen = |source| MapOpenError::Reopen { name, source };
    let fd = fd.try_clone_to_owned().map_err(|io_error| {
        reopen(MapError::SyscallError(aya::sys::SyscallError {
            call: "dup",
            io_error,
        }))
    })?;
    let data = MapData::from_fd(fd).map_err(reopen)?;
    Array::try_from(Map::Array(data)).map_err(|source| MapOpenError::WrongType { name, source })
}

impl FlowCounter {
    /// Open handles on the same kernel maps as `maps`' flow tables.
    pub fn new(maps: &KernelMaps) -> Result<Self, MapOpenError> {
        Ok(Self {
            v4: reopen(maps.flows_v4_fd(), lb_common::names::FLOWS_V4)?,
            v6: reopen(maps.flows_fd(), lb_common::names::FLOWS)?,
        })
    }

    /// Walk both tables once. Flows that the data plane moves or replaces
    /// during the walk may be counted or not.
    pub fn count(&self) -> FlowCounts {
        let mut counts = FlowCounts::walk(&self.v4);
        counts.merge(FlowCounts::walk(&self.v6));
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

/// Sets read per system call: 64 bytes each, plus a 4-byte index.
const BATCH: usize = 4096;

/// One pass over the flow table `fd` with `BPF_MAP_LOOKUP_BATCH`. The
/// kernel hands back a position to resume from; sets the data plane
/// changes meanwhile are read as they are at that moment.
fn lookup_batched(fd: BorrowedFd<'_>) -> std::io::Result<FlowCounts> {
    let mut keys = vec![0u32; BATCH];
    let mut values = vec![FlowSet::default(); BATCH];
    // The resume position: opaque to userspace (an index for arrays),
    // written by the kernel into `out_batch`, passed back in `in_batch`;
    // absent on the first call.
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
                counts.add_sets(&values[..read]);
                return Ok(counts);
            }
            Some(e) => return Err(e),
            None if read == 0 => {
                return Err(std::io::Error::other("a batch lookup read nothing"));
            }
            None => counts.add_sets(&values[..read]),
        }
        position = next;
        first = false;
    }
}

/// Writes `flows` into the flow table `table` (of `family`'s keys) as the
/// data plane would have recorded them, each in its set under its tag, and
/// the whole table in one `BPF_MAP_UPDATE_BATCH`: how the tests and the
/// benchmarks fill large tables (`KernelMaps::insert_flows` picks the
/// table by family). What the table held before is replaced. The agent
/// never writes flows (the data plane does).
pub fn fill(table: &Array<MapData, FlowSet>, flows: &[(FlowKey, Flow)]) -> std::io::Result<()> {
    let sets = table.len();
    let mut image = vec![FlowSet::default(); sets as usize];
    for (key, flow) in flows {
        let tag = match key.narrow() {
            Some(k) => flow_tag_v4(&k, DEFAULT_FLOW_SEED),
            None => flow_tag_v6(key, DEFAULT_FLOW_SEED),
        };
        image[set_index(tag, sets) as usize].insert(tag, *flow);
    }
    let keys: Vec<u32> = (0..sets).collect();
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: image.as_ptr() as u64,
        count: sets,
        map_fd: table.map().fd().as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: `keys` and `image` hold `count` entries of the map's types
    // (`u32`, `FlowSet`) and outlive the call.
    unsafe { bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    if attr.count != sets {
        return Err(std::io::Error::other(format!(
            "BPF_MAP_UPDATE_BATCH wrote {} of {sets} flow sets",
            attr.count
        )));
    }
    Ok(())
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

    #[test]
    fn batched_walk_counts_every_flow_as_the_set_by_set_walk_does() {
        // More than two batches of sets, a last one partly filled; a table
        // eight times the flows, so that no set overflows.
        let total = 2 * BATCH as u32 + 1000;
        let sets = lb_common::flow_table::flow_sets(8 * total);
        let sizes = MapSizes {
            services: 4,
            backends: 16,
            ring_slots: 64,
            flow_sets: sets,
            flow_sets_v6: sets,
        };
        let maps = KernelMaps::standalone(&sizes)
            .unwrap_or_else(|e| panic!("creating BPF maps failed (run as root): {e}"));
        maps.insert_flows(&flows(total))
            .expect("BPF_MAP_UPDATE_BATCH");

        let v4 = reopen(maps.flows_v4_fd(), "FLOWS_V4").unwrap();
        let v6 = reopen(maps.flows_fd(), "FLOWS").unwrap();
        let mut batched = lookup_batched(maps.flows_v4_fd()).expect("BPF_MAP_LOOKUP_BATCH failed");
        let held_v4 = total - total.div_ceil(3);
        // A set of four may overflow even at an eighth full: allow a few.
        assert!(
            batched.total() <= u64::from(held_v4) && batched.total() + 8 >= u64::from(held_v4),
            "{} of {held_v4} IPv4 flows",
            batched.total()
        );
        batched.merge(lookup_batched(maps.flows_fd()).expect("BPF_MAP_LOOKUP_BATCH"));
        let one_by_one = FlowCounts::of(
            v4.iter()
                .chain(v6.iter())
                .map(|s| s.unwrap())
                .flat_map(|s| s.flows().collect::<Vec<_>>()),
        );
        assert_eq!(batched, one_by_one);
        assert_eq!(FlowCounter::new(&maps).unwrap().count(), batched);
    }

    #[test]
    fn flows_written_by_the_host_are_found_where_the_data_plane_looks() {
        let sizes = MapSizes {
            services: 4,
            backends: 16,
            ring_slots: 64,
            flow_sets: 1024,
            flow_sets_v6: 1024,
        };
        let maps = KernelMaps::standalone(&sizes)
            .unwrap_or_else(|e| panic!("creating BPF maps failed (run as root): {e}"));
        let all = flows(300);
        maps.insert_flows(&all).expect("BPF_MAP_UPDATE_BATCH");
        for (key, flow) in &all {
            assert_eq!(maps.flow(key), Some(*flow), "{key:?}");
        }
        let owner = FlowOwner {
            service_id: 1,
            backend_id: 3,
        };
        // i % 2 == 1 and i % 7 == 3: i = 3 (mod 14).
        let expected = (0..300).filter(|i| i % 14 == 3).count() as u64;
        assert_eq!(
            FlowCounter::new(&maps).unwrap().count().get(owner),
            expected
        );
    }
}
