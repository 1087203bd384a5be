//! The real XDP object (`lb_userspace::EBPF_OBJECT`) and the baseline
//! programs (`lb_userspace::BASELINE_OBJECT`), loaded with aya; the
//! balancer's maps are filled directly with `lb_common` types, as the agent
//! would fill them, so the packet suites do not depend on the agent.

use std::net::SocketAddrV4;

use anyhow::{anyhow, bail, Context as _};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use lb_common::{
    names, AddrRole, Backend, Counters, EndpointKey, ReverseNat, Service, BACKEND_F_ACTIVE,
    FAMILY_IPV4, NO_BACKEND,
};
use lb_userspace::maglev;

/// Program names in `BASELINE_OBJECT` (lb-ebpf/src/baseline.rs).
pub const BASELINE_TX: &str = "xdp_baseline_tx";
pub const BASELINE_REDIRECT: &str = "xdp_baseline_redirect";
pub const COUNT_DROP: &str = "xdp_count_drop";
pub const BASELINE_FWD: &str = "BASELINE_FWD";
pub const BASELINE_COUNT: &str = "BASELINE_COUNT";

/// Layout of `BaselineFwd` in lb-ebpf/src/baseline.rs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BaselineFwd {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<BaselineFwd>() == 16);
// SAFETY: repr(C), integers only, no padding (size asserted above).
unsafe impl aya::Pod for BaselineFwd {}

fn addr_word(a: &SocketAddrV4) -> [u32; 4] {
    [u32::from_ne_bytes(a.ip().octets()), 0, 0, 0]
}

pub fn endpoint(a: SocketAddrV4, proto: u8) -> EndpointKey {
    EndpointKey::new(a.into(), proto)
}

/// Loads (verifies) the XDP program `name` of `ebpf`; a verifier rejection
/// comes back with the verifier's log.
pub fn load_xdp(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<()> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("no program {name} in the object"))?
        .try_into()?;
    match prog.load() {
        Ok(()) => Ok(()),
        Err(ProgramError::LoadError {
            io_error,
            verifier_log,
        }) => bail!("the verifier rejected {name}: {io_error}\n{verifier_log}"),
        Err(e) => Err(e).with_context(|| format!("loading {name}")),
    }
}

pub fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    Ok(ebpf
        .program(name)
        .ok_or_else(|| anyhow!("no program {name}"))?
        .try_into()?)
}

pub fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("no program {name}"))?
        .try_into()?)
}

/// One BPF_PROG_TEST_RUN of `frame` arriving on `ingress`: the verdict and
/// the kernel's average duration per repetition in nanoseconds.
///
/// The kernel reuses one packet buffer for all `repeat` runs: whatever the
/// program rewrites in place is the next repetition's input.
pub fn test_run(prog: &Xdp, frame: &[u8], ingress: u32, repeat: u32) -> anyhow::Result<(u32, u64)> {
    let (v, ns, _) = test_run_out(prog, frame, ingress, repeat)?;
    Ok((v, ns))
}

/// [`test_run`] that also returns the frame as the program left it.
pub fn test_run_out(
    prog: &Xdp,
    frame: &[u8],
    ingress: u32,
    repeat: u32,
) -> anyhow::Result<(u32, u64, Vec<u8>)> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex; data_end must equal the frame length.
    let md: [u32; 6] = [0, frame.len() as u32, 0, ingress, 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, r.duration.as_nanos() as u64, out))
}

/// Maglev table of `backends` (id, address), equal weights, built by the
/// agent's own code.
pub fn maglev_ring(backends: &[(u32, SocketAddrV4)], size: u32) -> Vec<u32> {
    let entries: Vec<maglev::Entry> = backends
        .iter()
        .map(|(id, a)| maglev::Entry {
            id: *id,
            addr: (*a.ip()).into(),
            port: a.port(),
            weight: 1,
        })
        .collect();
    maglev::build_table(&entries, size)
}

/// The balancer's object with its maps, filled by hand.
pub struct Lb {
    pub ebpf: Ebpf,
    next_ring_offset: u32,
    /// `SERVICE_INDEX` as the agent keeps it (its own core).
    index: lb_userspace::dataplane::service_index::ServiceIndex,
}

