//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), computed here in
//! userspace; the XDP program only indexes the finished table.
//!
//! Each real server gets a permutation of the table's slots,
//! `(offset + j * skip) % size`, with `offset` and `skip` taken from two
//! independent hashes of its identity (address bytes and port). Real servers
//! then take turns claiming their next still-free slot until the table is
//! full. Because a server's preference order depends only on its identity
//! and not on the rest of the set, removing one of N servers re-assigns
//! little more than its own ~1/N of the slots.
//!
//! Weights: a turn is earned with credit (the weighted variant Katran calls
//! Maglev V2). Every round each server adds its weight to its credit; a
//! server whose credit reaches the largest weight claims one slot and pays
//! the largest weight back. The heaviest server claims a slot every round,
//! the others in proportion, so shares follow weights while each server
//! still walks its own permutation (the consistency above is kept).
//!
//! The hash is written here (FNV-1a with a 64-bit finaliser and fixed
//! seeds), never a randomly keyed std hasher: two balancers, or one agent
//! after a restart, must build identical tables from the same config.

use std::net::IpAddr;

/// One real server as Maglev sees it. The permutation is derived from
/// `addr`/`port` (not from `id`), so two balancers with different backend
/// ids build the same assignment of flows to real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Backend id written into the table.
    pub id: u32,
    pub addr: IpAddr,
    pub port: u16,
    /// Relative share; 0 = not in the table.
    pub weight: u32,
}

/// Seeds of the two hashes; any two distinct constants do, but they must
/// never change: a change moves every flow of every service on upgrade.
const OFFSET_SEED: u64 = 0x6c62_6d61_676c_6576; // "lbmaglev"
const SKIP_SEED: u64 = 0x736b_6970_5f6c_6221; // "skip_lb!"

/// The lookup table: `size` slots (a prime) of backend ids;
/// `lb_common::NO_BACKEND` everywhere when no entry has a weight.
///
/// The result does not depend on the order of `entries`. A `size` that is
/// not prime still yields a full table (skips are forced coprime with it),
/// but the config only accepts primes, which spread permutations best.
pub fn build_table(entries: &[Entry], size: u32) -> Vec<u32> {
    let mut table = vec![lb_common::NO_BACKEND; size as usize];
    let mut active: Vec<&Entry> = entries.iter().filter(|e| e.weight > 0).collect();
    if active.is_empty() || size == 0 {
        return table;
    }
    // Tie-breaks between servers depend on their turn order: fix it by
    // identity so the caller's order (and the ids) cannot change the table.
    active.sort_by_key(|e| (e.addr, e.port, e.id));

    let mut walkers: Vec<Walker> = active
        .iter()
        .map(|e| {
            let (offset, skip) = offset_skip(e, size);
            Walker {
                id: e.id,
                offset,
                next: offset,
                skip,
                inv_skip: 0,
                weight: u64::from(e.weight),
                credit: 0,
            }
        })
        .collect();
    let max_weight = walkers.iter().map(|w| w.weight).max().unwrap_or(1);
    // Everyone's first turn comes in the first round: a server with a tiny
    // weight next to a huge one still gets a slot (and so some new flows)
    // as long as the table has room for all servers.
    for w in walkers.iter_mut() {
        w.credit = max_weight - w.weight;
    }

    // Whose turn it is; turns go round `walkers` in order, across phases.
    let mut turn = 0usize;
    let mut next_turn = |walkers: &mut [Walker]| -> usize {
        loop {
            let i = turn;
            turn = if turn + 1 == walkers.len() {
                0
            } else {
                turn + 1
            };
            let w = &mut walkers[i];
            w.credit += w.weight;
            if w.credit >= max_weight {
                w.credit -= max_weight;
                return i;
            }
        }
    };

    // Phase 1: walk the permutations. Filling slot k costs about
    // size / (size - k) probes, ~size * ln(size) in all, most of them on
    // taken slots: probing a bitmap (8 KiB for 65537 slots) rather than the
    // u32 table keeps that loop in L1 cache.
    let mut taken = vec![0u64; (size as usize).div_ceil(64)];
    let is_taken = |taken: &[u64], s: u32| taken[(s >> 6) as usize] & (1 << (s & 63)) != 0;
    let late = (size / 4).isqrt();
    let mut free = size;
    while free > late {
        let i = next_turn(&mut walkers);
        let w = &mut walkers[i];
        // A prime size (or a coprime skip) makes the walk visit every
        // slot, so a free one is always found.
        while is_taken(&taken, w.next) {
            w.next = step(w.next, w.skip, size);
        }
        taken[(w.next >> 6) as usize] |= 1 << (w.next & 63);
        table[w.next as usize] = w.id;
        w.next = step(w.next, w.skip, size);
        free -= 1;
    }

    // Phase 2, the last ~sqrt(size)/2 free slots, where a walk would need
    // ~size/free probes per slot: compute where each free slot sits in the
    // server's permutation, (slot - offset) / skip mod size, and take the
    // earliest. Slots earlier in its permutation than where it stands were
    // all seen taken, so this is exactly the slot the walk would reach.
    let mut free_slots: Vec<u32> = (0..size).filter(|s| !is_taken(&taken, *s)).collect();
    while !free_slots.is_empty() {
        let i = next_turn(&mut walkers);
        let w = &mut walkers[i];
        if w.inv_skip == 0 {
            w.inv_skip = mod_inverse(w.skip, size);
        }
        let rank = |s: u32| {
            let d = if s >= w.offset {
                s - w.offset
            } else {
                s + (size - w.offset)
            };
            (u64::from(d) * u64::from(w.inv_skip)) % u64::from(size)
        };
        let (k, _) = free_slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| rank(**s))
            .expect("not empty");
        let slot = free_slots.swap_remove(k);
        table[slot as usize] = w.id;
    }
    table
}

