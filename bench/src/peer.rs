//! A peer's XDP balancer timed beside lb (issue 12): Katran's
//! `balancer.bpf.o`, built by whoever runs the bench from Katran's own
//! source (BENCHMARKS.md, "Katran beside lb", gives the compiler line) and
//! named by `LB_BENCH_PEER=<file>`. Nothing of Katran is in this
//! repository: this module knows only the layout of the maps its loader
//! fills (`vip_map`, `reals`, `ch_rings`, `ctl_array`, `lru_mapping`, and
//! `stats` to check what a run did), and fills them as Katran's own
//! library would for one VIP with three real servers:
//!
//! - one LRU connection table per CPU in `lru_mapping`, as Katran runs in
//!   production (its `forwardingCores`), each with as many entries as lb's
//!   whole flow table in the same run;
//! - a consistent-hash ring of `RING_SIZE` slots for the VIP (real ids
//!   1..=3 in turn: what the ring holds does not change its cost);
//! - the default router's MAC in `ctl_array[0]`;
//! - a second VIP, "local" (`F_LOCAL_VIP`, its real servers
//!   `F_LOCAL_REAL`): an object built with `-DLOCAL_DELIVERY_OPTIMIZATION`
//!   does all of an established flow's work for it (VIP lookup, connection
//!   table, counters) and then passes the packet instead of encapsulating
//!   it, so it leaves the buffer as it was and can be timed with a repeat
//!   count: a lower bound of Katran's established flow (all but the
//!   encapsulation). Built without that option, Katran encapsulates it
//!   like the other VIP and that row is not timed.
//!
//! Katran forwards by IP-in-IP encapsulation (its only mode) and answers
//! `XDP_TX`, like lb's DR mode that it is compared with.

use std::net::SocketAddrV4;

use anyhow::{anyhow, ensure, Context as _};
use aya::{
    maps::{Array, ArrayOfMaps, HashMap, MapData, PerCpuArray},
    programs::Xdp,
    Ebpf, EbpfLoader,
};

/// The program and the layout constants of Katran's `balancer.bpf.c`.
const PROGRAM: &str = "balancer_ingress";
/// `RING_SIZE` and `MAX_VIPS` (balancer_consts.h).
const RING_SIZE: u32 = 65_537;
const MAX_VIPS: u32 = 512;
/// `F_LOCAL_VIP` (vip_meta) and `F_LOCAL_REAL` (real_definition).
const F_LOCAL_VIP: u32 = 1 << 5;
const F_LOCAL_REAL: u8 = 1 << 1;
/// `stats` slots: MAX_VIPS + LRU_CNTRS (v1: packets to a VIP, v2: new
/// connections given a real server).
const LRU_CNTRS: u32 = MAX_VIPS;
/// `BPF_MAP_TYPE_LRU_HASH`.
const LRU_HASH: u32 = 9;

/// `struct vip_definition`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VipDefinition {
    addr: [u32; 4],
    port_be: u16,
    proto: u8,
    _pad: u8,
}
/// `struct vip_meta`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VipMeta {
    flags: u32,
    vip_num: u32,
}
/// `struct real_definition`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RealDefinition {
    addr: [u32; 4],
    flags: u8,
    _pad: [u8; 3],
}
/// `struct ctl_value` (a MAC in the first six bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CtlValue {
    bytes: [u8; 8],
}
/// `struct lb_stats`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct LbStats {
    pub v1: u64,
    pub v2: u64,
}
const _: () = {
    assert!(size_of::<VipDefinition>() == 20);
    assert!(size_of::<VipMeta>() == 8);
    assert!(size_of::<RealDefinition>() == 20);
    assert!(size_of::<LbStats>() == 16);
};
// SAFETY: repr(C), integers only, padding spelled out (sizes asserted).
unsafe impl aya::Pod for VipDefinition {}
unsafe impl aya::Pod for VipMeta {}
unsafe impl aya::Pod for RealDefinition {}
unsafe impl aya::Pod for CtlValue {}
unsafe impl aya::Pod for LbStats {}

/// `struct flow_key` (40 bytes) and `struct real_pos_lru` (16): the
/// per-CPU connection tables' key and value sizes.
const FLOW_KEY_SIZE: u32 = 40;
const REAL_POS_LRU_SIZE: u32 = 16;

/// Katran's object, loaded and filled for one VIP.
pub struct Katran {
    ebpf: Ebpf,
    /// The per-CPU connection tables: kept open while the program runs.
    _lrus: Vec<MapData>,
}

impl Katran {
    /// Loads the object at `path` and configures `vip` (TCP, VIP number 0)
    /// and `local_vip` (VIP number 1, see the module doc), each with
    /// `reals`; `lru_entries` per CPU; `router_mac` for the encapsulated
    /// packets' destination.
    pub fn load(
        path: &std::path::Path,
        vip: SocketAddrV4,
        local_vip: SocketAddrV4,
        reals: &[SocketAddrV4],
        lru_entries: u32,
        router_mac: [u8; 6],
    ) -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load_file(path)
            .with_context(|| format!("LB_BENCH_PEER: loading {}", path.display()))?;
        crate::xdp::load_xdp(&mut ebpf, PROGRAM).with_context(|| {
            format!("LB_BENCH_PEER: {} is not Katran's balancer", path.display())
        })?;

