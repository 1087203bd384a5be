//! `ENDPOINT_FILTER`: the bitmap the data plane reads before its hash
//! lookups, kept equal to "a bit per key of `SERVICES` and `REVERSE_NAT`,
//! and a bit per address of those keys" (`lb_common::endpoint_filter_bit`,
//! `lb_common::addr_filter_bit`: a service's VIP as a destination, a NAT
//! real server as a source). The program asks the address bits first, so a
//! packet neither to a VIP nor from a NAT real server passes before its
//! ports are read (`lb-ebpf/src/filter.rs`).
//!
//! [`FilterBits`] is the pure core (a count per bit, the words, which words
//! changed); [`KernelFilter`] writes the changed words into the map.
//! Ordering is what keeps the data plane right: a key's bits are written
//! before the key is inserted, and cleared only after the last key with
//! that bit has been deleted, so the filter never hides a key the program
//! could find (false positives only cost the next test).

use std::collections::{HashMap, HashSet};

use aya::maps::{Array, MapData, MapError};
use lb_common::{
    addr_filter_bit, endpoint_filter_bit, names, AddrRole, EndpointKey, ENDPOINT_FILTER_WORDS,
};

use super::maps::MapWriteError;

/// The keys the filter stands for, and the words that encode them.
#[derive(Debug)]
pub struct FilterBits {
    keys: HashSet<(bool, EndpointKey)>,
    /// Keys per (role, family, address): the address bit stays while one
    /// is left.
    addrs: HashMap<(AddrRole, u8, [u32; 4]), u32>,
    counts: HashMap<u32, u32>,
    words: Vec<u64>,
}

impl Default for FilterBits {
    fn default() -> Self {
        Self {
            keys: HashSet::new(),
            addrs: HashMap::new(),
            counts: HashMap::new(),
            words: vec![0; ENDPOINT_FILTER_WORDS as usize],
        }
    }
}

/// Whether a key belongs to `REVERSE_NAT` (true) or `SERVICES` (false): the
/// same endpoint may be in both, and each needs its bit.
pub type Owner = bool;

fn role(owner: Owner) -> AddrRole {
    if owner {
        AddrRole::Src
    } else {
        AddrRole::Dst
    }
}

/// Words a change wrote, in the order to write them (at most two: the
/// key's and its address's).
pub type Changed = Vec<u32>;

impl FilterBits {
    /// Count `key` in; the indexes of the words to write first.
    pub fn add(&mut self, owner: Owner, key: &EndpointKey) -> Changed {
        let mut changed = Vec::new();
        if !self.keys.insert((owner, *key)) {
            return changed;
        }
        let addr = self
            .addrs
            .entry((role(owner), key.family, key.addr))
            .or_insert(0);
        *addr += 1;
        let mut bits = vec![endpoint_filter_bit(key)];
        if *addr == 1 {
            bits.push(addr_filter_bit(role(owner), key.family, &key.addr));
        }
        for bit in bits {
            let n = self.counts.entry(bit).or_insert(0);
            *n += 1;
            if *n == 1 {
                changed.push(self.flip(bit, true));
            }
        }
        changed
    }

