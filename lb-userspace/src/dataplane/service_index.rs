//! `SERVICE_INDEX`: how the data plane finds a new flow's service without
//! the `SERVICES` hash lookup (`lb-ebpf/src/schedule.rs`,
//! `indexed_service`). Each entry (`lb_common::service_index` of a key)
//! holds the service id plus one when exactly one key of `SERVICES` falls
//! on it, and 0 when none or several do (the program asks `SERVICES`
//! then, as it did before the index existed).
//!
//! [`ServiceIndex`] is the pure core (which keys fall on which entry, and
//! what each entry says); [`KernelServiceIndex`] writes the entries a
//! change moved. The order of the writes, kept by `dataplane::maps`: an
//! entry is zeroed before a service's `SERVICES_BY_ID` slot is rewritten
//! or cleared, and names the service only once its slot is written, so a
//! packet that follows the index finds a whole slot of the right VIP (the
//! program checks the VIP too, and sends a packet whose ring pick belongs
//! to another service nowhere).

use std::collections::HashMap;

use aya::maps::{Array, MapData, MapError};
use lb_common::{names, service_index, EndpointKey};

use super::maps::MapWriteError;

/// The keys of `SERVICES` by index entry, with their service ids.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    entries: HashMap<u32, HashMap<EndpointKey, u32>>,
}

impl ServiceIndex {
    /// What entry `entry` says: the id plus one of its only key, else 0.
    pub fn value(&self, entry: u32) -> u32 {
        match self.entries.get(&entry) {
            Some(keys) if keys.len() == 1 => keys.values().next().map_or(0, |id| id + 1),
            _ => 0,
        }
    }

    /// Records `key` as service `id`; its entry and the entry's new value.
    pub fn set(&mut self, key: &EndpointKey, id: u32) -> (u32, u32) {
        let entry = service_index(key);
        self.entries.entry(entry).or_default().insert(*key, id);
        (entry, self.value(entry))
    }

    /// Forgets `key`; its entry and the entry's new value (`None` if the
    /// key was not recorded).
    pub fn remove(&mut self, key: &EndpointKey) -> Option<(u32, u32)> {
        let entry = service_index(key);
        let keys = self.entries.get_mut(&entry)?;
        keys.remove(key)?;
        if keys.is_empty() {
            self.entries.remove(&entry);
        }
        Some((entry, self.value(entry)))
    }

    /// Every entry that is not 0, with its value.
    pub fn nonzero(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.entries
            .keys()
            .map(|&e| (e, self.value(e)))
            .filter(|&(_, v)| v != 0)
    }
}

/// The program's `SERVICE_INDEX` and its shadow.
pub struct KernelServiceIndex {
    map: Array<MapData, u32>,
    index: ServiceIndex,
}

fn write_err(source: MapError) -> MapWriteError {
    MapWriteError {
        map: names::SERVICE_INDEX,
        op: "update",
        source,
    }
}

impl KernelServiceIndex {
    /// Takes the map of a program just loaded (all zero: the map is never
    /// pinned) and writes the entries of `services` (`SERVICES`' keys and
    /// ids, whose slots are written already).
    pub fn new(
        map: Array<MapData, u32>,
        services: &[(EndpointKey, u32)],
    ) -> Result<Self, MapWriteError> {
        let mut index = ServiceIndex::default();
        for (key, id) in services {
            index.set(key, *id);
        }
        let mut k = Self { map, index };
        let writes: Vec<(u32, u32)> = k.index.nonzero().collect();
        for (entry, value) in writes {
            k.write(entry, value)?;
        }
        Ok(k)
    }

    /// Before `key`'s slot is rewritten: its entry says 0 until
    /// [`KernelServiceIndex::set`].
    pub fn hide(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        let entry = service_index(key);
        if self.index.value(entry) != 0 {
            self.write(entry, 0)?;
        }
        Ok(())
    }

    /// After `key`'s slot (service `id`) was written.
    pub fn set(&mut self, key: &EndpointKey, id: u32) -> Result<(), MapWriteError> {
        let (entry, value) = self.index.set(key, id);
        self.write(entry, value)
    }

    /// Before `key`'s slot is cleared and the key leaves `SERVICES`.
    pub fn remove(&mut self, key: &EndpointKey) -> Result<(), MapWriteError> {
        match self.index.remove(key) {
            Some((entry, value)) => self.write(entry, value),
            None => Ok(()),
        }
    }

    /// What the kernel map holds for `key`'s entry (0 if it cannot be
    /// read).
    pub fn entry(&self, key: &EndpointKey) -> u32 {
        self.map.get(&service_index(key), 0).unwrap_or(0)
    }

    fn write(&mut self, entry: u32, value: u32) -> Result<(), MapWriteError> {
        self.map.set(entry, value, 0).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8, port: u16) -> EndpointKey {
        EndpointKey::new(
            std::net::SocketAddr::from(([10, 0, 0, last], port)),
            lb_common::PROTO_TCP,
        )
    }

    /// Two keys that fall on the same entry (found by search: the index is
    /// a hash).
    fn colliding() -> (EndpointKey, EndpointKey) {
        let first = key(1, 80);
        let e = service_index(&first);
        for port in 81..u16::MAX {
            let k = key(1, port);
            if service_index(&k) == e {
                return (first, k);
            }
        }
        unreachable!("65,000 ports and no collision in 16,384 entries")
    }

    #[test]
    fn an_entry_names_its_only_service() {
        let mut ix = ServiceIndex::default();
        let web = key(1, 80);
        let (entry, value) = ix.set(&web, 7);
        assert_eq!((entry, value), (service_index(&web), 8));
        // A reload that gives the key another id moves the entry with it.
        assert_eq!(ix.set(&web, 3), (entry, 4));
        assert_eq!(ix.remove(&web), Some((entry, 0)));
        assert_eq!(ix.remove(&web), None, "not recorded any more");
        assert_eq!(ix.nonzero().count(), 0);
    }

    #[test]
    fn two_services_on_one_entry_leave_it_to_the_hash_lookup() {
        let (a, b) = colliding();
        let mut ix = ServiceIndex::default();
        let (entry, _) = ix.set(&a, 1);
        assert_eq!(
            ix.set(&b, 2),
            (entry, 0),
            "two keys: the program asks SERVICES"
        );
        assert_eq!(ix.remove(&a), Some((entry, 3)), "b alone again");
        assert_eq!(ix.nonzero().collect::<Vec<_>>(), [(entry, 3)]);
    }
}
