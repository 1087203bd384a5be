//! Two lb VRRP nodes in two network namespaces on a bridge (a third
//! namespace): they elect the higher priority, the other takes over when
//! the master dies (no priority 0) or stops cleanly (priority 0), the
//! returning master preempts and finds its crashed run's address left
//! behind, and a handoff gives mastership away until resume.
//!
//! Needs root (namespaces, raw sockets) and `ip`. Each node runs the
//! library's `VrrpHandle` on a thread of its own that joined its
//! namespace, with a current-thread runtime so every socket and script
//! lives there. Times use VRRPv3 with 100 ms adverts: master-down is
//! 3 x 0.1 + skew, 0.34-0.36 s.
//!
//! `cargo test -p lb-userspace --test vrrp_pair -- --test-threads=1`

use std::{
    process::Command,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::join_namespace,
    netns::{run, unique_prefix, Netns},
    process::wait_for as wait_until_or_panic,
    require::{require_capabilities, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN},
    tempdir::TempDir,
};
use lb_userspace::{
    config::{
        Script, VirtualAddress, VrrpInitialState, VrrpInstance, VrrpSyncGroup, VrrpVersion,
        DEFAULT_GARP_DELAY, DEFAULT_NOTIFY_TIMEOUT,
    },
    control::{Response, VrrpRequest},
    status::VrrpStatus,
    vrrp::{reconfig::Plan, serve_control, VrrpHandle},
};
use tokio::sync::{mpsc, oneshot, watch};

const VIP: &str = "10.201.0.10";
/// Slack for a loaded 2-core machine on top of the protocol's times.
const MARGIN: Duration = Duration::from_millis(400);

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A bridge namespace and two node namespaces, each node with `eth0`
/// (10.201.0.N/24) and, when asked, `eth1` (10.202.0.N/24) on the same
/// bridge; removed on drop. IPv6 duplicate address detection is off so
/// link-local addresses are usable at once.
struct Topology {
    sw: String,
    nodes: [String; 2],
    // Each removes its namespace, with anything left in it, on drop.
    _namespaces: Vec<Netns>,
}

impl Topology {
    fn new() -> Topology {
        Topology::with_interfaces(1)
    }

    fn with_interfaces(count: usize) -> Topology {
        require_capabilities(
            "creates network namespaces and opens raw VRRP sockets",
            &[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW],
        );
        let p = unique_prefix();
        let namespaces: Vec<Netns> = ["sw", "a", "b"]
            .iter()
            .map(|role| Netns::new(format!("{p}-{role}")).unwrap())
            .collect();
        let t = Topology {
            sw: namespaces[0].name().to_string(),
            nodes: [
                namespaces[1].name().to_string(),
                namespaces[2].name().to_string(),
            ],
            _namespaces: namespaces,
        };
        ip(&["-n", &t.sw, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &t.sw,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &t.sw, "link", "set", "br0", "up"]);
        for (n, node) in t.nodes.iter().enumerate() {
            for key in ["all", "default"] {
                let sysctl = format!("net.ipv6.conf.{key}.accept_dad=0");
                ip(&["netns", "exec", node, "sysctl", "-q", "-w", &sysctl]);
            }
            for i in 0..count {
                let port = format!("p{n}{i}");
                let dev = format!("eth{i}");
                ip(&[
                    "-n", &t.sw, "link", "add", &port, "type", "veth", "peer", "name", &dev,
                    "netns", node,
                ]);
                ip(&["-n", &t.sw, "link", "set", &port, "master", "br0", "up"]);
                let addr = format!("10.20{}.0.{}/24", i + 1, n + 1);
                ip(&["-n", node, "addr", "add", &addr, "dev", &dev]);
                ip(&["-n", node, "link", "set", &dev, "up"]);
            }
        }
        t
    }

    fn has_vip(&self, node: usize) -> bool {
        self.has(node, "eth0", VIP)
    }

