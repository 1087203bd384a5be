//! Loading the XDP object with map sizes taken from the config, attaching
//! it to the configured interfaces in the configured XDP mode, and the
//! preconditions for doing so (capabilities, locked-memory limit).

use std::fs;

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, Xdp, XdpMode as AyaXdpMode,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use lb_common::{defaults, flow_table::flow_sets, layout::Entries, names};

use super::pin::PinDir;
use crate::config::{Config, XdpMode};

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(
        "lb run needs root: the process lacks {missing} (run it as root, or give the binary \
         CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
    )]
    Privileges { missing: String },
    #[error("cannot read the process capabilities from /proc/self/status: {0}")]
    Capabilities(String),
    #[error("loading the XDP object into the kernel failed: {0}")]
    Load(#[source] EbpfError),
    #[error("the XDP object has no program named {0}")]
    NoProgram(&'static str),
    #[error("the kernel rejected the XDP program {name}: {source}")]
    Verify {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot put the ICMP program into the program array JUMP: {0}")]
    Jump(#[source] aya::maps::MapError),
    #[error("cannot pin the XDP link of {interface} at {path}: {detail}")]
    PinLink {
        interface: String,
        path: String,
        detail: String,
    },
    #[error("attaching XDP to interface {interface} in {mode} mode failed: {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
}

/// The fewest real servers the maps indexed by backend id are sized for
/// (BACKENDS, REVERSE_NAT, DR_NEXT_HOPS, and the per-CPU BACKEND_STATS and
/// next-hop cache), whatever the config holds: room for a reload to add up
/// to this many without a restart. The compiled-in 65,536 cost 15.5 MiB
/// plus 6 MiB per CPU, too much for a 1 GB board (issue 11); 4,096 cost
/// about 1 MiB plus 0.4 MiB per CPU. A config with more real servers gets
/// twice its count.
pub const MIN_BACKENDS: u32 = 4096;

/// IPv6 flows (`FLOWS`) of an agent started with no IPv6 virtual server:
/// IPv4 flows have their own table (`FLOWS_V4`, `flow_table_size`), and a
/// second full-size table nobody uses would cost memory for nothing. IPv6
/// services a reload adds get this many flows (beyond it a full set
/// forgets its least recent IPv6 flow, whose next packet is scheduled again
/// by the ring, to the same real server unless the set changed) until
/// `lb unload` and `lb run` size it from the config.
pub const IPV6_FLOWS_WITHOUT_IPV6: u32 = 4096;

/// How many entries each map gets, decided once at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    pub services: u32,
    pub backends: u32,
    pub ring_slots: u32,
    /// Sets of `FLOWS_V4` (IPv4 flows, four each): `flow_table_size`
    /// entries (`lb_common::flow_table::flow_sets`).
    pub flow_sets: u32,
    /// Sets of `FLOWS` (IPv6 flows): `flow_table_size` entries when the
    /// config has an IPv6 virtual server, else [`IPV6_FLOWS_WITHOUT_IPV6`]
    /// (at most `flow_table_size`).
    pub flow_sets_v6: u32,
}

impl MapSizes {
    /// Room for the config twice over (a reload may add as much again) and
    /// never below the compiled-in defaults ([`MIN_BACKENDS`] for the maps
    /// indexed by backend id); the ring holds every table
    /// twice (each rebuild writes a new range before freeing the old one)
    /// plus two of the largest tables for services added by a reload.
    pub fn for_config(config: &Config) -> Self {
        let services = config.virtual_servers.len() as u32;
        let backends: u32 = config
            .virtual_servers
            .iter()
            .map(|vs| vs.real_servers.len() as u32 + u32::from(vs.sorry_server.is_some()))
            .sum();
        let tables: u64 = config
            .virtual_servers
            .iter()
            .map(|vs| u64::from(vs.maglev_table_size))
            .sum();
        let largest = config
            .virtual_servers
            .iter()
            .map(|vs| vs.maglev_table_size)
            .max()
            .unwrap_or(defaults::MAGLEV_TABLE_SIZE)
            .max(defaults::MAGLEV_TABLE_SIZE);
        let ring = (2 * tables + 2 * u64::from(largest)).min(u64::from(u32::MAX / 2)) as u32;
        Self {
            services: defaults::MAX_SERVICES.max(services.saturating_mul(2)),
            backends: MIN_BACKENDS.max(backends.saturating_mul(2)),
            ring_slots: defaults::MAGLEV_RING_SLOTS.max(ring),
            flow_sets: flow_sets(config.agent.flow_table_size),
            flow_sets_v6: flow_sets(
                if config.virtual_servers.iter().any(|vs| vs.address.is_ipv6()) {
                    config.agent.flow_table_size
                } else {
                    IPV6_FLOWS_WITHOUT_IPV6.min(config.agent.flow_table_size)
                },
            ),
        }
    }
}

impl MapSizes {
    /// The size of a map whose entries come from `entries`; `None` for the
    /// sizes compiled into the program.
    pub fn entries(&self, entries: Entries) -> Option<u32> {
        match entries {
            Entries::Services => Some(self.services),
            Entries::Backends => Some(self.backends),
            Entries::RingSlots => Some(self.ring_slots),
            Entries::Flows => Some(self.flow_sets),
            Entries::FlowsV6 => Some(self.flow_sets_v6),
            Entries::Exactly(_) | Entries::AppendOnly(_) => None,
        }
    }
}

/// Linux capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Loading XDP needs CAP_BPF and CAP_PERFMON (or, before 5.8,
/// CAP_SYS_ADMIN) and attaching needs CAP_NET_ADMIN. Checked up front from the effective set so the user
/// gets one line instead of an EPERM from deep inside the loader.
pub fn check_privileges() -> Result<(), LoaderError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| LoaderError::Capabilities(e.to_string()))?;
    let caps =
        parse_cap_eff(&status).ok_or_else(|| LoaderError::Capabilities("no CapEff line".into()))?;
    missing_capabilities(caps).map_or(Ok(()), |missing| Err(LoaderError::Privileges { missing }))
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn missing_capabilities(caps: u64) -> Option<String> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    // Without it (or CAP_SYS_ADMIN) the verifier refuses the program's
    // packet pointer arithmetic ("prohibited for !root"): measured with
    // CAP_BPF and CAP_NET_ADMIN alone.
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use
/// memory cgroups and ignore it. Raising it is harmless either way.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if rc != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {} (fine on kernels >= 5.11)",
            std::io::Error::last_os_error()
        );
    }
}

