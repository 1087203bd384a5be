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
        Map::HashMap(d) | Map::LruHashMap(d) | Map::Array(d) | Map::PerCpuArray(d) => d,
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
        "flow table 131072 (default)",
        "memory relative to the default flow table, lower is better",
    )
    .columns(&["FLOWS MiB", "bytes/flow", "other maps MiB"]);
    let flow_sizes: &[u32] = if ctx.quick {
        &[1024, 1 << 17]
    } else {
        &[1024, 65536, 1 << 17, 1 << 18, 1 << 20, 1 << 22]
    };
    for &flows in flow_sizes {
        eprintln!("  [control] map memory with a flow table of {flows}");
        let lb = crate::xdp::Lb::load(flows, lb_common::defaults::MAGLEV_RING_SLOTS)?;
        let mut total = 0u64;
        let mut flow_bytes = 0u64;
        for (name, map) in lb.ebpf.maps() {
            let m = memlock(map).with_context(|| format!("memlock of {name}"))?;
            total += m;
            if name == names::FLOWS {
                flow_bytes = m;
            }
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        // The default since the small-board goal (issue 11): 2^17 flows.
        let label = if flows == 1 << 17 {
            "flow table 131072 (default)".to_string()
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
                        "131072 (default)".into(),
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
    Ok(report)
}

/// Starts `lb run` in a namespace of its own with `services` NAT services
/// (3 real servers each, default flow table), lets it settle, then reads its
/// RSS (MiB) and CPU use (% of one CPU) over `secs`.
fn agent_idle(bin: &std::path::Path, services: u32, secs: f64) -> anyhow::Result<(f64, f64, f64)> {
    let ns = crate::netns::Netns::new("agent")?;
    let peer = crate::netns::Netns::new("apeer")?;
    crate::netns::veth(&ns, "e0", &peer, "p0", None)?;
    crate::netns::veth(&ns, "e1", &peer, "p1", None)?;
    ns.ip("addr add 192.168.253.254/24 dev e0")?;
    ns.ip("addr add 172.16.14.120/24 dev e1")?;
    let dir = std::env::temp_dir().join(format!("lbb{}-agent", std::process::id()));
    std::fs::create_dir_all(&dir)?;
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
    let path = dir.join("lb.toml");
    std::fs::write(&path, conf)?;
    let mut child = ns
        .cmd(&bin.to_string_lossy())
        .args(["run", "--config", &path.to_string_lossy()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("lb.log"))?)
        .spawn()
        .context("starting lb run")?;
    let pid = child.id();
    // Idle means after start-up: the maps are programmed (100 services are
    // 6.5 million Maglev slots) once the control socket answers `lb status`.
    let t = std::time::Instant::now();
    loop {
        let ok = std::process::Command::new(bin)
            .args(["status", "--config", &path.to_string_lossy()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        if t.elapsed().as_secs() > 120 {
            let _ = child.kill();
            anyhow::bail!("lb status did not answer within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let startup = t.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let stat = |pid: u32| -> anyhow::Result<(u64, f64)> {
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| {
            let log = std::fs::read_to_string(dir.join("lb.log")).unwrap_or_default();
            format!("the agent exited: {}", log.trim())
        })?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok((
            cpu_ticks(&st).context("unreadable /proc/PID/stat")?,
            vm_rss_mib(&status).context("no VmRSS")?,
        ))
    };
    let (t0, _) = stat(pid)?;
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    let (t1, rss) = stat(pid)?;
    let el = start.elapsed().as_secs_f64();
    // SAFETY: signalling the child we started, by its pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((
        rss,
        (t1 - t0) as f64 / crate::tools::USER_HZ / el * 100.0,
        startup,
    ))
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
