//! The agent's life cycle on a real kernel, in network namespaces this test
//! creates: `lb run` attaches XDP and answers on its control socket, `lb
//! status --json` reports the configured services, a second agent is
//! refused, SIGTERM removes the socket, and an unprivileged `lb run` stops
//! with one clear line. SIGTERM keeps XDP attached through links pinned on
//! the agent's bpffs; here the agent runs under `ip netns exec`, whose
//! private mount namespace (and the bpffs the agent mounted in it) ends
//! with the agent, so the links go too and XDP is gone afterwards
//! (`agent_restart.rs` tests restarts that keep forwarding).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces), as
//! `cargo xtask test` runs it; without them it fails saying so.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lb_tests::{
    agent::{Agent, LbConfig, RealServer, VirtualServer},
    netns::{run, unique_prefix, Netns},
    require::require_root,
    tempdir::TempDir,
};

const LB: &str = env!("CARGO_BIN_EXE_lb");

fn require_privileges() {
    require_root("creates network namespaces and loads XDP");
}

/// Two namespaces joined by a veth (`eth0` in the balancer's, `p0` in the
/// peer's), removed on drop with whatever runs in them.
struct Namespaces {
    lb: Netns,
    // Kept for its veth end and address; nothing runs in it.
    _peer: Netns,
    dir: TempDir,
}

impl Namespaces {
    fn new(tag: &str) -> Self {
        let prefix = format!("{}lc{tag}", unique_prefix());
        let lb = Netns::new(format!("{prefix}-lb")).unwrap();
        let peer = Netns::new(format!("{prefix}-peer")).unwrap();
        let dir = TempDir::new(&format!("lc{tag}")).unwrap();
        lb.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "p0",
            "netns",
            peer.name(),
        ])
        .unwrap();
        lb.ip(&["addr", "add", "10.99.0.1/24", "dev", "eth0"])
            .unwrap();
        peer.ip(&["addr", "add", "10.99.0.2/24", "dev", "p0"])
            .unwrap();
        lb.ip(&["link", "set", "eth0", "up"]).unwrap();
        peer.ip(&["link", "set", "p0", "up"]).unwrap();
        Namespaces {
            lb,
            _peer: peer,
            dir,
        }
    }

    /// The balancer's config: one NAT service over a real server of
    /// weight 2 (the peer) and one of weight 0.
    fn config(&self, xdp_mode: &str) -> PathBuf {
        let reals = vec![
            RealServer::new("10.99.0.2".parse().unwrap(), 2),
            RealServer::new("10.99.0.3".parse().unwrap(), 0),
        ];
        let web = VirtualServer::nat_tcp("web", "10.99.0.100".parse().unwrap(), 80, reals);
        let mut config = LbConfig::for_interfaces(&["eth0"], xdp_mode, self.socket(), vec![web]);
        config.flow_table_size = 4096;
        let path = self.dir.join(&format!("lb-{xdp_mode}.toml"));
        std::fs::write(&path, config.to_toml()).unwrap();
        path
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run").join("lb.sock")
    }

    /// `ip -d link show eth0` in the balancer's namespace.
    fn eth0_details(&self) -> String {
        self.lb.ip(&["-d", "link", "show", "eth0"]).unwrap()
    }

    fn xdp_on_eth0(&self) -> String {
        self.eth0_details()
            .split_whitespace()
            .find(|w| w.starts_with("prog/xdp"))
            .unwrap_or("")
            .to_string()
    }

    fn lb(&self, args: &[&str]) -> Command {
        let mut cmd = self.lb.command(LB);
        cmd.args(args);
        cmd
    }
}

/// `lb run --config CONFIG` in the balancer's namespace, answering.
fn start(ns: &Namespaces, config: &Path) -> Agent {
    let run = ns.lb(&["run", "--config", config.to_str().unwrap()]);
    let log = ns.dir.join("agent.log");
    let mut agent =
        Agent::spawn(Path::new(LB), run, config.to_path_buf(), ns.socket(), log).unwrap();
    agent.wait_serving(Duration::from_secs(20)).unwrap();
    agent
}

#[test]
fn run_status_and_sigterm_detach_cleanly() {
    require_privileges();
    let ns = Namespaces::new("a");
    let config = ns.config("auto");
    assert_eq!(ns.xdp_on_eth0(), "", "XDP attached before the agent ran");
    let agent = start(&ns, &config);

    assert!(
        ns.xdp_on_eth0().starts_with("prog/xdp"),
        "no XDP program on eth0 while lb runs"
    );
    let mode = std::fs::metadata(ns.socket()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "socket not root-only"
    );

    let out = Command::new(LB)
        .args([
            "status",
            "--json",
            "--socket",
            ns.socket().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lb status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let svc = &status["services"][0];
    assert_eq!(svc["name"], "web");
    assert_eq!(svc["address"], "10.99.0.100");
    assert_eq!(svc["port"], 80);
    assert_eq!(svc["protocol"], "tcp");
    assert_eq!(svc["forwarding"], "nat");
    assert_eq!(svc["scheduler"], "maglev");
    let reals = svc["real_servers"].as_array().unwrap();
    assert_eq!(reals.len(), 2);
    assert_eq!(reals[0]["address"], "10.99.0.2");
    assert_eq!(reals[0]["weight"], 2);
    assert_eq!(reals[1]["weight"], 0);
    assert!(status["verdicts"]["pass"].is_u64(), "{status}");
    assert!(status["events"]["no_backend"].is_u64(), "{status}");

    // The text form, found through --config.
    let out = Command::new(LB)
        .args(["status", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TCP  10.99.0.100:80 maglev (nat) web"),
        "{text}"
    );
    assert!(text.contains("-> 10.99.0.2:80"), "{text}");

    // A second agent on the same socket is refused and leaves the first alone.
    let second = ns
        .lb(&["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another lb agent is already listening"),
        "{err}"
    );
    assert!(
        ns.socket().exists(),
        "the second agent removed the first one's socket"
    );

    agent.stop().unwrap();
    assert_eq!(ns.xdp_on_eth0(), "", "XDP still attached after SIGTERM");
    assert!(!ns.socket().exists(), "control socket left behind");
    let out = Command::new(LB)
        .args(["status", "--socket", ns.socket().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no lb agent is listening on"), "{err}");
}

#[test]
fn generic_mode_is_honoured() {
    require_privileges();
    let ns = Namespaces::new("g");
    let agent = start(&ns, &ns.config("generic"));
    let text = ns.eth0_details();
    assert!(
        text.contains("xdpgeneric"),
        "not attached in generic mode: {text}"
    );
    agent.stop().unwrap();
}

#[test]
fn unprivileged_run_says_it_needs_root() {
    require_privileges();
    let ns = Namespaces::new("u");
    let config = ns.config("auto");
    // Readable by the unprivileged user.
    run(Command::new("chmod").args(["-R", "a+rX", ns.dir.path().to_str().unwrap()])).unwrap();
    let out = ns
        .lb
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534"])
        .args(["--clear-groups", "--inh-caps=-all", LB, "run", "--config"])
        .arg(&config)
        .output()
        .expect("running setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert_eq!(ns.xdp_on_eth0(), "");
}
