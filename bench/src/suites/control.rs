//! Suite `control`: the control plane's costs that do not need traffic.
//!
//! - Maglev `build_table` (the agent's own code) against the number of real
//!   servers (1..1000) and the table size (251..655373); baseline: the
//!   issue's reference point, 100 real servers in 65537 slots (goal: at most
//!   2 ms).
//! - Kernel memory of the BPF maps (`memlock` of each map in
//!   /proc/self/fdinfo) against the flow table size; baseline: the agent's
//!   default flow table (1,048,576 entries).
//! - Agent RSS and CPU when idle: needs `lb run`, reported as skipped until
//!   the agent exists.

use std::{
    net::IpAddr,
    os::fd::{AsFd, AsRawFd},
    time::Instant,
};

use anyhow::Context as _;
use aya::maps::Map;
use lb_common::names;
use lb_tests::{
    netns::{veth_with, Netns, ThreadNs, VethOptions},
    tempdir::TempDir,
};
use lb_userspace::maglev::{build_table, Entry};

use crate::{
    report::{fmt_value, Report, Row, Table},
    stats::median,
    Ctx,
};

/// Real servers 10.(i/65536).(i/256%256).(i%256):80, weight 1.
pub fn entries(n: u32) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            id: i,
            addr: IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            port: 80,
            weight: 1,
        })
        .collect()
}

/// Median wall time of `build_table` in microseconds, over as many runs as
/// fit in `budget_ms` (at least 3, at most 200).
fn time_build(n: u32, size: u32, budget_ms: u128) -> (f64, usize) {
    let e = entries(n);
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed().as_millis() < budget_ms && times.len() < 200) {
        let t = Instant::now();
        let table = build_table(&e, size);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(table);
    }
    (median(&times).unwrap_or(0.0), times.len())
}

fn memlock(map: &Map) -> anyhow::Result<u64> {
    let data = match map {
        Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d)
        | Map::ProgramArray(d) => d,
        _ => anyhow::bail!("unexpected map kind"),
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    parse_memlock(&info).context("no memlock in fdinfo")
}

