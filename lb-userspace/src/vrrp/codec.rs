//! The VRRP advertisement on the wire: decode and encode versions 2
//! (RFC 3768) and 3 (RFC 5798), with their checksums. Pure: bytes in,
//! bytes out; the IP header is the socket's business, only the source and
//! destination addresses enter here (the v3 checksum covers them).
//!
//! Checksums, as keepalived 2.2.7 sends and checks them:
//! - v2: over the VRRP message only;
//! - v3 over IPv4: IPv4 pseudo-header (src, dst, 0, 112, length) + message;
//! - v3 over IPv6: IPv6 pseudo-header (src, dst, length, 0, 112) + message.
//!
//! The pre-1.3.6 keepalived form of the v3/IPv4 checksum (without the
//! pseudo-header) is refused with its own error, so a log says why an old
//! peer is not heard.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use thiserror::Error;

use crate::config::VrrpVersion;

/// The IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The only message type both versions define.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Version, type, VRID, priority, count, then two more 16-bit words.
pub const HEADER_LEN: usize = 8;
/// v2 carries 8 bytes of authentication data after the addresses, always
/// (all zero unless the type is a simple password).
pub const AUTH_DATA_LEN: usize = 8;
/// v3's Max Adver Int is 12 bits of centiseconds.
pub const MAX_V3_CENTISECONDS: u16 = 0x0fff;

/// v2 authentication type (RFC 3768 section 5.3.6; 2 is RFC 2338's AH).
pub const AUTH_NONE: u8 = 0;
pub const AUTH_PASSWORD: u8 = 1;
pub const AUTH_AH: u8 = 2;

/// v2's authentication fields; v3 has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth {
    pub kind: u8,
    pub data: [u8; AUTH_DATA_LEN],
}

impl Auth {
    /// keepalived's `auth_type PASS`: the password NUL-padded to 8 bytes
    /// (longer ones are cut, as keepalived does; the config refuses them).
    pub fn password(pass: &str) -> Auth {
        let mut data = [0u8; AUTH_DATA_LEN];
        for (d, b) in data.iter_mut().zip(pass.as_bytes()) {
            *d = *b;
        }
        Auth {
            kind: AUTH_PASSWORD,
            data,
        }
    }

    pub fn none() -> Auth {
        Auth {
            kind: AUTH_NONE,
            data: [0; AUTH_DATA_LEN],
        }
    }
}

/// One advertisement, as decoded or to be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: VrrpVersion,
    pub vrid: u8,
    pub priority: u8,
    /// The count field as received (encode writes `addresses.len()`).
    pub count: u8,
    /// v2 only (`None` for v3).
    pub auth: Option<Auth>,
    /// v2: whole seconds; v3: centiseconds, as a Duration.
    pub advert_interval: Duration,
    /// As received; encode computes its own.
    pub checksum: u16,
    /// All of one family: the family of the packet's addresses.
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("packet of {len} bytes is shorter than a VRRP header")]
    Short { len: usize },
    #[error("count {count} needs {needed} bytes, the packet has {len}")]
    Length {
        count: u8,
        needed: usize,
        len: usize,
    },
    #[error("version {0} (2 and 3 are known)")]
    Version(u8),
    #[error("VRRP version 2 over IPv6")]
    Family,
    #[error("type {0} (1 = advertisement is the only one)")]
    Type(u8),
    #[error("checksum {got:#06x}, expected {expected:#06x}")]
    Checksum { got: u16, expected: u16 },
    #[error(
        "v3 checksum {got:#06x} is the old form without the IPv4 pseudo-header \
         (keepalived before 1.3.6); expected {expected:#06x}"
    )]
    OldV3Checksum { got: u16, expected: u16 },
}

impl DecodeError {
    /// The key `lb status` counts this rejection under.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Short { .. } | DecodeError::Length { .. } => "length",
            DecodeError::Version(_) | DecodeError::Family => "version",
            DecodeError::Type(_) => "type",
            DecodeError::Checksum { .. } | DecodeError::OldV3Checksum { .. } => "checksum",
        }
    }
}

