//! `lb run` under systemd's `Type=notify`: the agent sends READY=1 on
//! `$NOTIFY_SOCKET` once, and only once, XDP is attached and the control
//! socket answers with the configured service, so `systemctl start lb`
//! returns when the balancer forwards. Here the notify socket is a datagram
//! socket this test binds, and the agent runs in a namespace it creates.
//!
//! Needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN for the
//! namespace); without them it fails saying so.

use std::{
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::Duration,
};

use lb_tests::{
    agent::{LbConfig, RealServer, VirtualServer},
    netns::{run, unique_prefix, Netns},
    process::ChildGuard,
    require::require_root,
    tempdir::TempDir,
};

const LB: &str = env!("CARGO_BIN_EXE_lb");

#[test]
fn ready_is_sent_once_attached_and_serving() {
    require_root("creates a network namespace and runs `lb run` (XDP) in it");
    // Fields drop in reverse: the agent first, the namespace (with anything
    // left in it) next, the directory last.
    let dir = TempDir::new("sdn").unwrap();
    let ns = Netns::new(format!("{}sdn", unique_prefix())).unwrap();
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let socket = dir.join("lb.sock");
    let config = dir.join("lb.toml");
    let web = VirtualServer::nat_tcp(
        "web",
        "127.0.0.10".parse().unwrap(),
        80,
        vec![RealServer::new("127.0.0.11".parse().unwrap(), 1)],
    );
    let mut lb_config = LbConfig::for_interfaces(&["lo"], "auto", socket.clone(), vec![web]);
    lb_config.flow_table_size = 4096;
    std::fs::write(&config, lb_config.to_toml()).unwrap();

    let mut run_lb = ns.command(LB);
    run_lb
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null());
    let mut agent = ChildGuard::spawn("lb run", &mut run_lb).unwrap();

    let mut buf = [0u8; 4096];
    let n = notify
        .recv(&mut buf)
        .expect("no sd_notify message from lb run within 60 s");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        message.lines().any(|l| l == "READY=1"),
        "not READY=1: {message:?}"
    );
    // At that moment the program is attached and the agent answers.
    let link = ns.ip(&["link", "show", "lo"]).unwrap();
    assert!(
        link.contains("xdp"),
        "READY=1 before XDP was attached: {link}"
    );
    let status = run(Command::new(LB)
        .args(["status", "--json", "--socket"])
        .arg(&socket))
    .unwrap();
    assert!(
        status.contains("\"web\""),
        "READY=1 before the service was programmed: {status}"
    );
    // Once: nothing more while it runs.
    notify
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(notify.recv(&mut buf).is_err(), "a second sd_notify message");

    agent.stop(libc::SIGTERM, Duration::from_secs(10));
}