/// `memlock:` of a BPF map's /proc/PID/fdinfo entry, in bytes.
pub fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut report = Report::new("control", "Control plane", &ctx.machine, ctx.quick);
    let budget = if ctx.quick { 5 } else { 300 };
    let base_label = "100 real servers, 65537 slots";

    let mut by_n = Table::new(
        "maglev-servers",
        "Maglev build_table time against the number of real servers (65537 slots)",
        "us",
        base_label,
        "time relative to 100 real servers in 65537 slots, lower is better",
    )
    .columns(&["runs"]);
    let servers: &[u32] = if ctx.quick {
        &[1, 100]
    } else {
        &[1, 10, 100, 300, 1000]
    };
    for &n in servers {
        eprintln!("  [control] maglev {n} real servers, 65537 slots");
        let (us, runs) = time_build(n, 65537, budget);
        let label = if n == 100 {
            base_label.to_string()
        } else {
            format!("{n} real servers, 65537 slots")
        };
        by_n.push(Row::new(label, us, vec![runs.to_string()]));
    }

    let mut by_size = Table::new(
        "maglev-size",
        "Maglev build_table time against the table size (100 real servers)",
        "us",
        base_label,
        "time relative to 100 real servers in 65537 slots, lower is better",
    )
    .columns(&["runs", "ns/slot"]);
    let sizes: &[u32] = if ctx.quick {
        &[251, 65537]
    } else {
        &[251, 4093, 65537, 655373]
    };
    for &size in sizes {
        eprintln!("  [control] maglev 100 real servers, {size} slots");
        let (us, runs) = time_build(100, size, budget);
        let label = if size == 65537 {
            base_label.to_string()
        } else {
            format!("100 real servers, {size} slots")
        };
        by_size.push(Row::new(
            label,
            us,
            vec![runs.to_string(), fmt_value(us * 1000.0 / f64::from(size))],
        ));
    }

    let mut mem = Table::new(
        "map-memory",
        "BPF map memory against the flow table size (memlock of every map)",
        "MiB",
        "flow table 524288 (default)",
        "memory relative to the default flow table, lower is better",
    )
    // Both flow tables (FLOWS_V4 and FLOWS, each `flow_table_size` flows):
    // bytes/flow is one IPv4 plus one IPv6 entry.
    .columns(&["flow tables MiB", "bytes/flow (v4 + v6)", "other maps MiB"]);
    let flow_sizes: &[u32] = if ctx.quick {
        &[4096, 1 << 19]
    } else {
        &[4096, 65536, 1 << 17, 1 << 19, 1 << 20, 1 << 22]
    };
    for &flows in flow_sizes {
        eprintln!("  [control] map memory with a flow table of {flows}");
        let lb = crate::xdp::Lb::load(flows, lb_common::defaults::MAGLEV_RING_SLOTS)?;
        let mut total = 0u64;
        let mut flow_bytes = 0u64;
        for (name, map) in lb.ebpf.maps() {
            let m = memlock(map).with_context(|| format!("memlock of {name}"))?;
            total += m;
            if name == names::FLOWS || name == names::FLOWS_V4 {
                flow_bytes += m;
            }
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        // The default since the set-associative flow table: 2^19 entries.
        let label = if flows == 1 << 19 {
            "flow table 524288 (default)".to_string()
        } else {
            format!("flow table {flows}")
        };
        mem.push(Row::new(
            label,
            mib(total),
            vec![
                fmt_value(mib(flow_bytes)),
                fmt_value(flow_bytes as f64 / f64::from(flows)),
                fmt_value(mib(total - flow_bytes)),
            ],
        ));
    }

    let mut agent = Table::new(
        "agent",
        "Agent (lb run) resident memory and CPU when idle",
        "MiB RSS",
        "1 service",
        "memory relative to the agent with 1 service",
    )
    .columns(&["CPU % idle", "s to first status", "services", "flow table"]);
    match crate::suites::http::lb_binary() {
        None => agent.push(Row::skipped(
            "1 service",
            "no `lb` binary next to lb-bench (cargo build --release -p lb-userspace --bin lb) and no LB_BIN",
        )),
        Some(bin) => {
            let secs = if ctx.quick { 1.0 } else { 5.0 };
            for n in [1u32, 100] {
                eprintln!("  [control] agent idle with {n} service(s), {secs} s");
                let (rss, cpu, startup) = agent_idle(&bin, n, secs)?;
                let label = if n == 1 { "1 service".to_string() } else { format!("{n} services") };
                agent.push(Row::new(
                    label,
                    rss,
                    vec![
                        format!("{cpu:.2}"),
                        fmt_value(startup),
                        n.to_string(),
                        format!(
                            "{} (default)",
                            lb_userspace::config::DEFAULT_FLOW_TABLE_SIZE
                        ),
                    ],
                ));
            }
        }
    }

    report.method = vec![
        "Maglev: `lb_userspace::maglev::build_table`, equal weights, median wall time of repeated builds on one thread.".into(),
        format!(
            "Map memory: the real object loaded with the agent's other default sizes (Maglev ring {} slots), `memlock` of each map's fd from /proc/self/fdinfo (what the kernel charges).",
            lb_common::defaults::MAGLEV_RING_SLOTS
        ),
    ];
    if cfg!(debug_assertions) {
        report.notes.push(
            "This is a debug build of lb-bench: Maglev times are not representative (run with --release).".into(),
        );
    }
    report.notes.push(
        "Goal (issue 4): Maglev build for 65537 entries and 100 real servers at most 2 ms.".into(),
    );
    report.notes.push("Time to apply 1 to 10,000 services and the agent's CPU and RSS under health checks: suite `agent`.".into());
    report.tables = vec![by_n, by_size, mem, agent];
    // Issue 11's small-board goals (agent RSS, map memory), with their goals.
    let (tables, notes) = crate::suites::small_board::tables(ctx)?;
    report.tables.extend(tables);
    report.notes.extend(notes);
    if let Some(bin) = crate::suites::http::lb_binary() {
        eprintln!("  [control] lb status, scrapes and failover with {BIG_FLOW_TABLE} flows");
        let (status, failover) = flow_table_status(&bin, ctx.quick)?;
        report.tables.push(status);
        report.tables.push(failover);
        report.notes.push("Goal (issue 8): lb status and one /metrics scrape under 50 ms each with 1,000,000 flows; a health transition reaches the data plane within 100 ms of the same measure without scrapes while 10 scrapes a second run.".into());
    }
    Ok(report)
}