    fn has(&self, node: usize, dev: &str, address: &str) -> bool {
        ip(&["-n", &self.nodes[node], "-o", "addr", "show", "dev", dev])
            .contains(&format!(" {address}/"))
    }
}

fn instance(priority: u8) -> VrrpInstance {
    VrrpInstance {
        name: "VI_1".into(),
        interface: "eth0".into(),
        virtual_router_id: 51,
        priority,
        advert_interval: Duration::from_millis(100),
        version: VrrpVersion::V3,
        initial_state: VrrpInitialState::Backup,
        preempt: true,
        preempt_delay: Duration::ZERO,
        auth_pass: None,
        virtual_addresses: vec![VirtualAddress {
            address: VIP.parse().unwrap(),
            prefix_len: 24,
        }],
        virtual_addresses_excluded: vec![],
        unicast_peers: vec![],
        unicast_source: None,
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify_stop: None,
        notify: None,
        fence: None,
        notify_timeout: DEFAULT_NOTIFY_TIMEOUT,
        track_virtual_servers: vec![],
        track_weight: 0,
        garp_repeat: 1,
        garp_delay: DEFAULT_GARP_DELAY,
    }
}

enum NodeCommand {
    /// Clean stop: priority 0, addresses removed.
    Stop,
    /// As kill -9: the runtime is dropped, nothing is cleaned up.
    Crash,
    /// Through the control socket's path (`serve_control`), as
    /// `lb vrrp handoff|resume [INSTANCE]`.
    Control(VrrpRequest, std::sync::mpsc::Sender<Response>),
    /// Virtual servers whose real servers are all down.
    TrackedDown(Vec<String>),
    /// A reload's live changes, as the agent hands them over.
    Reconfigure(Plan),
}

/// One lb node: a `VrrpHandle` on a thread inside namespace `ns`.
struct Node {
    commands: mpsc::UnboundedSender<NodeCommand>,
    status: watch::Receiver<Vec<VrrpStatus>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    fn start(ns: &str, cfg: VrrpInstance) -> Node {
        Node::start_group(ns, vec![cfg], vec![])
    }

    fn start_group(ns: &str, cfgs: Vec<VrrpInstance>, groups: Vec<VrrpSyncGroup>) -> Node {
        let ns = ns.to_string();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            join_namespace(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let handle = VrrpHandle::start(&cfgs, &groups).await.expect("VRRP start");
                let handle = Arc::new(handle);
                let (control, control_rx) = mpsc::channel(1);
                tokio::spawn(serve_control(handle.clone(), control_rx));
                let (tx, mut rx) = mpsc::unbounded_channel();
                ready_tx.send((tx, handle.subscribe())).unwrap();
                while let Some(command) = rx.recv().await {
                    match command {
                        NodeCommand::Stop => return handle.shutdown().await,
                        NodeCommand::Crash => return std::mem::forget(handle),
                        NodeCommand::Control(request, reply) => {
                            let (tx, rx) = oneshot::channel();
                            control.send((request, tx)).await.unwrap();
                            reply.send(rx.await.unwrap()).unwrap();
                        }
                        NodeCommand::TrackedDown(names) => {
                            handle.set_tracked_down(names.into_iter().collect())
                        }
                        NodeCommand::Reconfigure(plan) => handle.reconfigure(plan).await.unwrap(),
                    }
                }
            });
        });
        let (commands, status) = ready
            .recv_timeout(Duration::from_secs(10))
            .expect("node did not start");
        Node {
            commands,
            status,
            thread: Some(thread),
        }
    }

    fn state(&self) -> String {
        self.status.borrow()[0].state.clone()
    }

    /// The states of all instances, in config order.
    fn states(&self) -> Vec<String> {
        self.status
            .borrow()
            .iter()
            .map(|s| s.state.clone())
            .collect()
    }

    fn status(&self) -> VrrpStatus {
        self.status.borrow()[0].clone()
    }

    fn end(mut self, command: NodeCommand) {
        self.commands.send(command).unwrap();
        self.thread.take().unwrap().join().unwrap();
    }

    /// `lb vrrp handoff|resume`: the answer's message, or its error.
    fn ask(&self, request: VrrpRequest) -> Result<String, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.commands
            .send(NodeCommand::Control(request, tx))
            .unwrap();
        let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        match (r.ok, r.message, r.error) {
            (true, Some(m), None) => Ok(m),
            (false, None, Some(e)) => Err(e),
            other => panic!("not a message or an error: {other:?}"),
        }
    }
}

