//! The control socket as an unprivileged user or a hostile client would
//! meet it, against a real `lb run` in a namespace (`lb_tests::lab`):
//! - a non-root uid is refused even when it gets past the file mode (here
//!   with CAP_DAC_OVERRIDE), with one line saying why;
//! - a member of `[agent] control_group` may run `lb status` but not
//!   `lb reload`; a non-member cannot connect;
//! - the socket has its final mode (and group) from the instant its path
//!   exists;
//! - silent clients are closed after 10 s, and a group member's cannot
//!   take the connection slots root needs;
//! - request lines longer than the cap are refused and the connection
//!   closed, from more clients than the connection cap, without the
//!   agent's memory growing with what they send.
//!
//! The users are `nobody` (uid 65534) and the group `nogroup` (gid 65534),
//! which every Debian system has; `setpriv` (util-linux) switches to them.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::{fs::MetadataExt as _, net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::{
    config_lines::{at, locate},
    lab::{connect_as, run_as, Lab},
};

const LB: &str = env!("CARGO_BIN_EXE_lb");

/// A lab for this test (root, a namespace and a directory named `tag`).
fn lab(tag: &str) -> Lab {
    Lab::new(Path::new(LB), tag).unwrap()
}

/// `lb ARGS` under `setpriv SETPRIV`: success, stdout, stderr.
fn lb_as(setpriv: &[&str], args: &[&str]) -> (bool, String, String) {
    run_as(setpriv, Path::new(LB), args)
}

const NOBODY: &[&str] = &["--reuid=65534", "--regid=65534", "--clear-groups"];
const NOGROUP_GID: u32 = 65534;

fn require_nogroup() {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    assert!(
        groups.lines().any(|l| l.starts_with("nogroup:x:65534:")),
        "this test needs the group `nogroup` (gid 65534) of Debian's base system"
    );
}