/// Starts `lb run` in a namespace of its own with `services` NAT services
/// (3 real servers each, default flow table), lets it settle, then reads its
/// RSS (MiB) and CPU use (% of one CPU) over `secs`.
fn agent_idle(bin: &std::path::Path, services: u32, secs: f64) -> anyhow::Result<(f64, f64, f64)> {
    let ns = Netns::unique("agent")?;
    let peer = Netns::unique("apeer")?;
    veth_with(&ns, "e0", &peer, "p0", VethOptions::PLAIN)?;
    veth_with(&ns, "e1", &peer, "p1", VethOptions::PLAIN)?;
    ns.ip(&["addr", "add", "192.168.253.254/24", "dev", "e0"])?;
    ns.ip(&["addr", "add", "172.16.14.120/24", "dev", "e1"])?;
    let dir = TempDir::new("agent")?;
    let mut conf = format!(
        "[agent]\ninterfaces = [\"e0\", \"e1\"]\nxdp_mode = \"native\"\ncontrol_socket = \"{}\"\n",
        dir.join("lb.sock").display()
    );
    for i in 0..services {
        conf.push_str(&format!(
            "\n[[virtual_server]]\nname = \"s{i}\"\naddress = \"192.168.253.120\"\nport = {}\nprotocol = \"tcp\"\nforwarding = \"nat\"\n",
            1000 + i
        ));
        for r in 121..124 {
            conf.push_str(&format!(
                "  [[virtual_server.real_server]]\n  address = \"172.16.14.{r}\"\n"
            ));
        }
    }
    // Idle means after start-up: the maps are programmed (100 services are
    // 6.5 million Maglev slots) once the control socket answers `lb status`
    // (`Agent::start` waits for that, and stops the agent when dropped).
    let agent = crate::suites::agent::Agent::start(bin, &ns, dir.path(), "idle", &conf)?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t0 = agent.cpu_ticks()?;
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    let t1 = agent.cpu_ticks()?;
    let rss = agent.rss_mib()?;
    let el = start.elapsed().as_secs_f64();
    Ok((
        rss,
        (t1 - t0) as f64 / crate::tools::USER_HZ / el * 100.0,
        agent.startup,
    ))
}

/// Flows put in the agent's table for [`flow_table_status`].
pub const BIG_FLOW_TABLE: u32 = 1_000_000;

