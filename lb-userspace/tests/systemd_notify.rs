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

const LB: &str = env!("CARGO_BIN_EXE_lb");

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed (this test needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespace and temporary directory, removed on drop with whatever
/// runs in them.
struct Scratch {
    ns: String,
    dir: std::path::PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ready_is_sent_once_attached_and_serving() {
    let id = std::process::id();
    let scratch = Scratch {
        ns: format!("lbtest-sdn-{id}"),
        dir: std::env::temp_dir().join(format!("lbtest-sdn-{id}")),
    };
    std::fs::create_dir_all(&scratch.dir).unwrap();
    run(&["ip", "netns", "add", &scratch.ns]);
    run(&["ip", "-n", &scratch.ns, "link", "set", "lo", "up"]);
    let notify_path = scratch.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let socket = scratch.dir.join("lb.sock");
    let config = scratch.dir.join("lb.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ninterfaces = [\"lo\"]\nflow_table_size = 4096\ncontrol_socket = \"{}\"\n\n\
             [[virtual_server]]\nname = \"web\"\naddress = \"127.0.0.10\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"nat\"\n\n  [[virtual_server.real_server]]\n  \
             address = \"127.0.0.11\"\n",
            socket.display()
        ),
    )
    .unwrap();

    let mut agent = Command::new("ip")
        .args(["netns", "exec", &scratch.ns, LB, "run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

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
    let link = run(&["ip", "-n", &scratch.ns, "link", "show", "lo"]);
    assert!(
        link.contains("xdp"),
        "READY=1 before XDP was attached: {link}"
    );
    let status = run(&[
        LB,
        "status",
        "--json",
        "--socket",
        &socket.to_string_lossy(),
    ]);
    assert!(
        status.contains("\"web\""),
        "READY=1 before the service was programmed: {status}"
    );
    // Once: nothing more while it runs.
    notify
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(notify.recv(&mut buf).is_err(), "a second sd_notify message");

    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
}
