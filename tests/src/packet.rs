//! A small frame builder for fixtures: Ethernet (with an optional 802.1Q
//! tag), IPv4 (options, fragments, TTL), IPv6 (fragment and hop-by-hop
//! headers, hop limit), TCP, UDP, ICMP and ICMPv6, with correct checksums.
//!
//! Checksums are computed here from scratch, independently of
//! `lb_common::csum`, so a test comparing the data plane's incrementally
//! updated packet with a freshly built one checks that arithmetic for real.
//!
//! ```
//! use lb_tests::packet::Frame;
//! let syn = Frame::tcp4("192.168.253.1:40000", "192.168.253.120:80").build();
//! assert_eq!(syn.len(), 14 + 20 + 20 + b"hello".len()); // default payload
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const ICMP_HLEN: usize = 8;

/// TCP flags.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;

pub type Mac = [u8; 6];

/// The network layer of a frame.
#[derive(Clone, Debug)]
pub enum Net {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        id: u16,
        /// Flags and fragment offset as on the wire (0x2000 = MF, low 13
        /// bits = offset in 8-byte units). DF (0x4000) is not a fragment.
        frag: u16,
        /// Option bytes, a multiple of 4 long (IHL follows).
        options: Vec<u8>,
        /// Overrides the IHL nibble (for malformed fixtures).
        ihl: Option<u8>,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        /// Extension headers before the transport: (type, body). The body
        /// is padded to the header's 8-byte unit.
        ext: Vec<(u8, Vec<u8>)>,
    },
    /// Not IP: an EtherType and raw bytes (ARP, LLDP...).
    Raw { ethertype: u16, bytes: Vec<u8> },
}

/// The transport layer.
#[derive(Clone, Debug)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
        /// Send checksum 0: "none" over IPv4; over IPv6 invalid except for
        /// zero-checksum tunnels (RFC 6936), and left to the receiver.
        no_checksum: bool,
    },
    /// ICMP or ICMPv6 (after the family): type, code, 4 bytes of "rest".
    Icmp { ty: u8, code: u8, rest: [u8; 4] },
    /// Another IP protocol number, payload only.
    Other { proto: u8 },
}

/// One frame, every field visible so a fixture can say what it varies.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// 802.1Q tag control information (VLAN id in the low 12 bits).
    pub vlan: Option<u16>,
    pub net: Net,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

pub const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
pub const BALANCER_MAC: Mac = [0x02, 0, 0, 0, 0, 0xfe];

fn sock(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("fixture address {s:?}: {e}"))
}

fn v4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => panic!("{a} is not IPv4"),
    }
}

fn v6(a: SocketAddr) -> Ipv6Addr {
    match a.ip() {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("{a} is not IPv6"),
    }
}

impl Frame {
    fn ip(src: SocketAddr, dst: SocketAddr, transport: Transport) -> Self {
        let net = match (src.ip(), dst.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Net::V4 {
                src: v4(src),
                dst: v4(dst),
                ttl: 64,
                id: 0x1234,
                frag: 0x4000,
                options: Vec::new(),
                ihl: None,
            },
            (IpAddr::V6(_), IpAddr::V6(_)) => Net::V6 {
                src: v6(src),
                dst: v6(dst),
                hop_limit: 64,
                ext: Vec::new(),
            },
            _ => panic!("mixed families {src} -> {dst}"),
        };
        Frame {
            src_mac: CLIENT_MAC,
            dst_mac: BALANCER_MAC,
            vlan: None,
            net,
            transport,
            payload: b"hello".to_vec(),
        }
    }

    /// A TCP segment (ACK|PSH with a short payload) from `src` to `dst`
    /// ("a.b.c.d:port" or "[v6]:port"; IPv4 and IPv6 alike).
    pub fn tcp(src: &str, dst: &str) -> Self {
        let (s, d) = (sock(src), sock(dst));
        Self::ip(
            s,
            d,
            Transport::Tcp {
                sport: s.port(),
                dport: d.port(),
                seq: 0x0102_0304,
                flags: TCP_ACK | TCP_PSH,
            },
        )
    }

