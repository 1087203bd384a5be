//! `[agent] ebpf_log` (issue 8): the data plane's rare events reach the
//! agent's log through aya-log when the switch is on, and not when it is
//! off; `lb reload` moves the switch without attaching anything again.
//!
//! One NAT topology: UDP echo on two real servers behind VIP:7000 (an
//! exec health check that passes while a file of the test exists), and
//! VIP:7001, whose only real server has weight 0: no real server, no sorry
//! server, so each of its packets is dropped (`no_backend`). A real server
//! whose check fails moves its established flows: the next datagram of
//! such a flow is rescheduled (`flow_rescheduled`). VIP:7002 has only a
//! weight-0 real server and a sorry server (a UDP echo on the second real
//! server's port 7002): its new flows are the `debug` level's event.
//!
//! Needs root (namespaces, XDP) and `LB_BIN`; fails with a message
//! without them.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use lb_tests::agent::{lb_bin, Agent};
use lb_tests::netns::Netns;
use lb_tests::tempdir::TempDir;
use lb_tests::topology::Topology;
use lb_tests::udp;

const ECHO_PORT: u16 = 7000;
const EMPTY_PORT: u16 = 7001;
const SORRY_PORT: u16 = 7002;
/// How long a record may take from the data plane to the agent's log.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The config, written out here (the test owns every key it depends on).
fn config(topo: &Topology, dir: &Path, ebpf_log: &str) -> String {
    let interfaces: Vec<String> = topo.interfaces.iter().map(|i| format!("{i:?}")).collect();
    let mut s = format!(
        "[agent]\ninterfaces = [{}]\nxdp_mode = {:?}\ncontrol_socket = {:?}\nebpf_log = {ebpf_log:?}\n",
        interfaces.join(", "),
        topo.xdp_mode,
        dir.join("lb.sock").display().to_string(),
    );
    let up_file = format!("test -e {}/up-{{address}}", dir.display());
    s += &format!(
        "\n[[virtual_server]]\nname = \"echo\"\naddress = \"{vip}\"\nport = {ECHO_PORT}\n\
         protocol = \"udp\"\nforwarding = \"nat\"\n\n  [virtual_server.health_check]\n  \
         kind = \"exec\"\n  interval = \"1s\"\n  timeout = \"800ms\"\n  rise = 1\n  fall = 1\n  \
         command = [\"/bin/sh\", \"-c\", {up_file:?}]\n",
        vip = topo.vip
    );
    for real in &topo.reals {
        s += &format!(
            "\n  [[virtual_server.real_server]]\n  address = \"{}\"\n  port = {ECHO_PORT}\n",
            real.addr
        );
    }
    s += &format!(
        "\n[[virtual_server]]\nname = \"empty\"\naddress = \"{}\"\nport = {EMPTY_PORT}\n\
         protocol = \"udp\"\nforwarding = \"nat\"\n\n  [[virtual_server.real_server]]\n  \
         address = \"{}\"\n  port = {EMPTY_PORT}\n  weight = 0\n",
        topo.vip, topo.reals[0].addr
    );
    s += &format!(
        "\n[[virtual_server]]\nname = \"sorry\"\naddress = \"{}\"\nport = {SORRY_PORT}\n\
         protocol = \"udp\"\nforwarding = \"nat\"\nsorry_server = \"{}:{SORRY_PORT}\"\n\n  \
         [[virtual_server.real_server]]\n  address = \"{}\"\n  port = {SORRY_PORT}\n  weight = 0\n",
        topo.vip, topo.reals[1].addr, topo.reals[0].addr
    );
    s
}

/// A UDP socket of the client, connected to `to`: one flow for the
/// balancer for as long as it lives.
fn client_socket(ns: &Netns, to: SocketAddr) -> UdpSocket {
    ns.enter(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("binding a UDP socket");
        s.connect(to).expect("connecting the UDP socket");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    })
    .expect("entering the client's namespace")
}