impl Lb {
    /// Loads `lb_xdp` with a flow table of `flows` entries and room for
    /// `ring_slots` Maglev slots in all. `LB_BENCH_OBJECT=<file>` loads
    /// another build's object instead (an older one, to compare old and new
    /// on the same machine minutes apart; it may lack `ENDPOINT_FILTER`).
    pub fn load(flows: u32, ring_slots: u32) -> anyhow::Result<Self> {
        let other = match std::env::var_os("LB_BENCH_OBJECT") {
            Some(path) => Some(std::fs::read(&path).with_context(|| format!("{path:?}"))?),
            None => None,
        };
        let object = other.as_deref().unwrap_or(lb_userspace::EBPF_OBJECT);
        Self::load_object(flows, ring_slots, object)
    }

    /// [`Lb::load`] of the object `object` (the bytes of an `lb-xdp` file).
    pub fn load_object(flows: u32, ring_slots: u32, object: &[u8]) -> anyhow::Result<Self> {
        let sets = lb_common::flow_table::flow_sets(flows);
        let globals = lb_userspace::dataplane::loader::FlowTableGlobals::new(sets, sets);
        let mut loader = EbpfLoader::new();
        globals.set(&mut loader);
        let mut ebpf = loader
            .map_max_entries(names::FLOWS, sets)
            .map_max_entries(names::FLOWS_V4, sets)
            .map_max_entries(names::SERVICES_BY_ID, 64)
            .map_max_entries(names::MAGLEV_RING, ring_slots)
            .map_max_entries(names::BACKENDS, 256)
            .map_max_entries(names::REVERSE_NAT, 256)
            .map_max_entries(names::SERVICES, 64)
            .map_max_entries(names::SERVICE_STATS, 64)
            .map_max_entries(names::BACKEND_STATS, 256)
            .load(object)
            .context("loading the lb eBPF object")?;
        load_xdp(&mut ebpf, names::PROGRAM)?;
        // An older object (LB_BENCH_OBJECT) may have ICMP inlined instead.
        if ebpf.program(names::ICMP_PROGRAM).is_some() {
            lb_userspace::dataplane::loader::link_icmp_path(&mut ebpf)
                .map_err(|e| anyhow!("linking the ICMP path: {e}"))?;
        }
        Ok(Lb {
            ebpf,
            next_ring_offset: 0,
            index: Default::default(),
        })
    }

    pub fn prog(&self) -> anyhow::Result<&Xdp> {
        xdp(&self.ebpf, names::PROGRAM)
    }

    pub fn backend(&mut self, id: u32, service_id: u32, addr: SocketAddrV4) -> anyhow::Result<()> {
        self.backend_flags(id, service_id, addr, BACKEND_F_ACTIVE)
    }

    /// [`Lb::backend`] with its `BACKEND_F_*` flags (0: a real server
    /// declared down, whose flows are scheduled again).
    pub fn backend_flags(
        &mut self,
        id: u32,
        service_id: u32,
        addr: SocketAddrV4,
        flags: u8,
    ) -> anyhow::Result<()> {
        let b = Backend {
            addr: addr_word(&addr),
            port_be: addr.port().to_be(),
            family: FAMILY_IPV4,
            flags,
            service_id,
        };
        let mut m: Array<&mut MapData, Backend> =
            Array::try_from(self.ebpf.map_mut(names::BACKENDS).context("BACKENDS")?)?;
        m.set(id, b, 0)?;
        Ok(())
    }

    /// Writes `ring` into a fresh range and points the service at it.
    pub fn service(
        &mut self,
        id: u32,
        vip: SocketAddrV4,
        proto: u8,
        flags: u32,
        ring: &[u32],
    ) -> anyhow::Result<()> {
        let offset = self.next_ring_offset;
        self.next_ring_offset += ring.len() as u32;
        {
            let mut m: Array<&mut MapData, u32> = Array::try_from(
                self.ebpf
                    .map_mut(names::MAGLEV_RING)
                    .context("MAGLEV_RING")?,
            )?;
            for (i, b) in ring.iter().enumerate() {
                m.set(offset + i as u32, *b, 0)?;
            }
        }
        let svc = Service {
            id,
            flags,
            ring_offset: offset,
            ring_size: ring.len() as u32,
            fallback_backend: NO_BACKEND,
            _pad: 0,
        };
        self.filter_set(&endpoint(vip, proto), AddrRole::Dst)?;
        let mut m: HashMap<&mut MapData, EndpointKey, Service> =
            HashMap::try_from(self.ebpf.map_mut(names::SERVICES).context("SERVICES")?)?;
        m.insert(endpoint(vip, proto), svc, 0)?;
        // After SERVICES, as the agent writes it; an older object
        // (LB_BENCH_OBJECT) has no slots.
        if let Some(map) = self.ebpf.map_mut(names::SERVICES_BY_ID) {
            let mut a: Array<&mut MapData, lb_common::ServiceSlot> = Array::try_from(map)?;
            let slot = lb_common::ServiceSlot {
                vip: endpoint(vip, proto),
                service: svc,
            };
            a.set(id, slot, 0)?;
        }
        // After the slot, as the agent writes it (an older object has no
        // index: its new flows take the SERVICES lookup).
        if let Some(map) = self.ebpf.map_mut(names::SERVICE_INDEX) {
            let mut a: Array<&mut MapData, u32> = Array::try_from(map)?;
            let (entry, value) = self.index.set(&endpoint(vip, proto), id);
            a.set(entry, value, 0)?;
        }
        Ok(())
    }