/// One server's walk through its permutation.
struct Walker {
    id: u32,
    offset: u32,
    /// The slot it looks at next: its permutation is walked by adding
    /// `skip` modulo the size, so no multiplication per probe.
    next: u32,
    skip: u32,
    /// `skip`'s inverse modulo the size, computed when first needed; 0 = not yet.
    inv_skip: u32,
    weight: u64,
    credit: u64,
}

/// `x` such that `a * x = 1 (mod m)`, for `gcd(a, m) = 1`, `m >= 2`.
fn mod_inverse(a: u32, m: u32) -> u32 {
    let (mut r0, mut r1) = (i64::from(m), i64::from(a));
    let (mut t0, mut t1) = (0i64, 1i64);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    debug_assert_eq!(r0, 1, "skip must be coprime with the size");
    t0.rem_euclid(i64::from(m)) as u32
}

/// `(pos + skip) % size` for `pos, skip < size`, without overflow.
#[inline(always)]
fn step(pos: u32, skip: u32, size: u32) -> u32 {
    let back = size - skip;
    if pos >= back {
        pos - back
    } else {
        pos + skip
    }
}

fn offset_skip(e: &Entry, size: u32) -> (u32, u32) {
    let mut ident = [0u8; 19];
    let len = identity(e.addr, e.port, &mut ident);
    let ident = &ident[..len];
    let size64 = u64::from(size);
    let offset = (hash64(OFFSET_SEED, ident) % size64) as u32;
    if size == 1 {
        return (0, 0);
    }
    let mut skip = (hash64(SKIP_SEED, ident) % (size64 - 1)) as u32 + 1;
    // Only matters for a non-prime size: a skip sharing a factor with the
    // size would cycle through a subset of slots and could never finish.
    while gcd(skip, size) != 1 {
        skip = if skip + 1 >= size { 1 } else { skip + 1 };
    }
    (offset, skip)
}

/// Family tag, address bytes, port in network order: the server's identity.
fn identity(addr: IpAddr, port: u16, out: &mut [u8; 19]) -> usize {
    let n = match addr {
        IpAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.octets());
            5
        }
        IpAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.octets());
            17
        }
    };
    out[n..n + 2].copy_from_slice(&port.to_be_bytes());
    n + 2
}

