//! The router's ECMP: which lb node a flow's packets reach, as Linux picks
//! a next hop of a multipath route.
//!
//! Two models, both of the kernel's own algorithms (written from their
//! descriptions, RFC 2992 and the nexthop documentation):
//!
//! - [`HashThreshold`]: what a plain multipath route does (IPv4 since Linux
//!   4.4, IPv6 since 4.16), and what FRR's zebra or BIRD install when BGP
//!   gives them several equal paths. The 31-bit flow hash space is cut into
//!   one region per next hop, in next-hop order, sized by weight; a flow
//!   goes to the next hop whose region holds its hash. A change of the set
//!   moves every boundary after it, so many flows change next hop even when
//!   only one was added or removed.
//! - [`Resilient`]: a resilient nexthop group (`ip nexthop add ... type
//!   resilient buckets B`, Linux 5.13+; FRR does not install one for BGP
//!   routes by default). Flows hash into B buckets, each owned by a next
//!   hop; a change moves only as many buckets as the new shares need.
//!
//! The flow hash itself is Linux's `fib_multipath_hash` with
//! `fib_multipath_hash_policy = 1` (L4: addresses, ports, protocol), which
//! the router uses: the kernel keys it with a random boot-time
//! secret, so here it is a keyed hash independent of lb's own flow hash.

use lb_common::FlowKey;

/// The router's 31-bit multipath hash of a flow (policy 1: the 5-tuple).
/// `secret` stands for the router's boot-time key.
pub fn multipath_hash(key: &FlowKey, secret: u64) -> u32 {
    let mut h = secret;
    for w in key.src.iter().chain(key.dst.iter()) {
        h = mix64(h ^ u64::from(*w));
    }
    h = mix64(
        h ^ (u64::from(key.src_port_be) | u64::from(key.dst_port_be) << 16)
            ^ u64::from(key.proto) << 32,
    );
    // The kernel keeps 31 bits: its thresholds are signed 32-bit values.
    (h >> 33) as u32
}

/// A 64-bit finaliser (splitmix64's): every input bit flips about half the
/// output bits, which is all a model of a keyed hash needs.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One ECMP route's next-hop selection: next hops are node ids.
pub trait Ecmp {
    /// The node a flow with this multipath hash reaches.
    fn pick(&self, hash: u32) -> u32;
    /// The route after a change: these next hops, in the route's order.
    fn update(&mut self, nodes: &[u32]);
}

/// A plain multipath route (hash-threshold), equal weights.
#[derive(Clone, Debug)]
pub struct HashThreshold {
    /// Next hops in the route's order.
    nodes: Vec<u32>,
    /// Inclusive upper bound of each next hop's hash region.
    upper: Vec<u32>,
}

impl HashThreshold {
    pub fn new(nodes: &[u32]) -> Self {
        let mut h = HashThreshold {
            nodes: Vec::new(),
            upper: Vec::new(),
        };
        h.update(nodes);
        h
    }
}

impl Ecmp for HashThreshold {
    fn pick(&self, hash: u32) -> u32 {
        // The first region whose upper bound is at or above the hash.
        let i = self.upper.partition_point(|&u| u < hash);
        self.nodes[i.min(self.nodes.len() - 1)]
    }

    fn update(&mut self, nodes: &[u32]) {
        assert!(!nodes.is_empty(), "a route needs a next hop");
        let total = nodes.len() as u64;
        // Cumulative weight scaled to 2^31, rounded to the closest, minus
        // one: the regions tile 0..2^31 exactly.
        self.upper = (1..=total)
            .map(|w| (((w << 31) + total / 2) / total - 1) as u32)
            .collect();
        self.nodes = nodes.to_vec();
    }
}

/// A resilient nexthop group of `buckets` buckets, equal weights, in its
/// settled state (every bucket the kernel would migrate has migrated; the
/// kernel waits for a bucket to be idle first, which only helps flows).
#[derive(Clone, Debug)]
pub struct Resilient {
    owner: Vec<u32>,
}

