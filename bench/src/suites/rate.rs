//! Suite `rate`: packet rate through the balancer in namespaces.
//!
//! Topology (every host its own namespace, nothing in the root namespace):
//! `gen` (g0, 192.168.253.1) -> `bal` (b0 192.168.253.254 | b1
//! 172.16.14.120) -> `srv` (s0, 172.16.14.121-123). The generator
//! ([`crate::gen`], one AF_PACKET sender per CPU) sends 64-byte UDP frames
//! to VIP 192.168.253.120:9 from 256 source ports (UDP checksum 0). The real server side counts what
//! arrives with `xdp_count_drop` on s0 (also gives s0 the NAPI a veth needs
//! to accept XDP_REDIRECT frames), so no socket or ICMP reply interferes.
//!
//! Variants, all on the same frames: lb NAT and lb DR (`lb_xdp` attached to
//! b0 in native mode, maps filled directly), nftables DNAT (jhash and
//! numgen), plain kernel forwarding (route VIP/32 via a real server), and
//! `xdp_baseline_redirect` (fixed MACs, redirect to b1): the XDP limit of
//! this path, and IPVS NAT and DR (`ipvsadm`, UDP service, round robin)
//! wherever the kernel has ip_vs (suite `ipvs` runs this suite in a VM
//! that has it; elsewhere the IPVS rows say why they are skipped). CPU:
//! /proc/stat of the whole machine during the window.
//!
//! IPVS is not a BPF program, so BPF_PROG_TEST_RUN (suite `packet`) cannot
//! time it: its per-packet cost against lb is this suite's softirq CPU per
//! delivered packet on the same frames, in the table `vs-ipvs`.