/// Load `object` with the maps sized by `sizes`, its flow tags seeded with
/// `flow_seed` (`PinDir::flow_seed`), and the program verified;
/// nothing is attached yet. With `pins`, every contract map is taken from
/// its pin when one exists (adoption: `sizes` must then be the pinned
/// sizes, see `PinDir::probe`) and created and pinned there otherwise.
pub fn load(
    object: &[u8],
    sizes: &MapSizes,
    flow_seed: u64,
    pins: Option<&PinDir>,
) -> Result<Ebpf, LoaderError> {
    let mut loader = EbpfLoader::new();
    if let Some(pins) = pins {
        for name in super::pin::map_names() {
            loader.map_pin_path(name, pins.map(name));
        }
    }
    for map in &lb_common::layout::MAPS {
        if let Some(n) = sizes.entries(map.entries) {
            loader.map_max_entries(map.name, n);
        }
    }
    let globals = FlowTableGlobals::new(sizes.flow_sets, sizes.flow_sets_v6).seed(flow_seed);
    globals.set(&mut loader);
    let mut ebpf = loader.load(object).map_err(LoaderError::Load)?;
    let program: &mut Xdp = ebpf
        .program_mut(names::PROGRAM)
        .ok_or(LoaderError::NoProgram(names::PROGRAM))?
        .try_into()
        .map_err(|source| LoaderError::Verify {
            name: names::PROGRAM,
            source,
        })?;
    program.load().map_err(|source| LoaderError::Verify {
        name: names::PROGRAM,
        source,
    })?;
    // How close the program is to the verifier's limit (1,000,000
    // instructions walked) on this kernel: the margin a change spends.
    if let Ok(info) = program.info() {
        tracing::info!(
            "{} verified: {} instructions, {} walked by the verifier (limit 1000000)",
            names::PROGRAM,
            info.size_translated().unwrap_or(0) / 8,
            info.verified_instruction_count()
                .map_or("?".to_string(), |n| n.to_string())
        );
    }
    link_icmp_path(&mut ebpf)?;
    Ok(ebpf)
}

/// What the program must know of its flow tables as constants: how many
/// sets each has (it indexes them by a tag's bits) and the tags' seed.
/// Everything that loads the object with other flow-table sizes than the
/// compiled-in ones (the agent, the fixtures, the bench) sets them with
/// the maps' sizes; a mismatch would leave flows unrecorded.
pub struct FlowTableGlobals {
    sets_v4: u32,
    sets_v6: u32,
    seed: u64,
}

impl FlowTableGlobals {
    /// For tables of `sets_v4` (`FLOWS_V4`) and `sets_v6` (`FLOWS`) sets.
    pub fn new(sets_v4: u32, sets_v6: u32) -> Self {
        Self {
            sets_v4,
            sets_v6,
            seed: lb_common::flow_table::DEFAULT_FLOW_SEED,
        }
    }

