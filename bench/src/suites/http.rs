//! Suite `http`: requests per second and latency as seed 001 measures them,
//! `ab` without keep-alive and `wrk` with keep-alive, in the seed 001
//! topology: `cli` (c0 192.168.253.1) -> `bal` (b0 192.168.253.254 | b1
//! 172.16.14.120) -> `srv` (s0 172.16.14.121-123, one nginx on all three,
//! the VIP on `lo` for DR, default route via the balancer).
//!
//! Variants: direct to one real server (routed by the balancer's kernel:
//! the baseline), lb NAT and DR with the real `lb_xdp` and maps filled by
//! this suite, lb NAT and DR through the agent (`lb run` with a TOML config;
//! skipped when the `lb` binary is not built) with XDP attached natively and
//! in generic mode on the same veths, nftables DNAT, HAProxy in mode tcp,
//! and IPVS NAT and DR wherever the kernel has ip_vs (suite `ipvs`: a VM).
//!
//! Every run also reads the machine's CPU time (/proc/stat) around it:
//! softirq and busy CPU per request, and how busy the CPUs were, which is
//! what says whether the balancer or the ends limit the rate.

use std::{
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _};
use aya::programs::xdp::XdpMode;
use lb_common::{PROTO_TCP, SVC_F_DR, SVC_F_NAT};
use lb_tests::{
    netns::{veth_with, Netns, VethEnd, VethOptions},
    process::ChildGuard,
    tempdir::TempDir,
};

use crate::{
    report::{fmt_value, Report, Row, Table},
    tools::{busy_percent, cpu_times, cpu_us_per_req, CpuTimes, Http},
    xdp::{self, Lb},
    Ctx,
};

const VIP: &str = "192.168.253.120";
const VIP_32: &str = "192.168.253.120/32";
const REALS: [&str; 3] = ["172.16.14.121", "172.16.14.122", "172.16.14.123"];

struct Topo {
    cli: Netns,
    bal: Netns,
    srv: Netns,
    dir: TempDir,
}

fn sock(a: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a.parse().expect("literal address"), port)
}

fn topology() -> anyhow::Result<Topo> {
    let cli = Netns::unique("cli")?;
    let bal = Netns::unique("bal")?;
    let srv = Netns::unique("srv")?;
    // XDP_REDIRECT into a veth needs NAPI on the receiving peer (GRO), and
    // frames that leave through XDP never get a deferred (offloaded)
    // checksum filled in: the senders' ends (client, real servers) are
    // tuned; the balancer's are plain, as a measured host's NIC would be.
    let sender = VethOptions {
        a: VethEnd::TUNED,
        b: VethEnd::PLAIN,
    };
    veth_with(&cli, "c0", &bal, "b0", sender)?;
    veth_with(&srv, "s0", &bal, "b1", sender)?;
    cli.ip(&["addr", "add", "192.168.253.1/24", "dev", "c0"])?;
    bal.ip(&["addr", "add", "192.168.253.254/24", "dev", "b0"])?;
    bal.ip(&["addr", "add", "172.16.14.120/24", "dev", "b1"])?;
    for r in REALS {
        srv.ip(&["addr", "add", &format!("{r}/24"), "dev", "s0"])?;
    }
    srv.ip(&["addr", "add", VIP_32, "dev", "lo"])?;
    srv.ip(&["route", "add", "default", "via", "172.16.14.120"])?;
    cli.ip(&["route", "add", "172.16.14.0/24", "via", "192.168.253.254"])?;
    // DR real servers own the VIP but must not answer ARP for it (seed 000).
    srv.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
    srv.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
    bal.sysctl("net.ipv4.ip_forward", "1")?;
    let (b0, b1, s0, c0) = (
        bal.mac("b0")?,
        bal.mac("b1")?,
        srv.mac("s0")?,
        cli.mac("c0")?,
    );
    // The client reaches the VIP at the balancer's MAC (the balancer does
    // not own the VIP: DR replies come back with it as their source).
    cli.neigh_permanent(VIP, "c0", b0)?;
    for r in REALS {
        bal.neigh_permanent(r, "b1", s0)?;
    }
    bal.neigh_permanent("192.168.253.1", "b0", c0)?;
    srv.neigh_permanent("172.16.14.120", "s0", b1)?;
    let dir = TempDir::new("http")?;
    std::fs::create_dir_all(dir.join("logs"))?;
    Ok(Topo { cli, bal, srv, dir })
}