/// Polls `cond` every 5 ms; the time it took, or a panic naming `what`.
#[track_caller]
fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) -> Duration {
    wait_until_or_panic(what, limit, Duration::from_millis(5), cond)
}

#[test]
fn pair_elects_fails_over_and_preempts() {
    let t = Topology::new();
    let a = Node::start(&t.nodes[0], instance(150));
    let b = Node::start(&t.nodes[1], instance(100));
    // Both start as backup; A's master-down (0.34 s) runs out first.
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B backup with A as master", Duration::from_secs(2), || {
        b.state() == "backup" && b.status().master.as_deref() == Some("10.201.0.1")
    });
    assert!(t.has_vip(0) && !t.has_vip(1), "the VIP is on A only");
    std::thread::sleep(Duration::from_millis(500));
    let bs = b.status();
    assert!(bs.adverts_received >= 3, "{bs:?}");
    assert!(bs.rejected.is_empty(), "{bs:?}");
    assert_eq!(b.state(), "backup", "stable");

    // A dies without a word (kill -9 and link down: node loss).
    a.end(NodeCommand::Crash);
    ip(&["-n", &t.nodes[0], "link", "set", "eth0", "down"]);
    let took = wait_for("B takes over", Duration::from_secs(2), || {
        b.state() == "master"
    });
    eprintln!("takeover after a crash: {took:?} (theory 0.36 s after A's last advert)");
    assert!(took < Duration::from_millis(361) + MARGIN, "{took:?}");
    assert!(t.has_vip(1));
    assert!(t.has_vip(0), "a crashed node leaves its address (kill -9)");

    // A comes back: the leftover address goes, then A preempts.
    ip(&["-n", &t.nodes[0], "link", "set", "eth0", "up"]);
    let a = Node::start(&t.nodes[0], instance(150));
    assert!(
        !t.has_vip(0) || a.state() == "master",
        "left-over VIP removed at start"
    );
    let took = wait_for("A preempts", Duration::from_secs(3), || {
        a.state() == "master"
    });
    eprintln!("preemption after restart: {took:?} (theory 0.34 s)");
    wait_for("B steps down", Duration::from_secs(1), || {
        b.state() == "backup"
    });
    wait_for("VIP moved back to A", Duration::from_secs(1), || {
        t.has_vip(0) && !t.has_vip(1)
    });
    let last = b.status().last_transition.unwrap();
    assert!(last.reason.contains("higher priority 150"), "{last:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        a.status().master_conflicts,
        0,
        "a preemption is no conflict"
    );

    // A stops cleanly: priority 0, B takes over after its skew time.
    let stopped = Instant::now();
    a.end(NodeCommand::Stop);
    assert!(!t.has_vip(0), "a clean stop removes the VIP");
    wait_for(
        "B takes over after priority 0",
        Duration::from_secs(1),
        || b.state() == "master",
    );
    let took = stopped.elapsed();
    eprintln!("takeover after a clean stop: {took:?} (theory 0.061 s)");
    assert!(took < Duration::from_millis(61) + MARGIN, "{took:?}");
    let last = b.status().last_transition.unwrap();
    assert!(
        last.reason.contains("priority 0 from 10.201.0.1"),
        "{last:?}"
    );
    b.end(NodeCommand::Stop);
    assert!(!t.has_vip(1));
}