    pub fn reverse_nat(
        &mut self,
        real: SocketAddrV4,
        proto: u8,
        vip: SocketAddrV4,
        service_id: u32,
        backend_id: u32,
    ) -> anyhow::Result<()> {
        let rn = ReverseNat {
            vip: addr_word(&vip),
            vip_port_be: vip.port().to_be(),
            _pad: 0,
            service_id,
            backend_id,
        };
        self.filter_set(&endpoint(real, proto), AddrRole::Src)?;
        let mut m: HashMap<&mut MapData, EndpointKey, ReverseNat> = HashMap::try_from(
            self.ebpf
                .map_mut(names::REVERSE_NAT)
                .context("REVERSE_NAT")?,
        )?;
        m.insert(endpoint(real, proto), rn, 0)?;
        Ok(())
    }

    /// Sets `key`'s bits in `ENDPOINT_FILTER` (the key's, and its
    /// address's in `role`), as the agent does before it inserts the key
    /// into `SERVICES` (`AddrRole::Dst`) or `REVERSE_NAT` (`AddrRole::Src`).
    /// An older object (`LB_BENCH_OBJECT`) ignores the address bit.
    fn filter_set(&mut self, key: &EndpointKey, role: AddrRole) -> anyhow::Result<()> {
        let Some(map) = self.ebpf.map_mut(names::ENDPOINT_FILTER) else {
            return Ok(()); // an older object (LB_BENCH_OBJECT)
        };
        let mut a: Array<&mut MapData, u64> = Array::try_from(map)?;
        for bit in [
            lb_common::endpoint_filter_bit(key),
            lb_common::addr_filter_bit(role, key.family, &key.addr),
        ] {
            let w = a.get(&(bit >> 6), 0)?;
            a.set(bit >> 6, w | (1u64 << (bit & 63)), 0)?;
        }
        Ok(())
    }

    /// A service's counters summed over CPUs.
    pub fn service_counters(&self, id: u32) -> anyhow::Result<Counters> {
        let m: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(
            self.ebpf
                .map(names::SERVICE_STATS)
                .context("SERVICE_STATS")?,
        )?;
        let mut total = Counters::default();
        for c in m.get(&id, 0)?.iter() {
            total.add(c);
        }
        Ok(total)
    }

    /// Packets per XDP action since load, summed over CPUs.
    pub fn verdicts(&self) -> anyhow::Result<Vec<u64>> {
        let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.ebpf
                .map(names::VERDICT_STATS)
                .context("VERDICT_STATS")?,
        )?;
        (0..lb_common::verdict::COUNT)
            .map(|v| Ok(m.get(&v, 0)?.iter().sum()))
            .collect()
    }
}

/// The baseline object with all three programs verified.
pub fn load_baseline() -> anyhow::Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .load(lb_userspace::BASELINE_OBJECT)
        .context("loading the baseline eBPF object")?;
    for p in [BASELINE_TX, BASELINE_REDIRECT, COUNT_DROP] {
        load_xdp(&mut ebpf, p)?;
    }
    Ok(ebpf)
}

/// Sum over CPUs of `BASELINE_COUNT[0]` (frames `xdp_count_drop` counted).
pub fn count_drop_total(ebpf: &Ebpf) -> anyhow::Result<u64> {
    let m: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map(BASELINE_COUNT).context("BASELINE_COUNT")?)?;
    Ok(m.get(&0, 0)?.iter().sum())
}

pub fn set_baseline_fwd(ebpf: &mut Ebpf, fwd: BaselineFwd) -> anyhow::Result<()> {
    let mut m: Array<&mut MapData, BaselineFwd> =
        Array::try_from(ebpf.map_mut(BASELINE_FWD).context("BASELINE_FWD")?)?;
    m.set(0, fwd, 0)?;
    Ok(())
}