/// Sends one datagram; the echo's answer ("<real server> <text>"), if any.
fn ask(s: &UdpSocket, text: &str) -> Option<String> {
    s.send(format!("{text}\n").as_bytes()).expect("sending");
    let mut buf = [0u8; 512];
    s.recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Waits until the agent's log has a line with every one of `needles`.
fn wait_log(agent: &Agent, needles: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let log = agent.log();
        if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            started.elapsed() < LOG_WAIT,
            "no line with {needles:?} in the agent's log after {LOG_WAIT:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id of the XDP program attached to the balancer's first interface.
fn xdp_prog_id(topo: &Topology) -> String {
    let link = topo
        .balancer
        .ns
        .ip(&["-d", "link", "show", &topo.interfaces[0]])
        .expect("ip link show");
    link.split_whitespace()
        .skip_while(|w| !w.starts_with("prog/xdp"))
        .nth(2)
        .unwrap_or_else(|| panic!("no XDP program on {}:\n{link}", topo.interfaces[0]))
        .to_string()
}

fn reload(agent: &Agent, topo: &Topology, dir: &TempDir, ebpf_log: &str) -> String {
    std::fs::write(&agent.config_path, config(topo, dir.path(), ebpf_log)).unwrap();
    let out = std::process::Command::new(lb_bin())
        .args(["reload", "--socket"])
        .arg(&agent.socket)
        .output()
        .expect("running lb reload");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "lb reload failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn no_backend_events(agent: &Agent) -> u64 {
    agent.status_json().unwrap()["events"]["no_backend"]
        .as_u64()
        .unwrap()
}

#[test]
fn rare_data_plane_events_are_logged_behind_the_switch() {
    let bin = lb_bin();
    let topo = Topology::nat(2).expect("building the topology (run as root)");
    let dir = TempDir::new("ebpf-log").unwrap();
    let _echo: Vec<_> = topo
        .reals
        .iter()
        .map(|h| udp::echo_server(&h.ns, &h.name, ECHO_PORT).unwrap())
        .collect();
    for real in &topo.reals {
        std::fs::write(dir.join(&format!("up-{}", real.addr)), "").unwrap();
    }
    let agent = Agent::start_text(
        &bin,
        &topo.balancer.ns,
        dir.path(),
        &config(&topo, dir.path(), "info"),
        dir.join("lb.sock"),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    for real in &topo.reals {
        agent
            .wait_health(&real.addr.to_string(), "up", Duration::from_secs(10))
            .unwrap();
    }
    let status = agent.status_text().unwrap();
    assert!(status.contains("\neBPF log: info\n"), "{status}");
    assert_eq!(agent.status_json().unwrap()["ebpf_log"], "info");
    let prog = xdp_prog_id(&topo);
    let vip = IpAddr::V4(topo.vip);

    // A service with no real server: the packet is dropped and said so.
    let empty = client_socket(&topo.client.ns, SocketAddr::new(vip, EMPTY_PORT));
    let client = empty.local_addr().unwrap();
    assert_eq!(ask(&empty, "nobody"), None, "VIP:{EMPTY_PORT} answered");
    let line = wait_log(
        &agent,
        &[
            "lb::xdp",
            &format!(":{} -> {vip}:{EMPTY_PORT} udp (service id", client.port()),
            "dropped, no real server is up and no sorry server",
        ],
    );
    assert!(line.contains("INFO"), "{line}");

    // An established flow whose real server goes down moves, and says
    // from where.
    let flow = client_socket(&topo.client.ns, SocketAddr::new(vip, ECHO_PORT));
    let first = ask(&flow, "one").expect("no echo through the VIP");
    let (owner, other) = if first.starts_with(&topo.reals[0].name) {
        (&topo.reals[0], &topo.reals[1])
    } else {
        (&topo.reals[1], &topo.reals[0])
    };
    std::fs::remove_file(dir.join(&format!("up-{}", owner.addr))).unwrap();
    agent
        .wait_health(&owner.addr.to_string(), "down", Duration::from_secs(10))
        .unwrap();
    let second = ask(&flow, "two").expect("no echo after the real server went down");
    assert!(second.starts_with(&other.name), "{second}");
    wait_log(
        &agent,
        &[
            &format!(
                ":{} -> {vip}:{ECHO_PORT} udp (service id",
                flow.local_addr().unwrap().port()
            ),
            &format!("real server {}:{ECHO_PORT},", owner.addr),
            "scheduled again, its real server is down or was removed",
        ],
    );

    // Off by reload: the event still happens (counted), nothing is logged,
    // and the program attached is the same one.
    let answer = reload(&agent, &topo, &dir, "off");
    assert!(answer.contains("ebpf_log off"), "{answer}");
    assert_eq!(agent.status_json().unwrap()["ebpf_log"], "off");
    let dropped = lines_with(&agent.log(), "dropped, no real server");
    let events = no_backend_events(&agent);
    let quiet = client_socket(&topo.client.ns, SocketAddr::new(vip, EMPTY_PORT));
    assert_eq!(ask(&quiet, "nobody"), None);
    assert!(
        no_backend_events(&agent) > events,
        "the dropped packet was not counted"
    );
    // As long as a logged record took at most, and then some.
    std::thread::sleep(Duration::from_secs(1));
    let log = agent.log();
    assert_eq!(
        lines_with(&log, "dropped, no real server"),
        dropped,
        "logged with ebpf_log = \"off\":\n{log}"
    );
    let port = quiet.local_addr().unwrap().port();
    assert!(
        !log.contains(&format!(":{port} -> {vip}:{EMPTY_PORT}")),
        "{log}"
    );

    // And on again, live.
    let answer = reload(&agent, &topo, &dir, "info");
    assert!(answer.contains("ebpf_log info"), "{answer}");
    assert_eq!(ask(&quiet, "nobody again"), None);
    wait_log(
        &agent,
        &[
            &format!(":{port} -> {vip}:{EMPTY_PORT} udp (service id"),
            "dropped",
        ],
    );
    assert_eq!(
        xdp_prog_id(&topo),
        prog,
        "a reload of ebpf_log attached another program"
    );
    let log = agent.log();
    assert!(
        !log.contains("take effect at the next"),
        "ebpf_log was treated as a restart-only setting:\n{log}"
    );
    agent.stop().unwrap();
}

/// `debug` adds the events `info` leaves out: a new flow sent to the sorry
/// server is logged at debug and not at info, and the flow is served.
#[test]
fn debug_level_also_logs_new_flows_to_the_sorry_server() {
    let bin = lb_bin();
    let topo = Topology::nat(2).expect("building the topology (run as root)");
    let dir = TempDir::new("ebpf-log-debug").unwrap();
    let sorry_host = &topo.reals[1];
    let _sorry = udp::echo_server(&sorry_host.ns, "sorry", SORRY_PORT).unwrap();
    let agent = Agent::start_text(
        &bin,
        &topo.balancer.ns,
        dir.path(),
        &config(&topo, dir.path(), "debug"),
        dir.join("lb.sock"),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(agent.status_json().unwrap()["ebpf_log"], "debug");
    let vip = IpAddr::V4(topo.vip);
    let sorry_line = "new, to the sorry server, no real server is up";

    let first = client_socket(&topo.client.ns, SocketAddr::new(vip, SORRY_PORT));
    let answer = ask(&first, "hello").expect("the sorry server did not answer through the VIP");
    assert!(answer.starts_with("sorry "), "{answer}");
    let line = wait_log(
        &agent,
        &[
            "lb::xdp",
            &format!(
                ":{} -> {vip}:{SORRY_PORT} udp (service id",
                first.local_addr().unwrap().port()
            ),
            sorry_line,
        ],
    );
    assert!(
        line.contains(&sorry_host.addr.to_string()),
        "the record does not name the sorry server {}: {line}",
        sorry_host.addr
    );

    // At info the same event is served and not logged.
    let answer = reload(&agent, &topo, &dir, "info");
    assert!(answer.contains("ebpf_log info"), "{answer}");
    let logged = lines_with(&agent.log(), sorry_line);
    let second = client_socket(&topo.client.ns, SocketAddr::new(vip, SORRY_PORT));
    let answer = ask(&second, "again").expect("the sorry server did not answer at info");
    assert!(answer.starts_with("sorry "), "{answer}");
    std::thread::sleep(Duration::from_secs(1));
    let log = agent.log();
    assert_eq!(
        lines_with(&log, sorry_line),
        logged,
        "a new flow to the sorry server was logged at info:\n{log}"
    );
    agent.stop().unwrap();
}