    /// Count `key` out; the indexes of the words to write after the key
    /// left its map.
    pub fn remove(&mut self, owner: Owner, key: &EndpointKey) -> Changed {
        let mut changed = Vec::new();
        if !self.keys.remove(&(owner, *key)) {
            return changed;
        }
        let slot = (role(owner), key.family, key.addr);
        let addr = self.addrs.get_mut(&slot).expect("counted when added");
        *addr -= 1;
        let mut bits = vec![endpoint_filter_bit(key)];
        if *addr == 0 {
            self.addrs.remove(&slot);
            bits.push(addr_filter_bit(role(owner), key.family, &key.addr));
        }
        for bit in bits {
            let n = self.counts.get_mut(&bit).expect("counted when added");
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&bit);
                changed.push(self.flip(bit, false));
            }
        }
        changed
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

    fn bit(&self, bit: u32) -> bool {
        self.words[(bit >> 6) as usize] & (1u64 << (bit & 63)) != 0
    }

    /// Whether the program would look `key` up (its bit is set).
    pub fn may_hold(&self, key: &EndpointKey) -> bool {
        self.bit(endpoint_filter_bit(key))
    }

    /// Whether the program would parse a TCP/UDP packet from `src` to
    /// `dst` (of `family`) past its first test.
    pub fn may_be_ours(&self, family: u8, src: &[u32; 4], dst: &[u32; 4]) -> bool {
        self.bit(addr_filter_bit(AddrRole::Dst, family, dst))
            || self.bit(addr_filter_bit(AddrRole::Src, family, src))
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
        let changed = self.bits.add(owner, key);
        self.write(&changed)
    }

    /// After `key` was deleted from its map.
    pub fn remove(&mut self, owner: Owner, key: &EndpointKey) -> Result<(), MapWriteError> {
        let changed = self.bits.remove(owner, key);
        self.write(&changed)
    }

    fn write(&mut self, words: &[u32]) -> Result<(), MapWriteError> {
        for &i in words {
            self.map.set(i, self.bits.word(i), 0).map_err(write_err)?;
        }
        Ok(())
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
        assert!(!f.add(false, &k).is_empty());
        assert!(f.add(false, &k).is_empty(), "same key twice counts once");
        // The endpoint bit is set already; only REVERSE_NAT's address bit
        // (the source role) may be new.
        assert!(f.add(true, &k).len() <= 1);
        assert!(f.remove(false, &k).len() <= 1, "REVERSE_NAT still holds it");
        assert!(f.may_hold(&k));
        assert!(!f.remove(true, &k).is_empty());
        assert!(!f.may_hold(&k));
        assert!(f.remove(true, &k).is_empty(), "not held: nothing to write");
        assert_eq!(f.words, FilterBits::default().words, "every bit cleared");
    }

    #[test]
    fn an_address_is_ours_while_one_of_its_keys_is_held() {
        let mut f = FilterBits::default();
        let (web, dns, client) = (key(1, 80), key(1, 53), key(200, 40000).addr);
        let (web_real, none) = (key(121, 8080), [0u32; 4]);
        let v4 = lb_common::FAMILY_IPV4;
        assert!(!f.may_be_ours(v4, &client, &web.addr));
        f.add(false, &web);
        f.add(false, &dns);
        f.add(true, &web_real);
        // To the VIP, and from the NAT real server.
        assert!(f.may_be_ours(v4, &client, &web.addr));
        assert!(f.may_be_ours(v4, &web_real.addr, &client));
        // Roles are not mixed: to the real server, from the VIP.
        assert!(!f.may_be_ours(v4, &none, &web_real.addr));
        assert!(!f.may_be_ours(v4, &web.addr, &client));
        f.remove(false, &web);
        assert!(f.may_be_ours(v4, &client, &web.addr), "dns still on it");
        f.remove(false, &dns);
        assert!(!f.may_be_ours(v4, &client, &web.addr));
        f.remove(true, &web_real);
        assert_eq!(f.words, FilterBits::default().words, "every bit cleared");
    }

    #[test]
    fn address_bits_lie_in_the_first_cache_line() {
        for i in 0..=255u8 {
            for role in [AddrRole::Src, AddrRole::Dst] {
                let bit = addr_filter_bit(role, lb_common::FAMILY_IPV4, &key(i, 0).addr);
                assert!(bit < 512, "bit {bit}");
            }
        }
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

    #[test]
    fn few_addresses_leave_most_others_to_the_first_test() {
        // 4 VIPs and 30 NAT real servers, in 512 address bits: a packet
        // between two other hosts passes the first test about 1 time in 8.
        let mut f = FilterBits::default();
        for i in 1..=4u8 {
            f.add(false, &key(i, 80));
        }
        for i in 100..130u8 {
            f.add(true, &key(i, 8080));
        }
        let other = |i: u32| {
            [
                u32::from_ne_bytes([192, 168, (i >> 8) as u8, i as u8]),
                0,
                0,
                0,
            ]
        };
        let through = (0..1000u32)
            .filter(|i| f.may_be_ours(lb_common::FAMILY_IPV4, &other(i + 1000), &other(*i)))
            .count();
        assert!(
            through < 150,
            "{through} of 1000 unrelated packets let through"
        );
    }
}
