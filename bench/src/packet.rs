//! Minimum-size test frames (60 bytes before the FCS, i.e. 64 on the wire):
//! Ethernet + IPv4 + TCP or UDP, with correct checksums. Used as
//! BPF_PROG_TEST_RUN input and as the generator's frame.

use std::net::SocketAddrV4;

/// Ethernet minimum without the 4-byte FCS.
pub const FRAME_LEN: usize = 60;
pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// ACK|PSH: an established-flow segment; the balancer does not look at
    /// flags, so this is also a new flow when the tuple is unseen.
    Tcp,
    Udp,
    /// UDP with checksum 0 ("none"), which IPv4 allows: a generator may
    /// vary ports without recomputing it.
    UdpNoChecksum,
}

pub fn frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    l4: L4,
) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = ETH_HLEN;
    let l4_off = ip + IPV4_HLEN;
    let l4_len = FRAME_LEN - l4_off;
    f[ip] = 0x45;
    f[ip + 2..ip + 4].copy_from_slice(&((IPV4_HLEN + l4_len) as u16).to_be_bytes());
    f[ip + 4..ip + 6].copy_from_slice(&0x1234u16.to_be_bytes());
    f[ip + 6] = 0x40; // DF: not a fragment
    f[ip + 8] = 64;
    f[ip + 9] = if l4 == L4::Tcp { 6 } else { 17 };
    f[ip + 12..ip + 16].copy_from_slice(&src.ip().octets());
    f[ip + 16..ip + 20].copy_from_slice(&dst.ip().octets());
    let c = checksum(&f[ip..ip + IPV4_HLEN], 0);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());

    f[l4_off..l4_off + 2].copy_from_slice(&src.port().to_be_bytes());
    f[l4_off + 2..l4_off + 4].copy_from_slice(&dst.port().to_be_bytes());
    let csum_at = match l4 {
        L4::Tcp => {
            f[l4_off + 4..l4_off + 8].copy_from_slice(&1u32.to_be_bytes());
            f[l4_off + 12] = 5 << 4;
            f[l4_off + 13] = 0x18; // ACK|PSH
            f[l4_off + 14..l4_off + 16].copy_from_slice(&0xffffu16.to_be_bytes());
            Some(l4_off + 16)
        }
        L4::Udp | L4::UdpNoChecksum => {
            f[l4_off + 4..l4_off + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (l4 == L4::Udp).then_some(l4_off + 6)
        }
    };
    for (i, b) in f[l4_off + if l4 == L4::Tcp { 20 } else { 8 }..]
        .iter_mut()
        .enumerate()
    {
        *b = b'a' + (i % 26) as u8;
    }
    if let Some(at) = csum_at {
        // Pseudo header: addresses, protocol, L4 length.
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&src.ip().octets());
        pseudo.extend_from_slice(&dst.ip().octets());
        pseudo.extend_from_slice(&[0, f[ip + 9]]);
        pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        let mut c = checksum(&f[l4_off..], sum(&pseudo));
        if c == 0 && l4 != L4::Tcp {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Internet checksum of `data` (with its checksum field zero) plus `initial`.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut s = initial + sum(data);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn checksums_verify_to_zero() {
        for l4 in [L4::Tcp, L4::Udp] {
            let f = frame(
                [2; 6],
                [4; 6],
                a("192.168.253.1:40000"),
                a("192.168.253.120:80"),
                l4,
            );
            assert_eq!(f.len(), FRAME_LEN);
            // A correct header sums (with its checksum) to 0xffff: checksum 0.
            assert_eq!(checksum(&f[14..34], 0), 0);
            let mut pseudo = vec![192, 168, 253, 1, 192, 168, 253, 120, 0, f[23]];
            pseudo.extend_from_slice(&26u16.to_be_bytes());
            assert_eq!(checksum(&f[34..], sum(&pseudo)), 0, "{l4:?}");
        }
    }

    #[test]
    fn udp_without_checksum() {
        let f = frame(
            [2; 6],
            [4; 6],
            a("10.0.0.1:1"),
            a("10.0.0.2:9"),
            L4::UdpNoChecksum,
        );
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(f[23], 17);
    }
}
