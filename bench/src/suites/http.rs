//! Suite `http`: requests per second and latency as seed 001 measures them,
//! `ab` without keep-alive and `wrk` with keep-alive, in the seed 001
//! topology: `cli` (c0 192.168.253.1) -> `bal` (b0 192.168.253.254 | b1
//! 172.16.14.120) -> `srv` (s0 172.16.14.121-123, one nginx on all three,
//! the VIP on `lo` for DR, default route via the balancer).
//!
//! Variants: direct to one real server (routed by the balancer's kernel:
//! the baseline), lb NAT and DR with the real `lb_xdp` and maps filled by
//! this suite, lb NAT and DR through the agent (`lb run` with a TOML config;
//! skipped when the `lb` binary is not built), nftables DNAT, HAProxy in mode
//! tcp, and IPVS NAT and DR wherever the kernel has ip_vs (suite `ipvs`: a VM).

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
    tools::Http,
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

fn measure(t: &Topo, url: &str, l: &Load) -> anyhow::Result<(Http, Http)> {
    wait_http(t, url)?;
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
    let ab =
        lb_tests::client::parse_ab(&ab).with_context(|| format!("unreadable ab output:\n{ab}"))?;
    let wrk = lb_tests::client::wrk(&t.cli, url, 2, l.conc, l.wrk_secs)?;
    Ok((Http::from(&ab), Http::from(&wrk)))
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

/// `lb run` in the balancer namespace with one service over the 3 real
/// servers, as a user would configure it.
fn agent(t: &Topo, bin: &Path, forwarding: &str) -> anyhow::Result<ChildGuard> {
    let conf = t.dir.join(&format!("lb-{forwarding}.toml"));
    let reals: String = REALS
        .iter()
        .map(|r| format!("  [[virtual_server.real_server]]\n  address = \"{r}\"\n  port = 80\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "[agent]\ninterfaces = [\"b0\", \"b1\"]\nxdp_mode = \"native\"\nflow_table_size = 65536\ncontrol_socket = \"{}\"\n\n[[virtual_server]]\nname = \"web\"\naddress = \"{VIP}\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"{forwarding}\"\n\n{reals}",
            t.dir.join(&format!("lb-{forwarding}.sock")).display()
        ),
    )?;
    let log = std::fs::File::create(t.dir.join(&format!("logs/lb-{forwarding}.log")))?;
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

/// The IPVS row an lb row is compared with: the same forwarding mode.
fn ipvs_counterpart(label: &str) -> Option<&'static str> {
    let mode = label.strip_prefix("lb ")?;
    if mode.starts_with("NAT") {
        Some("IPVS NAT")
    } else if mode.starts_with("DR") {
        Some("IPVS DR")
    } else {
        None
    }
}

/// Fills the last column, `x IPVS (same mode)`: an lb row's rate over the
/// rate of IPVS in its mode measured in the same run (goal of issue 4: at
/// least 1), `-` where there is no such pair (no ip_vs, other variants).
fn add_vs_ipvs(t: &mut Table) {
    let value = |rows: &[Row], l: &str| rows.iter().find(|r| r.label == l).and_then(|r| r.value);
    let q: Vec<Option<f64>> = t
        .rows
        .iter()
        .map(|r| {
            let ipvs = value(&t.rows, ipvs_counterpart(&r.label)?)?;
            crate::report::ratio(r.value?, ipvs)
        })
        .collect();
    for (r, q) in t.rows.iter_mut().zip(q) {
        if r.value.is_some() {
            r.extra
                .push(q.map(|q| format!("{q:.2}")).unwrap_or("-".into()));
        }
    }
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
        Load {
            rounds: 3,
            ab_n: 5000,
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
    let mut results: Vec<(String, anyhow::Result<(Http, Http)>)> = Vec::new();
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
                "  [http] {label}: ab {} req/s, wrk {} req/s",
                fmt_value(ab.rps),
                fmt_value(wrk.rps)
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
            for (label, fw) in [("lb NAT (agent)", "nat"), ("lb DR (agent)", "dr")] {
                match agent(&t, bin, fw) {
                    Ok(p) => {
                        let mut r = go(label, &vip_url);
                        if let Err(e) = &mut r.1 {
                            let log =
                                std::fs::read_to_string(t.dir.join(&format!("logs/lb-{fw}.log")))
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
    .columns(&[
        "range",
        "p50 ms",
        "p99 ms",
        "failed",
        "runs ok",
        "x IPVS (same mode)",
    ]);
    let mut wrk_t = Table::new(
        "wrk",
        "HTTP with keep-alive (wrk)",
        "req/s",
        "direct to one real server",
        "requests per second relative to direct, higher is better",
    )
    .columns(&[
        "range",
        "p50 ms",
        "p99 ms",
        "errors",
        "runs ok",
        "x IPVS (same mode)",
    ]);
    for label in &labels {
        let runs: Vec<&anyhow::Result<(Http, Http)>> = results
            .iter()
            .filter(|(x, _)| x == label)
            .map(|(_, r)| r)
            .collect();
        let ok: Vec<&(Http, Http)> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
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
        let ab: Vec<Http> = ok.iter().map(|x| x.0.clone()).collect();
        let wrk: Vec<Http> = ok.iter().map(|x| x.1.clone()).collect();
        for (table, mut hs) in [(&mut ab_t, ab), (&mut wrk_t, wrk)] {
            // The run with the median rate, with its own latencies.
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
                ],
            ));
        }
    }
    for t in [&mut ab_t, &mut wrk_t] {
        add_vs_ipvs(t);
    }
    let agent = "no `lb` binary next to lb-bench (cargo build --release -p lb-userspace --bin lb) and no LB_BIN";
    let ipvs = "no ip_vs in this kernel; see suite ipvs (VM)";
    for t in [&mut ab_t, &mut wrk_t] {
        if lb_bin.is_none() {
            t.push(Row::skipped("lb NAT (agent)", agent));
            t.push(Row::skipped("lb DR (agent)", agent));
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
        "lb: the real lb_xdp attached natively to both balancer interfaces, Maglev over the 3 real servers, maps filled by lb-bench; rows marked (agent) run `lb run` with a TOML config of the same service (xdp_mode native, both interfaces). nftables: prerouting DNAT with jhash. HAProxy: mode tcp, roundrobin, VIP bound on the balancer.".into(),
    ];
    report.notes = vec![
        format!("Client, balancer, nginx and the load tools share the machine's {} cores: the balancer's cost shows as a lower rate for everyone.", ctx.machine.cores),
        "Goal (issue 4): through the VIP at least 0.97 of direct (ab), and at least IPVS and HAProxy.".into(),
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
    fn lb_rows_against_ipvs_of_their_mode() {
        let mut t = Table::new("ab", "t", "req/s", "direct", "m");
        for (l, v) in [
            ("direct", 100.0),
            ("lb NAT (agent)", 90.0),
            ("lb DR (maps by lb-bench)", 120.0),
            ("IPVS NAT", 60.0),
            ("IPVS DR", 80.0),
            ("HAProxy (mode tcp)", 50.0),
        ] {
            t.push(Row::new(l, v, vec!["x".into()]));
        }
        t.push(Row::skipped("lb NAT (agent, v2)", "not built"));
        add_vs_ipvs(&mut t);
        let last = |l: &str| {
            let r = t.rows.iter().find(|r| r.label == l).unwrap();
            r.extra.last().cloned()
        };
        assert_eq!(last("lb NAT (agent)").as_deref(), Some("1.50"));
        assert_eq!(last("lb DR (maps by lb-bench)").as_deref(), Some("1.50"));
        assert_eq!(last("IPVS DR").as_deref(), Some("-"));
        assert_eq!(last("HAProxy (mode tcp)").as_deref(), Some("-"));
        // A skipped row gets no columns at all.
        assert_eq!(last("lb NAT (agent, v2)"), None);
        // No IPVS measured: nothing to compare with.
        let mut t = Table::new("ab", "t", "req/s", "direct", "m");
        t.push(Row::new("lb NAT (agent)", 90.0, vec![]));
        add_vs_ipvs(&mut t);
        assert_eq!(t.rows[0].extra, ["-"]);
    }
}
