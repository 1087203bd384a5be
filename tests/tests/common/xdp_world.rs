//! The fixture world shared by the BPF_PROG_TEST_RUN tests
//! (`xdp_fixtures.rs`, `xdp_fuzz.rs`): a private network namespace with the
//! seed 001 balancer's interfaces, addresses and neighbours, the real XDP
//! object loaded with small maps, and the fixture services in them.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::{
    collections::HashMap as StdHashMap,
    ffi::CString,
    net::{IpAddr, SocketAddr},
    process::Command,
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use lb_common::{
    addr_filter_bit, event,
    flow_table::{flow_tag_v4, flow_tag_v6, set_index, DEFAULT_FLOW_SEED},
    hash::{flow_hash, MAGLEV_SEED},
    names, verdict, AddrKey, AddrRole, Backend, DrNextHop, EndpointKey, Flow, FlowKey, FlowKeyV4,
    FlowSet, ReverseNat, Service, ServiceSlot, BACKEND_F_ACTIVE, FAMILY_IPV4, FAMILY_IPV6,
    NO_BACKEND, PROTO_TCP, PROTO_UDP, SVC_F_DR, SVC_F_NAT,
};
use lb_tests::{
    netns::ThreadNs,
    packet::{Frame, Mac, BALANCER_MAC, CLIENT_MAC},
};

// ---------------------------------------------------------------------------
// The balancer's namespace (seed 001 layout, plus a DR segment on eth0).

/// eth0: client side. Its MAC is the builder's default destination.
pub const ETH0_MAC: Mac = BALANCER_MAC;
/// eth1: real server side (NAT).
pub const ETH1_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0xfe];

/// MAC of host `n` on the server side: 172.16.14.n / 2001:db8:14::n.
pub fn server_mac(n: u8) -> Mac {
    [0x02, 0, 0, 0, 0x01, n]
}

/// MAC of DR real server `n` on the client side: 192.168.253.n.
pub fn dr_mac(n: u8) -> Mac {
    [0x02, 0, 0, 0, 0x02, n]
}

/// Runs `ip ARGS` in this thread's namespace (a child inherits it).
pub fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    assert!(status.success(), "`ip {args}` failed: {status}");
}

pub fn mac_str(m: Mac) -> String {
    lb_tests::netns::mac_str(&m)
}

pub fn sysctl(path: &str, value: &str) {
    // /proc/sys/net belongs to the namespace of the thread that opens it.
    std::fs::write(format!("/proc/sys/{path}"), value)
        .unwrap_or_else(|e| panic!("write /proc/sys/{path}: {e}"));
}

pub fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(i != 0, "no interface {name} in the test namespace");
    i
}

pub struct Net {
    /// A private network namespace of this thread (the kit's): dropping it
    /// moves the thread back, and the namespace disappears with it.
    pub _ns: ThreadNs,
    pub eth0: u32,
    pub eth1: u32,
}

pub fn network() -> Net {
    let ns = ThreadNs::private()
        .unwrap_or_else(|e| panic!("{e:#} -- the XDP fixtures must run as root (CAP_SYS_ADMIN)"));
    ip(&format!(
        "link add eth0 address {} type veth peer name eth0p",
        mac_str(ETH0_MAC)
    ));
    ip(&format!(
        "link add eth1 address {} type veth peer name eth1p",
        mac_str(ETH1_MAC)
    ));
    for dev in ["lo", "eth0", "eth0p", "eth1", "eth1p"] {
        ip(&format!("link set {dev} up"));
    }
    ip("addr add 192.168.253.254/24 dev eth0");
    ip("addr add 2001:db8:253::254/64 dev eth0 nodad");
    ip("addr add 172.16.14.120/24 dev eth1");
    ip("addr add 2001:db8:14::120/64 dev eth1 nodad");
    let neigh = |addr: &str, mac: Mac, dev: &str| {
        ip(&format!(
            "neigh add {addr} lladdr {} dev {dev} nud permanent",
            mac_str(mac)
        ))
    };
    neigh("192.168.253.1", CLIENT_MAC, "eth0");
    neigh("2001:db8:253::1", CLIENT_MAC, "eth0");
    for n in [16, 17] {
        neigh(&format!("192.168.253.{n}"), dr_mac(n), "eth0");
    }
    neigh("2001:db8:253::10", dr_mac(10), "eth0");
    for n in [121, 122, 123] {
        neigh(&format!("172.16.14.{n}"), server_mac(n), "eth1");
        neigh(&format!("2001:db8:14::{n}"), server_mac(n), "eth1");
    }
    // 172.16.14.124 and 192.168.253.12 deliberately have no neighbour entry.
    sysctl("net/ipv4/ip_forward", "1");
    sysctl("net/ipv6/conf/all/forwarding", "1");
    Net {
        eth0: ifindex("eth0"),
        eth1: ifindex("eth1"),
        _ns: ns,
    }
}