/// Decodes the VRRP message `bytes` (the IP payload) that came from `src`
/// to `dst`. The payload must be exactly as long as its count announces.
pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Short { len: bytes.len() });
    }
    let version = match bytes[0] >> 4 {
        2 => VrrpVersion::V2,
        3 => VrrpVersion::V3,
        v => return Err(DecodeError::Version(v)),
    };
    let kind = bytes[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type(kind));
    }
    let ipv6 = src.is_ipv6();
    if ipv6 && version == VrrpVersion::V2 {
        return Err(DecodeError::Family);
    }
    let count = bytes[3];
    let addr_len = if ipv6 { 16 } else { 4 };
    let tail = match version {
        VrrpVersion::V2 => AUTH_DATA_LEN,
        VrrpVersion::V3 => 0,
    };
    let needed = HEADER_LEN + usize::from(count) * addr_len + tail;
    if bytes.len() != needed {
        return Err(DecodeError::Length {
            count,
            needed,
            len: bytes.len(),
        });
    }
    let got = u16::from_be_bytes([bytes[6], bytes[7]]);
    check_checksum(version, bytes, src, dst, got)?;

    let addresses = bytes[HEADER_LEN..HEADER_LEN + usize::from(count) * addr_len]
        .chunks_exact(addr_len)
        .map(|c| match <[u8; 16]>::try_from(c) {
            Ok(b16) => IpAddr::V6(Ipv6Addr::from(b16)),
            Err(_) => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
        })
        .collect();
    let (auth, advert_interval) = match version {
        VrrpVersion::V2 => {
            let mut data = [0u8; AUTH_DATA_LEN];
            data.copy_from_slice(&bytes[needed - AUTH_DATA_LEN..]);
            let auth = Auth {
                kind: bytes[4],
                data,
            };
            (Some(auth), Duration::from_secs(u64::from(bytes[5])))
        }
        VrrpVersion::V3 => {
            // The top 4 bits are reserved: sent as 0, ignored on receipt.
            let cs = u16::from_be_bytes([bytes[4], bytes[5]]) & MAX_V3_CENTISECONDS;
            (None, centiseconds(cs))
        }
    };
    Ok(Advert {
        version,
        vrid: bytes[1],
        priority: bytes[2],
        count,
        auth,
        advert_interval,
        checksum: got,
        addresses,
    })
}

fn check_checksum(
    version: VrrpVersion,
    bytes: &[u8],
    src: IpAddr,
    dst: IpAddr,
    got: u16,
) -> Result<(), DecodeError> {
    // Summing the message with the checksum field in place gives 0 when it
    // is right; compute the expected value with the field zeroed instead,
    // so the error can say what it should have been.
    let expected = checksum(version, bytes, src, dst);
    if expected == got {
        return Ok(());
    }
    if version == VrrpVersion::V3 && src.is_ipv4() && message_checksum(bytes) == got {
        return Err(DecodeError::OldV3Checksum { got, expected });
    }
    Err(DecodeError::Checksum { got, expected })
}

