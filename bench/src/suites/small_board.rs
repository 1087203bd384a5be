//! The small-board goals of issue 11, measured on a real agent: `lb run`
//! with 10 NAT services and nothing else configured (every size at its
//! default), idle. Two tables, each with its goal as the baseline row:
//!
//! - the agent's resident memory (VmRSS; goal under 20 MiB), with its
//!   threads and the anonymous / file-backed split that explains it;
//! - the kernel memory of every BPF map the agent holds (`memlock` of each
//!   map fd in /proc/PID/fdinfo, what the kernel charges; goal at most 64
//!   MiB), measured here and projected to a 4-CPU Raspberry Pi 4 (per-CPU
//!   maps grow with the CPU count, the others do not).
//!
//! Part of the control suite (it needs the agent like its idle row).

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context as _;
use lb_tests::{
    netns::{veth_with, Netns, VethOptions},
    tempdir::TempDir,
};

use crate::{
    report::{fmt_value, Row, Table},
    suites::{agent::Agent, control::parse_memlock},
    Ctx,
};

const SERVICES: u32 = 10;
const RSS_GOAL_MIB: f64 = 20.0;
const MAPS_GOAL_MIB: f64 = 64.0;
/// A Raspberry Pi 4 (and 5) has 4 cores.
const PI_CPUS: u32 = 4;

/// BPF map types whose memory is per possible CPU (uapi `bpf_map_type`:
/// PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH).
const PERCPU_MAP_TYPES: [u32; 3] = [5, 6, 10];

/// One BPF map as /proc/PID/fdinfo describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct MapInfo {
    pub id: u32,
    pub map_type: u32,
    pub memlock: u64,
}

/// The map fields of one fdinfo text; `None` for an fd that is no map.
pub fn parse_map_fdinfo(fdinfo: &str) -> Option<MapInfo> {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    Some(MapInfo {
        id: field("map_id")?,
        map_type: field("map_type")?,
        memlock: parse_memlock(fdinfo)?,
    })
}

/// Every BPF map process `pid` holds an fd of, once each (by map id).
fn maps_of(pid: u32) -> anyhow::Result<Vec<MapInfo>> {
    let mut maps = BTreeMap::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // An fd closed meanwhile is simply not counted.
        let Ok(text) = std::fs::read_to_string(e?.path()) else {
            continue;
        };
        if let Some(m) = parse_map_fdinfo(&text) {
            maps.insert(m.id, m);
        }
    }
    Ok(maps.into_values().collect())
}

/// CPUs the kernel allocates per-CPU map memory for: the possible CPUs
/// (`/sys/devices/system/cpu/possible`, e.g. "0-3" or "0,2-5").
pub fn possible_cpus(list: &str) -> Option<u32> {
    list.trim().split(',').try_fold(0u32, |n, part| {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let a = part.parse::<u32>().ok()?;
                (a, a)
            }
        };
        Some(n + b.checked_sub(a)? + 1)
    })
}

/// `n` NAT services of 3 real servers, every size left at its default.
fn config(socket: &Path, n: u32) -> String {
    let mut c = format!(
        "[agent]\ninterfaces = [\"e0\", \"e1\"]\ncontrol_socket = \"{}\"\n",
        socket.display()
    );
    for i in 0..n {
        c.push_str(&format!(
            "\n[[virtual_server]]\nname = \"s{i}\"\naddress = \"192.168.253.120\"\nport = {}\nprotocol = \"tcp\"\nforwarding = \"nat\"\n",
            1000 + i
        ));
        for r in 121..124 {
            c.push_str(&format!(
                "  [[virtual_server.real_server]]\n  address = \"172.16.14.{r}\"\n"
            ));
        }
    }
    c
}

/// `Key:` of /proc/PID/status in MiB (for `kB` values), or a count.
fn status_field(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn goal_table(id: &str, title: &str, goal_label: &str, goal: f64, cols: &[&str]) -> Table {
    let mut t = Table::new(
        id,
        title,
        "MiB",
        goal_label,
        "memory relative to the goal (issue 11): at most 1 meets it",
    )
    .columns(cols);
    t.push(Row::new(goal_label, goal, vec![]));
    t
}

/// What an idle agent was seen using.
struct Idle {
    /// /proc/PID/status.
    status: String,
    /// VmRSS, MiB.
    rss: f64,
    maps: Vec<MapInfo>,
    /// Map names and their memlock, for the note.
    named: Vec<(String, u64)>,
}

/// Starts `lb run` with [`SERVICES`] services in a namespace of its own,
/// lets it go idle and reads its memory and its maps.
fn measure_idle(bin: &Path, quick: bool) -> anyhow::Result<Idle> {
    let ns = Netns::unique("sbrd")?;
    let peer = Netns::unique("sbpeer")?;
    veth_with(&ns, "e0", &peer, "p0", VethOptions::PLAIN)?;
    veth_with(&ns, "e1", &peer, "p1", VethOptions::PLAIN)?;
    ns.ip(&["addr", "add", "192.168.253.254/24", "dev", "e0"])?;
    ns.ip(&["addr", "add", "172.16.14.120/24", "dev", "e1"])?;
    let dir = TempDir::new("small-board")?;
    let text = config(&dir.join("lb.sock"), SERVICES);
    eprintln!("  [control] small board: agent idle with {SERVICES} services, default sizes");
    let agent = Agent::start(bin, &ns, dir.path(), "small", &text)?;
    // Idle: after start-up (the first `lb status` answered) and a pause in
    // which the first health rounds and allocations settle.
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 5 }));
    let status = agent.proc_file("status")?;
    let rss = agent.rss_mib()?;
    let maps = maps_of(agent.pid)?;
    // Names while the agent still holds the maps (ids die with them).
    let named = maps
        .iter()
        .map(|m| {
            let name = aya::maps::MapInfo::from_id(m.id)
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("map {}", m.id));
            (name, m.memlock)
        })
        .collect();
    drop(agent);
    Ok(Idle {
        status,
        rss,
        maps,
        named,
    })
}