    /// Alias that reads better in IPv4 fixtures.
    pub fn tcp4(src: &str, dst: &str) -> Self {
        Self::tcp(src, dst)
    }

    pub fn udp(src: &str, dst: &str) -> Self {
        let (s, d) = (sock(src), sock(dst));
        Self::ip(
            s,
            d,
            Transport::Udp {
                sport: s.port(),
                dport: d.port(),
                no_checksum: false,
            },
        )
    }

    /// ICMP (IPv4) or ICMPv6 between two addresses (ports ignored).
    pub fn icmp(src: &str, dst: &str, ty: u8, code: u8) -> Self {
        Self::ip(
            sock(src),
            sock(dst),
            Transport::Icmp {
                ty,
                code,
                rest: [0; 4],
            },
        )
    }

    /// A non-IP frame.
    pub fn raw(ethertype: u16, bytes: &[u8]) -> Self {
        Frame {
            src_mac: CLIENT_MAC,
            dst_mac: BALANCER_MAC,
            vlan: None,
            net: Net::Raw {
                ethertype,
                bytes: bytes.to_vec(),
            },
            transport: Transport::Other { proto: 0 },
            payload: Vec::new(),
        }
    }

    /// An ARP request "who has `target`? tell `sender`".
    pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Self {
        let mut b = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
        b.extend_from_slice(&CLIENT_MAC);
        b.extend_from_slice(&sender.octets());
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&target.octets());
        let mut f = Self::raw(ETH_P_ARP, &b);
        f.dst_mac = [0xff; 6];
        f
    }

    pub fn macs(mut self, src: Mac, dst: Mac) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn vlan(mut self, tci: u16) -> Self {
        self.vlan = Some(tci);
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, t: u8) -> Self {
        match &mut self.net {
            Net::V4 { ttl, .. } => *ttl = t,
            Net::V6 { hop_limit, .. } => *hop_limit = t,
            Net::Raw { .. } => panic!("no TTL in a non-IP frame"),
        }
        self
    }

    pub fn tcp_flags(mut self, f: u8) -> Self {
        match &mut self.transport {
            Transport::Tcp { flags, .. } => *flags = f,
            t => panic!("tcp_flags on {t:?}"),
        }
        self
    }

    /// UDP with checksum 0 (IPv4 and IPv6).
    pub fn udp_no_checksum(mut self) -> Self {
        match &mut self.transport {
            Transport::Udp { no_checksum, .. } => *no_checksum = true,
            t => panic!("udp_no_checksum on {t:?}"),
        }
        self
    }

    /// IPv4 options (padded with end-of-list to a multiple of 4).
    pub fn ipv4_options(mut self, opts: &[u8]) -> Self {
        match &mut self.net {
            Net::V4 { options, .. } => {
                *options = opts.to_vec();
                while options.len() % 4 != 0 {
                    options.push(0);
                }
            }
            n => panic!("ipv4_options on {n:?}"),
        }
        self
    }

    /// IPv4 fragment: more-fragments flag and offset in 8-byte units.
    pub fn ipv4_fragment(mut self, more: bool, offset: u16) -> Self {
        match &mut self.net {
            Net::V4 { frag, .. } => *frag = (if more { 0x2000 } else { 0 }) | (offset & 0x1fff),
            n => panic!("ipv4_fragment on {n:?}"),
        }
        self
    }

    /// Forces the IHL nibble (malformed headers).
    pub fn ihl(mut self, v: u8) -> Self {
        match &mut self.net {
            Net::V4 { ihl, .. } => *ihl = Some(v),
            n => panic!("ihl on {n:?}"),
        }
        self
    }

    /// Adds an IPv6 extension header (type, body without the next-header and
    /// length bytes).
    pub fn ipv6_ext(mut self, ty: u8, body: &[u8]) -> Self {
        match &mut self.net {
            Net::V6 { ext, .. } => ext.push((ty, body.to_vec())),
            n => panic!("ipv6_ext on {n:?}"),
        }
        self
    }

    /// IPv6 fragment header (offset in 8-byte units).
    pub fn ipv6_fragment(self, more: bool, offset: u16) -> Self {
        let off = (offset << 3) | u16::from(more);
        let mut body = off.to_be_bytes().to_vec();
        body.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
        self.ipv6_ext(44, &body)
    }

    /// Replaces the source address and port ("a.b.c.d:port" / "[v6]:port").
    pub fn src(mut self, a: &str) -> Self {
        self.set_end(sock(a), true);
        self
    }

    /// Replaces the destination address and port.
    pub fn dst(mut self, a: &str) -> Self {
        self.set_end(sock(a), false);
        self
    }

    fn set_end(&mut self, a: SocketAddr, is_src: bool) {
        match (&mut self.net, a.ip()) {
            (Net::V4 { src, dst, .. }, IpAddr::V4(ip)) => *(if is_src { src } else { dst }) = ip,
            (Net::V6 { src, dst, .. }, IpAddr::V6(ip)) => *(if is_src { src } else { dst }) = ip,
            (n, ip) => panic!("cannot put {ip} into {n:?}"),
        }
        match &mut self.transport {
            Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport, .. } => {
                *(if is_src { sport } else { dport }) = a.port()
            }
            _ => {}
        }
    }

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn ttl_value(&self) -> u8 {
        match &self.net {
            Net::V4 { ttl, .. } => *ttl,
            Net::V6 { hop_limit, .. } => *hop_limit,
            Net::Raw { .. } => panic!("no TTL in a non-IP frame"),
        }
    }

    fn proto(&self) -> u8 {
        match (&self.transport, &self.net) {
            (Transport::Tcp { .. }, _) => PROTO_TCP,
            (Transport::Udp { .. }, _) => PROTO_UDP,
            (Transport::Icmp { .. }, Net::V6 { .. }) => PROTO_ICMPV6,
            (Transport::Icmp { .. }, _) => PROTO_ICMP,
            (Transport::Other { proto }, _) => *proto,
        }
    }

    /// Transport header + payload, checksum included.
    fn l4(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let check_at = match self.transport {
            Transport::Tcp {
                sport,
                dport,
                seq,
                flags,
            } => {
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&0u32.to_be_bytes());
                b.extend_from_slice(&[(TCP_HLEN as u8 / 4) << 4, flags]);
                b.extend_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 0]);
                Some(16)
            }
            Transport::Udp { sport, dport, .. } => {
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&((UDP_HLEN + self.payload.len()) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                Some(6)
            }
            Transport::Icmp { ty, code, rest } => {
                b.extend_from_slice(&[ty, code, 0, 0]);
                b.extend_from_slice(&rest);
                Some(2)
            }
            Transport::Other { .. } => None,
        };
        b.extend_from_slice(&self.payload);
        let Some(at) = check_at else { return b };
        let no_checksum = matches!(
            self.transport,
            Transport::Udp {
                no_checksum: true,
                ..
            }
        );
        if no_checksum {
            return b;
        }
        let mut sum = match (&self.transport, &self.net) {
            // ICMPv4 has no pseudo-header.
            (Transport::Icmp { .. }, Net::V4 { .. }) => 0,
            _ => self.pseudo_header_sum(b.len()),
        };
        sum += ones_sum(&b);
        let mut c = !fold(sum);
        if c == 0 && matches!(self.transport, Transport::Udp { .. }) {
            c = 0xffff;
        }
        b[at..at + 2].copy_from_slice(&c.to_be_bytes());
        b
    }

    fn pseudo_header_sum(&self, l4_len: usize) -> u32 {
        let proto = self.proto();
        match &self.net {
            Net::V4 { src, dst, .. } => {
                let mut p = Vec::new();
                p.extend_from_slice(&src.octets());
                p.extend_from_slice(&dst.octets());
                p.extend_from_slice(&[0, proto]);
                p.extend_from_slice(&(l4_len as u16).to_be_bytes());
                ones_sum(&p)
            }
            Net::V6 { src, dst, .. } => {
                let mut p = Vec::new();
                p.extend_from_slice(&src.octets());
                p.extend_from_slice(&dst.octets());
                p.extend_from_slice(&(l4_len as u32).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, proto]);
                ones_sum(&p)
            }
            Net::Raw { .. } => 0,
        }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(tci) = self.vlan {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        match &self.net {
            Net::Raw { ethertype, bytes } => {
                f.extend_from_slice(&ethertype.to_be_bytes());
                f.extend_from_slice(bytes);
            }
            Net::V4 {
                src,
                dst,
                ttl,
                id,
                frag,
                options,
                ihl,
            } => {
                assert!(
                    options.len() % 4 == 0,
                    "IPv4 options must fill 32-bit words"
                );
                f.extend_from_slice(&ETH_P_IP.to_be_bytes());
                let l4 = self.l4();
                let hlen = IPV4_HLEN + options.len();
                let ihl = ihl.unwrap_or((hlen / 4) as u8);
                let mut h = vec![0x40 | (ihl & 0x0f), 0];
                h.extend_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&frag.to_be_bytes());
                h.extend_from_slice(&[*ttl, self.proto(), 0, 0]);
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                h.extend_from_slice(options);
                let c = !fold(ones_sum(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
                f.extend_from_slice(&l4);
            }
            Net::V6 {
                src,
                dst,
                hop_limit,
                ext,
            } => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                let l4 = self.l4();
                // Extension headers: each names the next; the last names the
                // transport.
                let mut exts = Vec::new();
                for (i, (_, body)) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).map(|e| e.0).unwrap_or(self.proto());
                    let mut e = vec![next, 0];
                    e.extend_from_slice(body);
                    while e.len() % 8 != 0 {
                        e.push(0);
                    }
                    // Length in 8-byte units beyond the first (fragment: 0).
                    e[1] = (e.len() / 8 - 1) as u8;
                    exts.extend_from_slice(&e);
                }
                let first = ext.first().map(|e| e.0).unwrap_or(self.proto());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&((exts.len() + l4.len()) as u16).to_be_bytes());
                f.extend_from_slice(&[first, *hop_limit]);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&dst.octets());
                f.extend_from_slice(&exts);
                f.extend_from_slice(&l4);
            }
        }
        f
    }

    /// Offset of the network header in the built frame.
    pub fn l3_offset(&self) -> usize {
        ETH_HLEN + if self.vlan.is_some() { VLAN_HLEN } else { 0 }
    }

    /// Offset of the transport header in the built frame.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset()
            + match &self.net {
                Net::V4 { options, .. } => IPV4_HLEN + options.len(),
                Net::V6 { ext, .. } => {
                    IPV6_HLEN
                        + ext
                            .iter()
                            .map(|(_, b)| (2 + b.len()).div_ceil(8) * 8)
                            .sum::<usize>()
                }
                Net::Raw { .. } => 0,
            }
    }
}

