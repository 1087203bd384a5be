//! `ENDPOINT_FILTER`: the bitmap the data plane reads before its hash
//! lookups, kept equal to "a bit per key of `SERVICES` and `REVERSE_NAT`".
//!
//! [`FilterBits`] is the pure core (a count per bit, the words, which words
//! changed); [`KernelFilter`] writes the changed words into the map.
//! Ordering is what keeps the data plane right: a key's bit is written
//! before the key is inserted, and cleared only after the last key with
//! that bit has been deleted, so the filter never hides a key the program
//! could find (false positives only cost the hash lookups).

use std::collections::{HashMap, HashSet};

use aya::maps::{Array, MapData, MapError};
use lb_common::{endpoint_filter_bit, names, EndpointKey, ENDPOINT_FILTER_WORDS};

use super::maps::MapWriteError;

/// The keys the filter stands for, and the words that encode them.
#[derive(Debug)]
pub struct FilterBits {
    keys: HashSet<(bool, EndpointKey)>,
    counts: HashMap<u32, u32>,
    words: Vec<u64>,
}

impl Default for FilterBits {
    fn default() -> Self {
        Self {
            keys: HashSet::new(),
            counts: HashMap::new(),
            words: vec![0; ENDPOINT_FILTER_WORDS as usize],
        }
    }
}

/// Whether a key belongs to `REVERSE_NAT` (true) or `SERVICES` (false): the
/// same endpoint may be in both, and each needs its bit.
pub type Owner = bool;

impl FilterBits {
    /// Count `key` in; the index of the word to write first, if it changed.
    pub fn add(&mut self, owner: Owner, key: &EndpointKey) -> Option<u32> {
        if !self.keys.insert((owner, *key)) {
            return None;
        }
        let bit = endpoint_filter_bit(key);
        let n = self.counts.entry(bit).or_insert(0);
        *n += 1;
        (*n == 1).then(|| self.flip(bit, true))
    }

    /// Count `key` out; the index of the word to write after the key left
    /// its map, if it changed.
    pub fn remove(&mut self, owner: Owner, key: &EndpointKey) -> Option<u32> {
        if !self.keys.remove(&(owner, *key)) {
            return None;
        }
        let bit = endpoint_filter_bit(key);
        let n = self.counts.get_mut(&bit).expect("counted when added");
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.counts.remove(&bit);
        Some(self.flip(bit, false))
    }

    fn flip(&mut self, bit: u32, on: bool) -> u32 {
        let word = bit >> 6;
        let mask = 1u64 << (bit & 63);
        let w = &mut self.words[word as usize];
        *w = if on { *w | mask } else { *w & !mask };
        word
    }

    pub fn word(&self, index: u32) -> u64 {
        self.words[index as usize]
    }

    /// Whether the program would look `key` up (its bit is set).
    pub fn may_hold(&self, key: &EndpointKey) -> bool {
        let bit = endpoint_filter_bit(key);
        self.words[(bit >> 6) as usize] & (1u64 << (bit & 63)) != 0
    }
}

/// The kernel map and its shadow.
pub struct KernelFilter {
    map: Array<MapData, u64>,
    bits: FilterBits,
}

fn write_err(source: MapError) -> MapWriteError {
    MapWriteError {
        map: names::ENDPOINT_FILTER,
        op: "update",
        source,
    }
}

impl KernelFilter {
    /// Takes the map and writes every word from `services` and `reverse`
    /// (the maps' current keys): a set pinned by an older build had no
    /// filter, and a pinned filter may be stale.
    pub fn new(
        map: Array<MapData, u64>,
        services: &[EndpointKey],
        reverse: &[EndpointKey],
    ) -> Result<Self, MapWriteError> {
        let mut bits = FilterBits::default();
        for k in services {
            bits.add(false, k);
        }
        for k in reverse {
            bits.add(true, k);
        }
        let mut f = Self { map, bits };
        for i in 0..ENDPOINT_FILTER_WORDS {
            let want = f.bits.word(i);
            if f.map.get(&i, 0).map_err(write_err)? != want {
                f.map.set(i, want, 0).map_err(write_err)?;
            }
        }
        Ok(f)
    }

    /// Before `key` is inserted into its map.
    pub fn add(&mut self, owner: Owner, key: &EndpointKey) -> Result<(), MapWriteError> {
        match self.bits.add(owner, key) {
            Some(i) => self.map.set(i, self.bits.word(i), 0).map_err(write_err),
            None => Ok(()),
        }
    }

    /// After `key` was deleted from its map.
    pub fn remove(&mut self, owner: Owner, key: &EndpointKey) -> Result<(), MapWriteError> {
        match self.bits.remove(owner, key) {
            Some(i) => self.map.set(i, self.bits.word(i), 0).map_err(write_err),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8, port: u16) -> EndpointKey {
        EndpointKey {
            addr: [u32::from_ne_bytes([10, 0, 0, last]), 0, 0, 0],
            port_be: port.to_be(),
            proto: lb_common::PROTO_TCP,
            family: lb_common::FAMILY_IPV4,
        }
    }

    #[test]
    fn a_key_is_held_until_its_last_owner_leaves() {
        let mut f = FilterBits::default();
        let k = key(1, 80);
        assert!(!f.may_hold(&k));
        assert!(f.add(false, &k).is_some());
        assert!(f.add(true, &k).is_none(), "same bit, already set");
        assert!(f.add(true, &k).is_none(), "same key twice counts once");
        assert!(f.remove(false, &k).is_none(), "REVERSE_NAT still holds it");
        assert!(f.may_hold(&k));
        assert!(f.remove(true, &k).is_some());
        assert!(!f.may_hold(&k));
        assert!(f.remove(true, &k).is_none(), "not held: nothing to write");
    }

    #[test]
    fn few_unrelated_keys_pass_the_filter() {
        let mut f = FilterBits::default();
        for i in 0..200u8 {
            f.add(false, &key(i, 80));
            f.add(true, &key(i, 8080));
        }
        for i in 0..200u8 {
            assert!(f.may_hold(&key(i, 80)) && f.may_hold(&key(i, 8080)));
        }
        // 400 keys in 2^18 bits: another port of the same hosts is
        // almost never let through.
        let through = (0..200u8).filter(|i| f.may_hold(&key(*i, 22))).count();
        assert!(through <= 2, "{through} false positives");
    }
}