/// `lb status` and one `/metrics` scrape with [`BIG_FLOW_TABLE`] flows in
/// the agent's table (goal: under 50 ms each), and the time for a health
/// transition to reach the data plane while 10 scrapes a second run (goal:
/// within 100 ms of the same measure without scrapes). The flows are
/// written into the agent's pinned FLOWS with one batch update, spread
/// over its real servers; real servers die (their listener is shut down)
/// one at a time, with and without scrapes, alternately.
pub fn flow_table_status(bin: &std::path::Path, quick: bool) -> anyhow::Result<(Table, Table)> {
    use std::time::Duration;

    use crate::suites::agent::{self, Agent, DataPlane, Layout, Listeners, Topo, VIP_PORT};

    // Real servers killed per arm (with and without scrapes), plus two that
    // stay up.
    let per_arm: u32 = if quick { 2 } else { 4 };
    let reals = 2 * per_arm + 2;
    let topo = Topo::new(reals)?;
    let addrs: Vec<_> = (0..reals).map(|k| agent::real_addr(0, k)).collect();
    let mut listeners = Listeners::start(&topo.reals_ns, &addrs)?;
    let layout = Layout {
        services: 1,
        reals,
        table_size: 65537,
        check: Some(
            "  kind = \"tcp\"\n  interval = \"100ms\"\n  timeout = \"50ms\"\n  rise = 1\n  fall = 1\n"
                .into(),
        ),
        heavier_first: false,
    };
    let metrics = "127.0.0.1:9469";
    let text = agent::config(&topo.socket("flows"), &layout)
        .replace("flow_table_size = 65536", "flow_table_size = 4194304")
        .replacen(
            "[agent]\n",
            &format!("[agent]\nmetrics_listen = \"{metrics}\"\n"),
            1,
        );
    let lb = Agent::start(bin, &topo.agent_ns, topo.dir.path(), "flows", &text)?;
    let dp = DataPlane::open(&lb.pins())?;

    let time_status = || -> anyhow::Result<f64> {
        let t = Instant::now();
        lb.lb(&["status", "--json"])?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let scrape = || -> anyhow::Result<(f64, String)> {
        use std::io::{Read as _, Write as _};
        let _in = topo.agent_ns.enter_thread()?;
        let t = Instant::now();
        let mut s = std::net::TcpStream::connect(metrics)?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, body))
    };
    let runs = if quick { 5 } else { 20 };
    let median_of = |f: &dyn Fn() -> anyhow::Result<f64>| -> anyhow::Result<f64> {
        let v = (0..runs)
            .map(|_| f())
            .collect::<anyhow::Result<Vec<f64>>>()?;
        median(&v).context("no runs")
    };
    let status_empty = median_of(&time_status)?;
    let scrape_empty = median_of(&|| Ok(scrape()?.0))?;

    // Fill FLOWS, spread over the service's real servers.
    let service = dp.service(VIP_PORT)?;
    let ids: Vec<u32> = {
        let mut ids: Vec<u32> = dp.table(&service)?.into_iter().collect();
        ids.sort_unstable();
        ids
    };
    // IPv4 flows: the agent's FLOWS_V4.
    let flows_pin = lb.pins().join(names::FLOWS_V4);
    let flows_map = aya::maps::MapData::from_pin(&flows_pin)
        .with_context(|| format!("opening {}", flows_pin.display()))?;
    let flows_map: aya::maps::Array<_, lb_common::FlowSet> =
        aya::maps::Array::try_from(aya::maps::Map::Array(flows_map))?;
    let flows: Vec<(lb_common::FlowKey, lb_common::Flow)> = (0..BIG_FLOW_TABLE)
        .map(|i| {
            let key = lb_common::FlowKey {
                src: [i.to_be(), 0, 0, 0],
                dst: [
                    u32::from(std::net::Ipv4Addr::new(192, 168, 253, 120)).to_be(),
                    0,
                    0,
                    0,
                ],
                src_port_be: 40000u16.to_be(),
                dst_port_be: VIP_PORT.to_be(),
                proto: 6,
                family: lb_common::FAMILY_IPV4,
                ..Default::default()
            };
            let flow = lb_common::Flow {
                backend_id: ids[i as usize % ids.len()],
                service_id: service.id,
            };
            (key, flow)
        })
        .collect();
    lb_userspace::dataplane::flows::fill(&flows_map, &flows)
        .context("filling the agent's FLOWS_V4")?;
    drop(flows);
    let counted = |status: &str| -> anyhow::Result<(u64, u64)> {
        let v: serde_json::Value = serde_json::from_str(status)?;
        let flows = v["services"][0]["real_servers"]
            .as_array()
            .context("no real servers in lb status")?
            .iter()
            .filter_map(|r| r["flows"].as_u64())
            .sum();
        Ok((flows, v["flows_counted_ago_ms"].as_u64().unwrap_or(0)))
    };
    // The first request after the fill waits for a walk (the last one, of
    // an empty table, was quick); later ones take the background count.
    let t = Instant::now();
    let first = lb.lb(&["status", "--json"])?;
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (first_seen, _) = counted(&first)?;
    // A background count that ran during the fill answers with what it
    // saw: wait until a count shows the whole table before timing.
    let settled = Instant::now();
    let seen = loop {
        let (seen, _) = counted(&lb.lb(&["status", "--json"])?)?;
        // A table of four times as many entries keeps all but a few
        // thousand (sets of four that drew a fifth flow).
        if seen >= u64::from(BIG_FLOW_TABLE) * 99 / 100 {
            break seen;
        }
        anyhow::ensure!(
            settled.elapsed() < Duration::from_secs(60),
            "lb status still counts {seen} flows 60 s after the fill"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let status_full = median_of(&time_status)?;
    let scrape_full = median_of(&|| Ok(scrape()?.0))?;
    std::thread::sleep(Duration::from_secs(2));
    let (_, ago) = counted(&lb.lb(&["status", "--json"])?)?;

    let mut status = Table::new(
        "flow-table-status",
        "lb status and one /metrics scrape with 1,000,000 flows in the table (goal: < 50 ms each)",
        "ms",
        "lb status, empty flow table",
        "time relative to lb status with an empty flow table, lower is better",
    )
    .columns(&["flows counted", "count age ms"]);
    let row =
        |label: &str, ms: f64, flows: String, age: String| Row::new(label, ms, vec![flows, age]);
    status.push(row(
        "lb status, empty flow table",
        status_empty,
        "0".into(),
        "-".into(),
    ));
    status.push(row(
        "/metrics scrape, empty flow table",
        scrape_empty,
        "0".into(),
        "-".into(),
    ));
    status.push(row(
        "first lb status after the fill (a walk, or the last count)",
        first_ms,
        first_seen.to_string(),
        "-".into(),
    ));
    status.push(row(
        "lb status, 1,000,000 flows",
        status_full,
        seen.to_string(),
        ago.to_string(),
    ));
    status.push(row(
        "/metrics scrape, 1,000,000 flows",
        scrape_full,
        seen.to_string(),
        "-".into(),
    ));

    // Health transitions reaching the data plane, with and without 10
    // scrapes a second, alternately.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut quiet: Vec<f64> = Vec::new();
    let mut scraped: Vec<f64> = Vec::new();
    for k in 0..2 * per_arm {
        let with_scrapes = k % 2 == 1;
        stop.store(false, std::sync::atomic::Ordering::SeqCst);
        let scraper = with_scrapes.then(|| {
            let stop = stop.clone();
            let ns = topo.agent_ns.path();
            std::thread::spawn(move || -> anyhow::Result<u32> {
                use std::io::{Read as _, Write as _};
                // This thread only scrapes: it stays in the namespace.
                let _in = ThreadNs::join(&ns)?;
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let t = Instant::now();
                    let mut s = std::net::TcpStream::connect(metrics)?;
                    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
                    let mut body = Vec::new();
                    s.read_to_end(&mut body)?;
                    n += 1;
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
                }
                Ok(n)
            })
        });
        // Let the scrapes (and the background count they wake) run first.
        std::thread::sleep(Duration::from_millis(1500));
        let (took, _) = agent::withdrawal(
            &lb,
            &dp,
            &mut listeners,
            0,
            addrs[k as usize],
            Duration::from_secs(10),
        )?;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(scraper) = scraper {
            let n = scraper
                .join()
                .map_err(|_| anyhow::anyhow!("the scraper panicked"))??;
            anyhow::ensure!(n > 0, "no scrape ran");
            scraped.push(took * 1000.0);
        } else {
            quiet.push(took * 1000.0);
        }
    }
    let mut failover = Table::new(
        "failover-under-scrapes",
        "Health transition to the data plane (tcp check every 100 ms, fall 1) with 1,000,000 flows, with and without 10 scrapes a second (goal: within 100 ms)",
        "ms",
        "no scrapes",
        "time relative to the same transition without scrapes, lower is better",
    )
    .columns(&["samples", "max ms"]);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (qmax, smax) = (max(&quiet), max(&scraped));
    failover.push(Row::new(
        "no scrapes",
        median(&quiet).context("no samples")?,
        vec![quiet.len().to_string(), fmt_value(qmax)],
    ));
    failover.push(Row::new(
        "10 scrapes a second",
        median(&scraped).context("no samples")?,
        vec![scraped.len().to_string(), fmt_value(smax)],
    ));
    Ok((status, failover))
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat, in clock ticks.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces: count after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `VmRSS:` of /proc/PID/status in MiB.
pub fn vm_rss_mib(status: &str) -> Option<f64> {
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_pid_stat_and_status() {
        let stat =
            "1234 (lb run) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 4 0 0 20 0 5 0 100 1000 300";
        assert_eq!(cpu_ticks(stat), Some(21));
        assert_eq!(cpu_ticks("garbage"), None);
        let status = "Name:\tlb\nVmRSS:\t   20480 kB\nThreads:\t5\n";
        assert_eq!(vm_rss_mib(status), Some(20.0));
    }

    use super::*;

    #[test]
    fn memlock_from_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2077\nmap_type:\t9\nkey_size:\t40\nvalue_size:\t8\nmax_entries:\t1024\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t106496\nmap_id:\t53\nfrozen:\t0\n";
        assert_eq!(parse_memlock(fdinfo), Some(106_496));
        assert_eq!(parse_memlock("pos:\t0\n"), None);
    }

    #[test]
    fn distinct_real_servers() {
        let e = entries(1000);
        let set: std::collections::HashSet<_> = e.iter().map(|x| x.addr).collect();
        assert_eq!(set.len(), 1000);
    }
}