#[test]
fn a_non_root_uid_is_refused_even_past_the_file_mode() {
    let lab = lab("cs-uid");
    let config = lab.config("lb.toml", "", 1).unwrap();
    let _agent = lab.start(&config, None).unwrap();
    let socket = lab.socket().display().to_string();

    // nobody with CAP_DAC_OVERRIDE passes the 0600 mode: the credentials
    // check is what stops it.
    let with_override: Vec<&str> = NOBODY
        .iter()
        .copied()
        .chain(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"])
        .collect();
    for args in [
        ["status", "--socket", &socket],
        ["reload", "--socket", &socket],
    ] {
        let (ok, stdout, stderr) = lb_as(&with_override, &args);
        assert!(!ok, "`lb {}` as nobody succeeded: {stdout}", args[0]);
        assert!(
            stderr.contains("permission denied") && stderr.contains("uid 65534"),
            "`lb {}` as nobody: {stderr}",
            args[0]
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // Without it, the file mode refuses it first, also in one line.
    let (ok, _, stderr) = lb_as(NOBODY, &["status", "--socket", &socket]);
    assert!(!ok && stderr.contains("permission denied"), "{stderr}");
    // Root still may.
    let (ok, _, stderr) = lb_as(&[], &["reload", "--socket", &socket]);
    assert!(ok, "root's reload: {stderr}");
}

#[test]
fn a_control_group_member_may_read_status_but_not_reload() {
    require_nogroup();
    let lab = lab("cs-grp");
    let config = lab
        .config("lb.toml", "control_group = \"nogroup\"", 1)
        .unwrap();
    let _agent = lab.start(&config, None).unwrap();
    let socket = lab.socket().display().to_string();

    // A member by its primary group, and one by a supplementary group.
    let by_supplementary = ["--reuid=65534", "--regid=4242", "--groups=65534"];
    for member in [NOBODY, &by_supplementary[..]] {
        let (ok, stdout, stderr) = lb_as(member, &["status", "--socket", &socket]);
        assert!(ok, "`lb status` as {member:?}: {stderr}");
        assert!(stdout.contains("web"), "{stdout}");
        let (ok, _, stderr) = lb_as(member, &["reload", "--socket", &socket]);
        assert!(!ok, "`lb reload` as {member:?} succeeded");
        assert!(
            stderr.contains("`reload` needs root") && stderr.contains("nogroup"),
            "{stderr}"
        );
    }
    let (ok, _, stderr) = lb_as(
        &["--reuid=65534", "--regid=4242", "--clear-groups"],
        &["status", "--socket", &socket],
    );
    assert!(!ok && stderr.contains("permission denied"), "{stderr}");
    let (ok, _, stderr) = lb_as(&[], &["reload", "--socket", &socket]);
    assert!(ok, "root's reload: {stderr}");
}

/// Mode and group of the socket the first time its path exists, polled
/// from just before the agent starts.
fn first_seen(lab: &Lab, agent_extra: &str) -> (u32, u32) {
    let config = lab.config("watched.toml", agent_extra, 1).unwrap();
    let socket = lab.socket();
    let _ = std::fs::remove_file(&socket);
    let (tx, rx) = std::sync::mpsc::channel();
    let watched = socket.clone();
    let watcher = std::thread::spawn(move || {
        let start = Instant::now();
        let _ = tx.send(());
        loop {
            if let Ok(meta) = std::fs::symlink_metadata(&watched) {
                return Some((meta.mode() & 0o7777, meta.gid()));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return None;
            }
            std::hint::spin_loop();
        }
    });
    rx.recv().unwrap();
    let agent = lab.start(&config, None).unwrap();
    let seen = watcher
        .join()
        .unwrap()
        .expect("the control socket never appeared");
    agent.stop().unwrap();
    seen
}

#[test]
fn the_socket_has_its_mode_from_the_instant_it_appears() {
    require_nogroup();
    let lab = lab("cs-mode");
    // Its directory exists already (a `/run/lb` from an earlier run): only
    // the socket's own mode protects it.
    std::fs::create_dir_all(lab.socket().parent().unwrap()).unwrap();
    let (mode, gid) = first_seen(&lab, "");
    assert_eq!(
        (mode, gid),
        (0o600, 0),
        "root-only socket first seen as {mode:o}"
    );
    let (mode, gid) = first_seen(&lab, "control_group = \"nogroup\"");
    assert_eq!(
        (mode, gid),
        (0o660, NOGROUP_GID),
        "group socket first seen as {mode:o} gid {gid}"
    );
    // Created by the agent with a group: reachable by the group only.
    std::fs::remove_dir_all(lab.socket().parent().unwrap()).unwrap();
    let (mode, _) = first_seen(&lab, "control_group = \"nogroup\"");
    assert_eq!(mode, 0o660);
    let dir = std::fs::metadata(lab.socket().parent().unwrap()).unwrap();
    assert_eq!((dir.mode() & 0o7777, dir.gid()), (0o710, NOGROUP_GID));
}

/// Send `bytes` bytes without a newline, then read the agent's answer.
fn oversized(socket: &Path, bytes: usize) -> (UnixStream, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The agent closes the connection after its cap: the write then fails
    // (EPIPE), which is the point.
    let _ = stream.write_all(&vec![b'a'; bytes]);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = BufReader::new(&stream).read_line(&mut answer);
    (stream, answer)
}

#[test]
fn oversized_lines_are_refused_without_the_agent_growing() {
    let lab = lab("cs-line");
    let config = lab.config("lb.toml", "", 1).unwrap();
    let agent = lab.start(&config, None).unwrap();
    let before = agent.rss_kib().unwrap();

    // 64 clients at once, each sending 1 MiB of one line and keeping its
    // connection open: buffered whole, that would be 64 MiB.
    let socket = lab.socket();
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || oversized(&socket, (1 << 20) - 1))
        })
        .collect();
    let answers: Vec<(UnixStream, String)> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();
    let after = agent.rss_kib().unwrap();
    let too_long = answers
        .iter()
        .filter(|(_, a)| a.contains("request line too long"))
        .count();
    let busy = answers
        .iter()
        .filter(|(_, a)| a.contains("the agent is busy"))
        .count();
    assert!(too_long > 0, "no `too long` answer: {:?}", answers[0].1);
    assert_eq!(
        too_long + busy,
        answers.len(),
        "every client told why: {:?}",
        answers.iter().map(|(_, a)| a).collect::<Vec<_>>()
    );
    assert!(
        after < before + 8 * 1024,
        "the agent grew from {before} KiB to {after} KiB on oversized lines"
    );
    // The connections were closed by the agent: nothing more is answered.
    for (mut stream, _) in answers.into_iter().take(3) {
        let _ = stream.write_all(b"{\"cmd\":\"status\"}\n");
        let mut rest = String::new();
        let _ = BufReader::new(&stream).read_line(&mut rest);
        assert!(rest.is_empty(), "answered after refusing: {rest}");
    }
    let status = lb_userspace::control::request(&socket, &lb_userspace::control::Request::Status)
        .expect("lb status after the oversized lines");
    assert!(status.ok, "{status:?}");
}