// ---------------------------------------------------------------------------
// The loaded program and its maps.

pub fn addr_words(ip: IpAddr) -> ([u32; 4], u8) {
    match ip {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], FAMILY_IPV4),
        IpAddr::V6(a) => {
            let o = a.octets();
            (
                core::array::from_fn(|i| {
                    u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                }),
                FAMILY_IPV6,
            )
        }
    }
}

pub fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn endpoint(s: &str, proto: u8) -> EndpointKey {
    EndpointKey::new(sock(s), proto)
}

pub fn flow_key(src: &str, dst: &str, proto: u8) -> FlowKey {
    let (s, d) = (sock(src), sock(dst));
    let (src, family) = addr_words(s.ip());
    let (dst, _) = addr_words(d.ip());
    FlowKey {
        src,
        dst,
        src_port_be: s.port().to_be(),
        dst_port_be: d.port().to_be(),
        proto,
        family,
        _pad: [0; 2],
    }
}

/// Sets of each flow table of the fixtures (4,096 flows).
pub const FLOW_SETS: u32 = 1024;

/// The set of `FLOWS_V4` the program files the IPv4 flow `key` in.
pub fn flow_set_of(key: &FlowKey) -> u32 {
    let k4 = key.narrow().expect("an IPv4 flow");
    set_index(flow_tag_v4(&k4, DEFAULT_FLOW_SEED), FLOW_SETS)
}

pub struct Lb {
    pub net: Net,
    pub ebpf: Ebpf,
    /// Host copy of each service's ring, to predict backends.
    pub rings: StdHashMap<u32, Vec<u32>>,
    pub backends: StdHashMap<u32, SocketAddr>,
    pub next_ring_offset: u32,
    /// `SERVICE_INDEX` as the agent keeps it (the agent's own core).
    pub index: lb_userspace::dataplane::service_index::ServiceIndex,
}

