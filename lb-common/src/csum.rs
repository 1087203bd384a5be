//! Internet checksum arithmetic (RFC 1071) and incremental update (RFC 1624).
//!
//! Values are 16-bit words *as loaded from the packet* (i.e. in network byte
//! order in memory, read as native integers): the one's complement sum is the
//! same whichever way the two bytes are swapped, provided every operand is
//! read the same way, so neither side needs to byte-swap.

/// Fold a 32-bit accumulator into 16 bits with end-around carry.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit word.
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + (new as u32);
    !fold(sum)
}

/// The same for a 32-bit word (an IPv4 address, or two ports).
#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check as u32)
        + (!(old as u16) as u32)
        + (!((old >> 16) as u16) as u32)
        + ((new as u16) as u32)
        + (new >> 16);
    !fold(sum)
}

/// The same for an IPv6 address (four words).
#[inline(always)]
pub fn replace16(mut check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    check = replace4(check, old[0], new[0]);
    check = replace4(check, old[1], new[1]);
    check = replace4(check, old[2], new[2]);
    replace4(check, old[3], new[3])
}

/// UDP over IPv4 may carry checksum 0 ("none"); a computed 0 is sent as 0xffff.
#[inline(always)]
pub fn udp_nonzero(check: u16) -> u16 {
    if check == 0 {
        0xffff
    } else {
        check
    }
}

/// Full checksum of a byte slice (host only: tests and fixtures).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_ne_bytes([c[0], c[1]]) as u32;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [b] = chunks.remainder() {
        sum += u16::from_ne_bytes([*b, 0]) as u32;
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    // An IPv4 header (RFC 1071 style example) with its checksum field zeroed.
    fn header(src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 0x3c, 0x1c, 0x46, 0x40, 0, 0x40, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        h
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let old = header([192, 168, 253, 1], [192, 168, 253, 120]);
        let new = header([192, 168, 253, 1], [172, 16, 14, 121]);
        let c_old = checksum(&old);
        let c_new = checksum(&new);
        let o = u32::from_ne_bytes([192, 168, 253, 120]);
        let n = u32::from_ne_bytes([172, 16, 14, 121]);
        assert_eq!(replace4(c_old, o, n), c_new);
        // A header with a correct checksum sums to zero.
        let mut h = new;
        h[10..12].copy_from_slice(&c_new.to_ne_bytes());
        assert_eq!(checksum(&h), 0);
        let p_old = 80u16.to_be();
        let p_new = 8080u16.to_be();
        let mut a = old;
        a[0..2].copy_from_slice(&p_old.to_ne_bytes());
        let mut b = old;
        b[0..2].copy_from_slice(&p_new.to_ne_bytes());
        assert_eq!(replace2(checksum(&a), p_old, p_new), checksum(&b));
    }

    #[test]
    fn ipv6_address_replacement() {
        let mut a = [0u8; 40];
        let mut b = [0u8; 40];
        for i in 0..16 {
            a[i] = i as u8;
            b[i] = 0xf0 ^ (i as u8 * 7);
        }
        let words = |s: &[u8]| -> [u32; 4] {
            core::array::from_fn(|i| u32::from_ne_bytes(s[i * 4..i * 4 + 4].try_into().unwrap()))
        };
        assert_eq!(
            replace16(checksum(&a), &words(&a[..16]), &words(&b[..16])),
            checksum(&b)
        );
    }
}