impl Resilient {
    pub fn new(buckets: u32, nodes: &[u32]) -> Self {
        let mut r = Resilient {
            owner: vec![u32::MAX; buckets as usize],
        };
        r.update(nodes);
        r
    }
}

impl Ecmp for Resilient {
    fn pick(&self, hash: u32) -> u32 {
        self.owner[hash as usize % self.owner.len()]
    }

    fn update(&mut self, nodes: &[u32]) {
        assert!(!nodes.is_empty(), "a group needs a next hop");
        let b = self.owner.len() as u64;
        let n = nodes.len() as u64;
        // Each next hop's quota: cumulative rounding, so quotas sum to b.
        let quota = |i: u64| ((i + 1) * b + n / 2) / n - (i * b + n / 2) / n;
        let mut want: std::collections::HashMap<u32, u64> = nodes
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, quota(i as u64)))
            .collect();
        // Keep every bucket whose owner stays and is within its quota;
        // free the rest (owner gone, or owner over its new share).
        let mut free = Vec::new();
        for (i, o) in self.owner.iter().enumerate() {
            match want.get_mut(o) {
                Some(w) if *w > 0 => *w -= 1,
                _ => free.push(i),
            }
        }
        // Hand the freed buckets to the next hops still under quota.
        let mut takers = nodes
            .iter()
            .flat_map(|id| std::iter::repeat_n(*id, want[id] as usize));
        for i in free {
            self.owner[i] = takers.next().expect("quotas sum to the buckets");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: u32) -> impl Iterator<Item = u32> {
        (0..n).map(|i| (mix64(u64::from(i)) >> 33) as u32)
    }

    fn moved(a: &dyn Ecmp, b: &dyn Ecmp, n: u32) -> f64 {
        hashes(n).filter(|h| a.pick(*h) != b.pick(*h)).count() as f64 / f64::from(n)
    }

    #[test]
    fn hash_threshold_regions_tile_the_hash_space_evenly() {
        let ids: Vec<u32> = (0..7).collect();
        let h = HashThreshold::new(&ids);
        assert_eq!(h.pick(0), 0);
        assert_eq!(h.pick((1 << 31) - 1), 6);
        let mut count = [0u32; 7];
        for x in hashes(70_000) {
            count[h.pick(x) as usize] += 1;
        }
        for c in count {
            assert!((9_500..10_500).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn hash_threshold_moves_many_flows_resilient_only_its_share() {
        let before: Vec<u32> = (0..10).collect();
        let after: Vec<u32> = (0..10).filter(|&i| i != 4).collect();
        let (h0, mut h1) = (HashThreshold::new(&before), HashThreshold::new(&before));
        h1.update(&after);
        // Removing the middle one of ten moves far more than its tenth:
        // the regions of the others shift too (0.28 of all flows, exactly).
        let m = moved(&h0, &h1, 100_000);
        assert!((0.26..0.30).contains(&m), "{m}");

        let (r0, mut r1) = (Resilient::new(1000, &before), Resilient::new(1000, &before));
        r1.update(&after);
        // Only the flows of node 4 move: a tenth.
        let m = moved(&r0, &r1, 100_000);
        assert!((0.09..0.11).contains(&m), "{m}");
        assert!(hashes(100_000).all(|x| r0.pick(x) == 4 || r0.pick(x) == r1.pick(x)));
    }

    #[test]
    fn resilient_join_takes_a_fair_share_from_the_others() {
        let before: Vec<u32> = (0..10).collect();
        let after: Vec<u32> = (0..11).collect();
        let (r0, mut r1) = (Resilient::new(1100, &before), Resilient::new(1100, &before));
        r1.update(&after);
        let mut count = [0u32; 11];
        for o in &r1.owner {
            count[*o as usize] += 1;
        }
        assert_eq!(count, [100; 11]);
        // Every flow that moved went to the new node.
        assert!(hashes(50_000).all(|x| r0.pick(x) == r1.pick(x) || r1.pick(x) == 10));
    }
}
