//! `lb reload` with VRRP: a change that is safe live (priority) reaches
//! the running instance without a restart and the reply says so; an
//! instance added by a reload starts (and takes its address), one removed
//! stops cleanly (its address goes); a change that needs a restart (the
//! VRID) rejects the whole reload with a message naming it, and the
//! running instance keeps its settings.
//!
//! The agent runs in this process (`agent::run`) on a thread that joined a
//! network namespace of its own, so its VRRP socket, its virtual address
//! and everything it configures live there. The instance runs on that
//! namespace's `lo` in unicast mode (to 127.0.0.2, in the namespace): the
//! config check looks interfaces up in the test's `/sys/class/net`, and
//! `lo` is the one name sure to exist there too. Needs root, as `lb run`
//! does. `cargo test -p lb-userspace --test vrrp_reload`

use std::{
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::join_namespace,
    netns::{unique_prefix, Netns},
    process::wait_for,
    require::{require_capabilities, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN},
    tempdir::TempDir,
};
use lb_userspace::control::{self, Request, Response};

fn require_root() {
    require_capabilities(
        "runs `lb run` with VRRP, which needs CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW",
        &[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW],
    );
}

fn config(socket: &Path, vrid: u8, priority: u8) -> String {
    config_with(socket, vrid, priority, "")
}

/// A second instance on the same interface, for the add and remove steps.
const SECOND: &str = r#"
[[vrrp_instance]]
name = "VI_2"
interface = "lo"
virtual_router_id = 60
advert_interval = "100ms"
version = 3
unicast_peers = ["127.0.0.2"]
virtual_addresses = ["10.77.0.20/32"]
"#;

fn config_with(socket: &Path, vrid: u8, priority: u8, more: &str) -> String {
    let mut text = format!(
        r#"
[agent]
control_socket = "{}"

[[vrrp_instance]]
name = "VI_1"
interface = "lo"
virtual_router_id = {vrid}
priority = {priority}
advert_interval = "100ms"
version = 3
unicast_peers = ["127.0.0.2"]
virtual_addresses = ["10.77.0.10/32"]
"#,
        socket.display()
    );
    text.push_str(more);
    text
}

fn has(ns: &Netns, address: &str) -> bool {
    ns.ip(&["-o", "addr", "show", "dev", "lo"])
        .unwrap()
        .contains(&format!(" {address}/"))
}

#[track_caller]
fn wait(what: &str, ok: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(5), Duration::from_millis(20), ok);
}

fn request(socket: &Path, request: Request) -> Response {
    control::request(socket, &request)
        .unwrap_or_else(|e| panic!("{request:?} on {}: {e}", socket.display()))
}

fn all_vrrp(socket: &Path) -> Vec<lb_userspace::status::VrrpStatus> {
    let status = request(socket, Request::Status);
    assert!(status.ok, "{status:?}");
    status.status.expect("a status").vrrp
}

fn vrrp(socket: &Path) -> lb_userspace::status::VrrpStatus {
    all_vrrp(socket)[0].clone()
}