use std::{
    net::SocketAddrV4,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use aya::{programs::xdp::XdpMode, Ebpf};
use lb_common::{PROTO_UDP, SVC_F_DR, SVC_F_NAT};
use lb_tests::{
    netns::{veth_with, Netns, VethOptions},
    tempdir::TempDir,
};

use crate::{
    gen::Generator,
    packet::{frame, L4},
    report::{fmt_value, Report, Row, Table},
    tools::{cpu_s_per_mpkt, cpu_times, parse_ipvs_stats, parse_net_dev_tx_packets},
    xdp::{self, BaselineFwd, Lb},
    Ctx,
};

const VIP: &str = "192.168.253.120:9";
const REALS: [&str; 3] = ["172.16.14.121:9", "172.16.14.122:9", "172.16.14.123:9"];

struct Topo {
    gen: Netns,
    bal: Netns,
    srv: Netns,
    g0: [u8; 6],
    b0: [u8; 6],
    b1: [u8; 6],
    s0: [u8; 6],
}

fn topology() -> anyhow::Result<Topo> {
    let gen = Netns::unique("gen")?;
    let bal = Netns::unique("bal")?;
    let srv = Netns::unique("srv")?;
    veth_with(&gen, "g0", &bal, "b0", VethOptions::PLAIN)?;
    veth_with(&bal, "b1", &srv, "s0", VethOptions::PLAIN)?;
    // veth defaults to noqueue, which drops (with a kernel warning) when the
    // peer's XDP ring is full; a queue gives the sender backpressure.
    gen.exec(&[
        "tc", "qdisc", "replace", "dev", "g0", "root", "pfifo", "limit", "1000",
    ])?;
    gen.ip(&["addr", "add", "192.168.253.1/24", "dev", "g0"])?;
    bal.ip(&["addr", "add", "192.168.253.254/24", "dev", "b0"])?;
    bal.ip(&["addr", "add", "172.16.14.120/24", "dev", "b1"])?;
    for r in REALS {
        let a = r.split(':').next().unwrap_or(r);
        srv.ip(&["addr", "add", &format!("{a}/24"), "dev", "s0"])?;
    }
    srv.ip(&["route", "add", "default", "via", "172.16.14.120"])?;
    bal.sysctl("net.ipv4.ip_forward", "1")?;
    let t = Topo {
        g0: gen.mac("g0")?,
        b0: bal.mac("b0")?,
        b1: bal.mac("b1")?,
        s0: srv.mac("s0")?,
        gen,
        bal,
        srv,
    };
    // Permanent neighbours: no ARP in the measured window, and lb's DR path
    // (which drops on an unresolved neighbour) forwards from the first frame.
    for r in REALS {
        let a = r.split(':').next().unwrap_or(r);
        t.bal.neigh_permanent(a, "b1", t.s0)?;
    }
    t.bal.neigh_permanent("192.168.253.1", "b0", t.g0)?;
    // Plain forwarding needs a route for the VIP; with lb or DNAT the VIP
    // packet is rewritten or redirected before this route is consulted.
    t.bal.ip(&[
        "route",
        "add",
        "192.168.253.120/32",
        "via",
        "172.16.14.121",
        "dev",
        "b1",
    ])?;
    Ok(t)
}

struct Sample {
    delivered: u64,
    sent: u64,
    secs: f64,
    softirq: Option<f64>,
    busy: Option<f64>,
}

/// g0's transmitted packets, read in-process (/proc/thread-self/net/dev in
/// the generator's namespace): a process spawned for it takes long enough
/// under TCG to skew the window against the sink's counter.
fn tx_packets(gen: &Netns) -> anyhow::Result<u64> {
    let s = {
        let _in = gen.enter_thread()?;
        std::fs::read_to_string("/proc/thread-self/net/dev")?
    };
    parse_net_dev_tx_packets(&s, "g0").context("g0 in /proc/net/dev of the generator")
}

fn measure(t: &Topo, sink: &Ebpf, frames: &[Vec<u8>], secs: f64) -> anyhow::Result<Sample> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let gen = Generator::start(&t.gen, "g0", frames.to_vec(), cpus)?;
    // Warm-up: flow tables and conntrack filled, queues in steady state.
    std::thread::sleep(Duration::from_millis(500));
    let (d0, s0, c0, t0) = (
        xdp::count_drop_total(sink)?,
        tx_packets(&t.gen)?,
        cpu_times(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (d1, s1, c1, el) = (
        xdp::count_drop_total(sink)?,
        tx_packets(&t.gen)?,
        cpu_times(),
        t0.elapsed().as_secs_f64(),
    );
    let accepted = gen.stop()?;
    ensure!(accepted > 0, "the generator sent nothing");
    let delivered = d1 - d0;
    Ok(Sample {
        delivered,
        sent: s1 - s0,
        secs: el,
        softirq: cpu_s_per_mpkt(c0.softirq, c1.softirq, delivered),
        busy: cpu_s_per_mpkt(c0.busy, c1.busy, delivered),
    })
}

fn real(s: &str) -> SocketAddrV4 {
    s.parse().expect("literal address")
}

fn load_lb(t: &Topo, flags: u32) -> anyhow::Result<Lb> {
    let _in = t.bal.enter_thread()?;
    let mut lb = Lb::load(1 << 16, lb_common::defaults::MAGLEV_TABLE_SIZE)?;
    let mut bs = Vec::new();
    for (i, r) in REALS.iter().enumerate() {
        lb.backend(i as u32, 0, real(r))?;
        bs.push((i as u32, real(r)));
    }
    let ring = xdp::maglev_ring(&bs, lb_common::defaults::MAGLEV_TABLE_SIZE);
    lb.service(0, real(VIP), PROTO_UDP, flags, &ring)?;
    if flags & SVC_F_NAT != 0 {
        for (i, r) in REALS.iter().enumerate() {
            lb.reverse_nat(real(r), PROTO_UDP, real(VIP), 0, i as u32)?;
        }
    }
    xdp::xdp_mut(&mut lb.ebpf, lb_common::names::PROGRAM)?
        .attach("b0", XdpMode::Driver)
        .context("attaching lb_xdp to b0 (native)")?;
    Ok(lb)
}

fn nft(t: &Topo, hash: &str) -> anyhow::Result<()> {
    let rules = format!(
        "table ip lbbench {{\n  chain pre {{\n    type nat hook prerouting priority dstnat;\n    ip daddr 192.168.253.120 udp dport 9 dnat to {hash} map {{ 0 : 172.16.14.121, 1 : 172.16.14.122, 2 : 172.16.14.123 }}\n  }}\n}}\n"
    );
    let dir = TempDir::new("nft")?;
    let path = dir.join("nft.conf");
    std::fs::write(&path, rules)?;
    t.bal
        .exec(&["nft", "-f", &path.to_string_lossy()])
        .context("loading the nftables DNAT rules (apt-get install nftables)")?;
    Ok(())
}

/// NAT bindings live in conntrack entries, not in the rules: without a
/// flush the next variant would reuse the previous one's choices.
fn conntrack_flush(t: &Topo) -> anyhow::Result<()> {
    t.bal
        .exec(&["conntrack", "-F"])
        .context("flushing conntrack (apt-get install conntrack)")
        .map(|_| ())
}

fn nft_flush(t: &Topo) -> anyhow::Result<()> {
    t.bal.exec(&["nft", "flush", "ruleset"]).map(|_| ())
}

/// Why IPVS cannot be measured here, or `None` when ip_vs is built in or
/// loads as a module (`modprobe` result, /proc/net/ip_vs in the balancer's
/// namespace).
fn ipvs_missing(modprobe: Result<(), String>, proc_net_ip_vs: bool) -> Option<String> {
    match (modprobe, proc_net_ip_vs) {
        (_, true) | (Ok(()), _) => None,
        (Err(e), false) => Some(format!(
            "no ip_vs in this kernel (modprobe ip_vs: {e}; no /proc/net/ip_vs); suite ipvs measures it in a VM"
        )),
    }
}

fn ipvs_probe(t: &Topo) -> Option<String> {
    let m = lb_tests::netns::run(Command::new("modprobe").arg("ip_vs"))
        .map(|_| ())
        .map_err(|e| format!("{e:#}"));
    let proc_ok = t.bal.exec(&["cat", "/proc/net/ip_vs"]).is_ok();
    ipvs_missing(m, proc_ok)
}

/// IPVS as the seeds set it up (VIP local on the director), for UDP:
/// `-m` (NAT) or `-g` (DR), round robin over the 3 real servers.
fn ipvs_up(t: &Topo, method: &str) -> anyhow::Result<()> {
    t.bal
        .ip(&["addr", "add", "192.168.253.120/32", "dev", "lo"])?;
    // A 1 s UDP timeout: this variant's connection entries (which carry
    // the forwarding method) are gone before the next IPVS variant starts,
    // instead of living the default 300 s and steering its packets.
    t.bal
        .exec(&["ipvsadm", "--set", "0", "0", "1"])
        .context("ipvsadm (apt-get install ipvsadm)")?;
    t.bal.sysctl("net.ipv4.vs.expire_nodest_conn", "1")?;
    t.bal
        .exec(&["ipvsadm", "-A", "-u", VIP, "-s", "rr"])
        .context("ipvsadm -A")?;
    for r in REALS {
        t.bal.exec(&["ipvsadm", "-a", "-u", VIP, "-r", r, method])?;
    }
    Ok(())
}

/// IPVS's own count of what it forwarded: a variant that forwarded nothing
/// is an error, not a rate.
fn ipvs_forwarded(t: &Topo) -> anyhow::Result<u64> {
    let out = t.bal.exec(&["ipvsadm", "-L", "-n", "--stats", "--exact"])?;
    let s = parse_ipvs_stats(&out, "UDP", VIP)
        .with_context(|| format!("ipvsadm lists no UDP service {VIP}: {out}"))?;
    Ok(s.in_packets)
}

fn ipvs_down(t: &Topo) -> anyhow::Result<()> {
    t.bal.exec(&["ipvsadm", "-C"])?;
    t.bal
        .ip(&["addr", "del", "192.168.253.120/32", "dev", "lo"])?;
    // Let the 1 s connection entries expire (see ipvs_up).
    std::thread::sleep(Duration::from_millis(1500));
    Ok(())
}

/// One variant as the tables show it: its median round.
struct Chosen {
    label: String,
    mpps: f64,
    /// Softirq and all busy CPU, ns per delivered packet.
    softirq_ns: Option<f64>,
    busy_ns: Option<f64>,
}

/// lb's data plane against IPVS in the same forwarding mode: each lb row
/// is compared with the IPVS row of its mode (NAT with NAT, DR with DR).
/// The goal of issue 4 is IPVS's softirq cost per packet at least 4x lb's.
/// Without ip_vs (`missing`), the IPVS rows are skipped with the reason.
fn vs_ipvs_table(chosen: &[Chosen], missing: Option<&str>) -> Table {
    let mut t = Table::new(
        "vs-ipvs",
        "Per-packet cost against IPVS: softirq CPU per packet delivered",
        "softirq ns/packet",
        "IPVS NAT",
        "softirq cost per packet relative to IPVS NAT, lower is better",
    )
    .columns(&[
        "Mpps delivered",
        "rate x IPVS (same mode)",
        "IPVS cost / this (same mode)",
        "busy ns/packet",
    ]);
    let find = |l: &str| chosen.iter().find(|c| c.label == l);
    let f2 = |v: Option<f64>| v.map(|q| format!("{q:.2}")).unwrap_or("-".into());
    for (label, ipvs) in [
        ("lb NAT", "IPVS NAT"),
        ("lb DR", "IPVS DR"),
        ("IPVS NAT", "IPVS NAT"),
        ("IPVS DR", "IPVS DR"),
    ] {
        let Some(c) = find(label) else {
            if let Some(why) = missing.filter(|_| label.starts_with("IPVS")) {
                t.push(Row::skipped(label, why));
            }
            continue;
        };
        let Some(cost) = c.softirq_ns else {
            t.push(Row::skipped(label, "no softirq time counted in the window"));
            continue;
        };
        let base = find(ipvs);
        let rate_x = base.and_then(|b| crate::report::ratio(c.mpps, b.mpps));
        let cost_x = base
            .and_then(|b| b.softirq_ns)
            .and_then(|b| crate::report::ratio(b, cost));
        t.push(Row::new(
            label,
            cost,
            vec![
                fmt_value(c.mpps),
                f2(rate_x),
                f2(cost_x),
                c.busy_ns.map(fmt_value).unwrap_or("-".into()),
            ],
        ));
    }
    t
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let (secs, rounds) = if ctx.quick { (0.5, 1) } else { (4.0, 3) };
    let secs = ctx.counts.secs.unwrap_or(secs).max(0.1);
    let rounds = ctx.counts.rounds.unwrap_or(rounds).max(1);
    eprintln!("  [rate] building the namespaces (gen -> bal -> srv)");
    let t = topology()?;
    let ipvs_missing = ipvs_probe(&t);
    eprintln!(
        "  [rate] IPVS: {}",
        ipvs_missing.as_deref().unwrap_or("available, measured")
    );
    // The sink counts at the real servers for every variant.
    let mut sink = xdp::load_baseline()?;
    {
        let _in = t.srv.enter_thread()?;
        xdp::xdp_mut(&mut sink, xdp::COUNT_DROP)?
            .attach("s0", XdpMode::Driver)
            .context("attaching the counter to s0")?;
    }
    // 256 flows: source ports 1024..1279.
    let frames: Vec<Vec<u8>> = (0..256u16)
        .map(|p| {
            let src = SocketAddrV4::new([192, 168, 253, 1].into(), 1024 + p);
            frame(t.b0, t.g0, src, real(VIP), L4::UdpNoChecksum)
        })
        .collect();

    let mut table = Table::new(
        "rate",
        "Packet rate, 64-byte UDP to the VIP, counted at the real server",
        "Mpps delivered",
        "XDP redirect (limit)",
        "rate relative to plain XDP redirect on the same path, higher is better",
    )
    .columns(&[
        "range",
        "x nft jhash",
        "x kernel fwd",
        "sent Mpps",
        "delivered/sent",
        "softirq CPU-s/Mpkt",
        "busy CPU-s/Mpkt",
    ]);
    let mut samples: Vec<(String, Sample)> = Vec::new();
    let go = |label: &str, samples: &mut Vec<(String, Sample)>| -> anyhow::Result<()> {
        eprintln!("  [rate] {label}: {secs} s");
        let s = measure(&t, &sink, &frames, secs)?;
        eprintln!(
            "  [rate] {label}: {} Mpps delivered of {} sent",
            fmt_value(s.delivered as f64 / s.secs / 1e6),
            fmt_value(s.sent as f64 / s.secs / 1e6)
        );
        samples.push((label.to_string(), s));
        Ok(())
    };

    // Rounds in turn, so a burst of other work on the machine hits one
    // round of every variant rather than all rounds of one.
    for round in 1..=rounds {
        eprintln!("  [rate] round {round} of {rounds}");
        go("kernel forwarding", &mut samples)?;
        nft(&t, "jhash ip saddr . udp sport mod 3")?;
        go("nftables DNAT (jhash)", &mut samples)?;
        nft_flush(&t)?;
        conntrack_flush(&t)?;
        nft(&t, "numgen inc mod 3")?;
        go("nftables DNAT (numgen)", &mut samples)?;
        nft_flush(&t)?;
        conntrack_flush(&t)?;
        {
            let mut base = xdp::load_baseline()?;
            let b1 = t.bal.ifindex("b1")?;
            xdp::set_baseline_fwd(
                &mut base,
                BaselineFwd {
                    ifindex: b1,
                    smac: t.b1,
                    dmac: t.s0,
                },
            )?;
            {
                let _in = t.bal.enter_thread()?;
                xdp::xdp_mut(&mut base, xdp::BASELINE_REDIRECT)?
                    .attach("b0", XdpMode::Driver)
                    .context("attaching xdp_baseline_redirect to b0")?;
            }
            go("XDP redirect (limit)", &mut samples)?;
        }
        for (label, flags) in [("lb NAT", SVC_F_NAT), ("lb DR", SVC_F_DR)] {
            let lb = load_lb(&t, flags)?;
            go(label, &mut samples)?;
            let v = lb.verdicts()?;
            ensure!(
                v[lb_common::verdict::REDIRECT as usize] > 0,
                "{label}: lb_xdp redirected nothing (verdicts {v:?})"
            );
            drop(lb);
        }
        if ipvs_missing.is_none() {
            for (label, method) in [("IPVS NAT", "-m"), ("IPVS DR", "-g")] {
                ipvs_up(&t, method)?;
                go(label, &mut samples)?;
                let n = ipvs_forwarded(&t)?;
                ensure!(n > 0, "{label}: IPVS forwarded nothing (ipvsadm --stats)");
                ipvs_down(&t)?;
            }
        }
    }

    // Per variant, the round with the median delivered rate.
    let mut labels: Vec<String> = Vec::new();
    for (l, _) in &samples {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    let mpps_of = |s: &Sample| s.delivered as f64 / s.secs / 1e6;
    let mut chosen: Vec<(String, &Sample, f64, f64)> = Vec::new();
    for l in &labels {
        let mut v: Vec<&Sample> = samples
            .iter()
            .filter(|(x, _)| x == l)
            .map(|(_, s)| s)
            .collect();
        v.sort_by(|a, b| mpps_of(a).total_cmp(&mpps_of(b)));
        let (lo, hi) = (mpps_of(v[0]), mpps_of(v[v.len() - 1]));
        chosen.push((l.clone(), v[v.len() / 2], lo, hi));
    }
    let rate = |label: &str| {
        chosen
            .iter()
            .find(|(l, ..)| l == label)
            .map(|(_, s, ..)| mpps_of(s))
    };
    let nft_rate = rate("nftables DNAT (jhash)");
    let fwd_rate = rate("kernel forwarding");
    for (label, s, lo, hi) in &chosen {
        let mpps = mpps_of(s);
        let vs = |b: Option<f64>| {
            b.and_then(|b| crate::report::ratio(mpps, b))
                .map(|q| format!("{q:.2}"))
                .unwrap_or("-".into())
        };
        let opt = |v: Option<f64>| v.map(fmt_value).unwrap_or("-".into());
        table.push(Row::new(
            label.as_str(),
            mpps,
            vec![
                format!("{}-{}", fmt_value(*lo), fmt_value(*hi)),
                vs(nft_rate),
                vs(fwd_rate),
                fmt_value(s.sent as f64 / s.secs / 1e6),
                format!("{:.3}", s.delivered as f64 / s.sent.max(1) as f64),
                opt(s.softirq),
                opt(s.busy),
            ],
        ));
    }
    if let Some(why) = &ipvs_missing {
        table.push(Row::skipped("IPVS NAT", why.as_str()));
        table.push(Row::skipped("IPVS DR", why.as_str()));
    }
    let ns = |v: Option<f64>| v.map(|cpu_s_per_mpkt| cpu_s_per_mpkt * 1e3);
    let per_variant: Vec<Chosen> = chosen
        .iter()
        .map(|(label, s, ..)| Chosen {
            label: label.clone(),
            mpps: mpps_of(s),
            softirq_ns: ns(s.softirq),
            busy_ns: ns(s.busy),
        })
        .collect();
    let vs_ipvs = vs_ipvs_table(&per_variant, ipvs_missing.as_deref());
    let mut report = Report::new(
        "rate",
        "Packet rate (namespaces, veth)",
        &ctx.machine,
        ctx.quick,
    );
    report.method = vec![
        "gen -> bal -> srv namespaces joined by veth pairs; an AF_PACKET sendmmsg generator (one thread per CPU; trafgen exits on the EAGAIN a veth gives once its peer runs XDP) sends 60-byte (64 on the wire) UDP frames to 192.168.253.120:9 from 256 source ports, UDP checksum 0.".into(),
        format!("{rounds} rounds over all variants in turn; the median round per variant is shown (range: all rounds). Each run: 0.5 s warm-up, then {secs} s counted: frames delivered to the real server side (xdp_count_drop on s0), frames sent (g0 tx_packets), and /proc/stat of the whole machine."),
        "lb NAT / DR: the real lb_xdp attached to b0 in native mode, one UDP service with 3 real servers (172.16.14.121-123 behind b1), maps filled directly (no agent). nftables: prerouting DNAT with jhash (per flow) or numgen (per connection); conntrack keeps the choice per flow. Kernel forwarding: VIP/32 routed via a real server. XDP redirect: xdp_baseline_redirect, fixed MACs, redirect to b1, no parsing, no lookup. IPVS (where the kernel has ip_vs): `ipvsadm -A -u 192.168.253.120:9 -s rr`, the 3 real servers with -m (NAT) or -g (DR), the VIP on the balancer's lo, UDP timeout 1 s (so one variant's connection entries are gone before the next), net.ipv4.vs.conntrack left at 0.".into(),
        "Per-packet cost against IPVS: IPVS is not a BPF program, so BPF_PROG_TEST_RUN (suite packet) cannot time it; table vs-ipvs compares softirq CPU per delivered packet (1 CPU-s/Mpkt = 1000 ns/packet) and the delivered rate of lb and IPVS on the same frames, in the same run, mode against mode.".into(),
    ];
    report.notes = vec![
        "veth is not a NIC: all the work (generation, veth transmit, XDP or the kernel path, the sink) runs on the sender's CPU in softirq; the rates rank the forwarding paths, they are not what a NIC would reach.".into(),
        format!("The generator shares the machine's {} cores with the balancer, and /proc/stat counts every process on the machine (other work included).", ctx.machine.cores),
        "Goals (issue 4): lb at least 4x nftables DNAT (column `x nft jhash`) and at least 0.9 of the XDP limit (column `ratio`); per-packet cost at least 4x lower than IPVS (table vs-ipvs, column `IPVS cost / this`).".into(),
        "An XDP program on b0 (lb, XDP redirect) makes the veth copy every generated frame into a page with XDP headroom (an AF_PACKET skb has too little), a per-packet cost a NIC driver does not have and that the kernel paths (forwarding, nftables, IPVS) do not pay here: it counts against lb in every comparison with them.".into(),
        "Softirq time comes from /proc/stat ticks (USER_HZ 100): a window of a few seconds on 2 CPUs holds a few hundred ticks, so a cost is good to a few percent at best; busy CPU includes the generator.".into(),
    ];
    report.tables = vec![table, vs_ipvs];
    drop(sink);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(label: &str, mpps: f64, softirq_ns: f64) -> Chosen {
        Chosen {
            label: label.into(),
            mpps,
            softirq_ns: Some(softirq_ns),
            busy_ns: Some(softirq_ns * 2.0),
        }
    }

    #[test]
    fn ipvs_detection() {
        assert_eq!(ipvs_missing(Ok(()), false), None);
        assert_eq!(ipvs_missing(Err("not found".into()), true), None);
        let why = ipvs_missing(Err("Module ip_vs not found".into()), false).unwrap();
        assert!(why.contains("Module ip_vs not found"), "{why}");
        assert!(why.contains("suite ipvs"), "{why}");
    }

    #[test]
    fn lb_is_compared_with_ipvs_of_its_mode() {
        let v = [
            c("lb NAT", 0.2, 500.0),
            c("lb DR", 0.3, 250.0),
            c("IPVS NAT", 0.1, 2000.0),
            c("IPVS DR", 0.15, 1500.0),
            c("kernel forwarding", 0.1, 1000.0),
        ];
        let mut t = vs_ipvs_table(&v, None);
        t.compute_ratios();
        let row = |l: &str| t.rows.iter().find(|r| r.label == l).unwrap().clone();
        assert_eq!(t.rows.len(), 4, "only lb and IPVS rows");
        // lb NAT against IPVS NAT: 2x the rate, a quarter of the cost.
        assert_eq!(row("lb NAT").extra[1], "2.00");
        assert_eq!(row("lb NAT").extra[2], "4.00");
        // lb DR against IPVS DR, not against IPVS NAT.
        assert_eq!(row("lb DR").extra[1], "2.00");
        assert_eq!(row("lb DR").extra[2], "6.00");
        assert_eq!(row("IPVS DR").extra[2], "1.00");
        // The ratio column: cost relative to IPVS NAT.
        assert_eq!(row("lb DR").ratio, Some(0.125));
        assert_eq!(row("lb NAT").value, Some(500.0));
    }

    #[test]
    fn ipvs_rows_say_why_they_are_missing() {
        let v = [c("lb NAT", 0.2, 500.0), c("lb DR", 0.3, 250.0)];
        let mut t = vs_ipvs_table(&v, Some("no ip_vs here"));
        t.compute_ratios();
        let skipped: Vec<&str> = t
            .rows
            .iter()
            .filter(|r| r.skipped.as_deref() == Some("no ip_vs here"))
            .map(|r| r.label.as_str())
            .collect();
        assert_eq!(skipped, ["IPVS NAT", "IPVS DR"]);
        // No IPVS baseline: no ratio is invented.
        assert!(t.rows.iter().all(|r| r.ratio.is_none()));
        assert_eq!(t.rows[0].extra[1], "-");
    }
}