#[test]
fn handoff_holds_backup_until_resume() {
    let t = Topology::new();
    let a = Node::start(&t.nodes[0], instance(150));
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B backup", Duration::from_secs(2), || {
        b.status().master.is_some()
    });

    let wrong = a.ask(VrrpRequest::VrrpHandoff {
        instance: Some("VI_X".into()),
    });
    assert_eq!(
        wrong,
        Err("no VRRP instance named \"VI_X\" (instances: VI_1)".into())
    );
    assert_eq!(a.state(), "master");
    let answer = a
        .ask(VrrpRequest::VrrpHandoff {
            instance: Some("VI_1".into()),
        })
        .unwrap();
    assert_eq!(answer, "VI_1: master -> backup, handed off");
    let took = wait_for("B master after handoff", Duration::from_secs(1), || {
        b.state() == "master"
    });
    eprintln!("takeover after handoff: {took:?}");
    assert!(took < Duration::from_millis(61) + MARGIN, "{took:?}");
    assert!(!t.has_vip(0) && t.has_vip(1));
    let s = a.status();
    assert!(s.handed_off && s.effective_priority == 0, "{s:?}");

    // A would preempt (150 > 100) but stays backup while handed off,
    // also when B disappears.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.state(), "backup");
    b.end(NodeCommand::Crash);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        a.state(),
        "backup",
        "handed off: deaf to the master-down timer"
    );

    let answer = a.ask(VrrpRequest::VrrpResume { instance: None }).unwrap();
    assert_eq!(answer, "VI_1: backup, resumed");
    wait_for("A master after resume", Duration::from_secs(2), || {
        a.state() == "master"
    });
    assert!(t.has_vip(0));
    a.end(NodeCommand::Stop);
}

