//! Suite `vrrp`: failover time of an lb pair next to a keepalived pair,
//! measured in the same run on the same network (the VRRP harness of
//! `lb-tests`: two nodes and a client on one bridge, seed 000's DR layout
//! with two nginx real servers), and the requests `ab` loses meanwhile.
//!
//! For each fault of the master (clean stop, `kill -9`, `kill -9` + links
//! down) and each timer set (VRRPv2 1 s adverts, VRRPv3 100 ms adverts):
//! the takeover time as a bystander on the client's segment hears it (the
//! old master's last advert to the new master's first, the ruler of
//! keepalived's own `failover-measurements.txt`), the time from the fault
//! to the new master's first advert, and ab's failed requests across it.
//!
//! The keepalived pair forwards with a VRRP-less `lb run` on each node
//! (this kernel has no IPVS), so the pairs differ only in who runs VRRP;
//! a fault takes both programs of the node down (see `lb_tests::vrrp::pair`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use lb_tests::client::url;
use lb_tests::topology::Forwarding;
use lb_tests::vrrp::pair::{AbRun, Fault, HaPair, Timers};
use lb_tests::vrrp::topology::VIP;
use lb_tests::vrrp::wire::AdvertLog;
use lb_tests::vrrp::Kind;

use crate::{
    probe::{outage, Prober},
    report::{fmt_value, ratio, Report, Row, Table},
    stats::median,
    Ctx,
};

/// ab's concurrency: enough to keep a connection starting at every moment
/// of the failover, little enough to leave the two cores to the nodes.
const CONCURRENCY: u32 = 10;

/// The outage prober: 4 threads, each connect given up after 100 ms (the
/// VIP answers in well under 1 ms when up): an outage's end is seen within
/// about 25 ms.
const PROBE_THREADS: u32 = 4;
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);

/// One failover.
#[derive(Clone, Debug)]
struct Sample {
    /// Old master's last advert -> new master's first (ms).
    gap_ms: f64,
    /// The fault -> new master's first advert (ms).
    from_fault_ms: f64,
    /// Longest time without a successful connect to the VIP around the
    /// fault (ms), from the prober.
    outage_ms: Option<f64>,
    failed: u64,
    complete: u64,
}

/// Every sample of one pair, per fault; or why the pair was not measured.
type PairResult = Result<Vec<(Fault, Vec<Sample>)>, String>;

struct Plan {
    timers: Vec<Timers>,
    reps: usize,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Lb => "lb",
        Kind::Keepalived => "keepalived",
    }
}

/// Seconds ab runs: one before the fault, the takeover, and a margin.
fn ab_seconds(timers: Timers) -> u32 {
    (1.0 + timers.master_down().as_secs_f64() + 1.5).ceil() as u32
}

fn one_failover(
    pair: &mut HaPair,
    wire: &AdvertLog,
    fault: Fault,
    timers: Timers,
    out: PathBuf,
) -> anyhow::Result<Sample> {
    let limit = Duration::from_secs(15);
    pair.wait_ready(limit)?;
    let (n1, n2) = (pair.cluster.sources(0), pair.cluster.sources(1));
    let page = url(std::net::IpAddr::V4(VIP), 80, "/");
    let secs = ab_seconds(timers);
    let ab = AbRun::start(pair.client(), &page, secs, CONCURRENCY, out)?;
    let probe = Prober::start(
        pair.client().name(),
        SocketAddr::from((VIP, 80)),
        PROBE_THREADS,
        PROBE_TIMEOUT,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let at = pair.fault(0, fault)?;
    let t = wire.wait_takeover(
        &n1,
        &n2,
        at,
        timers.master_down() * 2 + Duration::from_secs(2),
    )?;
    let ab = ab.finish(Duration::from_secs(u64::from(secs) + 20))?;
    let outage_ms = outage(&probe.finish()?, at).map(|d| d.as_secs_f64() * 1e3);
    pair.restore(0, fault)?;
    pair.wait_ready(limit)
        .context("node1 did not take the VIP back after its restart")?;
    Ok(Sample {
        gap_ms: t.gap().as_secs_f64() * 1e3,
        from_fault_ms: t.first_new.at.saturating_duration_since(at).as_secs_f64() * 1e3,
        outage_ms,
        failed: ab.failed + ab.non_2xx,
        complete: ab.complete,
    })
}

/// Builds one pair, starts it and runs every fault `reps` times.
fn measure_pair(kind: Kind, timers: Timers, reps: usize, lb: &Path) -> PairResult {
    let run = || -> anyhow::Result<PairResult> {
        let mut pair = HaPair::new(Forwarding::Dr, 2, kind, timers, lb)?;
        let wire = AdvertLog::start(pair.client(), "eth0", false)?;
        pair.start(0)?;
        pair.start(1)?;
        if let Some(why) = pair.lb_vrrp_missing() {
            return Ok(Err(format!(
                "this lb build does not run VRRP yet ({})",
                why.lines().next().unwrap_or_default()
            )));
        }
        pair.wait_ready(Duration::from_secs(15))?;
        let mut all = Vec::new();
        for fault in Fault::ALL {
            let mut samples = Vec::new();
            for rep in 0..reps {
                eprintln!(
                    "  [vrrp] {} pair, {}, {} #{}",
                    kind_name(kind),
                    timers.label(),
                    fault.label(),
                    rep + 1
                );
                let out = pair
                    .cluster
                    .dir
                    .join(&format!("ab-{}-{rep}.txt", fault.id()));
                let s = one_failover(&mut pair, &wire, fault, timers, out)
                    .with_context(|| format!("{} after {}", kind_name(kind), fault.label()))
                    .inspect_err(|_| eprintln!("{}", pair.cluster.report()))?;
                eprintln!(
                    "  [vrrp]   takeover {:.0} ms (fault -> new master {:.0} ms), client outage {} ms, {} failed of {}",
                    s.gap_ms,
                    s.from_fault_ms,
                    s.outage_ms.map(fmt_value).unwrap_or("-".into()),
                    s.failed,
                    s.complete
                );
                samples.push(s);
            }
            all.push((fault, samples));
        }
        Ok(Ok(all))
    };
    match run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("  [vrrp] {e:#}");
            Err(summary(&e))
        }
    }
}