    /// With tags seeded by `seed` instead of the default one.
    pub fn seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// Set them on `loader` (before `load`).
    pub fn set<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global(names::FLOW_SETS_V4, &self.sets_v4, true)
            .override_global(names::FLOW_SETS_V6, &self.sets_v6, true)
            .override_global(names::FLOW_SEED, &self.seed, true);
    }
}

/// Loads the ICMP error path (`names::ICMP_PROGRAM`) of a loaded object and
/// puts it where `lb_xdp` tail-calls it (`names::JUMP`): without it, ICMP
/// errors about flows go to the kernel undelivered. Everything that loads
/// the object (the agent, the fixtures, the bench) calls this once after
/// loading `lb_xdp`. A load the verifier abandons with EAGAIN (a signal
/// pending on the loading thread, e.g. SIGCHLD) is asked again.
pub fn link_icmp_path(ebpf: &mut Ebpf) -> Result<(), LoaderError> {
    let verify = |source| LoaderError::Verify {
        name: names::ICMP_PROGRAM,
        source,
    };
    let program: &mut Xdp = ebpf
        .program_mut(names::ICMP_PROGRAM)
        .ok_or(LoaderError::NoProgram(names::ICMP_PROGRAM))?
        .try_into()
        .map_err(verify)?;
    let mut load = program.load();
    for _ in 0..5 {
        match &load {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(11) =>
            {
                load = program.load();
            }
            _ => break,
        }
    }
    load.map_err(verify)?;
    let fd = program
        .fd()
        .and_then(|fd| fd.try_clone().map_err(ProgramError::from))
        .map_err(verify)?;
    let map = ebpf
        .map_mut(names::JUMP)
        .ok_or(LoaderError::NoProgram(names::JUMP))?;
    let mut jump = aya::maps::ProgramArray::try_from(map).map_err(LoaderError::Jump)?;
    jump.set(names::JUMP_ICMP, &fd, 0)
        .map_err(LoaderError::Jump)
}

/// The XDP mode an interface ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }

    fn aya(self) -> AyaXdpMode {
        match self {
            AttachedMode::Native => AyaXdpMode::Driver,
            AttachedMode::Generic => AyaXdpMode::Skb,
        }
    }
}

/// How the program came to run on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link, in this mode.
    New(AttachedMode),
    /// The pinned link of a previous agent, now running this program (its
    /// mode is the one it was created with).
    Adopted,
}

