//! A seeded packet fuzzer of the real XDP object, through BPF_PROG_TEST_RUN
//! in the fixture world (`common/xdp_world.rs`: seed 001's balancer, its
//! NAT and DR services, reverse-NAT entries and neighbours).
//!
//! Frames: valid service requests and real-server replies of every service
//! kind (NAT/DR, TCP/UDP, IPv4/IPv6, tagged, with IPv4 options, TTL 1...),
//! foreign TCP/UDP, ICMP/ICMPv6 (random, and errors quoting a service's
//! reply or a client's packet to a NAT real server, their quotes cut at
//! random), ARP and other EtherTypes; then, for most of
//! them, one mutation: a byte changed, a header byte changed, a truncation,
//! or the frame replaced by random bytes behind a chosen EtherType. Each
//! arrives on the client or the server side at random.
//!
//! Properties, for every frame:
//! - the verdict is PASS, DROP, TX or REDIRECT, never ABORTED;
//! - the output is as long as the input, and equals it byte for byte
//!   unless the frame is a service packet or the packet of a NAT real
//!   server (PASS means untouched, except NAT's "rewritten, to the kernel");
//!   an ICMP error counts as the packet it is about: a service packet when
//!   it is addressed to a VIP and quotes that VIP:port's reply, a NAT real
//!   server's when it is addressed to the client it quotes sending to the
//!   real server's address:port (read independently of the program: error
//!   type, quoted version and header length, no later fragment, TCP/UDP
//!   ports inside the outer IP packet);
//! - a changed frame differs only in the bytes a rewrite may touch (MACs,
//!   addresses, ports, TTL / hop limit, the IPv4 header and TCP/UDP
//!   checksums; for ICMP errors the ICMP checksum and the quote's
//!   addresses, ports and IPv4 header checksum), and when the input's
//!   checksums were valid the output's are (IPv4 header, TCP, UDP, ICMP,
//!   the quoted IPv4 header; UDP checksum 0 stays 0);
//! - DROP only for service packets; TX / REDIRECT only for service packets
//!   and for NAT real servers' packets arriving on the server side (no
//!   reflector);
//! - the verdict counters grow by exactly what was observed.
//!
//! The seed and size are fixed so that `cargo xtask test` runs the same
//! frames every time, in well under a minute; `LB_FUZZ_SEED` and
//! `LB_FUZZ_FRAMES` choose others for a longer run.

#[path = "common/xdp_world.rs"]
mod xdp_world;

use std::collections::HashSet;

use aya::maps::{HashMap, MapData};
use lb_common::{names, verdict, EndpointKey, ReverseNat, Service, PROTO_TCP, PROTO_UDP};
use lb_tests::packet::{
    verify_checksums, Frame, ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ICMP_HLEN,
    IPV4_HLEN, IPV6_HLEN, PROTO_ICMP, PROTO_ICMPV6, TCP_HLEN, UDP_HLEN,
};
use xdp_world::*;

const DEFAULT_SEED: u64 = 0x1b_5eed_2026;
const DEFAULT_FRAMES: u64 = 200_000;

/// splitmix64: small, seedable, good enough to pick frames.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------
// Frames.

/// Services of the fixture world: (VIP:port, TCP?).
const SERVICES: &[(&str, bool)] = &[
    ("192.168.253.120:80", true),
    ("192.168.253.120:53", false),
    ("[2001:db8:253::120]:80", true),
    ("[2001:db8:253::120]:53", false),
    ("192.168.253.130:389", true),
    ("[2001:db8:253::130]:389", true),
    ("192.168.253.120:81", true),
    ("192.168.253.120:82", true),
    ("192.168.253.120:83", true),
    ("192.168.253.131:389", true),
    ("192.168.253.120:84", true),
];

