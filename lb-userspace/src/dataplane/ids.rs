//! Allocation of service and backend ids: the indexes of `BACKENDS`,
//! `SERVICE_STATS` and `BACKEND_STATS`.
//!
//! Freed ids are reused last-in-last-out (a FIFO behind the never-used ids),
//! so an id that just left the data plane is the last one to come back: a
//! stale flow that still names it has had the longest time to be
//! rescheduled, and a reader of the counters sees a new id for a new server.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct IdAllocator {
    capacity: u32,
    next_fresh: u32,
    freed: VecDeque<u32>,
}

impl IdAllocator {
    /// Ids `0..capacity` (the size of the map they index).
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            next_fresh: 0,
            freed: VecDeque::new(),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Ids still available.
    pub fn available(&self) -> u32 {
        self.capacity - self.next_fresh + self.freed.len() as u32
    }

    /// A free id, or `None` when all `capacity` ids are in use.
    pub fn allocate(&mut self) -> Option<u32> {
        if self.next_fresh < self.capacity {
            self.next_fresh += 1;
            return Some(self.next_fresh - 1);
        }
        self.freed.pop_front()
    }

    /// Give an id back. The caller guarantees it is no longer referenced by
    /// any table the data plane reads (ring, fallback, reverse NAT).
    pub fn free(&mut self, id: u32) {
        debug_assert!(id < self.next_fresh, "freeing id {id} never allocated");
        debug_assert!(!self.freed.contains(&id), "double free of id {id}");
        self.freed.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_id_once_then_reports_exhaustion() {
        let mut ids = IdAllocator::new(3);
        let got: Vec<_> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(ids.allocate(), None);
        assert_eq!(ids.available(), 0);
    }

    #[test]
    fn freed_ids_come_back_only_after_fresh_ones_in_fifo_order() {
        let mut ids = IdAllocator::new(4);
        let a = ids.allocate().unwrap();
        let b = ids.allocate().unwrap();
        ids.free(b);
        ids.free(a);
        // Fresh ids first: the freed ones wait as long as possible.
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.allocate(), Some(b));
        assert_eq!(ids.allocate(), Some(a));
        assert_eq!(ids.allocate(), None);
    }
}