#[test]
fn control_group_is_checked_where_it_is_written() {
    let config = |group: &str| {
        format!(
            "[agent]\ninterfaces = [\"eth0\"]\ncontrol_group = {group}\n\n\
             [[virtual_server]]\nname = \"web\"\naddress = \"10.97.0.100\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"nat\"\n  [[virtual_server.real_server]]\n  address = \"10.98.0.2\"\n"
        )
    };
    let parsed = lb_userspace::config::parse(&config("\"lb\""), "lb.toml").unwrap();
    assert_eq!(parsed.agent.control_group.as_deref(), Some("lb"));
    for (bad, says) in [
        ("\"\"", "is empty"),
        ("\"l b\"", "is not a group name"),
        ("\"a:b\"", "is not a group name"),
    ] {
        let err = lb_userspace::config::parse(&config(bad), "lb.toml")
            .unwrap_err()
            .to_string();
        let spot = locate(&config(bad), at("control_group = ", bad));
        assert!(
            err.starts_with(&format!("lb.toml:{spot}: field `agent.control_group`"))
                && err.contains(says),
            "{bad}: {err}"
        );
    }
}

#[test]
fn an_unknown_control_group_stops_the_agent_saying_what_to_do() {
    let lab = lab("cs-nogrp");
    let config = lab
        .config("lb.toml", "control_group = \"lb-no-such-group\"", 1)
        .unwrap();
    let out = lab
        .ns
        .command(LB)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lb run started: {stderr}");
    assert!(
        stderr.contains("no group `lb-no-such-group`") && stderr.contains("groupadd"),
        "{stderr}"
    );
    assert!(!lab.socket().exists(), "a socket was left behind");
}

#[test]
fn silent_clients_are_dropped_and_cannot_lock_root_out() {
    require_nogroup();
    let lab = lab("cs-idle");
    let config = lab
        .config("lb.toml", "control_group = \"nogroup\"", 1)
        .unwrap();
    let _agent = lab.start(&config, None).unwrap();
    let socket = lab.socket();

    // 16 connections from a group member that send nothing: it may hold
    // 12, the others are told the agent is busy.
    let opened = Instant::now();
    let silent: Vec<UnixStream> = (0..16)
        .map(|_| connect_as(&socket, 65534, 65534, &[65534]).expect("connecting as nobody:nogroup"))
        .collect();
    let mut busy = 0;
    for s in &silent {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut line = String::new();
        if BufReader::new(s).read_line(&mut line).is_ok() && line.contains("busy") {
            busy += 1;
        }
    }
    assert_eq!(busy, 4, "busy answers to a member's 16 silent connections");
    // Root still gets in.
    let status = lb_userspace::control::request(&socket, &lb_userspace::control::Request::Status)
        .expect("root's lb status beside 12 silent connections");
    assert!(status.ok, "{status:?}");
    // And the silent ones are closed once idle for 10 s.
    for s in &silent {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut rest = Vec::new();
        let _ = (&*s).read_to_end(&mut rest);
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after < Duration::from_secs(13),
        "silent clients were closed only after {closed_after:?}"
    );
    assert!(
        closed_after > Duration::from_secs(9),
        "silent clients were closed before their 10 s: {closed_after:?}"
    );
}
