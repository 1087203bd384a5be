//! The agent's life cycle on a real kernel, in network namespaces this test
//! creates: `lb run` attaches XDP and answers on its control socket, `lb
//! status --json` reports the configured services, a second agent is
//! refused, SIGTERM detaches and removes the socket, and an unprivileged
//! `lb run` stops with one clear line.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces), as
//! `cargo xtask test` runs it; without them it fails saying so.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const LB: &str = env!("CARGO_BIN_EXE_lb");

fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth (`eth0` in the balancer's, `p0` in the
/// peer's), removed on drop with whatever runs in them.
struct Namespaces {
    lb: String,
    peer: String,
    dir: PathBuf,
}

impl Namespaces {
    fn new(tag: &str) -> Self {
        let id = std::process::id();
        let lb = format!("lbtest-lc{tag}-{id}-lb");
        let peer = format!("lbtest-lc{tag}-{id}-peer");
        let dir = std::env::temp_dir().join(format!("lbtest-lc{tag}-{id}"));
        let ns = Namespaces {
            lb: lb.clone(),
            peer: peer.clone(),
            dir: dir.clone(),
        };
        std::fs::create_dir_all(&dir).unwrap();
        sh(&["ip", "netns", "add", &lb]);
        sh(&["ip", "netns", "add", &peer]);
        sh(&[
            "ip", "link", "add", "eth0", "netns", &lb, "type", "veth", "peer", "name", "p0",
            "netns", &peer,
        ]);
        sh(&[
            "ip",
            "-n",
            &lb,
            "addr",
            "add",
            "10.99.0.1/24",
            "dev",
            "eth0",
        ]);
        sh(&[
            "ip",
            "-n",
            &peer,
            "addr",
            "add",
            "10.99.0.2/24",
            "dev",
            "p0",
        ]);
        sh(&["ip", "-n", &lb, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &peer, "link", "set", "p0", "up"]);
        ns
    }

    fn config(&self, xdp_mode: &str) -> PathBuf {
        let path = self.dir.join(format!("lb-{xdp_mode}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"
[agent]
interfaces = ["eth0"]
xdp_mode = "{xdp_mode}"
flow_table_size = 4096
control_socket = "{}"

[[virtual_server]]
name = "web"
address = "10.99.0.100"
port = 80
protocol = "tcp"
forwarding = "nat"
  [[virtual_server.real_server]]
  address = "10.99.0.2"
  weight = 2
  [[virtual_server.real_server]]
  address = "10.99.0.3"
  weight = 0
"#,
                self.socket().display()
            ),
        )
        .unwrap();
        path
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run").join("lb.sock")
    }

    fn xdp_on_eth0(&self) -> String {
        let out = sh(&["ip", "-n", &self.lb, "-d", "link", "show", "eth0"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find(|w| w.starts_with("prog/xdp"))
            .unwrap_or("")
            .to_string()
    }

    fn lb(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.lb, LB]).args(args);
        cmd
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.lb, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `lb run`, killed on drop if the test did not stop it.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert!(
        caps & (1 << 21) != 0 && caps & (1 << 12) != 0,
        "this test creates network namespaces and loads XDP: run it as root \
         (cargo xtask test does)"
    );
}

fn start(ns: &Namespaces, config: &Path) -> Agent {
    let child = ns
        .lb(&["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning lb run");
    let mut agent = Agent(child);
    let socket = ns.socket();
    // The socket is bound before the program is loaded (so a second agent
    // fails early) but only served once XDP is attached: an answer to
    // `lb status` means the agent is up.
    wait_for("lb status to answer", Duration::from_secs(20), || {
        if let Some(status) = agent.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            agent
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("lb run exited with {status}: {err}");
        }
        socket.exists()
            && Command::new(LB)
                .args(["status", "--socket", socket.to_str().unwrap()])
                .output()
                .unwrap()
                .status
                .success()
    });
    agent
}

fn stop(mut agent: Agent) {
    let pid = agent.0.id() as i32;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            assert!(status.success(), "lb run exited with {status} on SIGTERM");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lb run still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_status_and_sigterm_detach_cleanly() {
    require_root();
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

    stop(agent);
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
    require_root();
    let ns = Namespaces::new("g");
    let agent = start(&ns, &ns.config("generic"));
    let out = sh(&["ip", "-n", &ns.lb, "-d", "link", "show", "eth0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("xdpgeneric"),
        "not attached in generic mode: {text}"
    );
    stop(agent);
}

#[test]
fn unprivileged_run_says_it_needs_root() {
    require_root();
    let ns = Namespaces::new("u");
    let config = ns.config("auto");
    // Readable by the unprivileged user.
    sh(&["chmod", "-R", "a+rX", ns.dir.to_str().unwrap()]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.lb,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
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
