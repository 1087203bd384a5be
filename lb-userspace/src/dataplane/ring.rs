//! Allocation of ranges in the shared `MAGLEV_RING` array.
//!
//! Every service owns one contiguous range of `maglev_table_size` slots. To
//! change a service's table without a packet ever seeing a half-written one,
//! the programmer takes a second range, writes the new table there, swaps the
//! service's value (one map update), and only then frees the old range. So
//! the array is sized for every table twice plus headroom (see
//! `loader::MapSizes`), and this allocator is first-fit over a sorted free
//! list that merges neighbours on free, which keeps the array unfragmented
//! under the alloc-new / free-old pattern.

/// A range of ring slots: `offset .. offset + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRange {
    pub offset: u32,
    pub len: u32,
}

impl RingRange {
    fn end(&self) -> u32 {
        self.offset + self.len
    }
}

#[derive(Debug, Clone)]
pub struct RingAllocator {
    slots: u32,
    /// Sorted by offset, never adjacent (merged on free), never empty ranges.
    free: Vec<RingRange>,
}

impl RingAllocator {
    pub fn new(slots: u32) -> Self {
        let free = if slots == 0 {
            Vec::new()
        } else {
            vec![RingRange {
                offset: 0,
                len: slots,
            }]
        };
        Self { slots, free }
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Slots not in any range.
    pub fn free_slots(&self) -> u32 {
        self.free.iter().map(|r| r.len).sum()
    }

    /// The largest range that could be allocated now.
    pub fn largest_free(&self) -> u32 {
        self.free.iter().map(|r| r.len).max().unwrap_or(0)
    }

    /// First fit; `None` when no free range is long enough.
    pub fn allocate(&mut self, len: u32) -> Option<RingRange> {
        if len == 0 {
            return None;
        }
        let i = self.free.iter().position(|r| r.len >= len)?;
        let hole = &mut self.free[i];
        let range = RingRange {
            offset: hole.offset,
            len,
        };
        hole.offset += len;
        hole.len -= len;
        if hole.len == 0 {
            self.free.remove(i);
        }
        Some(range)
    }

    /// Return a range. The caller guarantees no service value points into it.
    pub fn free(&mut self, range: RingRange) {
        debug_assert!(range.end() <= self.slots);
        let i = self.free.partition_point(|r| r.offset < range.offset);
        debug_assert!(
            i == 0 || self.free[i - 1].end() <= range.offset,
            "range {range:?} overlaps a free range"
        );
        debug_assert!(
            i == self.free.len() || range.end() <= self.free[i].offset,
            "range {range:?} overlaps a free range"
        );
        self.free.insert(i, range);
        // Merge with the following, then the preceding hole.
        if i + 1 < self.free.len() && self.free[i].end() == self.free[i + 1].offset {
            self.free[i].len += self.free[i + 1].len;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].end() == self.free[i].offset {
            self.free[i - 1].len += self.free[i].len;
            self.free.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: RingRange, b: RingRange) -> bool {
        a.offset < b.end() && b.offset < a.end()
    }

    #[test]
    fn allocations_never_overlap_and_stay_inside_the_array() {
        let mut ring = RingAllocator::new(100);
        let got: Vec<_> = [30, 30, 30]
            .iter()
            .map(|&n| ring.allocate(n).unwrap())
            .collect();
        for (i, a) in got.iter().enumerate() {
            assert!(a.end() <= 100);
            for b in &got[i + 1..] {
                assert!(!overlaps(*a, *b), "{a:?} overlaps {b:?}");
            }
        }
        assert_eq!(ring.free_slots(), 10);
        assert_eq!(ring.allocate(11), None);
        assert!(ring.allocate(10).is_some());
    }

    #[test]
    fn freeing_merges_neighbours_back_into_one_range() {
        let mut ring = RingAllocator::new(90);
        let a = ring.allocate(30).unwrap();
        let b = ring.allocate(30).unwrap();
        let c = ring.allocate(30).unwrap();
        ring.free(b);
        ring.free(a);
        ring.free(c);
        assert_eq!(ring.largest_free(), 90);
        assert_eq!(ring.allocate(90), Some(RingRange { offset: 0, len: 90 }));
    }

    #[test]
    fn rebuild_cycle_of_alloc_new_then_free_old_never_runs_out() {
        // Two services, room for each twice: rebuilding either one over and
        // over (the reload pattern) must always find a range.
        let size = 7;
        let mut ring = RingAllocator::new(4 * size);
        let mut current = [ring.allocate(size).unwrap(), ring.allocate(size).unwrap()];
        for round in 0..1000 {
            let s = round % 2;
            let new = ring
                .allocate(size)
                .unwrap_or_else(|| panic!("round {round}: no range, free list {:?}", ring.free));
            assert!(!overlaps(new, current[1 - s]));
            ring.free(current[s]);
            current[s] = new;
        }
        assert_eq!(ring.free_slots(), 2 * size);
    }

    #[test]
    fn zero_length_is_not_a_range() {
        let mut ring = RingAllocator::new(10);
        assert_eq!(ring.allocate(0), None);
        assert_eq!(RingAllocator::new(0).allocate(1), None);
    }
}
