//! An agent whose config has no virtual servers and no interfaces (what a
//! VRRP-only config looks like) loads no XDP: it leaves the pin directory
//! alone, answers `status` with no services, accepts a reload that still
//! has no virtual servers, refuses one that adds some with a message saying
//! to restart, and stops on SIGTERM removing its socket.
//!
//! The agent runs in this process (`agent::run` with a config built here,
//! with no VRRP instance either, so nothing at all runs in the root
//! namespace and no namespace is needed; a VRRP-only config would start
//! VRRP). The reloaded files name `lo` only because the config check wants
//! an existing interface. Needs root, as `lb run` does.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::tempdir::TempDir;
use lb_userspace::{
    config::{AgentConfig, Config, XdpMode},
    control::{self, Request, Response},
};

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert!(
        caps & (1 << 21) != 0 && caps & (1 << 12) != 0,
        "`lb run` needs root (CAP_SYS_ADMIN/CAP_BPF and CAP_NET_ADMIN): run this test as root \
         (cargo xtask test does)"
    );
}

fn request(socket: &Path, request: Request) -> Response {
    control::request(socket, &request)
        .unwrap_or_else(|e| panic!("{request:?} on {}: {e}", socket.display()))
}

const WITH_A_SERVICE: &str = r#"
[agent]
interfaces = ["lo"]

[[virtual_server]]
name = "web"
address = "192.0.2.10"
port = 80
protocol = "tcp"
forwarding = "nat"

  [[virtual_server.real_server]]
  address = "192.0.2.20"
"#;

const WITHOUT_SERVICES: &str = r#"
[agent]
interfaces = ["lo"]
"#;

#[test]
fn no_virtual_servers_and_no_interfaces_runs_without_xdp() {
    require_root();
    let dir = TempDir::new("agent-without-xdp").unwrap();
    let socket = dir.join("lb.sock");
    let pin_dir = dir.join("pins");
    let config_path = dir.join("lb.toml");
    std::fs::write(&config_path, WITHOUT_SERVICES).unwrap();
    let config = Config {
        agent: AgentConfig {
            interfaces: Vec::new(),
            xdp_mode: XdpMode::Auto,
            flow_table_size: 4096,
            control_socket: socket.clone(),
            metrics_listen: None,
            control_group: None,
            ebpf_log: lb_userspace::config::EbpfLog::Off,
        },
        virtual_servers: Vec::new(),
        vrrp_instances: Vec::new(),
        vrrp_sync_groups: Vec::new(),
        announce: None,
        sources: Default::default(),
    };

    let agent = {
        let (config_path, pin_dir) = (config_path.clone(), pin_dir.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(lb_userspace::agent::run(config_path, config, pin_dir))
        })
    };
    let started = Instant::now();
    while control::request(&socket, &Request::Status).is_err() {
        assert!(
            !agent.is_finished(),
            "the agent stopped: {:?}",
            agent.join()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no agent answered on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let status = request(&socket, Request::Status);
    assert!(status.ok, "{status:?}");
    let status = status.status.expect("a status");
    assert!(status.services.is_empty(), "{status:?}");
    assert!(!pin_dir.exists(), "the pin directory was created");

    // Still no virtual servers: applied ([agent] changes wait for a restart).
    let reloaded = request(&socket, Request::Reload);
    assert!(reloaded.ok, "{reloaded:?}");

    std::fs::write(&config_path, WITH_A_SERVICE).unwrap();
    let refused = request(&socket, Request::Reload);
    let error = refused.error.clone().unwrap_or_default();
    assert!(
        !refused.ok && error.contains("running config stays") && error.contains("restart"),
        "{refused:?}"
    );
    let status = request(&socket, Request::Status);
    assert!(status.ok && status.status.unwrap().services.is_empty());
    assert!(!pin_dir.exists(), "the pin directory was created");

    // The agent's SIGTERM handler is installed (it answered): it stops.
    // SAFETY: kill(2) on this process with a handled signal.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
    let stopped = Instant::now();
    while !agent.is_finished() {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the agent ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = agent.join().expect("the agent thread panicked");
    assert!(result.is_ok(), "{result:?}");
    assert!(!socket.exists(), "the socket stayed after SIGTERM");
}