#[test]
fn reload_applies_live_changes_and_refuses_a_vrid_change() {
    require_root();
    let dir = TempDir::new("vrrp-reload").unwrap();
    let ns = Netns::new(format!("{}vreload", unique_prefix())).unwrap();
    let socket = dir.join("lb.sock");
    let config_path = dir.join("lb.toml");
    std::fs::write(&config_path, config(&socket, 51, 100)).unwrap();
    let loaded = lb_userspace::config::load(&config_path).expect("the test's config");

    let agent = {
        let (config_path, pin_dir) = (config_path.clone(), dir.join("pins"));
        let ns = ns.name().to_string();
        std::thread::spawn(move || {
            // The agent's runtime threads, started from here, live there too.
            join_namespace(&ns);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(lb_userspace::agent::run(config_path, loaded, pin_dir))
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
            "no agent answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    while vrrp(&socket).state != "master" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "alone, VI_1 did not become master: {:?}",
            vrrp(&socket)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = vrrp(&socket).adverts_sent;

    std::fs::write(&config_path, config(&socket, 51, 120)).unwrap();
    let reloaded = request(&socket, Request::Reload);
    assert!(
        reloaded.ok
            && reloaded
                .message
                .as_deref()
                .is_some_and(|m| m.contains("VRRP live: VI_1 changed")),
        "{reloaded:?}"
    );
    wait("priority 120", || vrrp(&socket).priority == 120);
    let after = vrrp(&socket);
    assert_eq!(
        (after.state.as_str(), after.effective_priority),
        ("master", 120),
        "{after:?}"
    );
    assert!(after.adverts_sent > sent, "still advertising: {after:?}");
    assert!(has(&ns, "10.77.0.10"));

    // Added: it starts (alone, it becomes master and takes its address).
    std::fs::write(&config_path, config_with(&socket, 51, 120, SECOND)).unwrap();
    let reloaded = request(&socket, Request::Reload);
    assert!(
        reloaded.ok
            && reloaded
                .message
                .as_deref()
                .is_some_and(|m| m.contains("VRRP live: VI_2 added")),
        "{reloaded:?}"
    );
    wait("VI_2 master", || {
        all_vrrp(&socket)
            .iter()
            .any(|v| v.name == "VI_2" && v.state == "master")
    });
    assert!(has(&ns, "10.77.0.20") && has(&ns, "10.77.0.10"));
    // Removed: it stops as at a clean stop, VI_1 is untouched.
    std::fs::write(&config_path, config(&socket, 51, 120)).unwrap();
    let reloaded = request(&socket, Request::Reload);
    assert!(
        reloaded.ok
            && reloaded
                .message
                .as_deref()
                .is_some_and(|m| m.contains("VRRP live: VI_2 removed")),
        "{reloaded:?}"
    );
    let left: Vec<String> = all_vrrp(&socket).into_iter().map(|v| v.name).collect();
    assert_eq!(left, vec!["VI_1".to_string()]);
    assert!(!has(&ns, "10.77.0.20") && has(&ns, "10.77.0.10"));
    assert_eq!(vrrp(&socket).state, "master");

    // An added instance whose advert would not fit the MTU: refused
    // before anything is applied, VI_1's new priority in the same file too.
    ns.ip(&["link", "set", "lo", "mtu", "120"]).unwrap();
    let addresses: Vec<String> = (1..=30).map(|n| format!("\"10.78.0.{n}/32\"")).collect();
    let too_big = format!(
        "\n[[vrrp_instance]]\nname = \"VI_3\"\ninterface = \"lo\"\nvirtual_router_id = 61\n\
         version = 3\nunicast_peers = [\"127.0.0.2\"]\nvirtual_addresses = [{}]\n",
        addresses.join(", ")
    );
    std::fs::write(&config_path, config_with(&socket, 51, 130, &too_big)).unwrap();
    let refused = request(&socket, Request::Reload);
    let error = refused.error.clone().unwrap_or_default();
    assert!(
        !refused.ok
            && error.contains("VI_3")
            && error.contains("MTU")
            && error.contains("nothing was applied"),
        "{refused:?}"
    );
    assert_eq!(all_vrrp(&socket).len(), 1);
    assert_eq!(vrrp(&socket).priority, 120, "half-applied");
    ns.ip(&["link", "set", "lo", "mtu", "65536"]).unwrap();

    std::fs::write(&config_path, config(&socket, 52, 120)).unwrap();
    let refused = request(&socket, Request::Reload);
    let error = refused.error.clone().unwrap_or_default();
    assert!(
        !refused.ok
            && error.contains("instance VI_1: virtual_router_id")
            && error.contains("need a restart"),
        "{refused:?}"
    );
    let kept = vrrp(&socket);
    assert_eq!(
        (kept.virtual_router_id, kept.priority, kept.state.as_str()),
        (51, 120, "master"),
        "{kept:?}"
    );

    // SAFETY: kill(2) on this process with a signal the agent handles.
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
    assert!(
        !has(&ns, "10.77.0.10"),
        "a clean stop removes the virtual address"
    );
}