        for (vip_num, (vip, flags)) in [(vip, 0), (local_vip, F_LOCAL_VIP)].into_iter().enumerate()
        {
            let vip_num = vip_num as u32;
            let key = VipDefinition {
                addr: [u32::from_ne_bytes(vip.ip().octets()), 0, 0, 0],
                port_be: vip.port().to_be(),
                proto: lb_common::PROTO_TCP,
                _pad: 0,
            };
            let mut vips: HashMap<_, VipDefinition, VipMeta> =
                HashMap::try_from(map(&mut ebpf, "vip_map")?)?;
            vips.insert(key, VipMeta { flags, vip_num }, 0)?;
            // Real ids: 1..=n for VIP 0, n+1..=2n for VIP 1 (id 0 means
            // "none" to Katran).
            let first = 1 + vip_num * reals.len() as u32;
            let mut table: Array<_, RealDefinition> = Array::try_from(map(&mut ebpf, "reals")?)?;
            for (i, r) in reals.iter().enumerate() {
                let real = RealDefinition {
                    addr: [u32::from_ne_bytes(r.ip().octets()), 0, 0, 0],
                    flags: if flags == 0 { 0 } else { F_LOCAL_REAL },
                    _pad: [0; 3],
                };
                table.set(first + i as u32, real, 0)?;
            }
            let mut ring: Array<_, u32> = Array::try_from(map(&mut ebpf, "ch_rings")?)?;
            for slot in 0..RING_SIZE {
                ring.set(
                    vip_num * RING_SIZE + slot,
                    first + slot % reals.len() as u32,
                    0,
                )?;
            }
        }
        let mut ctl: Array<_, CtlValue> = Array::try_from(map(&mut ebpf, "ctl_array")?)?;
        let mut mac = CtlValue::default();
        mac.bytes[..6].copy_from_slice(&router_mac);
        ctl.set(0, mac, 0)?;

        let cpus = aya::util::online_cpus().map_err(|(_, e)| anyhow!("online CPUs: {e}"))?;
        let mut lrus = Vec::new();
        {
            let mut outer: ArrayOfMaps<_, MapData> =
                ArrayOfMaps::try_from(map(&mut ebpf, "lru_mapping")?)?;
            for cpu in cpus {
                let obj = aya_obj::Map::new_from_params(
                    LRU_HASH,
                    FLOW_KEY_SIZE,
                    REAL_POS_LRU_SIZE,
                    lru_entries,
                    0,
                );
                let lru = MapData::create(obj, "katran_lru", None)
                    .with_context(|| format!("LB_BENCH_PEER: the LRU of CPU {cpu}"))?;
                outer.set(cpu, &lru, 0)?;
                lrus.push(lru);
            }
        }
        Ok(Self { ebpf, _lrus: lrus })
    }

    pub fn prog(&self) -> anyhow::Result<&Xdp> {
        crate::xdp::xdp(&self.ebpf, PROGRAM)
    }

    /// `stats[MAX_VIPS + LRU_CNTRS]` summed over CPUs: (packets to a VIP
    /// that reached the connection table, new connections given a real).
    pub fn lru_counters(&self) -> anyhow::Result<LbStats> {
        self.stats(LRU_CNTRS)
    }

    /// Packets Katran counted for VIP number `vip_num` (forwarded, or
    /// passed by the local delivery option after all its work).
    pub fn vip_packets(&self, vip_num: u32) -> anyhow::Result<u64> {
        Ok(self.stats(vip_num)?.v1)
    }

    fn stats(&self, slot: u32) -> anyhow::Result<LbStats> {
        let stats: PerCpuArray<_, LbStats> = PerCpuArray::try_from(
            self.ebpf
                .map("stats")
                .ok_or_else(|| anyhow!("Katran's object has no map `stats`"))?,
        )?;
        let per_cpu = stats.get(&slot, 0)?;
        Ok(per_cpu.iter().fold(LbStats::default(), |s, c| LbStats {
            v1: s.v1 + c.v1,
            v2: s.v2 + c.v2,
        }))
    }
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name).ok_or_else(|| {
        anyhow!("LB_BENCH_PEER: the object has no map `{name}`: not Katran's balancer.bpf.o?")
    })
}

/// Checks that a frame Katran sent on is the IP-in-IP encapsulation of the
/// original to one of `reals`: outer IPv4 header with protocol 4.
pub fn check_encapsulated(out: &[u8], reals: &[SocketAddrV4]) -> anyhow::Result<()> {
    ensure!(
        out.len() >= 14 + 20 + 20,
        "Katran's output is too short ({} bytes)",
        out.len()
    );
    ensure!(
        out[14 + 9] == 4,
        "Katran's output is not IP-in-IP (protocol {})",
        out[14 + 9]
    );
    let dst: [u8; 4] = out[30..34].try_into()?;
    ensure!(
        reals.iter().any(|r| r.ip().octets() == dst),
        "Katran's outer destination {dst:?} is none of the real servers"
    );
    Ok(())
}