/// Both tables (RSS and map memory of an idle agent with the default
/// sizes) and a note naming what each map costs.
pub fn tables(ctx: &Ctx) -> anyhow::Result<(Vec<Table>, Vec<String>)> {
    let mut rss = goal_table(
        "small-board-rss",
        &format!("Agent RSS, idle, {SERVICES} services, default config (goal: under 20 MiB)"),
        "goal: under 20 MiB",
        RSS_GOAL_MIB,
        &[
            "met",
            "threads",
            "RssAnon MiB",
            "RssFile MiB",
            "peak (VmHWM) MiB",
        ],
    );
    let mut maps = goal_table(
        "small-board-maps",
        "Kernel memory of the BPF maps, default config (goal: at most 64 MiB)",
        "goal: at most 64 MiB",
        MAPS_GOAL_MIB,
        &["met", "maps", "per-CPU maps MiB", "other maps MiB"],
    );
    let Some(bin) = crate::suites::http::lb_binary() else {
        let why = "no `lb` binary next to lb-bench (cargo build --release -p lb-userspace --bin lb) and no LB_BIN";
        rss.push(Row::skipped("agent, 10 services", why));
        maps.push(Row::skipped("maps, default config", why));
        return Ok((vec![rss, maps], Vec::new()));
    };

    let idle = measure_idle(&bin, ctx.quick)?;
    let (status, found, mut named) = (idle.status, idle.maps, idle.named);
    let kib = |k: &str| status_field(&status, k).map(|v| v / 1024.0);
    let rss_now = idle.rss;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);

    let met = |v: f64, goal: f64, strict: bool| {
        if (strict && v < goal) || (!strict && v <= goal) {
            "yes"
        } else {
            "NO"
        }
    };
    let opt = |v: Option<f64>| v.map(fmt_value).unwrap_or_else(|| "-".into());
    rss.push(Row::new(
        format!("agent, {SERVICES} services"),
        rss_now,
        vec![
            met(rss_now, RSS_GOAL_MIB, true).into(),
            status_field(&status, "Threads")
                .map(|t| format!("{t:.0}"))
                .unwrap_or_else(|| "-".into()),
            opt(kib("RssAnon")),
            opt(kib("RssFile")),
            opt(kib("VmHWM")),
        ],
    ));

    let percpu: u64 = found
        .iter()
        .filter(|m| PERCPU_MAP_TYPES.contains(&m.map_type))
        .map(|m| m.memlock)
        .sum();
    let other = found.iter().map(|m| m.memlock).sum::<u64>() - percpu;
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| possible_cpus(&s))
        .context("unreadable /sys/devices/system/cpu/possible")?;
    let mut push = |label: String, percpu: u64| {
        let all = mib(other + percpu);
        maps.push(Row::new(
            label,
            all,
            vec![
                met(all, MAPS_GOAL_MIB, false).into(),
                found.len().to_string(),
                fmt_value(mib(percpu)),
                fmt_value(mib(other)),
            ],
        ));
    };
    push(format!("measured here ({cpus} possible CPUs)"), percpu);
    push(
        format!("projected to a {PI_CPUS}-CPU Raspberry Pi 4"),
        percpu * u64::from(PI_CPUS) / u64::from(cpus),
    );
    named.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    let list: Vec<String> = named
        .iter()
        .map(|(n, b)| format!("{n} {}", fmt_value(mib(*b))))
        .collect();
    let note = format!(
        "Small board: the agent's maps, MiB of memlock on {cpus} possible CPUs: {}.",
        list.join(", ")
    );
    Ok((vec![rss, maps], vec![note]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_fdinfo_and_other_fds() {
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t10\nkey_size:\t40\nmemlock:\t106496\nmap_id:\t53\n";
        assert_eq!(
            parse_map_fdinfo(map),
            Some(MapInfo {
                id: 53,
                map_type: 10,
                memlock: 106_496
            })
        );
        // A socket or a program fd: not a map.
        assert_eq!(parse_map_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t8\n"), None);
        assert_eq!(
            parse_map_fdinfo("prog_type:\t6\nmemlock:\t4096\nprog_id:\t9\n"),
            None
        );
    }

    #[test]
    fn possible_cpu_lists() {
        assert_eq!(possible_cpus("0-1\n"), Some(2));
        assert_eq!(possible_cpus("0"), Some(1));
        assert_eq!(possible_cpus("0,2-5"), Some(5));
        assert_eq!(possible_cpus("x"), None);
        assert_eq!(possible_cpus("3-1"), None);
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tlb\nVmHWM:\t   10240 kB\nRssAnon:\t    4096 kB\nThreads:\t3\n";
        assert_eq!(status_field(s, "RssAnon"), Some(4096.0));
        assert_eq!(status_field(s, "Threads"), Some(3.0));
        assert_eq!(status_field(s, "VmRSS"), None);
    }

    #[test]
    fn config_has_default_sizes() {
        let c = config(Path::new("/tmp/x.sock"), 10);
        assert_eq!(c.matches("[[virtual_server]]").count(), 10);
        assert!(!c.contains("flow_table_size") && !c.contains("maglev_table_size"));
    }
}