/// Encodes `advert` to be sent from `src` to `dst`: the count is the
/// number of addresses, the checksum is computed (the field in `advert` is
/// ignored). The addresses must be of `src`'s family and at most 255 (the
/// caller checks; extra ones are not sent).
pub fn encode(advert: &Advert, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let count = advert.addresses.len().min(255) as u8;
    let version_number = advert.version.number();
    let mut out = Vec::with_capacity(HEADER_LEN + usize::from(count) * 16 + AUTH_DATA_LEN);
    out.push((version_number << 4) | TYPE_ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    out.push(count);
    match advert.version {
        VrrpVersion::V2 => {
            let auth = advert.auth.unwrap_or_else(Auth::none);
            out.push(auth.kind);
            out.push(advert.advert_interval.as_secs().clamp(1, 255) as u8);
        }
        VrrpVersion::V3 => {
            let cs = to_centiseconds(advert.advert_interval);
            out.extend_from_slice(&cs.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0]);
    for a in advert.addresses.iter().take(usize::from(count)) {
        match a {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
    if advert.version == VrrpVersion::V2 {
        out.extend_from_slice(&advert.auth.unwrap_or_else(Auth::none).data);
    }
    let sum = checksum(advert.version, &out, src, dst);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    out
}

/// v3's interval field: centiseconds, at least 1, at most 12 bits.
pub fn to_centiseconds(d: Duration) -> u16 {
    (d.as_millis() / 10).clamp(1, u128::from(MAX_V3_CENTISECONDS)) as u16
}

fn centiseconds(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

/// The checksum `bytes` must carry (its checksum field counted as zero).
pub fn checksum(version: VrrpVersion, bytes: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    if version == VrrpVersion::V2 {
        return message_checksum(bytes);
    }
    let len = bytes.len() as u32;
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add_words(&s.octets()) + add_words(&d.octets()) + u32::from(IPPROTO_VRRP) + len
        }
        (s, d) => {
            // IPv6 (a mixed pair cannot come off one socket; map both).
            let s = to_v6(s);
            let d = to_v6(d);
            add_words(&s.octets())
                + add_words(&d.octets())
                + (len >> 16)
                + (len & 0xffff)
                + u32::from(IPPROTO_VRRP)
        }
    };
    sum += message_sum(bytes);
    !fold(sum)
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    }
}

/// The one's complement sum of the message only (v2, and v3's old form).
fn message_checksum(bytes: &[u8]) -> u16 {
    !fold(message_sum(bytes))
}

/// Sum of the 16-bit words of the message with the checksum field (bytes
/// 6..8) taken as zero.
fn message_sum(bytes: &[u8]) -> u32 {
    let mut sum = add_words(bytes);
    if bytes.len() >= HEADER_LEN {
        sum -= u32::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    }
    sum
}

fn add_words(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum: u32 = chunks
        .by_ref()
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        serde_json::from_str(include_str!("testdata/vectors.json")).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ip(v: &Value) -> IpAddr {
        v.as_str().unwrap().parse().unwrap()
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
    const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));

    /// Every advert keepalived sent in the captures: fields and checksum
    /// decoded as tshark did, and encoded again byte for byte.
    #[test]
    fn every_captured_advert_decodes_and_encodes_byte_for_byte() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 36);
        for v in &vectors {
            let name = format!("{} frame {}", v["file"], v["frame"]);
            let bytes = hex(v["vrrp_hex"].as_str().unwrap());
            let (src, dst) = (ip(&v["src"]), ip(&v["dst"]));
            let a = decode(&bytes, src, dst).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(u64::from(a.version.number()), v["version"], "{name}");
            assert_eq!(u64::from(a.vrid), v["vrid"], "{name}");
            assert_eq!(u64::from(a.priority), v["priority"], "{name}");
            assert_eq!(u64::from(a.count), v["count"], "{name}");
            assert_eq!(u64::from(a.checksum), v["checksum"], "{name}");
            assert_eq!(v["checksum"], v["checksum_expected"], "{name}");
            let addrs: Vec<IpAddr> = v["addresses"].as_array().unwrap().iter().map(ip).collect();
            assert_eq!(a.addresses, addrs, "{name}");
            match a.version {
                VrrpVersion::V2 => {
                    let auth = a.auth.unwrap();
                    assert_eq!(u64::from(auth.kind), v["auth_type"], "{name}");
                    assert_eq!(
                        auth.data.to_vec(),
                        hex(v["auth_data_hex"].as_str().unwrap())
                    );
                    let secs = v["adver_int_s"].as_u64().unwrap();
                    assert_eq!(a.advert_interval, Duration::from_secs(secs), "{name}");
                    if auth.kind == AUTH_PASSWORD {
                        let text = v["auth_data_text"].as_str().unwrap();
                        assert_eq!(auth, Auth::password(text), "{name}");
                    }
                }
                VrrpVersion::V3 => {
                    assert_eq!(a.auth, None);
                    let cs = v["max_adver_int_cs"].as_u64().unwrap();
                    assert_eq!(a.advert_interval, Duration::from_millis(cs * 10), "{name}");
                }
            }
            assert_eq!(encode(&a, src, dst), bytes, "{name}: re-encoded");
        }
    }

    /// The README's worked examples, so a regression names the arithmetic.
    #[test]
    fn worked_checksum_examples() {
        let v2 = hex("213396010101da950ac8000a3131313100000000");
        assert_eq!(checksum(VrrpVersion::V2, &v2, V4, GROUP), 0xda95);
        let v3 = hex("31339601 0064423d0ac8000a".replace(' ', "").as_str());
        assert_eq!(checksum(VrrpVersion::V3, &v3, V4, GROUP), 0x423d);
        assert_eq!(message_checksum(&v3), 0x2d95, "the old form");
        let ll: IpAddr = "fe80::ff:fe00:1".parse().unwrap();
        let g6: IpAddr = "ff02::12".parse().unwrap();
        let v6 = hex("3133960100643c37fd000200000000000000000000000010");
        assert_eq!(checksum(VrrpVersion::V3, &v6, ll, g6), 0x3c37);
    }

    fn v2_pass() -> Vec<u8> {
        hex("213396010101da950ac8000a3131313100000000")
    }

    #[test]
    fn short_packets_are_refused() {
        for len in 0..HEADER_LEN {
            let e = decode(&v2_pass()[..len], V4, GROUP).unwrap_err();
            assert_eq!(e, DecodeError::Short { len });
            assert_eq!(e.reason(), "length");
        }
        // A header that announces one address but the auth data is cut.
        let e = decode(&v2_pass()[..16], V4, GROUP).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::Length {
                    needed: 20,
                    len: 16,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_count_larger_than_the_payload_is_refused() {
        let mut b = v2_pass();
        b[3] = 2;
        let e = decode(&b, V4, GROUP).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::Length {
                    count: 2,
                    needed: 24,
                    len: 20
                }
            ),
            "{e}"
        );
        assert_eq!(e.reason(), "length");
        // Trailing bytes past what the count announces: refused as well.
        let mut b = v2_pass();
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode(&b, V4, GROUP).unwrap_err().reason(), "length");
    }

    #[test]
    fn unknown_versions_and_v2_over_ipv6_are_refused() {
        for first in [0x11u8, 0x41, 0x01] {
            let mut b = v2_pass();
            b[0] = first;
            let e = decode(&b, V4, GROUP).unwrap_err();
            assert_eq!(e, DecodeError::Version(first >> 4));
            assert_eq!(e.reason(), "version");
        }
        let ll: IpAddr = "fe80::1".parse().unwrap();
        let g6: IpAddr = "ff02::12".parse().unwrap();
        let e = decode(&v2_pass(), ll, g6).unwrap_err();
        assert_eq!(e, DecodeError::Family);
        assert_eq!(e.reason(), "version");
    }

    #[test]
    fn other_types_are_refused() {
        let mut b = v2_pass();
        b[0] = 0x22;
        let e = decode(&b, V4, GROUP).unwrap_err();
        assert_eq!(e, DecodeError::Type(2));
        assert_eq!(e.reason(), "type");
    }

    #[test]
    fn a_bad_checksum_is_refused_with_the_expected_value() {
        let mut b = v2_pass();
        b[7] ^= 1;
        let e = decode(&b, V4, GROUP).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Checksum {
                got: 0xda94,
                expected: 0xda95
            }
        );
        assert_eq!(e.reason(), "checksum");
        // A flipped payload byte with the old checksum.
        let mut b = v2_pass();
        b[2] = 151;
        assert_eq!(decode(&b, V4, GROUP).unwrap_err().reason(), "checksum");
        // The v3 pseudo-header covers the addresses: the same bytes from
        // another source do not verify.
        let v3 = hex("313396010064423d0ac8000a");
        let other: IpAddr = "10.200.0.2".parse().unwrap();
        assert!(decode(&v3, V4, GROUP).is_ok());
        assert_eq!(decode(&v3, other, GROUP).unwrap_err().reason(), "checksum");
    }

    #[test]
    fn the_old_v3_checksum_without_pseudo_header_is_refused() {
        let mut b = hex("313396010064423d0ac8000a");
        b[6..8].copy_from_slice(&0x2d95u16.to_be_bytes());
        let e = decode(&b, V4, GROUP).unwrap_err();
        assert_eq!(
            e,
            DecodeError::OldV3Checksum {
                got: 0x2d95,
                expected: 0x423d
            }
        );
        assert_eq!(e.reason(), "checksum");
    }

    #[test]
    fn v3_reserved_bits_are_ignored_and_intervals_convert() {
        let mut b = hex("313396010064423d0ac8000a");
        b[4] |= 0xf0;
        let sum = checksum(VrrpVersion::V3, &b, V4, GROUP);
        b[6..8].copy_from_slice(&sum.to_be_bytes());
        let a = decode(&b, V4, GROUP).unwrap();
        assert_eq!(a.advert_interval, Duration::from_secs(1));
        assert_eq!(to_centiseconds(Duration::from_millis(100)), 10);
        assert_eq!(to_centiseconds(Duration::from_millis(2500)), 250);
        assert_eq!(to_centiseconds(Duration::from_secs(100)), 4095);
        assert_eq!(to_centiseconds(Duration::ZERO), 1);
    }

    #[test]
    fn more_than_twenty_addresses_round_trip() {
        let addresses: Vec<IpAddr> = (1..=40u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)))
            .collect();
        let a = Advert {
            version: VrrpVersion::V2,
            vrid: 7,
            priority: 100,
            count: 40,
            auth: Some(Auth::password("secret")),
            advert_interval: Duration::from_secs(1),
            checksum: 0,
            addresses,
        };
        let bytes = encode(&a, V4, GROUP);
        assert_eq!(bytes.len(), HEADER_LEN + 40 * 4 + AUTH_DATA_LEN);
        let back = decode(&bytes, V4, GROUP).unwrap();
        assert_eq!(back.addresses, a.addresses);
        assert_eq!(back.auth, a.auth);
    }
}