/// What a skipped row says: the outermost context and the root cause's
/// first line, without the configs and logs the full error carries (those
/// go to stderr).
fn summary(e: &anyhow::Error) -> String {
    let first = |s: String| s.lines().next().unwrap_or_default().trim().to_string();
    let outer = first(e.to_string());
    let root = e.root_cause().to_string();
    // lb's own one-line message, when it refused to start.
    let root = root
        .lines()
        .find(|l| l.starts_with("lb: "))
        .map(str::to_string)
        .unwrap_or_else(|| first(root.clone()));
    if outer == root {
        outer
    } else {
        format!("{outer}: {root}")
    }
}

fn keepalived_missing() -> Option<String> {
    match std::process::Command::new("keepalived")
        .arg("--version")
        .output()
    {
        Ok(_) => None,
        Err(e) => Some(format!(
            "keepalived not found ({e}); apt-get install keepalived"
        )),
    }
}

fn row(label: &str, samples: &[Sample]) -> Row {
    let gaps: Vec<f64> = samples.iter().map(|s| s.gap_ms).collect();
    let from: Vec<f64> = samples.iter().map(|s| s.from_fault_ms).collect();
    let list =
        |f: &dyn Fn(&Sample) -> String| samples.iter().map(f).collect::<Vec<_>>().join(" / ");
    Row::new(
        label,
        median(&gaps).unwrap_or(f64::NAN),
        vec![
            fmt_value(median(&from).unwrap_or(f64::NAN)),
            list(&|s| fmt_value(s.gap_ms)),
            list(&|s| s.outage_ms.map(fmt_value).unwrap_or("-".into())),
            list(&|s| s.failed.to_string()),
            list(&|s| s.complete.to_string()),
        ],
    )
}