/// Attach the program to `interface` through a link pinned in `pins`, so it
/// stays attached when the agent exits. When a previous agent's link is
/// pinned there, this program replaces the old one in it atomically
/// (`bpf_link_update`): no packet meets an interface without XDP.
pub fn attach_pinned(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: XdpMode,
    pins: &PinDir,
) -> Result<Attached, LoaderError> {
    let path = pins.link(interface);
    let pin_err = |detail: String| LoaderError::PinLink {
        interface: interface.to_string(),
        path: path.display().to_string(),
        detail,
    };
    if path.exists() {
        match PinnedLink::from_pin(&path) {
            Ok(pinned) => {
                let program = xdp_program(ebpf)?;
                let fd_link: FdLink = pinned.into();
                let updated = XdpLink::try_from(fd_link)
                    .map_err(|e| pin_err(e.to_string()))
                    .and_then(|link| {
                        program
                            .attach_to_link(link)
                            .map_err(|e| pin_err(e.to_string()))
                    });
                match updated {
                    Ok(id) => {
                        // Our copy of the link fd closes; the pin keeps it.
                        let link = program.take_link(id).map_err(|e| pin_err(e.to_string()))?;
                        let _: FdLink = link.try_into().map_err(|e| pin_err(format!("{e}")))?;
                        return Ok(Attached::Adopted);
                    }
                    Err(e) => {
                        // A link whose interface went away cannot be
                        // updated: start a new one.
                        tracing::warn!("{e}; attaching anew");
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    "{} is not a usable link ({e}); attaching anew",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let (id, m) = attach_link(ebpf, interface, mode)?;
    let program = xdp_program(ebpf)?;
    let link = program.take_link(id).map_err(|e| pin_err(e.to_string()))?;
    let fd_link: FdLink = link.try_into().map_err(|e| {
        pin_err(format!(
            "the kernel attached XDP through netlink, not a bpf_link ({e}); restarts will detach"
        ))
    })?;
    fd_link.pin(&path).map_err(|e| pin_err(e.to_string()))?;
    Ok(Attached::New(m))
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoaderError> {
    ebpf.program_mut(names::PROGRAM)
        .ok_or(LoaderError::NoProgram(names::PROGRAM))?
        .try_into()
        .map_err(|source| LoaderError::Verify {
            name: names::PROGRAM,
            source,
        })
}

/// Attach the program to `interface`, the link owned by the program (it
/// goes when the program is dropped). `auto` tries native (driver) mode and
/// falls back to generic with a log line: some NIC drivers (the Pi 4's) have
/// no native XDP; on a veth it picks generic at once (`device`). `native`
/// and `generic` are strict.
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: XdpMode,
) -> Result<AttachedMode, LoaderError> {
    attach_link(ebpf, interface, mode).map(|(_, m)| m)
}

fn attach_link(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: XdpMode,
) -> Result<(aya::programs::xdp::XdpLinkId, AttachedMode), LoaderError> {
    let program: &mut Xdp = ebpf
        .program_mut(names::PROGRAM)
        .ok_or(LoaderError::NoProgram(names::PROGRAM))?
        .try_into()
        .map_err(|source| LoaderError::Verify {
            name: names::PROGRAM,
            source,
        })?;
    let try_mode = |program: &mut Xdp, m: AttachedMode| {
        program
            .attach(interface, m.aya())
            .map(|id| (id, m))
            .map_err(|source| LoaderError::Attach {
                interface: interface.to_string(),
                mode: m.name(),
                source,
            })
    };
    match mode {
        XdpMode::Native => try_mode(program, AttachedMode::Native),
        XdpMode::Generic => try_mode(program, AttachedMode::Generic),
        XdpMode::Auto if on_veth(interface) => try_mode(program, AttachedMode::Generic),
        XdpMode::Auto => try_mode(program, AttachedMode::Native).or_else(|e| {
            tracing::warn!(
                "{interface}: native XDP not available ({}), falling back to generic (skb) mode",
                error_chain(&e)
            );
            try_mode(program, AttachedMode::Generic)
        }),
    }
}

/// `auto` on a veth: generic mode, said once per interface (see
/// `device`).
fn on_veth(interface: &str) -> bool {
    let veth = super::device::driver(interface).is_some_and(|d| super::device::prefers_generic(&d));
    if veth {
        tracing::info!(
            "{interface} is a veth: attaching in generic (skb) mode, where veth senders' \
             partial checksums, XDP_TX and XDP_REDIRECT need nothing from the other hosts; \
             native mode on veths needs `ethtool -K <dev> tx off` on every veth whose host \
             sends through lb, `ethtool -K <peer> gro on` on the peers of lb's interfaces and \
             an XDP program on the peers that receive XDP_TX frames: then set xdp_mode = \
             \"native\""
        );
    }
    veth
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv6_flow_table_is_full_size_only_with_an_ipv6_service() {
        let config = |vip: &str, real: &str| {
            crate::config::parse(
                &format!(
                    "[agent]\ninterfaces = [\"eth0\"]\nflow_table_size = 65536\n\n\
                     [[virtual_server]]\nname = \"web\"\naddress = \"{vip}\"\nport = 80\n\
                     protocol = \"tcp\"\nforwarding = \"nat\"\n\
                     real_server = [{{ address = \"{real}\", port = 8080 }}]\n"
                ),
                "lb.toml",
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let v4 = MapSizes::for_config(&config("192.168.253.120", "172.16.14.121"));
        assert_eq!(
            (v4.flow_sets, v4.flow_sets_v6),
            (65536 / 4, IPV6_FLOWS_WITHOUT_IPV6 / 4)
        );
        let v6 = MapSizes::for_config(&config("2001:db8::120", "2001:db8:14::121"));
        assert_eq!((v6.flow_sets, v6.flow_sets_v6), (65536 / 4, 65536 / 4));
    }

    #[test]
    fn cap_eff_is_read_as_hex() {
        let status = "Name:\tlb\nCapPrm:\t0\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn missing_capabilities_are_named() {
        assert_eq!(missing_capabilities(u64::MAX), None);
        assert_eq!(
            missing_capabilities(0).as_deref(),
            Some("CAP_BPF and CAP_PERFMON and CAP_NET_ADMIN")
        );
        // What the packaged systemd unit grants (and CAP_NET_RAW).
        let unit = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN);
        assert_eq!(missing_capabilities(unit), None);
        assert_eq!(
            missing_capabilities((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)).as_deref(),
            Some("CAP_PERFMON")
        );
        // CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8).
        let sys_admin_net_admin = (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN);
        assert_eq!(missing_capabilities(sys_admin_net_admin), None);
        assert_eq!(
            missing_capabilities(1 << CAP_BPF).as_deref(),
            Some("CAP_PERFMON and CAP_NET_ADMIN")
        );
    }
}