/// One nginx serving all three real-server addresses. Not lb-tests'
/// `Nginx` (a real server per namespace, access log on, files to
/// download): this one is tuned to measure (a worker per core, no access
/// log) and answers with the address a request reached.
fn nginx(t: &Topo) -> anyhow::Result<ChildGuard> {
    let conf = t.dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n  server {{\n    listen 80 reuseport;\n    location / {{ return 200 \"real server $server_addr\\n\"; }}\n  }}\n}}\n",
            d = t.dir.path().display()
        ),
    )?;
    let mut cmd = t.srv.command("nginx");
    cmd.args([
        "-c",
        &conf.to_string_lossy(),
        "-p",
        &t.dir.path().to_string_lossy(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    ChildGuard::spawn("nginx (apt-get install nginx-light)", &mut cmd)
}

fn haproxy(t: &Topo) -> anyhow::Result<ChildGuard> {
    let conf = t.dir.join("haproxy.cfg");
    let servers: String = REALS
        .iter()
        .enumerate()
        .map(|(i, r)| format!("  server s{i} {r}:80\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend vip\n  bind {VIP}:80\n  default_backend reals\nbackend reals\n  balance roundrobin\n{servers}"
        ),
    )?;
    let mut cmd = t.bal.command("haproxy");
    cmd.args(["-db", "-f", &conf.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(
            t.dir.join("logs/haproxy.log"),
        )?));
    ChildGuard::spawn("haproxy (apt-get install haproxy)", &mut cmd)
}

/// Waits until `url` answers from the client namespace.
fn wait_http(t: &Topo, url: &str) -> anyhow::Result<String> {
    let mut last = String::new();
    for _ in 0..50 {
        if let Ok(log) = std::fs::read_to_string(t.dir.join("logs/haproxy.log")) {
            if log.contains("[ALERT]") {
                bail!("haproxy did not start: {}", log.trim());
            }
        }
        match t.cli.exec(&["curl", "-sS", "--max-time", "2", url]) {
            Ok(body) => return Ok(body),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} does not answer from the client: {last}")
}

struct Load {
    rounds: u32,
    ab_n: u32,
    conc: u32,
    wrk_secs: u32,
}

/// One load run and the CPU time the whole machine spent meanwhile.
#[derive(Clone, Debug)]
struct Run {
    http: Http,
    /// Softirq CPU per request, microseconds (all CPUs).
    softirq_us: Option<f64>,
    /// Busy CPU per request (user, system, irq, softirq), microseconds.
    busy_us: Option<f64>,
    /// Share of the CPUs' time that was busy during the run.
    busy_pct: Option<f64>,
}

impl Run {
    fn new(http: Http, before: CpuTimes, after: CpuTimes) -> Run {
        Run {
            softirq_us: cpu_us_per_req(before.softirq, after.softirq, http.requests),
            busy_us: cpu_us_per_req(before.busy, after.busy, http.requests),
            busy_pct: busy_percent(before, after),
            http,
        }
    }
}

fn measure(t: &Topo, url: &str, l: &Load) -> anyhow::Result<(Run, Run)> {
    wait_http(t, url)?;
    let c0 = cpu_times();
    let ab = t.cli.exec(&[
        "ab",
        "-q",
        "-n",
        &l.ab_n.to_string(),
        "-c",
        &l.conc.to_string(),
        url,
    ])?;
    // No -r, as this suite has always run ab: a socket error ends the run
    // and the variant shows as failed.
    let c1 = cpu_times();
    let ab =
        lb_tests::client::parse_ab(&ab).with_context(|| format!("unreadable ab output:\n{ab}"))?;
    let wrk = lb_tests::client::wrk(&t.cli, url, 2, l.conc, l.wrk_secs)?;
    let c2 = cpu_times();
    Ok((
        Run::new(Http::from(&ab), c0, c1),
        Run::new(Http::from(&wrk), c1, c2),
    ))
}

/// The agent binary: `$LB_BIN`, or `lb` next to this program (cargo puts
/// both in the same target directory: `cargo build -p lb-userspace --bin lb`
/// with the same profile).
pub fn lb_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LB_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = std::env::current_exe().ok()?.parent()?.join("lb");
    p.exists().then_some(p)
}

/// The agent variants: label, `forwarding`, `xdp_mode`. Native first (the
/// goal's rows), then generic on the same veths: on a veth native XDP
/// copies every frame, generic does not (see BENCHMARKS.md).
const AGENTS: [(&str, &str, &str); 4] = [
    ("lb NAT (agent)", "nat", "native"),
    ("lb DR (agent)", "dr", "native"),
    ("lb NAT (agent, generic)", "nat", "generic"),
    ("lb DR (agent, generic)", "dr", "generic"),
];

/// `lb run` in the balancer namespace with one service over the 3 real
/// servers, as a user would configure it.
fn agent(t: &Topo, bin: &Path, forwarding: &str, mode: &str) -> anyhow::Result<ChildGuard> {
    let name = format!("lb-{forwarding}-{mode}");
    let conf = t.dir.join(&format!("{name}.toml"));
    let reals: String = REALS
        .iter()
        .map(|r| format!("  [[virtual_server.real_server]]\n  address = \"{r}\"\n  port = 80\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "[agent]\ninterfaces = [\"b0\", \"b1\"]\nxdp_mode = \"{mode}\"\nflow_table_size = 65536\ncontrol_socket = \"{}\"\n\n[[virtual_server]]\nname = \"web\"\naddress = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"{forwarding}\"\n\n{reals}",
            t.dir.join(&format!("{name}.sock")).display()
        ),
    )?;
    let log = std::fs::File::create(t.dir.join(&format!("logs/{name}.log")))?;
    let mut cmd = t.bal.command(bin);
    cmd.args(["run", "--config", &conf.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    ChildGuard::spawn(format!("{} run", bin.display()), &mut cmd)
}

/// ip_vs is there (built in, or a module `modprobe` can load).
fn ipvs_available(t: &Topo) -> bool {
    let _ = lb_tests::netns::run(Command::new("modprobe").arg("ip_vs"));
    t.bal.exec(&["cat", "/proc/net/ip_vs"]).is_ok()
}

/// IPVS as seeds 000/001 set it up: the VIP local on the director,
/// round robin over the 3 real servers, `-m` (NAT) or `-g` (DR).
fn ipvs_up(t: &Topo, method: &str) -> anyhow::Result<()> {
    t.bal.ip(&["addr", "add", VIP_32, "dev", "lo"])?;
    // DR replies come back through the balancer (the real servers' gateway
    // here) with the VIP as source, which is now a local address.
    t.bal.sysctl("net.ipv4.conf.all.accept_local", "1")?;
    t.bal.sysctl("net.ipv4.conf.b1.accept_local", "1")?;
    let vip = format!("{VIP}:80");
    t.bal
        .exec(&["ipvsadm", "-A", "-t", &vip, "-s", "rr"])
        .context("ipvsadm (apt-get install ipvsadm)")?;
    for r in REALS {
        t.bal.exec(&[
            "ipvsadm",
            "-a",
            "-t",
            &vip,
            "-r",
            &format!("{r}:80"),
            method,
        ])?;
    }
    Ok(())
}

fn ipvs_down(t: &Topo) -> anyhow::Result<()> {
    t.bal.exec(&["ipvsadm", "-C"])?;
    t.bal.sysctl("net.ipv4.conf.all.accept_local", "0")?;
    t.bal.sysctl("net.ipv4.conf.b1.accept_local", "0")?;
    t.bal.ip(&["addr", "del", VIP_32, "dev", "lo"]).map(|_| ())
}

fn load_lb(t: &Topo, flags: u32) -> anyhow::Result<Lb> {
    let _in = t.bal.enter_thread()?;
    let mut lb = Lb::load(1 << 16, lb_common::defaults::MAGLEV_TABLE_SIZE)?;
    let mut bs = Vec::new();
    for (i, r) in REALS.iter().enumerate() {
        lb.backend(i as u32, 0, sock(r, 80))?;
        bs.push((i as u32, sock(r, 80)));
    }
    let ring = xdp::maglev_ring(&bs, lb_common::defaults::MAGLEV_TABLE_SIZE);
    lb.service(0, sock(VIP, 80), PROTO_TCP, flags, &ring)?;
    if flags & SVC_F_NAT != 0 {
        for (i, r) in REALS.iter().enumerate() {
            lb.reverse_nat(sock(r, 80), PROTO_TCP, sock(VIP, 80), 0, i as u32)?;
        }
    }
    // One program on both sides, as the agent attaches it: requests on b0,
    // NAT replies on b1.
    let prog = xdp::xdp_mut(&mut lb.ebpf, lb_common::names::PROGRAM)?;
    for dev in ["b0", "b1"] {
        prog.attach(dev, XdpMode::Driver)
            .with_context(|| format!("attaching lb_xdp to {dev} (native)"))?;
    }
    Ok(lb)
}

/// The goal of issue 12: lb through the agent at least this many times the
/// rate of nftables, HAProxy and IPVS, in NAT and in DR.
const GOAL: f64 = 1.1;

/// The forwarding modes of lb's agent a row is compared with: IPVS mode
/// against mode; nftables and HAProxy (one way of balancing each) against
/// both of lb's; nothing for lb's own rows and direct.
fn agent_modes(label: &str) -> &'static [&'static str] {
    if label == "IPVS NAT" {
        &["NAT"]
    } else if label == "IPVS DR" {
        &["DR"]
    } else if label.starts_with("nftables") || label.starts_with("HAProxy") {
        &["NAT", "DR"]
    } else {
        &[]
    }
}

/// Fills the last two columns, `lb agent / this` and `goal 1.1x`: on the
/// rows of the other balancers, the rate of lb through the agent (native
/// XDP; generic in brackets) over this row's rate in the same run, and
/// whether every native ratio reaches [`GOAL`]. `-` where there is nothing
/// to compare (lb's rows, direct, an agent row that failed).
fn add_vs_agent(t: &mut Table) {
    let value = |rows: &[Row], l: &str| rows.iter().find(|r| r.label == l).and_then(|r| r.value);
    let cells: Vec<(String, String)> = t
        .rows
        .iter()
        .map(|r| {
            let (Some(this), modes) = (r.value, agent_modes(&r.label)) else {
                return ("-".into(), "-".into());
            };
            let mut parts = Vec::new();
            let mut met = Some(true);
            for m in modes {
                let q = |label: String| {
                    value(&t.rows, &label).and_then(|v| crate::report::ratio(v, this))
                };
                let native = q(format!("lb {m} (agent)"));
                let generic = q(format!("lb {m} (agent, generic)"));
                let f = |q: Option<f64>| q.map_or("-".to_string(), |q| format!("{q:.2}"));
                parts.push(format!("{m} {} (generic {})", f(native), f(generic)));
                met = match (met, native) {
                    (Some(ok), Some(q)) => Some(ok && q >= GOAL),
                    _ => None,
                };
            }
            if parts.is_empty() {
                return ("-".into(), "-".into());
            }
            let goal = match met {
                Some(true) => "met",
                Some(false) => "not met",
                None => "-",
            };
            (parts.join(", "), goal.into())
        })
        .collect();
    for (r, (q, goal)) in t.rows.iter_mut().zip(cells) {
        if r.value.is_some() {
            r.extra.push(q);
            r.extra.push(goal);
        }
    }
}

/// The 1-minute load average, for the notes: other work on the machine
/// skews every number and the CPU columns most.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// The columns after the rate, `failures` naming ab's or wrk's count.
fn columns(failures: &str) -> [&str; 10] {
    [
        "range",
        "p50 ms",
        "p99 ms",
        failures,
        "runs ok",
        "softirq us/req",
        "busy us/req",
        "CPUs busy %",
        "lb agent / this",
        "goal 1.1x",
    ]
}

/// The median of the values that are there, `-` when none is.
fn median_cell(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    fmt_value(v[v.len() / 2])
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut l = if ctx.quick {
        Load {
            rounds: 1,
            ab_n: 200,
            conc: 10,
            wrk_secs: 1,
        }
    } else {
        // 10,000 requests: about a second of ab at this machine's rate.
        // 5,000 (0.4 s) left a run to whatever else the shared cores did
        // in that moment, and gave the CPU columns only ~80 ticks.
        Load {
            rounds: 3,
            ab_n: 10000,
            conc: 30,
            wrk_secs: 5,
        }
    };
    let c = &ctx.counts;
    l.rounds = c.rounds.unwrap_or(l.rounds).max(1);
    l.ab_n = c.requests.unwrap_or(l.ab_n).max(l.conc);
    // wrk takes whole seconds.
    l.wrk_secs = c.secs.map_or(l.wrk_secs, |s| s.ceil().max(1.0) as u32);
    eprintln!("  [http] building the namespaces (cli -> bal -> srv) and nginx");
    let t = topology()?;
    let _nginx = nginx(&t)?;
    // An explicit port: wrk resolves a service name ("http") through
    // /etc/services, which a minimal system (the ipvs VM) does not have.
    let vip_url = format!("http://{VIP}:80/");
    let load_before = loadavg();
    let mut results: Vec<(String, anyhow::Result<(Run, Run)>)> = Vec::new();
    let has_ipvs = ipvs_available(&t);
    let lb_bin = lb_binary();
    eprintln!(
        "  [http] agent: {}",
        match &lb_bin {
            Some(p) => format!("{} (lb run)", p.display()),
            None => "no lb binary next to lb-bench and no LB_BIN: skipped".into(),
        }
    );
    eprintln!(
        "  [http] IPVS: {}",
        if has_ipvs {
            "available, measured"
        } else {
            "not in this kernel, skipped"
        }
    );
    let go = |label: &str, url: &str| {
        eprintln!(
            "  [http] {label}: ab -n {} -c {}, wrk {} s",
            l.ab_n, l.conc, l.wrk_secs
        );
        let r = measure(&t, url, &l);
        match &r {
            Ok((ab, wrk)) => eprintln!(
                "  [http] {label}: ab {} req/s ({} us softirq/req, CPUs {}% busy), wrk {} req/s",
                fmt_value(ab.http.rps),
                ab.softirq_us.map_or("-".into(), fmt_value),
                ab.busy_pct.map_or("-".into(), |p| format!("{p:.0}")),
                fmt_value(wrk.http.rps)
            ),
            Err(e) => eprintln!("  [http] {label}: FAILED: {e:#}"),
        }
        (label.to_string(), r)
    };

    // Rounds in turn, so a burst of other work on the machine hits one
    // round of every variant rather than all rounds of one.
    for round in 1..=l.rounds {
        eprintln!("  [http] round {round} of {}", l.rounds);
        results.push(go("direct to one real server", "http://172.16.14.121:80/"));
        for (label, flags) in [
            ("lb NAT (maps by lb-bench)", SVC_F_NAT),
            ("lb DR (maps by lb-bench)", SVC_F_DR),
        ] {
            let lb = load_lb(&t, flags)?;
            results.push(go(label, &vip_url));
            drop(lb);
        }
        if let Some(bin) = &lb_bin {
            for (label, fw, mode) in AGENTS {
                match agent(&t, bin, fw, mode) {
                    Ok(p) => {
                        let mut r = go(label, &vip_url);
                        if let Err(e) = &mut r.1 {
                            let log = std::fs::read_to_string(
                                t.dir.join(&format!("logs/lb-{fw}-{mode}.log")),
                            )
                            .unwrap_or_default();
                            *e = anyhow::anyhow!("{e:#}; lb log: {}", log.trim());
                        }
                        results.push(r);
                        // SIGTERM: the agent detaches on it.
                        drop(p);
                    }
                    Err(e) => results.push((label.into(), Err(e))),
                }
            }
        }
        {
            let rules = format!(
                "table ip lbbench {{\n  chain pre {{\n    type nat hook prerouting priority dstnat;\n    ip daddr {VIP} tcp dport 80 dnat to jhash ip saddr . tcp sport mod 3 map {{ 0 : {}, 1 : {}, 2 : {} }}\n  }}\n}}\n",
                REALS[0], REALS[1], REALS[2]
            );
            let path = t.dir.join("nft.conf");
            std::fs::write(&path, rules)?;
            t.bal
                .exec(&["nft", "-f", &path.to_string_lossy()])
                .context("nftables (apt-get install nftables)")?;
            results.push(go("nftables DNAT (jhash)", &vip_url));
            t.bal.exec(&["nft", "flush", "ruleset"])?;
        }
        {
            // HAProxy terminates TCP on the VIP: the balancer owns it meanwhile.
            t.bal.ip(&["addr", "add", VIP_32, "dev", "lo"])?;
            let hap = haproxy(&t);
            match hap {
                Ok(_h) => results.push(go("HAProxy (mode tcp)", &vip_url)),
                Err(e) => results.push(("HAProxy (mode tcp)".into(), Err(e))),
            }
            t.bal.ip(&["addr", "del", VIP_32, "dev", "lo"])?;
        }
        if has_ipvs {
            for (label, method) in [("IPVS NAT", "-m"), ("IPVS DR", "-g")] {
                ipvs_up(&t, method)?;
                results.push(go(label, &vip_url));
                ipvs_down(&t)?;
            }
        }
    }

    let mut labels: Vec<String> = Vec::new();
    for (x, _) in &results {
        if !labels.contains(x) {
            labels.push(x.clone());
        }
    }
    let mut ab_t = Table::new(
        "ab",
        "HTTP without keep-alive (ab)",
        "req/s",
        "direct to one real server",
        "requests per second relative to direct, higher is better",
    )
    .columns(&columns("failed"));
    let mut wrk_t = Table::new(
        "wrk",
        "HTTP with keep-alive (wrk)",
        "req/s",
        "direct to one real server",
        "requests per second relative to direct, higher is better",
    )
    .columns(&columns("errors"));
    for label in &labels {
        let runs: Vec<&anyhow::Result<(Run, Run)>> = results
            .iter()
            .filter(|(x, _)| x == label)
            .map(|(_, r)| r)
            .collect();
        let ok: Vec<&(Run, Run)> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        if ok.is_empty() {
            let why = runs
                .iter()
                .find_map(|r| r.as_ref().err())
                .map(|e| format!("failed: {e:#}"))
                .unwrap_or_default();
            ab_t.push(Row::skipped(label.as_str(), why.clone()));
            wrk_t.push(Row::skipped(label.as_str(), why));
            continue;
        }
        let ab: Vec<Run> = ok.iter().map(|x| x.0.clone()).collect();
        let wrk: Vec<Run> = ok.iter().map(|x| x.1.clone()).collect();
        for (table, runs_of) in [(&mut ab_t, ab), (&mut wrk_t, wrk)] {
            // The CPU numbers: each the median over the rounds on its own
            // (one tick is 10 ms: a single run's count is coarse).
            let cpu =
                |f: fn(&Run) -> Option<f64>| median_cell(runs_of.iter().filter_map(f).collect());
            let cpu_cells = [
                cpu(|r| r.softirq_us),
                cpu(|r| r.busy_us),
                cpu(|r| r.busy_pct),
            ];
            // The run with the median rate, with its own latencies.
            let mut hs: Vec<Http> = runs_of.iter().map(|r| r.http.clone()).collect();
            hs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
            let h = &hs[hs.len() / 2];
            table.push(Row::new(
                label.as_str(),
                h.rps,
                vec![
                    format!(
                        "{}-{}",
                        fmt_value(hs[0].rps),
                        fmt_value(hs[hs.len() - 1].rps)
                    ),
                    fmt_value(h.p50_ms),
                    fmt_value(h.p99_ms),
                    hs.iter().map(|x| x.failed).sum::<u64>().to_string(),
                    format!("{}/{}", ok.len(), runs.len()),
                ]
                .into_iter()
                .chain(cpu_cells)
                .collect(),
            ));
        }
    }
    for t in [&mut ab_t, &mut wrk_t] {
        add_vs_agent(t);
    }
    let agent = "no `lb` binary next to lb-bench (cargo build --release -p lb-userspace --bin lb) and no LB_BIN";
    let ipvs = "no ip_vs in this kernel; see suite ipvs (VM)";
    for t in [&mut ab_t, &mut wrk_t] {
        if lb_bin.is_none() {
            for (label, _, _) in AGENTS {
                t.push(Row::skipped(label, agent));
            }
        }
        if !has_ipvs {
            t.push(Row::skipped("IPVS NAT / DR", ipvs));
        }
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let mut report = Report::new(
        "http",
        "HTTP through the VIP (ab, wrk)",
        &ctx.machine,
        ctx.quick,
    );
    report.method = vec![
        "Seed 001 topology in namespaces: client, balancer (client side, server side), one real-server namespace with 172.16.14.121-123 on one veth and one nginx (`return 200`, a 30-byte body) answering on all of them.".into(),
        format!("{} rounds over all variants in turn; per variant the run with the median rate is shown with its latencies (range: all rounds; failed: summed). Each run: ab -n {} -c {} (a new TCP connection per request), then wrk -t 2 -c {} -d {}s --latency (keep-alive); the same URL for every variant except direct (http://172.16.14.121/).", l.rounds, l.ab_n, l.conc, l.conc, l.wrk_secs),
        "lb: the real lb_xdp attached natively to both balancer interfaces, Maglev over the 3 real servers, maps filled by lb-bench; rows marked (agent) run `lb run` with a TOML config of the same service (xdp_mode native, both interfaces), (agent, generic) the same with xdp_mode generic on the same veths. nftables: prerouting DNAT with jhash. HAProxy: mode tcp, roundrobin, VIP bound on the balancer.".into(),
        "CPU columns: /proc/stat (all CPUs of the machine) read before and after each ab and each wrk run; softirq and busy (user, system, irq, softirq) CPU microseconds per completed request, and the CPUs' busy share during the run; each the median over the rounds. /proc/stat counts in 10 ms ticks.".into(),
        format!("lb agent / this: the median rate of lb through the agent (native XDP; generic in brackets) over this row's median rate, mode against mode for IPVS, both of lb's modes for nftables and HAProxy. Goal (issue 12): at least {GOAL}x, native, in every mode listed."),
    ];
    report.notes = vec![
        format!("Client, balancer, nginx and the load tools share the machine's {} cores: the balancer's cost shows as a lower rate for everyone.", ctx.machine.cores),
        "Goal (issue 4): through the VIP at least 0.97 of direct (ab), and at least IPVS and HAProxy.".into(),
        format!("Load average (1 min) before and after the run: {load_before} and {}. The CPU columns count the whole machine: other work running meanwhile lands in them too, evenly over the variants only as far as it was even in time (rounds in turn spread it).", loadavg()),
    ];
    report.tables = vec![ab_t, wrk_t];
    if failed > 0 {
        eprintln!("  [http] {failed} variant(s) failed; see the table");
    }
    ensure!(failed < results.len(), "every HTTP variant failed");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_balancers_against_the_agent_mode_for_mode() {
        let mut t = Table::new("ab", "t", "req/s", "direct", "m");
        for (l, v) in [
            ("direct", 100.0),
            ("lb NAT (agent)", 90.0),
            ("lb DR (agent)", 120.0),
            ("lb NAT (agent, generic)", 45.0),
            ("lb DR (maps by lb-bench)", 200.0),
            ("IPVS NAT", 60.0),
            ("IPVS DR", 80.0),
            ("nftables DNAT (jhash)", 100.0),
            ("HAProxy (mode tcp)", 50.0),
        ] {
            t.push(Row::new(l, v, vec!["x".into()]));
        }
        t.push(Row::skipped("lb DR (agent, generic)", "failed"));
        add_vs_agent(&mut t);
        let cells = |l: &str| {
            let r = t.rows.iter().find(|r| r.label == l).unwrap();
            r.extra[1..].to_vec()
        };
        // IPVS mode against mode.
        assert_eq!(cells("IPVS NAT"), ["NAT 1.50 (generic 0.75)", "met"]);
        assert_eq!(cells("IPVS DR"), ["DR 1.50 (generic -)", "met"]);
        // nftables and HAProxy against both modes; the goal needs both.
        assert_eq!(
            cells("nftables DNAT (jhash)"),
            ["NAT 0.90 (generic 0.45), DR 1.20 (generic -)", "not met"]
        );
        assert_eq!(
            cells("HAProxy (mode tcp)"),
            ["NAT 1.80 (generic 0.90), DR 2.40 (generic -)", "met"]
        );
        // lb's own rows and direct compare with nothing.
        assert_eq!(cells("lb NAT (agent)"), ["-", "-"]);
        assert_eq!(cells("direct"), ["-", "-"]);
        // A skipped row gets no columns at all.
        assert!(t
            .rows
            .iter()
            .any(|r| r.label == "lb DR (agent, generic)" && r.extra.is_empty()));
        // Without the agent's rows the goal is unknown, not met or failed.
        let mut t = Table::new("ab", "t", "req/s", "direct", "m");
        t.push(Row::new("IPVS NAT", 60.0, vec![]));
        add_vs_agent(&mut t);
        assert_eq!(t.rows[0].extra, ["NAT - (generic -)", "-"]);
    }

    #[test]
    fn median_of_the_values_there() {
        assert_eq!(median_cell(vec![3.0, 1.0, 2.0]), "2.00");
        assert_eq!(median_cell(vec![]), "-");
    }
}