#[test]
fn v2_peer_ignores_wrong_password_and_counts_it() {
    let t = Topology::new();
    let mut good = instance(100);
    good.version = VrrpVersion::V2;
    good.advert_interval = Duration::from_secs(1);
    good.auth_pass = Some("1111".into());
    let mut wrong = good.clone();
    wrong.priority = 200;
    wrong.auth_pass = Some("2222".into());
    let b = Node::start(&t.nodes[1], good);
    let a = Node::start(&t.nodes[0], wrong);
    // Neither hears the other: both become master after 3.6 s.
    wait_for("A master", Duration::from_secs(5), || a.state() == "master");
    wait_for("B master too", Duration::from_secs(5), || {
        b.state() == "master"
    });
    wait_for("B counted the bad password", Duration::from_secs(3), || {
        b.status().rejected.get("auth").copied().unwrap_or(0) >= 1
    });
    assert_eq!(b.status().adverts_received, 0);
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

#[test]
fn v3_ipv6_pair_elects_from_link_local_and_fails_over() {
    let t = Topology::new();
    let v6 = |priority| {
        let mut i = instance(priority);
        i.virtual_addresses = vec![VirtualAddress {
            address: "fd00:201::10".parse().unwrap(),
            prefix_len: 64,
        }];
        i
    };
    let a = Node::start(&t.nodes[0], v6(150));
    let b = Node::start(&t.nodes[1], v6(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B hears A", Duration::from_secs(2), || {
        b.status().master.is_some()
    });
    let master = b.status().master.unwrap();
    assert!(
        master.starts_with("fe80::"),
        "adverts come from the link-local: {master}"
    );
    assert!(t.has(0, "eth0", "fd00:201::10") && !t.has(1, "eth0", "fd00:201::10"));
    a.end(NodeCommand::Stop);
    wait_for("B master", Duration::from_secs(1), || b.state() == "master");
    assert!(t.has(1, "eth0", "fd00:201::10"));
    assert!(b.status().rejected.is_empty(), "{:?}", b.status());
    b.end(NodeCommand::Stop);
}

/// NAT's case: the client-side and the server-side address move as one.
/// A fault on one interface of the master holds its other instance in
/// backup, so the peer takes both; when it clears, both come back.
#[test]
fn sync_group_moves_both_addresses_together() {
    let t = Topology::with_interfaces(2);
    let node = |priority| {
        let mut client = instance(priority);
        client.name = "VI_CLIENT".into();
        let mut servers = instance(priority);
        servers.name = "VI_SERVERS".into();
        servers.interface = "eth1".into();
        servers.virtual_router_id = 52;
        servers.virtual_addresses = vec![VirtualAddress {
            address: "10.202.0.10".parse().unwrap(),
            prefix_len: 24,
        }];
        let group = VrrpSyncGroup {
            name: "G1".into(),
            instances: vec!["VI_CLIENT".into(), "VI_SERVERS".into()],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
        };
        (vec![client, servers], vec![group])
    };
    let (cfgs, groups) = node(150);
    let a = Node::start_group(&t.nodes[0], cfgs, groups);
    let (cfgs, groups) = node(100);
    let b = Node::start_group(&t.nodes[1], cfgs, groups);
    wait_for("A master of both", Duration::from_secs(2), || {
        a.states() == ["master", "master"]
    });
    wait_for("B backup of both", Duration::from_secs(2), || {
        b.status.borrow().iter().all(|s| s.master.is_some())
    });
    assert_eq!(b.states(), ["backup", "backup"]);
    assert_eq!(a.status().sync_group.as_deref(), Some("G1"));

    // The server side of A fails: A gives up the client side as well.
    ip(&["-n", &t.nodes[0], "link", "set", "eth1", "down"]);
    wait_for("A: fault and held backup", Duration::from_secs(1), || {
        a.states() == ["backup", "fault"]
    });
    assert!(
        !t.has(0, "eth0", VIP),
        "the client-side VIP left A with the group"
    );
    wait_for("B master of both", Duration::from_secs(2), || {
        b.states() == ["master", "master"]
    });
    assert!(t.has(1, "eth0", VIP) && t.has(1, "eth1", "10.202.0.10"));
    // Held: A does not preempt the client side while eth1 is down.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.states(), ["backup", "fault"]);

    ip(&["-n", &t.nodes[0], "link", "set", "eth1", "up"]);
    wait_for("A master of both again", Duration::from_secs(3), || {
        a.states() == ["master", "master"]
    });
    wait_for("B backup of both again", Duration::from_secs(1), || {
        b.states() == ["backup", "backup"]
    });
    assert!(t.has(0, "eth0", VIP) && t.has(0, "eth1", "10.202.0.10"));
    assert!(!t.has(1, "eth0", VIP) && !t.has(1, "eth1", "10.202.0.10"));
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

/// A script that appends its arguments as one line to `file`.
fn recorder(file: &std::path::Path, tag: &str) -> Script {
    let body = format!("echo {tag} \"$*\" >> {}", file.display());
    Script {
        line: format!("recorder {tag}"),
        argv: vec!["/bin/sh".into(), "-c".into(), body, "recorder".into()],
    }
}

fn lines(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A partition (B's bridge port detached) makes both nodes master; when
/// it heals, B (lower) steps down and A (the one that stays master) runs
/// its fence hook with B's address. Notify scripts ran in order.
#[test]
fn healed_partition_fences_the_other_master_and_notifies_in_order() {
    let t = Topology::new();
    let dir = TempDir::new("vrrp-fence").unwrap();
    let (fence_log, notify_log) = (dir.join("fence"), dir.join("notify"));
    let _ = std::fs::remove_file(&fence_log);
    let _ = std::fs::remove_file(&notify_log);
    let mut cfg_a = instance(150);
    cfg_a.fence = Some(recorder(&fence_log, "fence"));
    cfg_a.notify = Some(recorder(&notify_log, "notify"));
    let a = Node::start(&t.nodes[0], cfg_a);
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B backup", Duration::from_secs(2), || {
        b.status().master.is_some()
    });

    ip(&["-n", &t.sw, "link", "set", "p10", "nomaster"]);
    wait_for("B master too, partitioned", Duration::from_secs(2), || {
        b.state() == "master"
    });
    assert_eq!(a.state(), "master");
    ip(&["-n", &t.sw, "link", "set", "p10", "master", "br0"]);
    wait_for(
        "B steps down after the heal",
        Duration::from_secs(2),
        || b.state() == "backup",
    );
    assert_eq!(a.state(), "master");
    wait_for("fence ran", Duration::from_secs(2), || {
        !lines(&fence_log).is_empty()
    });
    assert_eq!(lines(&fence_log), ["fence INSTANCE VI_1 10.201.0.2"]);
    assert!(a.status().master_conflicts >= 1, "{:?}", a.status());
    assert_eq!(
        b.status().master_conflicts,
        0,
        "the one that yields is no conflict"
    );
    assert!(!t.has(1, "eth0", VIP) && t.has(0, "eth0", VIP));

    a.end(NodeCommand::Stop);
    assert_eq!(
        lines(&notify_log),
        [
            "notify INSTANCE VI_1 BACKUP 150",
            "notify INSTANCE VI_1 MASTER 150",
            "notify INSTANCE VI_1 STOP 150"
        ],
        "run one at a time, in the order of the transitions, finished before the stop returned"
    );
    b.end(NodeCommand::Stop);
}

/// All real servers of a tracked virtual server down: the master's
/// priority drops by track_weight and the peer preempts; back up, it
/// preempts again.
#[test]
fn tracked_virtual_server_down_moves_mastership() {
    let t = Topology::new();
    let mut cfg_a = instance(150);
    cfg_a.track_virtual_servers = vec!["web".into()];
    cfg_a.track_weight = 100;
    let a = Node::start(&t.nodes[0], cfg_a);
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    a.commands
        .send(NodeCommand::TrackedDown(vec!["other".into()]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.state(), "master", "an untracked server does not count");
    a.commands
        .send(NodeCommand::TrackedDown(vec!["web".into()]))
        .unwrap();
    wait_for("B preempts A at 50", Duration::from_secs(2), || {
        b.state() == "master" && a.state() == "backup"
    });
    assert_eq!(a.status().effective_priority, 50);
    a.commands.send(NodeCommand::TrackedDown(vec![])).unwrap();
    wait_for("A back", Duration::from_secs(2), || {
        a.state() == "master" && b.state() == "backup"
    });
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

/// keepalived's defaults (v2, 1 s, PASS): the takeover times measured
/// with keepalived (failover-measurements.txt) are the bounds: 3.61 s
/// after the master's last advert when it dies, 0.61 s after its
/// priority 0 when it stops.
#[test]
fn v2_one_second_failover_is_no_slower_than_keepalived() {
    let t = Topology::new();
    let v2 = |priority| {
        let mut i = instance(priority);
        i.version = VrrpVersion::V2;
        i.advert_interval = Duration::from_secs(1);
        i.auth_pass = Some("1111".into());
        i
    };
    let a = Node::start(&t.nodes[0], v2(150));
    let b = Node::start(&t.nodes[1], v2(100));
    let took = wait_for("A master", Duration::from_secs(5), || a.state() == "master");
    eprintln!("first master after start: {took:?} (keepalived 3.41 s)");
    assert!(took < Duration::from_millis(3414) + MARGIN, "{took:?}");
    wait_for("B hears A", Duration::from_secs(2), || {
        b.status().master.is_some()
    });

    // Crash right after one of A's adverts: the bound is from that advert.
    let received = b.status().adverts_received;
    wait_for("an advert from A", Duration::from_secs(2), || {
        b.status().adverts_received > received
    });
    let last_advert = Instant::now();
    a.end(NodeCommand::Crash);
    ip(&["-n", &t.nodes[0], "link", "set", "eth0", "down"]);
    wait_for("B master", Duration::from_secs(5), || b.state() == "master");
    let took = last_advert.elapsed();
    eprintln!("takeover after a crash: {took:?} after A's last advert (keepalived 3.610 s)");
    assert!(took < Duration::from_millis(3610) + MARGIN, "{took:?}");
    assert!(
        took > Duration::from_millis(3500),
        "not before master-down: {took:?}"
    );

    // B (100) master, A comes back and stops cleanly once it is master.
    ip(&["-n", &t.nodes[0], "link", "set", "eth0", "up"]);
    let a = Node::start(&t.nodes[0], v2(150));
    wait_for("A preempts", Duration::from_secs(5), || {
        a.state() == "master"
    });
    wait_for("B backup", Duration::from_secs(1), || b.state() == "backup");
    let stopped = Instant::now();
    a.end(NodeCommand::Stop);
    wait_for("B master after priority 0", Duration::from_secs(2), || {
        b.state() == "master"
    });
    let took = stopped.elapsed();
    eprintln!("takeover after a clean stop: {took:?} (keepalived 0.610 s)");
    assert!(took < Duration::from_millis(610) + MARGIN, "{took:?}");
    b.end(NodeCommand::Stop);
}

/// As keepalived: an instance whose interface has no IPv4 address yet
/// does not stop the node from starting; it sits in FAULT saying why,
/// and joins the election (here it preempts) once an address appears,
/// advertising from that address.
#[test]
fn no_address_at_start_is_fault_until_one_appears() {
    let t = Topology::new();
    ip(&["-n", &t.nodes[0], "-4", "addr", "flush", "dev", "eth0"]);
    let a = Node::start(&t.nodes[0], instance(150));
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A in fault", Duration::from_secs(2), || {
        a.state() == "fault"
    });
    let last = a.status().last_transition.expect("a transition");
    assert_eq!(
        (last.from.as_str(), last.to.as_str(), last.reason.as_str()),
        ("init", "fault", "no IPv4 address on eth0")
    );
    wait_for("B master", Duration::from_secs(2), || b.state() == "master");
    assert!(!t.has_vip(0) && t.has_vip(1));
    assert_eq!(a.status().adverts_sent, 0, "nothing sent without a source");
    ip(&[
        "-n",
        &t.nodes[0],
        "addr",
        "add",
        "10.201.0.7/24",
        "dev",
        "eth0",
    ]);
    wait_for("A preempts", Duration::from_secs(2), || {
        a.state() == "master"
    });
    wait_for("B hears A's new address", Duration::from_secs(2), || {
        b.status().master.as_deref() == Some("10.201.0.7")
    });
    assert!(t.has_vip(0) && !t.has_vip(1));
    assert!(b.status().rejected.is_empty(), "{:?}", b.status());
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

/// The interface's address changes while its link is down: when the link
/// comes back the adverts come from the new address (the source is looked
/// up again), and the peer accepts them (the v3 checksum covers it).
#[test]
fn address_changed_while_down_is_the_new_advert_source() {
    let t = Topology::new();
    let a = Node::start(&t.nodes[0], instance(150));
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B hears A", Duration::from_secs(2), || {
        b.status().master.as_deref() == Some("10.201.0.1")
    });
    let node = t.nodes[0].as_str();
    ip(&["-n", node, "link", "set", "eth0", "down"]);
    wait_for("A in fault", Duration::from_secs(2), || {
        a.state() == "fault"
    });
    wait_for("B master", Duration::from_secs(2), || b.state() == "master");
    ip(&["-n", node, "addr", "del", "10.201.0.1/24", "dev", "eth0"]);
    ip(&["-n", node, "addr", "add", "10.201.0.9/24", "dev", "eth0"]);
    ip(&["-n", node, "link", "set", "eth0", "up"]);
    wait_for("A preempts again", Duration::from_secs(3), || {
        a.state() == "master"
    });
    wait_for("B hears A's new address", Duration::from_secs(2), || {
        b.status().master.as_deref() == Some("10.201.0.9")
    });
    assert!(t.has_vip(0) && !t.has_vip(1));
    assert!(b.status().rejected.is_empty(), "{:?}", b.status());
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

/// IPv6: a link that is down at start has no link-local address either;
/// the instance starts in FAULT, and once the link is up and the kernel
/// gave it a link-local address it elects from that address.
#[test]
fn ipv6_link_down_at_start_is_fault_until_up_with_a_link_local() {
    let t = Topology::new();
    let v6 = |priority| {
        let mut i = instance(priority);
        i.virtual_addresses = vec![VirtualAddress {
            address: "fd00:201::10".parse().unwrap(),
            prefix_len: 64,
        }];
        i
    };
    let node = t.nodes[0].as_str();
    ip(&["-n", node, "link", "set", "eth0", "down"]);
    let a = Node::start(node, v6(150));
    wait_for("A in fault", Duration::from_secs(2), || {
        a.state() == "fault"
    });
    let reason = a.status().last_transition.expect("a transition").reason;
    assert!(
        reason == "interface down" || reason == "no link-local IPv6 address on eth0",
        "{reason}"
    );
    let b = Node::start(&t.nodes[1], v6(100));
    wait_for("B master", Duration::from_secs(2), || b.state() == "master");
    ip(&["-n", node, "link", "set", "eth0", "up"]);
    wait_for("A preempts", Duration::from_secs(3), || {
        a.state() == "master"
    });
    wait_for(
        "B hears A from its link-local",
        Duration::from_secs(2),
        || b.status().master.is_some_and(|m| m.starts_with("fe80::")),
    );
    assert!(t.has(0, "eth0", "fd00:201::10") && !t.has(1, "eth0", "fd00:201::10"));
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

/// A reload that raises the backup's priority above the master's makes it
/// preempt (no restart, no address moved by the reload itself); lowering
/// it again hands mastership back at once, the master advertising its new
/// priority without waiting for its next advert.
#[test]
fn reload_changes_priority_live() {
    let t = Topology::new();
    let a = Node::start(&t.nodes[0], instance(150));
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B backup", Duration::from_secs(2), || b.state() == "backup");
    let mut raised = instance(200);
    raised.advert_interval = Duration::from_millis(200);
    b.commands
        .send(NodeCommand::Reconfigure(changed(raised)))
        .unwrap();
    wait_for("B preempts", Duration::from_secs(2), || {
        b.state() == "master"
    });
    wait_for("A backup", Duration::from_secs(1), || a.state() == "backup");
    assert_eq!(b.status().priority, 200, "{:?}", b.status());
    assert!(t.has_vip(1) && !t.has_vip(0));
    b.commands
        .send(NodeCommand::Reconfigure(changed(instance(50))))
        .unwrap();
    wait_for("A takes over again", Duration::from_secs(2), || {
        a.state() == "master"
    });
    assert!(t.has_vip(0));
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}

fn changed(cfg: VrrpInstance) -> Plan {
    Plan {
        changed: vec![cfg],
        ..Plan::default()
    }
}

/// A reload that removes the master's instance hands over as a clean
/// stop does: priority 0 (the backup takes over after its skew time, not
/// the master-down interval) and the address removed.
#[test]
fn reload_removing_the_master_instance_hands_over() {
    let t = Topology::new();
    let a = Node::start(&t.nodes[0], instance(150));
    let b = Node::start(&t.nodes[1], instance(100));
    wait_for("A master", Duration::from_secs(2), || a.state() == "master");
    wait_for("B backup", Duration::from_secs(2), || b.state() == "backup");
    a.commands
        .send(NodeCommand::Reconfigure(Plan {
            removed: vec!["VI_1".into()],
            ..Plan::default()
        }))
        .unwrap();
    wait_for("B master", Duration::from_secs(2), || b.state() == "master");
    let last = b.status().last_transition.unwrap();
    assert!(
        last.reason.contains("priority 0 from 10.201.0.1"),
        "{last:?}"
    );
    wait_for("A lists no instance", Duration::from_secs(1), || {
        a.status.borrow().is_empty()
    });
    assert!(!t.has_vip(0) && t.has_vip(1));
    a.end(NodeCommand::Stop);
    b.end(NodeCommand::Stop);
}