/// NAT real servers with a reverse-NAT entry: (address:port, TCP?).
const REALS: &[(&str, bool)] = &[
    ("172.16.14.121:80", true),
    ("172.16.14.122:8080", true),
    ("172.16.14.123:80", true),
    ("172.16.14.121:5353", false),
    ("172.16.14.122:5353", false),
    ("[2001:db8:14::121]:80", true),
    ("[2001:db8:14::122]:8080", true),
    ("[2001:db8:14::121]:5353", false),
];

fn is_v6(addr: &str) -> bool {
    addr.starts_with('[')
}

fn client(rng: &mut Rng, v6: bool) -> String {
    let port = 1024 + rng.below(64000);
    match (v6, rng.below(3)) {
        (false, 0) => format!("192.168.253.1:{port}"),
        (false, 1) => format!(
            "10.{}.{}.{}:{port}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        (false, _) => format!("172.16.14.{}:{port}", 1 + rng.below(254)),
        (true, 0) => format!("[2001:db8:253::1]:{port}"),
        (true, 1) => format!("[2001:db8:99::{:x}]:{port}", 1 + rng.below(0xfffe)),
        (true, _) => format!("[2001:db8:14::{:x}]:{port}", 1 + rng.below(0xfffe)),
    }
}

fn l4(tcp: bool, src: &str, dst: &str) -> Frame {
    if tcp {
        Frame::tcp(src, dst)
    } else {
        Frame::udp(src, dst)
    }
}

/// Optional variations every IP frame may get.
fn vary(rng: &mut Rng, mut f: Frame, v6: bool, tcp: bool) -> Frame {
    let len = rng.below(80) as usize;
    f = f.payload(&rng.bytes(len));
    if rng.chance(10) {
        f = f.ttl(*rng.pick(&[0, 1, 2, 255]));
    }
    if tcp && rng.chance(30) {
        f = f.tcp_flags(rng.next() as u8);
    }
    if !tcp && rng.chance(10) {
        f = f.udp_no_checksum();
    }
    if rng.chance(8) {
        f = f.vlan(rng.below(4096) as u16);
    }
    if !v6 && rng.chance(8) {
        let words = 1 + rng.below(10) as usize;
        f = f.ipv4_options(&rng.bytes(4 * words));
    }
    if rng.chance(4) {
        f = if v6 {
            f.ipv6_fragment(rng.chance(50), rng.below(100) as u16)
        } else {
            f.ipv4_fragment(rng.chance(50), rng.below(100) as u16)
        };
    }
    if v6 && rng.chance(3) {
        f = f.ipv6_ext(0, &rng.bytes(6));
    }
    f
}

/// A frame before mutation, and whether it arrives on the server side.
fn base_frame(rng: &mut Rng) -> (Vec<u8>, bool) {
    let server_side = rng.chance(50);
    let frame = match rng.below(10) {
        // Requests to a service (both sides: a request on the server side
        // is just as much a request).
        0..=3 => {
            let (vip, tcp) = *rng.pick(SERVICES);
            let v6 = is_v6(vip);
            let c = client(rng, v6);
            vary(rng, l4(tcp, &c, vip), v6, tcp)
        }
        // Packets of NAT real servers (replies, or forged ones).
        4..=6 => {
            let (real, tcp) = *rng.pick(REALS);
            let v6 = is_v6(real);
            let c = client(rng, v6);
            vary(rng, l4(tcp, real, &c), v6, tcp)
        }
        // Foreign TCP/UDP.
        7 => {
            let v6 = rng.chance(50);
            let tcp = rng.chance(50);
            let (a, b) = (client(rng, v6), client(rng, v6));
            vary(rng, l4(tcp, &a, &b), v6, tcp)
        }
        // ICMP errors about a service's reply or a NAT real server's
        // request, quotes cut at random.
        8 if rng.chance(67) => icmp_error(rng),
        // ICMP / ICMPv6.
        8 => {
            let v6 = rng.chance(50);
            let (src, dst) = if v6 {
                ("[2001:db8:14::121]:0", "[2001:db8:253::120]:0")
            } else {
                ("172.16.14.121:0", "192.168.253.120:0")
            };
            let len = rng.below(60) as usize;
            Frame::icmp(src, dst, rng.next() as u8, rng.next() as u8).payload(&rng.bytes(len))
        }
        // Not IP.
        _ => {
            let any = rng.next() as u16;
            let ethertype = *rng.pick(&[ETH_P_ARP, 0x88cc, any]);
            let len = rng.below(64) as usize;
            Frame::raw(ethertype, &rng.bytes(len))
        }
    };
    (frame.build(), server_side)
}

/// `addr:port` -> `addr:0`, for `Frame::icmp`.
fn no_port(sock: &str) -> String {
    let (addr, _) = sock.rsplit_once(':').unwrap();
    format!("{addr}:0")
}

/// An ICMP error about a reply of a service (from a router on the way to
/// the client, to the VIP) or about a client's packet to a NAT real
/// server (from the real server, to the client).
fn icmp_error(rng: &mut Rng) -> Frame {
    let about_reply = rng.chance(50);
    let (sender, to, quoted, v6) = if about_reply {
        let (vip, tcp) = *rng.pick(SERVICES);
        let v6 = is_v6(vip);
        let c = client(rng, v6);
        let router = client(rng, v6);
        (no_port(&router), no_port(vip), l4(tcp, vip, &c), v6)
    } else {
        let (real, tcp) = *rng.pick(REALS);
        let v6 = is_v6(real);
        let c = client(rng, v6);
        (no_port(real), no_port(&c), l4(tcp, &c, real), v6)
    };
    let quoted = quoted.build();
    let ip = &quoted[ETH_HLEN..];
    // Usually whole (Linux quotes up to 576 / 1280 bytes), sometimes cut.
    let cut = if rng.chance(70) {
        ip.len()
    } else {
        rng.below(ip.len() as u64 + 1) as usize
    };
    let (ty, code) = if v6 {
        *rng.pick(&[(1, 4), (2, 0), (3, 0), (4, 0)])
    } else {
        *rng.pick(&[(3, 4), (3, 3), (11, 0), (12, 0)])
    };
    Frame::icmp(&sender, &to, ty, code).payload(&ip[..cut])
}

/// At most one mutation.
fn mutate(rng: &mut Rng, mut f: Vec<u8>) -> Vec<u8> {
    match rng.below(10) {
        0..=3 => {}
        4 | 5 => {
            let i = rng.below(f.len() as u64) as usize;
            f[i] = rng.next() as u8;
        }
        6 => {
            // A header byte (Ethernet, IP, transport), where parsing decides.
            let i = rng.below(f.len().min(80) as u64) as usize;
            f[i] = rng.next() as u8;
        }
        7 | 8 => {
            let len = ETH_HLEN + rng.below((f.len() - ETH_HLEN + 1) as u64) as usize;
            f.truncate(len);
        }
        _ => {
            let any = rng.next() as u16;
            let ethertype = *rng.pick(&[ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, any]);
            let len = rng.below(120) as usize;
            let mut r = f[..12].to_vec();
            r.extend_from_slice(&ethertype.to_be_bytes());
            if rng.chance(50) {
                // Keep a plausible version nibble.
                r.push(if ethertype == ETH_P_IPV6 { 0x60 } else { 0x45 });
            }
            r.extend_from_slice(&rng.bytes(len));
            f = r;
        }
    }
    f
}

// ---------------------------------------------------------------------------
// The oracle: what the frame is, read independently of the program.

struct Parsed {
    key_dst: EndpointKey,
    key_src: EndpointKey,
    /// Byte ranges a rewrite may change.
    mutable: Vec<std::ops::Range<usize>>,
}

fn words(bytes: &[u8]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in bytes.chunks(4).enumerate() {
        w[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

/// A whole, unfragmented TCP/UDP packet over IPv4/IPv6 (at most one VLAN
/// tag, IPv4 options allowed, no IPv6 extension header).
fn parse(f: &[u8]) -> Option<Parsed> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    if ethertype == ETH_P_8021Q {
        ethertype = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
        l3 += 4;
    }
    let ip = f.get(l3..)?;
    let (family, proto, src, dst, l4, mut mutable) = match ethertype {
        ETH_P_IP => {
            if ip.len() < IPV4_HLEN || ip[0] >> 4 != 4 {
                return None;
            }
            let hlen = usize::from(ip[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if hlen < IPV4_HLEN || frag != 0 {
                return None;
            }
            (
                4u8,
                ip[9],
                words(&[&ip[12..16], &[0; 12]].concat()),
                words(&[&ip[16..20], &[0; 12]].concat()),
                l3 + hlen,
                vec![l3 + 8..l3 + 9, l3 + 10..l3 + 20],
            )
        }
        ETH_P_IPV6 => {
            if ip.len() < IPV6_HLEN || ip[0] >> 4 != 6 {
                return None;
            }
            (
                6u8,
                ip[6],
                words(&ip[8..24]),
                words(&ip[24..40]),
                l3 + IPV6_HLEN,
                // Hop limit and both addresses.
                vec![l3 + 7..l3 + 8, l3 + 8..l3 + 40],
            )
        }
        _ => return None,
    };
    if (proto == PROTO_ICMP && family == 4) || (proto == PROTO_ICMPV6 && family == 6) {
        let ip_end = match family {
            4 => l3 + usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            _ => l3 + IPV6_HLEN + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
        };
        return parse_icmp_error(f, family, dst, l4, ip_end.min(f.len()), mutable);
    }
    let (min, check) = match proto {
        PROTO_TCP => (TCP_HLEN, 16),
        PROTO_UDP => (UDP_HLEN, 6),
        _ => return None,
    };
    let t = f.get(l4..l4 + min)?;
    mutable.push(0..12);
    mutable.push(l4..l4 + 4);
    mutable.push(l4 + check..l4 + check + 2);
    let key = |addr, port: &[u8]| EndpointKey {
        addr,
        port_be: u16::from_ne_bytes([port[0], port[1]]),
        proto,
        family,
    };
    Some(Parsed {
        key_src: key(src, &t[0..2]),
        key_dst: key(dst, &t[2..4]),
        mutable,
    })
}

/// An ICMP error whose quote is a TCP/UDP packet sent by the error's
/// destination: `key_dst` is the quoted source (a VIP:port if it is about
/// a service's reply), `key_src` the quoted destination (a NAT real
/// server's address:port if it is about a client's request to it).
fn parse_icmp_error(
    f: &[u8],
    family: u8,
    outer_dst: [u32; 4],
    l4: usize,
    ip_end: usize,
    mut mutable: Vec<std::ops::Range<usize>>,
) -> Option<Parsed> {
    let ty = *f.get(l4)?;
    let error = match family {
        4 => matches!(ty, 3 | 11 | 12),
        _ => matches!(ty, 1..=4),
    };
    if !error {
        return None;
    }
    let q = l4 + ICMP_HLEN;
    let quote = f.get(q..ip_end)?;
    let (proto, src, dst, ql4, addrs) = if family == 4 {
        let h = quote.get(..IPV4_HLEN)?;
        let hlen = usize::from(h[0] & 0x0f) * 4;
        let offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        if h[0] >> 4 != 4 || hlen < IPV4_HLEN || offset != 0 {
            return None;
        }
        (
            h[9],
            words(&[&h[12..16], &[0; 12]].concat()),
            words(&[&h[16..20], &[0; 12]].concat()),
            q + hlen,
            // Header checksum and both addresses.
            q + 10..q + 20,
        )
    } else {
        let h = quote.get(..IPV6_HLEN)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        (
            h[6],
            words(&h[8..24]),
            words(&h[24..40]),
            q + IPV6_HLEN,
            q + 8..q + 40,
        )
    };
    if !matches!(proto, PROTO_TCP | PROTO_UDP) || src != outer_dst || ql4 + 4 > ip_end {
        return None;
    }
    let ports = &f[ql4..ql4 + 4];
    mutable.push(0..12);
    mutable.push(l4 + 2..l4 + 4);
    mutable.push(addrs);
    mutable.push(ql4..ql4 + 4);
    let key = |addr, port: &[u8]| EndpointKey {
        addr,
        port_be: u16::from_ne_bytes([port[0], port[1]]),
        proto,
        family,
    };
    Some(Parsed {
        key_dst: key(src, &ports[0..2]),
        key_src: key(dst, &ports[2..4]),
        mutable,
    })
}

/// Whether the IPv4 header an ICMP error quotes (if it is one, over IPv4,
/// with a whole quoted header) has a valid checksum; true otherwise.
fn quoted_ipv4_header_ok(f: &[u8]) -> bool {
    let Some(ip) = f.get(ETH_HLEN..) else {
        return true;
    };
    if f.get(12..14) != Some(&[0x08, 0x00]) || ip.len() < IPV4_HLEN || ip[9] != PROTO_ICMP {
        return true;
    }
    let q = usize::from(ip[0] & 0x0f) * 4 + ICMP_HLEN;
    let Some(h) = ip.get(q..) else { return true };
    let hlen = usize::from(h.first().map_or(0, |b| b & 0x0f)) * 4;
    match h.get(..hlen) {
        Some(h) if hlen >= IPV4_HLEN => lb_common::csum::checksum(h) == 0,
        _ => true,
    }
}

struct Oracle {
    services: HashSet<EndpointKey>,
    reals: HashSet<EndpointKey>,
}

impl Oracle {
    fn new(lb: &Lb) -> Self {
        let services: HashMap<&MapData, EndpointKey, Service> =
            HashMap::try_from(lb.ebpf.map(names::SERVICES).unwrap()).unwrap();
        let reverse: HashMap<&MapData, EndpointKey, ReverseNat> =
            HashMap::try_from(lb.ebpf.map(names::REVERSE_NAT).unwrap()).unwrap();
        let oracle = Oracle {
            services: services.keys().map(Result::unwrap).collect(),
            reals: reverse.keys().map(Result::unwrap).collect(),
        };
        assert_eq!(oracle.services.len(), SERVICES.len(), "fixture services");
        assert_eq!(
            oracle.reals.len(),
            REALS.len(),
            "fixture reverse-NAT entries"
        );
        oracle
    }

    /// What is wrong with the program's answer, if anything.
    fn check(&self, input: &[u8], server_side: bool, action: u32, out: &[u8]) -> Option<String> {
        if !matches!(
            action,
            verdict::PASS | verdict::DROP | verdict::TX | verdict::REDIRECT
        ) {
            return Some(format!("verdict {action}"));
        }
        if out.len() != input.len() {
            return Some(format!("length {} -> {}", input.len(), out.len()));
        }
        let parsed = parse(input);
        let service = parsed
            .as_ref()
            .is_some_and(|p| self.services.contains(&p.key_dst));
        let real = parsed
            .as_ref()
            .is_some_and(|p| self.reals.contains(&p.key_src));
        let changed = out != input;
        if changed && !(service || real) {
            return Some(
                "changed a frame that is neither a service packet nor a real server's".into(),
            );
        }
        if action == verdict::DROP && !service {
            return Some("dropped a frame that is no service packet".into());
        }
        let sent = matches!(action, verdict::TX | verdict::REDIRECT);
        if sent && !(service || (real && server_side)) {
            return Some(if real {
                "sent on a real server's packet that arrived on the client side (reflector)".into()
            } else {
                "sent on a frame that is neither a service packet nor a reply".into()
            });
        }
        if changed {
            let p = parsed.as_ref()?;
            if let Some(i) = (0..input.len())
                .find(|i| input[*i] != out[*i] && !p.mutable.iter().any(|r| r.contains(i)))
            {
                return Some(format!("byte {i} changed outside the rewritable fields"));
            }
            if verify_checksums(input).is_ok() {
                if let Err(e) = verify_checksums(out) {
                    return Some(format!("valid checksums in, {e} wrong out"));
                }
            }
            if quoted_ipv4_header_ok(input) && !quoted_ipv4_header_ok(out) {
                return Some("valid quoted IPv4 header checksum in, wrong out".into());
            }
        }
        None
    }
}

/// An untagged ICMP / ICMPv6 frame (the ICMP errors `icmp_error` makes).
fn is_icmp(f: &[u8]) -> bool {
    match (f.get(12..14), f.get(ETH_HLEN + 9), f.get(ETH_HLEN + 6)) {
        (Some([0x08, 0x00]), Some(&p), _) => p == PROTO_ICMP,
        (Some([0x86, 0xdd]), _, Some(&p)) => p == PROTO_ICMPV6,
        _ => false,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join("")
}

#[test]
fn random_and_mutated_frames_keep_the_edge_rules() {
    let seed = env_u64("LB_FUZZ_SEED", DEFAULT_SEED);
    let frames = env_u64("LB_FUZZ_FRAMES", DEFAULT_FRAMES);
    let lb = world();
    let oracle = Oracle::new(&lb);
    let mut rng = Rng(seed);
    let verdicts_before = lb.verdicts();
    let mut seen = [0u64; verdict::COUNT as usize];
    let mut failures = Vec::new();
    let mut changed = 0u64;
    let mut icmp_changed = 0u64;
    for n in 0..frames {
        let (base, server_side) = base_frame(&mut rng);
        let input = mutate(&mut rng, base);
        let ingress = if server_side {
            lb.net.eth1
        } else {
            lb.net.eth0
        };
        let (action, out) = lb.run(ingress, &input);
        // The first test's PASS (not ours by address) is not counted.
        if !lb.first_test_passes(&input) {
            if let Some(slot) = seen.get_mut(action as usize) {
                *slot += 1;
            }
        } else if action != verdict::PASS || out != input {
            failures.push(format!(
                "- frame {n}: not ours by address, yet {} or changed\n    in:  {}",
                verdict::NAMES.get(action as usize).unwrap_or(&"?"),
                hex(&input)
            ));
        }
        changed += u64::from(out != input);
        icmp_changed += u64::from(out != input && is_icmp(&input));
        if let Some(why) = oracle.check(&input, server_side, action, &out) {
            if failures.len() < 20 {
                failures.push(format!(
                    "- frame {n} ({} side, verdict {}): {why}\n    in:  {}\n    out: {}",
                    if server_side { "server" } else { "client" },
                    verdict::NAMES.get(action as usize).unwrap_or(&"?"),
                    hex(&input),
                    hex(&out)
                ));
            }
        }
    }
    let counted: Vec<u64> = lb
        .verdicts()
        .iter()
        .zip(&verdicts_before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(
        counted,
        seen.to_vec(),
        "VERDICT_STATS against the verdicts seen"
    );
    eprintln!(
        "{frames} frames (seed {seed:#x}): verdicts {:?} ({:?}), {changed} rewritten \
         ({icmp_changed} ICMP errors)",
        seen,
        verdict::NAMES
    );
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: properties broken (first {}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The mix reached every outcome, or the fuzzer is not testing much.
    for v in [verdict::PASS, verdict::DROP, verdict::TX, verdict::REDIRECT] {
        assert!(
            seen[v as usize] > frames / 200,
            "too few {}: {seen:?}",
            verdict::NAMES[v as usize]
        );
    }
    assert!(changed > frames / 20, "too few rewritten frames: {changed}");
    assert!(
        icmp_changed > frames / 200,
        "too few rewritten ICMP errors: {icmp_changed}"
    );
}