fn samples_of(r: &PairResult, fault: Fault) -> Result<&[Sample], String> {
    match r {
        Ok(v) => Ok(v
            .iter()
            .find(|(f, _)| *f == fault)
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&[])),
        Err(why) => Err(why.clone()),
    }
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plan = if ctx.quick {
        Plan {
            timers: vec![Timers::V3_100MS],
            reps: 1,
        }
    } else {
        Plan {
            timers: vec![Timers::V2_1S, Timers::V3_100MS],
            reps: 3,
        }
    };
    let mut report = Report::new(
        "vrrp",
        "VRRP failover: lb pair against keepalived pair",
        &ctx.machine,
        ctx.quick,
    );
    report.method = vec![
        "Two nodes and a client on one bridge, two nginx real servers, seed 000's DR layout \
         (lb_tests::vrrp::pair): node1 priority 150 (starts as master), node2 priority 100, \
         preempt on; VRRPv2 with PASS auth, or VRRPv3."
            .into(),
        "lb pair: `lb run` with the service and one `[[vrrp_instance]]` on each node. \
         keepalived pair: keepalived (VRRP only, `-P`) with the same numbers, and a VRRP-less \
         `lb run` forwarding on each node: the pairs differ only in who runs VRRP."
            .into(),
        "Faults of node1, the master: SIGTERM to every program of the node at once (clean \
         stop); `kill -9` of every program (the VIP stays on node1, which then answers for it \
         with nothing forwarding); links down, then `kill -9` (node loss). node1 is restarted and \
         takes the VIP back before the next run."
            .into(),
        "Takeover: node1's last advert to node2's first, timestamped by a raw socket in the \
         client's namespace (keepalived's failover-measurements.txt uses the same ruler: \
         3.61 s after a crash, 0.61 s after a stop with 1 s adverts, 0.361 s with 100 ms)."
            .into(),
        "Client outage: 4 threads in the client's namespace connect to VIP:80 every 10 ms \
         (each connect given up after 100 ms); the longest time between two successful \
         connects around the fault (refused and lost connections alike)."
            .into(),
        format!(
            "Requests: `ab -r -s 10 -c {CONCURRENCY} -t S` through the VIP (a new connection \
             per request), the fault 1 s after ab starts, S = 1 s + the master-down interval \
             + 1.5 s; failed = ab's failed + non-2xx."
        ),
        format!(
            "{} run(s) per case; the value is the median takeover.",
            plan.reps
        ),
    ];

    let lb = crate::suites::http::lb_binary().filter(|p| p.is_file());
    if let Some(p) = &lb {
        // The harness starts lb nodes with $LB_BIN.
        std::env::set_var("LB_BIN", p);
    }
    for timers in &plan.timers {
        let mut by_kind = Vec::new();
        for kind in [Kind::Keepalived, Kind::Lb] {
            let r = match (&lb, kind) {
                (None, _) => Err("no lb binary (LB_BIN, or lb next to lb-bench)".to_string()),
                (Some(_), Kind::Keepalived) if keepalived_missing().is_some() => {
                    Err(keepalived_missing().unwrap_or_default())
                }
                (Some(lb), _) => measure_pair(kind, *timers, plan.reps, lb),
            };
            if let Err(why) = &r {
                eprintln!("  [vrrp] {} pair not measured: {why}", kind_name(kind));
            }
            by_kind.push((kind, r));
        }
        for fault in Fault::ALL {
            let mut t = Table::new(
                &format!("v{}-{}", timers.version, fault.id()),
                &format!("Takeover after a {}, {}", fault.label(), timers.label()),
                "ms",
                "keepalived",
                "lb's takeover time / keepalived's (lower is better, 1.0 = the same)",
            )
            .columns(&[
                "fault -> new master ms",
                "takeover ms (each run)",
                "client outage ms (each run)",
                "requests failed (each run)",
                "requests complete (each run)",
            ]);
            let mut failed = Vec::new();
            for (kind, r) in &by_kind {
                match samples_of(r, fault) {
                    Ok(s) if !s.is_empty() => {
                        failed.push(s.iter().map(|x| x.failed as f64).sum::<f64>());
                        t.push(row(kind_name(*kind), s));
                    }
                    Ok(_) => t.push(Row::skipped(kind_name(*kind), "no sample")),
                    Err(why) => t.push(Row::skipped(kind_name(*kind), why.clone())),
                }
            }
            if let [ka, lb] = failed[..] {
                report.notes.push(format!(
                    "{}, {}: requests failed lb / keepalived = {} / {} ({})",
                    timers.label(),
                    fault.label(),
                    lb,
                    ka,
                    ratio(lb, ka)
                        .map(|q| format!("ratio {q:.2}"))
                        .unwrap_or_else(|| "no ratio: keepalived lost none".into())
                ));
            }
            report.tables.push(t);
        }
        for (kind, r) in &by_kind {
            if let Err(why) = r {
                report.notes.push(format!(
                    "{} pair, {}: not measured: {why}",
                    kind_name(*kind),
                    timers.label()
                ));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_are_one_line() {
        let e = anyhow::anyhow!(
            "lb run exited (exit status: 2):\nlb: lb.toml:23:3: unknown field `vrrp_instance`"
        )
        .context("starting lb on node1 with\n[agent]\ninterfaces = []");
        assert_eq!(
            summary(&e),
            "starting lb on node1 with: lb: lb.toml:23:3: unknown field `vrrp_instance`"
        );
        assert_eq!(summary(&anyhow::anyhow!("one\ntwo")), "one");
    }

    #[test]
    fn ab_runs_past_the_takeover() {
        // v2: 1 s lead + 3.61 s + 1.5 s margin.
        assert_eq!(ab_seconds(Timers::V2_1S), 7);
        assert_eq!(ab_seconds(Timers::V3_100MS), 3);
    }

    #[test]
    fn rows_take_the_median_and_list_each_run() {
        let s = |gap, failed| Sample {
            gap_ms: gap,
            from_fault_ms: gap - 100.0,
            outage_ms: None,
            failed,
            complete: 1000,
        };
        let r = row("lb", &[s(3600.0, 2), s(3650.0, 0), s(3610.0, 1)]);
        assert_eq!(r.value, Some(3610.0));
        assert_eq!(r.extra[1], "3600 / 3650 / 3610");
        assert_eq!(r.extra[2], "- / - / -");
        assert_eq!(r.extra[3], "2 / 0 / 1");
    }
}