/// FNV-1a over `seed` then `bytes`, finished with MurmurHash3's fmix64: FNV
/// alone leaves the low bits of similar inputs (neighbouring addresses)
/// correlated, and the modulo keeps exactly those bits.
fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Whether `n` is prime (trial division: at most ~32k steps for a `u32`,
/// called only while validating a config).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let n64 = u64::from(n);
    let mut d: u64 = 5;
    while d * d <= n64 {
        if n64.is_multiple_of(d) || n64.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const M: u32 = 65537;

    fn servers(n: u32) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                id: i,
                addr: IpAddr::V4(Ipv4Addr::new(172, 16, (i / 250) as u8, (i % 250) as u8 + 1)),
                port: 80,
                weight: 1,
            })
            .collect()
    }

    fn shares(table: &[u32], ids: &[u32]) -> Vec<f64> {
        ids.iter()
            .map(|id| table.iter().filter(|s| *s == id).count() as f64 / table.len() as f64)
            .collect()
    }

    fn t_count(table: &[u32], id: u32) -> usize {
        table.iter().filter(|s| **s == id).count()
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..40).filter(|n| is_prime(*n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]);
        assert!(is_prime(65537));
        assert!(is_prime(4_294_967_291)); // largest u32 prime
        assert!(!is_prime(65535));
        assert!(!is_prime(65539 * 3));
        assert!(!is_prime(4_294_967_295));
    }

    #[test]
    fn empty_or_all_drained_gives_no_backend() {
        assert!(build_table(&[], 251)
            .iter()
            .all(|s| *s == lb_common::NO_BACKEND));
        let mut drained = servers(3);
        drained.iter_mut().for_each(|e| e.weight = 0);
        let t = build_table(&drained, 251);
        assert_eq!(t.len(), 251);
        assert!(t.iter().all(|s| *s == lb_common::NO_BACKEND));
    }

    #[test]
    fn every_slot_filled_with_a_weighted_entry() {
        for (n, size) in [(1, 7), (3, 251), (7, 7), (100, M), (5, 12)] {
            let mut e = servers(n);
            if n > 1 {
                e[0].weight = 0; // drained ones never appear
            }
            let t = build_table(&e, size);
            assert_eq!(t.len(), size as usize);
            assert!(
                t.iter().all(|s| *s != lb_common::NO_BACKEND),
                "n={n} size={size}"
            );
            if n > 1 {
                assert!(!t.contains(&0), "drained server got slots");
            }
        }
    }

    #[test]
    fn equal_weights_share_equally() {
        let t = build_table(&servers(3), M);
        for s in shares(&t, &[0, 1, 2]) {
            assert!((s - 1.0 / 3.0).abs() < 0.01, "share {s}");
        }
    }

    #[test]
    fn shares_follow_weights() {
        let mut e = servers(3);
        for (i, w) in [1, 2, 3].into_iter().enumerate() {
            e[i].weight = w;
        }
        let t = build_table(&e, M);
        let got = shares(&t, &[0, 1, 2]);
        for (s, want) in got.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((s - want).abs() / want < 0.03, "share {s}, want {want}");
        }
        // Large, uneven weights (ipvsadm allows up to 65535).
        e[0].weight = 65535;
        e[1].weight = 1000;
        e[2].weight = 1;
        let got = shares(&build_table(&e, M), &[0, 1, 2]);
        let total = 66536.0;
        assert!((got[0] - 65535.0 / total).abs() < 0.01, "{got:?}");
        assert!((got[1] - 1000.0 / total).abs() < 0.005, "{got:?}");
        let ones = t_count(&build_table(&e, M), 2);
        assert!(
            (1..=3).contains(&ones),
            "the weight-1 server must keep a slot: {ones}"
        );
    }

    /// Removing one of N servers moves about 1/N of the slots (Maglev's
    /// minimal disruption), and the remaining servers keep nearly all of
    /// theirs.
    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [3u32, 5, 10, 20, 100] {
            let all = servers(n);
            let before = build_table(&all, M);
            let gone = n / 2;
            let rest: Vec<Entry> = all.iter().filter(|e| e.id != gone).cloned().collect();
            let after = build_table(&rest, M);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / M as f64;
            let kept_moved = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| **a != gone && a != b)
                .count() as f64
                / M as f64;
            let ideal = 1.0 / n as f64;
            assert!(moved >= ideal * 0.9, "n={n}: moved {moved}, ideal {ideal}");
            assert!(
                moved < 1.3 * ideal + 0.01,
                "n={n}: moved {moved}, ideal {ideal}"
            );
            // Slots of servers that stay: at most a few percent change hands.
            assert!(
                kept_moved < 0.3 * ideal + 0.01,
                "n={n}: {kept_moved} of kept slots moved"
            );
            assert!(!after.contains(&gone));
        }
    }

    /// Textbook Maglev with the same turns, walking every permutation to
    /// the end (no shortcut for the last slots).
    fn reference(entries: &[Entry], size: u32) -> Vec<u32> {
        let mut e: Vec<&Entry> = entries.iter().filter(|e| e.weight > 0).collect();
        e.sort_by_key(|e| (e.addr, e.port, e.id));
        let mut table = vec![lb_common::NO_BACKEND; size as usize];
        if e.is_empty() {
            return table;
        }
        let perm: Vec<(u64, u64)> = e
            .iter()
            .map(|e| {
                let (o, s) = offset_skip(e, size);
                (u64::from(o), u64::from(s))
            })
            .collect();
        let max = e.iter().map(|e| u64::from(e.weight)).max().unwrap();
        let mut credit: Vec<u64> = e.iter().map(|e| max - u64::from(e.weight)).collect();
        let mut j = vec![0u64; e.len()];
        let mut filled = 0;
        while filled < size {
            for i in 0..e.len() {
                credit[i] += u64::from(e[i].weight);
                if credit[i] < max || filled == size {
                    continue;
                }
                credit[i] -= max;
                loop {
                    let slot = ((perm[i].0 + j[i] * perm[i].1) % u64::from(size)) as usize;
                    j[i] += 1;
                    if table[slot] == lb_common::NO_BACKEND {
                        table[slot] = e[i].id;
                        filled += 1;
                        break;
                    }
                }
            }
        }
        table
    }

    #[test]
    fn same_table_as_textbook_maglev() {
        for (n, size, weights) in [
            (1, 2, &[1][..]),
            (3, 7, &[1, 1, 1]),
            (5, 13, &[1, 2, 0, 3, 1]),
            (10, 1009, &[1]),
            (3, 65537, &[1, 2, 3]),
            (100, 65537, &[1]),
            (7, 10007, &[5, 1, 100, 7, 7, 0, 65535]),
            (4, 1000, &[1, 3]), // not prime: skips made coprime
        ] {
            let mut e = servers(n);
            for (i, x) in e.iter_mut().enumerate() {
                x.weight = weights[i % weights.len()];
            }
            assert_eq!(
                build_table(&e, size),
                reference(&e, size),
                "n={n} size={size}"
            );
        }
    }

    #[test]
    fn mod_inverses() {
        for m in [2u32, 7, 101, 65537, 16_777_213] {
            for a in [1, 2, 3, m / 2, m - 1] {
                if gcd(a, m) == 1 {
                    let x = mod_inverse(a, m);
                    assert_eq!(u64::from(a) * u64::from(x) % u64::from(m), 1, "a={a} m={m}");
                }
            }
        }
    }

    #[test]
    fn deterministic_and_order_independent() {
        let e = servers(17);
        let t = build_table(&e, 10007);
        assert_eq!(t, build_table(&e, 10007));
        let mut rev = e.clone();
        rev.reverse();
        assert_eq!(t, build_table(&rev, 10007));
        let mut rot = e.clone();
        rot.rotate_left(5);
        assert_eq!(t, build_table(&rot, 10007));
    }

    /// Pinned values: the table must be the same on every machine and
    /// release, or an upgrade would move established traffic (flows not in
    /// the flow table) and two balancers would disagree.
    #[test]
    fn stable_across_releases() {
        let e = servers(3);
        let t = build_table(&e, 13);
        assert_eq!(t, PINNED_13);
        let mut c = [0u32; 3];
        t.iter().for_each(|s| c[*s as usize] += 1);
        assert!(c.iter().all(|n| (4..=5).contains(n)), "{c:?}");
    }
    const PINNED_13: [u32; 13] = [2, 0, 1, 2, 1, 1, 0, 2, 0, 0, 1, 0, 2];

    #[test]
    fn identity_is_address_and_port_not_id() {
        let e = servers(4);
        let mut renumbered = e.clone();
        renumbered.iter_mut().for_each(|x| x.id += 100);
        let a = build_table(&e, 251);
        let b = build_table(&renumbered, 251);
        assert!(a.iter().zip(&b).all(|(x, y)| x + 100 == *y));
        // Another port is another identity.
        let mut other_port = e.clone();
        other_port.iter_mut().for_each(|x| x.port = 8080);
        assert_ne!(a, build_table(&other_port, 251));
    }

    #[test]
    fn ipv6_servers() {
        let e: Vec<Entry> = (1..=3u16)
            .map(|i| Entry {
                id: u32::from(i),
                addr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)),
                port: 443,
                weight: 1,
            })
            .collect();
        let t = build_table(&e, 1009);
        for id in 1..=3 {
            let n = t.iter().filter(|s| **s == id).count();
            assert!((300..=373).contains(&n), "id {id}: {n}");
        }
    }
}
