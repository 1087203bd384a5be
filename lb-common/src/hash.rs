//! The flow hash: which Maglev slot a new connection lands on.
//!
//! The kernel program and the host run this same function, so a test can
//! predict the real server of a flow and a benchmark can reproduce the
//! distribution. It is MurmurHash3's 32-bit mixing over the words of the
//! 5-tuple: cheap, branch-free and with a fixed trip count, which the
//! verifier accepts without help.

use crate::{FlowKey, FlowKeyV4};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finalize(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of a flow's 5-tuple (words as they sit in memory, i.e. network order).
#[inline(always)]
pub fn flow_hash(key: &FlowKey, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(
        h,
        (key.src_port_be as u32) | ((key.dst_port_be as u32) << 16),
    );
    h = mix(h, key.proto as u32);
    finalize(h, 40)
}

/// [`flow_hash`] of `key.widen()`, without building the 40-byte key: the
/// zero words of an IPv4 address are mixed in as constants. The data plane
/// hashes IPv4 flows with this, the host with either; they must agree
/// (HA: two balancers choose the same real server for a flow).
#[inline(always)]
pub fn flow_hash_v4(key: &FlowKeyV4, seed: u32) -> u32 {
    let mut h = mix(seed, key.src);
    h = mix(h, 0);
    h = mix(h, 0);
    h = mix(h, 0);
    h = mix(h, key.dst);
    h = mix(h, 0);
    h = mix(h, 0);
    h = mix(h, 0);
    h = mix(
        h,
        (key.src_port_be as u32) | ((key.dst_port_be as u32) << 16),
    );
    h = mix(h, key.proto as u32);
    finalize(h, 40)
}

/// Seed of [`flow_hash`] for Maglev slot selection. Fixed, so that two
/// balancers of an HA pair choose the same real server for the same flow.
pub const MAGLEV_SEED: u32 = 0x6c62_0001;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            dst: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            src_port_be: sport.to_be(),
            dst_port_be: 80u16.to_be(),
            proto: crate::PROTO_TCP,
            family: crate::FAMILY_IPV4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn the_ipv4_hash_is_the_hash_of_the_widened_key() {
        let mut x = 0x1234_5678u32;
        for _ in 0..10_000 {
            // xorshift: addresses, ports and both protocols at random.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = FlowKeyV4 {
                src: x,
                dst: x.rotate_left(7) ^ 0x0a00_0001,
                src_port_be: x as u16,
                dst_port_be: (x >> 16) as u16,
                proto: if x & 1 == 0 {
                    crate::PROTO_TCP
                } else {
                    crate::PROTO_UDP
                },
                _pad: [0; 3],
            };
            let wide = k.widen();
            assert_eq!(flow_hash_v4(&k, MAGLEV_SEED), flow_hash(&wide, MAGLEV_SEED));
            assert_eq!(wide.narrow(), Some(k));
        }
        assert_eq!(key(1).narrow().unwrap().widen(), key(1));
    }

    #[test]
    fn same_tuple_same_hash_and_ports_spread_evenly() {
        assert_eq!(
            flow_hash(&key(1000), MAGLEV_SEED),
            flow_hash(&key(1000), MAGLEV_SEED)
        );
        // 30000 source ports into 7 buckets: each within 5% of the mean.
        let mut buckets = [0u32; 7];
        for p in 1024..31024u16 {
            buckets[(flow_hash(&key(p), MAGLEV_SEED) % 7) as usize] += 1;
        }
        let mean = 30000 / 7;
        for b in buckets {
            assert!(b.abs_diff(mean) < mean / 20, "uneven buckets {buckets:?}");
        }
    }
}