/// One's complement sum of big-endian 16-bit words (odd byte padded).
fn ones_sum(b: &[u8]) -> u32 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(w));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Checks every checksum of a built or captured frame (IPv4 header, TCP,
/// UDP, ICMP, ICMPv6; IPv6 with extension headers only up to the first).
/// UDP checksum 0 passes in both families (see `udp_no_checksum`). Returns
/// what is wrong, if anything; a frame too short for what its headers
/// announce is wrong too (never a panic: the fuzzer feeds it anything).
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let short = || "shorter than its headers say".to_string();
    let mut off = ETH_HLEN;
    let at = |i: usize| frame.get(i).copied().ok_or_else(short);
    let mut ethertype = u16::from_be_bytes([at(12)?, at(13)?]);
    if ethertype == ETH_P_8021Q {
        ethertype = u16::from_be_bytes([at(16)?, at(17)?]);
        off += VLAN_HLEN;
    }
    let (proto, l4, pseudo) = match ethertype {
        ETH_P_IP => {
            let h = frame
                .get(off..)
                .filter(|h| h.len() >= IPV4_HLEN)
                .ok_or_else(short)?;
            let hlen = usize::from(h[0] & 0x0f) * 4;
            let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if hlen < IPV4_HLEN || tot < hlen || tot > h.len() {
                return Err(short());
            }
            if fold(ones_sum(&h[..hlen])) != 0xffff {
                return Err("IPv4 header checksum".into());
            }
            let proto = h[9];
            let l4 = &h[hlen..tot];
            let min = match proto {
                PROTO_TCP => TCP_HLEN,
                PROTO_UDP => UDP_HLEN,
                _ => 0,
            };
            if l4.len() < min {
                return Err(short());
            }
            let mut p = Vec::new();
            p.extend_from_slice(&h[12..20]);
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            if proto == PROTO_UDP && l4[6..8] == [0, 0] {
                return Ok(());
            }
            let pseudo = if proto == PROTO_ICMP { 0 } else { ones_sum(&p) };
            (proto, l4, pseudo)
        }
        ETH_P_IPV6 => {
            let h = frame
                .get(off..)
                .filter(|h| h.len() >= IPV6_HLEN)
                .ok_or_else(short)?;
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let proto = h[6];
            let l4 = h.get(IPV6_HLEN..IPV6_HLEN + plen).ok_or_else(short)?;
            let min = match proto {
                PROTO_TCP => TCP_HLEN,
                PROTO_UDP => UDP_HLEN,
                _ => 0,
            };
            if l4.len() < min {
                return Err(short());
            }
            if proto == PROTO_UDP && l4[6..8] == [0, 0] {
                return Ok(());
            }
            let mut p = Vec::new();
            p.extend_from_slice(&h[8..40]);
            p.extend_from_slice(&(l4.len() as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
            (proto, l4, ones_sum(&p))
        }
        _ => return Ok(()),
    };
    if matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6)
        && fold(pseudo + ones_sum(l4)) != 0xffff
    {
        return Err(format!("protocol {proto} checksum"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_carry_valid_checksums() {
        let frames = [
            Frame::tcp("10.0.0.1:1000", "10.0.0.2:80").build(),
            Frame::udp("10.0.0.1:1000", "10.0.0.2:53")
                .payload(b"odd")
                .build(),
            Frame::tcp("[2001:db8::1]:1000", "[2001:db8::2]:80").build(),
            Frame::udp("[2001:db8::1]:1000", "[2001:db8::2]:53").build(),
            Frame::icmp("10.0.0.1:0", "10.0.0.2:0", 8, 0)
                .vlan(7)
                .build(),
            Frame::icmp("[2001:db8::1]:0", "[2001:db8::2]:0", 128, 0).build(),
            Frame::tcp("10.0.0.1:1000", "10.0.0.2:80")
                .ipv4_options(&[1, 1, 1, 0])
                .build(),
        ];
        for f in &frames {
            verify_checksums(f).unwrap_or_else(|e| panic!("{e} wrong in {f:02x?}"));
        }
        // A flipped payload bit is caught.
        let mut bad = frames[0].clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(verify_checksums(&bad).is_err());
    }

    #[test]
    fn layout_offsets_match_the_bytes() {
        let f = Frame::udp("10.0.0.1:1000", "10.0.0.2:53")
            .vlan(100)
            .ipv4_options(&[1, 1, 1, 1]);
        let b = f.build();
        assert_eq!(&b[12..14], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(b[f.l3_offset()], 0x46);
        assert_eq!(
            &b[f.l4_offset() + 2..f.l4_offset() + 4],
            &53u16.to_be_bytes()
        );
        let f6 = Frame::tcp("[2001:db8::1]:1000", "[2001:db8::2]:80").ipv6_fragment(true, 0);
        let b6 = f6.build();
        assert_eq!(b6[f6.l3_offset() + 6], 44);
        assert_eq!(
            &b6[f6.l4_offset() + 2..f6.l4_offset() + 4],
            &80u16.to_be_bytes()
        );
    }
}