impl Lb {
    pub fn new() -> Self {
        let net = network();
        let flow_sets =
            lb_userspace::dataplane::loader::FlowTableGlobals::new(FLOW_SETS, FLOW_SETS);
        let mut loader = EbpfLoader::new();
        flow_sets.set(&mut loader);
        let mut ebpf = loader
            // Small tables: the fixtures need a few entries, not the defaults.
            .map_max_entries(names::FLOWS, FLOW_SETS)
            .map_max_entries(names::FLOWS_V4, FLOW_SETS)
            .map_max_entries(names::SERVICES_BY_ID, 64)
            .map_max_entries(names::MAGLEV_RING, 4096)
            .map_max_entries(names::BACKENDS, 256)
            .map_max_entries(names::REVERSE_NAT, 256)
            .map_max_entries(names::DR_NEXT_HOPS, 256)
            .map_max_entries(names::SERVICES, 64)
            .map_max_entries(names::SERVICE_STATS, 64)
            .map_max_entries(names::BACKEND_STATS, 256)
            .load(lb_userspace::EBPF_OBJECT)
            .unwrap_or_else(|e| panic!("loading the eBPF object: {e}"));
        let prog: &mut Xdp = ebpf
            .program_mut(names::PROGRAM)
            .expect("program lb_xdp in the object")
            .try_into()
            .expect("lb_xdp is an XDP program");
        // The verifier gives up with EAGAIN when a signal is pending on the
        // loading thread (the `ip` children of parallel tests send SIGCHLD
        // to the process); the load is simply asked again.
        let mut load = prog.load();
        for _ in 0..5 {
            match &load {
                Err(ProgramError::LoadError { io_error, .. })
                    if io_error.raw_os_error() == Some(11) =>
                {
                    load = prog.load()
                }
                _ => break,
            }
        }
        if let Err(e) = load {
            match e {
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                } => panic!("the verifier rejected lb_xdp: {io_error}\n{verifier_log}"),
                e => panic!("loading lb_xdp: {e}"),
            }
        }
        // ICMP errors go through a tail call to lb_xdp_icmp, as in the agent.
        lb_userspace::dataplane::loader::link_icmp_path(&mut ebpf)
            .unwrap_or_else(|e| panic!("linking the ICMP path: {e:?}"));
        Lb {
            net,
            ebpf,
            rings: StdHashMap::new(),
            backends: StdHashMap::new(),
            next_ring_offset: 0,
            index: Default::default(),
        }
    }

    pub fn backend(&mut self, id: u32, service_id: u32, addr: &str, active: bool) {
        let a = sock(addr);
        let (words, family) = addr_words(a.ip());
        let b = Backend {
            addr: words,
            port_be: a.port().to_be(),
            family,
            flags: if active { BACKEND_F_ACTIVE } else { 0 },
            service_id,
        };
        let mut m: Array<&mut MapData, Backend> =
            Array::try_from(self.ebpf.map_mut(names::BACKENDS).unwrap()).unwrap();
        m.set(id, b, 0).unwrap();
        self.backends.insert(id, a);
    }

    /// Writes `ring` into a fresh range and (re)points the service at it,
    /// as the agent swaps tables.
    pub fn service(
        &mut self,
        id: u32,
        vip: &str,
        proto: u8,
        flags: u32,
        ring: &[u32],
        fallback: u32,
    ) {
        let offset = self.next_ring_offset;
        self.next_ring_offset += ring.len() as u32;
        {
            let mut m: Array<&mut MapData, u32> =
                Array::try_from(self.ebpf.map_mut(names::MAGLEV_RING).unwrap()).unwrap();
            for (i, b) in ring.iter().enumerate() {
                m.set(offset + i as u32, *b, 0).unwrap();
            }
        }
        let svc = Service {
            id,
            flags,
            ring_offset: offset,
            ring_size: ring.len() as u32,
            fallback_backend: fallback,
            _pad: 0,
        };
        self.filter_set(&endpoint(vip, proto), AddrRole::Dst);
        let mut m: HashMap<&mut MapData, EndpointKey, Service> =
            HashMap::try_from(self.ebpf.map_mut(names::SERVICES).unwrap()).unwrap();
        m.insert(endpoint(vip, proto), svc, 0).unwrap();
        // After SERVICES, as the agent writes it, and the index after the
        // slot (zeroed while a service's slot is rewritten).
        let key = endpoint(vip, proto);
        if self.index.value(lb_common::service_index(&key)) != 0 {
            self.set_index_entry(lb_common::service_index(&key), 0);
        }
        self.set_slot(
            id,
            ServiceSlot {
                vip: key,
                service: svc,
            },
        );
        let (entry, value) = self.index.set(&key, id);
        self.set_index_entry(entry, value);
        self.rings.insert(id, ring.to_vec());
    }

    /// `SERVICE_INDEX[entry] = value`.
    pub fn set_index_entry(&mut self, entry: u32, value: u32) {
        let mut a: Array<&mut MapData, u32> =
            Array::try_from(self.ebpf.map_mut(names::SERVICE_INDEX).unwrap()).unwrap();
        a.set(entry, value, 0).unwrap();
    }

    /// Removes a service as the agent does: its `SERVICE_INDEX` entry and
    /// `SERVICES_BY_ID` slot are cleared first, then its `SERVICES` entry (the filter bit stays: a
    /// stale bit only costs a hash lookup).
    pub fn remove_service(&mut self, id: u32, vip: &str, proto: u8) {
        if let Some((entry, value)) = self.index.remove(&endpoint(vip, proto)) {
            self.set_index_entry(entry, value);
        }
        self.set_slot(id, ServiceSlot::default());
        let mut m: HashMap<&mut MapData, EndpointKey, Service> =
            HashMap::try_from(self.ebpf.map_mut(names::SERVICES).unwrap()).unwrap();
        m.remove(&endpoint(vip, proto)).unwrap();
    }

    /// `SERVICES_BY_ID[id] = slot`.
    pub fn set_slot(&mut self, id: u32, slot: ServiceSlot) {
        let mut a: Array<&mut MapData, ServiceSlot> =
            Array::try_from(self.ebpf.map_mut(names::SERVICES_BY_ID).unwrap()).unwrap();
        a.set(id, slot, 0).unwrap();
    }

    /// Sets `key`'s bit in `ENDPOINT_FILTER` and its address's bit in
    /// `role`, as the agent does before it inserts a key into `SERVICES`
    /// (`AddrRole::Dst`) or `REVERSE_NAT` (`AddrRole::Src`) (never cleared
    /// here: a stale bit only costs the program a hash lookup).
    pub fn filter_set(&mut self, key: &EndpointKey, role: AddrRole) {
        self.filter_bit(lb_common::endpoint_filter_bit(key), true);
        self.filter_bit(addr_filter_bit(role, key.family, &key.addr), true);
    }

    /// Sets or clears one bit of `ENDPOINT_FILTER`.
    pub fn filter_bit(&mut self, bit: u32, on: bool) {
        let mut a: aya::maps::Array<&mut MapData, u64> =
            aya::maps::Array::try_from(self.ebpf.map_mut(names::ENDPOINT_FILTER).unwrap()).unwrap();
        let w = a.get(&(bit >> 6), 0).unwrap();
        let mask = 1u64 << (bit & 63);
        a.set(bit >> 6, if on { w | mask } else { w & !mask }, 0)
            .unwrap();
    }

    fn filter_has(&self, bit: u32) -> bool {
        let a: aya::maps::Array<&MapData, u64> =
            aya::maps::Array::try_from(self.ebpf.map(names::ENDPOINT_FILTER).unwrap()).unwrap();
        a.get(&(bit >> 6), 0).unwrap() & (1u64 << (bit & 63)) != 0
    }

    /// Whether the program passes `frame` at its first test, uncounted:
    /// an untagged or single-tagged IPv4/IPv6 frame holding its addresses,
    /// not ICMP, whose destination and source bits are both clear (the
    /// rule of `lb-ebpf/src/filter.rs`, read from the map the program
    /// reads).
    pub fn first_test_passes(&self, frame: &[u8]) -> bool {
        let be16 = |o: usize| {
            frame
                .get(o..o + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let mut l3 = 14;
        let mut ethertype = be16(12);
        if ethertype == Some(0x8100) {
            l3 = 18;
            ethertype = be16(16);
        }
        let words = |o: usize, n: usize| -> Option<[u32; 4]> {
            let b = frame.get(o..o + 4 * n)?;
            let mut w = [0u32; 4];
            for (i, c) in b.chunks(4).enumerate() {
                w[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
            Some(w)
        };
        let (family, proto, src, dst) = match ethertype {
            Some(0x0800) => match (frame.get(l3 + 9), words(l3 + 12, 1), words(l3 + 16, 1)) {
                (Some(&p), Some(s), Some(d)) if frame.len() >= l3 + 20 => (FAMILY_IPV4, p, s, d),
                _ => return false,
            },
            Some(0x86dd) => match (frame.get(l3 + 6), words(l3 + 8, 4), words(l3 + 24, 4)) {
                (Some(&p), Some(s), Some(d)) => (FAMILY_IPV6, p, s, d),
                _ => return false,
            },
            _ => return false,
        };
        let icmp = if family == FAMILY_IPV4 { 1 } else { 58 };
        proto != icmp
            && !self.filter_has(addr_filter_bit(AddrRole::Dst, family, &dst))
            && !self.filter_has(addr_filter_bit(AddrRole::Src, family, &src))
    }

    /// Clears `key`'s bit in `ENDPOINT_FILTER` (whatever else shares it;
    /// its address's bit stays).
    pub fn filter_clear(&mut self, key: &EndpointKey) {
        self.filter_bit(lb_common::endpoint_filter_bit(key), false);
    }

    pub fn reverse_nat(&mut self, backend_id: u32, service_id: u32, vip: &str, proto: u8) {
        let real = self.backends[&backend_id];
        let v = endpoint(vip, proto);
        let rn = ReverseNat {
            vip: v.addr,
            vip_port_be: v.port_be,
            _pad: 0,
            service_id,
            backend_id,
        };
        self.filter_set(&endpoint(&real.to_string(), proto), AddrRole::Src);
        let mut m: HashMap<&mut MapData, EndpointKey, ReverseNat> =
            HashMap::try_from(self.ebpf.map_mut(names::REVERSE_NAT).unwrap()).unwrap();
        m.insert(endpoint(&real.to_string(), proto), rn, 0).unwrap();
    }

    /// The backend the host predicts for a new flow: flow_hash over the
    /// 5-tuple, modulo the ring size, as the contract says.
    pub fn predict(&self, service_id: u32, key: &FlowKey) -> u32 {
        let ring = &self.rings[&service_id];
        ring[(flow_hash(key, MAGLEV_SEED) % ring.len() as u32) as usize]
    }

    /// The flow-table entry of `key`, from the table of its family
    /// (`FLOWS_V4` for IPv4, `FLOWS` for IPv6).
    pub fn flow(&self, key: &FlowKey) -> Option<Flow> {
        match key.narrow() {
            Some(k4) => self.flow_v4(&k4),
            None => self.flow_v6(key),
        }
    }

    /// The set of `table` that holds `tag`, as the program finds it.
    fn flow_set(&self, table: &str, tag: u64) -> FlowSet {
        let m: Array<&MapData, FlowSet> = Array::try_from(self.ebpf.map(table).unwrap()).unwrap();
        m.get(&set_index(tag, m.len()), 0).unwrap()
    }

    /// The IPv4 flow `key` in `FLOWS_V4`.
    pub fn flow_v4(&self, key: &FlowKeyV4) -> Option<Flow> {
        let tag = flow_tag_v4(key, DEFAULT_FLOW_SEED);
        self.flow_set(names::FLOWS_V4, tag).find(tag)
    }

    /// `key` in `FLOWS` (the IPv6 table), whatever the key's family.
    pub fn flow_v6(&self, key: &FlowKey) -> Option<Flow> {
        let tag = flow_tag_v6(key, DEFAULT_FLOW_SEED);
        self.flow_set(names::FLOWS, tag).find(tag)
    }

    /// Writes a flow-table entry as the program would have for a request.
    pub fn set_flow(&mut self, key: &FlowKey, flow: Flow) {
        let (table, tag) = match key.narrow() {
            Some(k4) => (names::FLOWS_V4, flow_tag_v4(&k4, DEFAULT_FLOW_SEED)),
            None => (names::FLOWS, flow_tag_v6(key, DEFAULT_FLOW_SEED)),
        };
        let mut set = self.flow_set(table, tag);
        set.insert(tag, flow);
        let mut m: Array<&mut MapData, FlowSet> =
            Array::try_from(self.ebpf.map_mut(table).unwrap()).unwrap();
        let index = set_index(tag, m.len());
        m.set(index, set, 0).unwrap();
    }

    pub fn per_cpu_sum(&self, map: &str, index: u32) -> u64 {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(map).unwrap()).unwrap();
        m.get(&index, 0).unwrap().iter().sum()
    }

    pub fn events(&self) -> Vec<u64> {
        (0..event::COUNT)
            .map(|e| self.per_cpu_sum(names::EVENT_STATS, e))
            .collect()
    }

    pub fn verdicts(&self) -> Vec<u64> {
        (0..verdict::COUNT)
            .map(|v| self.per_cpu_sum(names::VERDICT_STATS, v))
            .collect()
    }

    pub fn counters(&self, map: &str, index: u32) -> lb_common::Counters {
        let m: PerCpuArray<&MapData, lb_common::Counters> =
            PerCpuArray::try_from(self.ebpf.map(map).unwrap()).unwrap();
        let mut total = lb_common::Counters::default();
        for c in m.get(&index, 0).unwrap().iter() {
            total.add(c);
        }
        total
    }

    /// One BPF_PROG_TEST_RUN: the frame arrives on `ingress`.
    pub fn run(&self, ingress: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self
            .ebpf
            .program(names::PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex. data_end must equal the frame size.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ingress, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }
}

// Services of the fixture world.
pub const VIP: &str = "192.168.253.120";
pub const VIP6: &str = "2001:db8:253::120";
pub const CLIENT: &str = "192.168.253.1";
pub const CLIENT6: &str = "2001:db8:253::1";

pub const WEB: u32 = 0; // NAT TCP 192.168.253.120:80 -> 172.16.14.121:80, .122:8080, .123:80
pub const DNS: u32 = 1; // NAT UDP :53 -> .121:5353, .122:5353
pub const WEB6: u32 = 2; // NAT TCP [2001:db8:253::120]:80 -> [..14::121]:80, [..14::122]:8080
pub const LDAP: u32 = 3; // DR TCP 192.168.253.130:389 -> 192.168.253.16, .17
pub const EMPTY: u32 = 4; // NAT :81, no real server, no sorry server
pub const SORRY: u32 = 5; // NAT :82, only a sorry server .123:80
pub const UNRESOLVED: u32 = 6; // NAT :83 -> 172.16.14.124 (no neighbour entry)
pub const LDAP_UNRESOLVED: u32 = 7; // DR 192.168.253.131:389 -> 192.168.253.12 (no neighbour)
pub const UNROUTED: u32 = 8; // NAT :84 -> 10.99.0.1 (no route)
pub const LDAP6: u32 = 9; // DR [2001:db8:253::130]:389 -> [2001:db8:253::10]
pub const DNS6: u32 = 10; // NAT UDP [..::120]:53 -> [..14::121]:5353

/// Loads the program and configures the fixture services.
pub fn world() -> Lb {
    let mut lb = Lb::new();
    let nat = SVC_F_NAT;
    lb.backend(1, WEB, "172.16.14.121:80", true);
    lb.backend(2, WEB, "172.16.14.122:8080", true);
    lb.backend(3, WEB, "172.16.14.123:80", true);
    lb.service(
        WEB,
        "192.168.253.120:80",
        PROTO_TCP,
        nat,
        &[1, 2, 3, 1, 2, 3, 1],
        NO_BACKEND,
    );
    for b in [1, 2, 3] {
        lb.reverse_nat(b, WEB, "192.168.253.120:80", PROTO_TCP);
    }
    lb.backend(4, DNS, "172.16.14.121:5353", true);
    lb.backend(5, DNS, "172.16.14.122:5353", true);
    lb.service(
        DNS,
        "192.168.253.120:53",
        PROTO_UDP,
        nat,
        &[4, 5, 4, 5, 4],
        NO_BACKEND,
    );
    for b in [4, 5] {
        lb.reverse_nat(b, DNS, "192.168.253.120:53", PROTO_UDP);
    }
    lb.backend(6, WEB6, "[2001:db8:14::121]:80", true);
    lb.backend(7, WEB6, "[2001:db8:14::122]:8080", true);
    lb.service(
        WEB6,
        "[2001:db8:253::120]:80",
        PROTO_TCP,
        nat,
        &[6, 7, 6, 7, 6, 7, 7],
        NO_BACKEND,
    );
    for b in [6, 7] {
        lb.reverse_nat(b, WEB6, "[2001:db8:253::120]:80", PROTO_TCP);
    }
    lb.backend(8, LDAP, "192.168.253.16:389", true);
    lb.backend(9, LDAP, "192.168.253.17:389", true);
    lb.service(
        LDAP,
        "192.168.253.130:389",
        PROTO_TCP,
        SVC_F_DR,
        &[8, 9, 8, 9, 9],
        NO_BACKEND,
    );
    lb.service(EMPTY, "192.168.253.120:81", PROTO_TCP, nat, &[], NO_BACKEND);
    lb.backend(10, SORRY, "172.16.14.123:80", true);
    lb.service(SORRY, "192.168.253.120:82", PROTO_TCP, nat, &[], 10);
    lb.backend(11, UNRESOLVED, "172.16.14.124:80", true);
    lb.service(
        UNRESOLVED,
        "192.168.253.120:83",
        PROTO_TCP,
        nat,
        &[11],
        NO_BACKEND,
    );
    lb.backend(12, LDAP_UNRESOLVED, "192.168.253.12:389", true);
    lb.service(
        LDAP_UNRESOLVED,
        "192.168.253.131:389",
        PROTO_TCP,
        SVC_F_DR,
        &[12],
        NO_BACKEND,
    );
    lb.backend(13, UNROUTED, "10.99.0.1:80", true);
    lb.service(
        UNROUTED,
        "192.168.253.120:84",
        PROTO_TCP,
        nat,
        &[13],
        NO_BACKEND,
    );
    lb.backend(14, LDAP6, "[2001:db8:253::10]:389", true);
    lb.service(
        LDAP6,
        "[2001:db8:253::130]:389",
        PROTO_TCP,
        SVC_F_DR,
        &[14],
        NO_BACKEND,
    );
    lb.backend(15, DNS6, "[2001:db8:14::121]:5353", true);
    lb.service(
        DNS6,
        "[2001:db8:253::120]:53",
        PROTO_UDP,
        nat,
        &[15],
        NO_BACKEND,
    );
    lb.reverse_nat(15, DNS6, "[2001:db8:253::120]:53", PROTO_UDP);
    lb
}

/// MAC of the host behind a fixture address, from the neighbour table the
/// namespace was given. Hosts are numbered by their last address group,
/// read in decimal for IPv6 too (2001:db8:14::121 is host 121).
pub fn neighbour_mac(a: IpAddr) -> Mac {
    let s = a.to_string();
    if s == CLIENT || s == CLIENT6 {
        return CLIENT_MAC;
    }
    let n: u8 = s
        .rsplit(['.', ':'])
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no host number in {s}"));
    if s.starts_with("172.16.14.") || s.starts_with("2001:db8:14:") {
        server_mac(n)
    } else {
        dr_mac(n)
    }
}

/// The frame a NAT request should leave as: destination = the backend,
/// one hop less, MACs of the server-side link.
pub fn nat_out(input: &Frame, backend: SocketAddr) -> Vec<u8> {
    input
        .clone()
        .dst(&backend.to_string())
        .ttl(input.ttl_value() - 1)
        .macs(ETH1_MAC, neighbour_mac(backend.ip()))
        .build()
}

impl Lb {
    /// Writes `DR_NEXT_HOPS[addr]` as the agent does from its neighbour
    /// table.
    pub fn dr_next_hop(&mut self, addr: &str, ifindex: u32, smac: Mac, dmac: Mac) {
        let (words, family) = addr_words(addr.parse().unwrap());
        let key = AddrKey {
            addr: words,
            family,
            _pad: [0; 3],
        };
        let mut m: HashMap<&mut MapData, AddrKey, DrNextHop> =
            HashMap::try_from(self.ebpf.map_mut(names::DR_NEXT_HOPS).unwrap()).unwrap();
        m.insert(
            key,
            DrNextHop {
                ifindex,
                smac,
                dmac,
            },
            0,
        )
        .unwrap();
    }
}
