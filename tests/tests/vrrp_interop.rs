//! lb and a real keepalived (2.2.7) in one VRRP group, both ways round:
//! keepalived MASTER + lb BACKUP and lb MASTER + keepalived BACKUP, for v2
//! with PASS auth, v3 over IPv4 and IPv6, multicast and unicast. Each
//! side sees the other (the backup names the master, the master's adverts
//! keep the backup quiet), the higher priority wins, the backup takes over
//! when the master stops (SIGTERM) or crashes (kill -9 and link down), and
//! the master takes its addresses back when it returns (preempt).
//!
//! Timing is judged against keepalived's own numbers, measured by
//! `vrrp_harness.rs` on this same rig and recorded in
//! `../shared/data/vrrp/failover-measurements.txt`:
//! - clean stop: Skew_Time = (256 - 100) / 256 x advert (0.61 s at 1 s),
//! - crash: 3 x advert + Skew_Time (3.61 s at 1 s; 0.361 s at 100 ms,
//!   where the issue also asks for under 500 ms),
//! - preempt after a restart: 3 x advert + (256 - 150) / 256 x advert
//!   (3.41 s at 1 s) plus start-up.
//!
//! Margins: up to +0.3 s late ("no worse than keepalived" with room for
//! 10-20 ms polling and a loaded 2-core machine; a wrong timer costs a
//! whole advert interval or more, which this still catches) and -0.1 s
//! early (a takeover before the RFC's timer means a backup that would
//! flap on one lost advert). Unicast adverts never reach the client, so
//! there the takeover is timed from the signal to the new master's
//! notify call (made within a few ms of the transition by both daemons).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use lb_tests::agent::VrrpInstanceConfig;
use lb_tests::vrrp::topology::{node_addr, node_addr6, Layout, VIP, VIP6};
use lb_tests::vrrp::wire::AdvertLog;
use lb_tests::vrrp::{Cluster, Kind, NodeSpec};

const EARLY: f64 = 0.1;
const LATE: f64 = 0.3;
/// A restart's preemption is timed from the process start, so it also
/// holds the daemon's start-up (keepalived: 20 ms idle, up to 0.3 s seen
/// while the machine builds; lb: loading its config and sockets).
const RESTART_LATE: f64 = 0.6;
const HIGH: u8 = 150;
const LOW: u8 = 100;

#[derive(Clone, Copy, Debug)]
struct Case {
    version: u8,
    advert: Duration,
    ipv6: bool,
    unicast: bool,
}

impl Case {
    fn vip(self) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(VIP6)
        } else {
            IpAddr::V4(VIP)
        }
    }

    fn own(self, i: usize) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(node_addr6(i))
        } else {
            IpAddr::V4(node_addr(i))
        }
    }

    fn instance(self, i: usize, priority: u8) -> VrrpInstanceConfig {
        let prefix = if self.ipv6 { 64 } else { 24 };
        let mut v = VrrpInstanceConfig::new(
            "VI_1",
            "eth0",
            51,
            priority,
            &[&format!("{}/{prefix}", self.vip())],
        );
        v.version = self.version;
        v.advert_interval = self.advert;
        v.state = if priority == HIGH { "master" } else { "backup" }.into();
        if self.version == 2 {
            v.auth_pass = Some("1111".into());
        }
        if self.unicast {
            v.unicast_source = Some(self.own(i));
            v.unicast_peers = vec![self.own(1 - i)];
        }
        v
    }

    fn secs(self, advert_multiple: f64) -> f64 {
        advert_multiple * self.advert.as_secs_f64()
    }

    /// Skew_Time of a priority-100 backup.
    fn skew(self) -> f64 {
        self.secs(f64::from(256 - u16::from(LOW)) / 256.0)
    }

    fn master_down(self, priority: u8) -> f64 {
        self.secs(3.0 + f64::from(256 - u16::from(priority)) / 256.0)
    }
}

/// Checks `got` against keepalived's `expected` with the allowed
/// earliness and lateness.
fn check_time(what: &str, got: f64, expected: f64, (early, late): (f64, f64), c: &Cluster) {
    println!("{what}: {got:.3} s (keepalived: {expected:.3} s)");
    assert!(
        got >= expected - early && got <= expected + late,
        "{what}: {got:.3} s, keepalived takes {expected:.3} s (allowed -{early:.2}/+{late:.2} s)\n{}",
        c.report()
    );
}

/// The usual margins, or with v3 at 100 ms the bound (under
/// 500 ms) when it is the stricter one.
fn margins(case: Case, expected: f64) -> (f64, f64) {
    if case.advert < Duration::from_secs(1) {
        (EARLY, (0.5 - expected).min(LATE))
    } else {
        (EARLY, LATE)
    }
}

/// Takeover of the address by `new` after `since`: on the wire (old
/// master's last advert to the new one's first) for multicast; from
/// `since` to the new master's notify call for unicast (the stop itself
/// can take a second: keepalived's parent exits well after its VRRP
/// child has sent priority 0).
fn takeover(
    c: &Cluster,
    wire: &AdvertLog,
    case: Case,
    old: usize,
    new: usize,
    since: Instant,
) -> f64 {
    let limit = Duration::from_secs_f64(case.master_down(LOW) + 3.0);
    let t = if case.unicast {
        c.wait_held_by(new, case.vip(), limit).unwrap();
        // The hook runs a few ms after the address is added.
        let mut at = None;
        lb_tests::process::wait_until(Duration::from_secs(2), || {
            at = c.notified(new, "VI_1", "MASTER", since);
            at.is_some()
        });
        at.unwrap_or_else(|| panic!("no MASTER notify on node{}\n{}", new + 1, c.report()))
            .as_secs_f64()
    } else {
        let t = wire
            .wait_takeover(&c.sources(old), &c.sources(new), since, limit)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", c.report()));
        t.gap().as_secs_f64()
    };
    // After a crash the old master may still hold it on a dead link.
    c.wait_held_by(new, case.vip(), Duration::from_secs(2))
        .unwrap();
    t
}

/// What the lb node says about the other side, and its adverts as the
/// client hears them.
fn lb_sees_peer(c: &Cluster, wire: &AdvertLog, case: Case, lb: usize, since: Instant) {
    let v = c.lb_vrrp(lb, "VI_1").unwrap();
    let state = v["state"].as_str().unwrap_or_default();
    if state == "backup" {
        let master: IpAddr = v["master"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("lb backup names no master: {v}"));
        assert!(
            c.sources(1 - lb).contains(&master),
            "lb names {master} as master, not keepalived's node: {v}"
        );
        assert!(v["adverts_received"].as_u64() > Some(0), "{v}");
    } else {
        assert_eq!(state, "master", "{v}");
        assert!(v["adverts_sent"].as_u64() > Some(0), "{v}");
        if !case.unicast {
            let ours = wire.from(&c.sources(lb), since);
            let a = ours
                .last()
                .unwrap_or_else(|| panic!("no advert from lb heard\n{}", c.report()));
            assert_eq!(
                (a.version, a.vrid, a.priority),
                (case.version, 51, HIGH),
                "{a:?}"
            );
            if !case.ipv6 {
                assert_eq!(a.ttl, Some(255), "{a:?}");
            }
            assert_eq!(a.addresses, vec![case.vip()], "{a:?}");
        }
    }
    assert_eq!(
        v["priority"].as_u64(),
        Some(u64::from(if lb == 0 { HIGH } else { LOW }))
    );
}

/// node1 (priority 150, `master_kind`) and node2 (100, the other kind):
/// election, clean stop and return, and with `crash` a kill -9 with link
/// down and return.
fn interop(case: Case, master_kind: Kind, crash: bool) {
    let other = match master_kind {
        Kind::Lb => Kind::Keepalived,
        Kind::Keepalived => Kind::Lb,
    };
    let c = Cluster::new(
        Layout::Plain,
        vec![
            NodeSpec::new(master_kind, vec![case.instance(0, HIGH)]),
            NodeSpec::new(other, vec![case.instance(1, LOW)]),
        ],
    )
    .unwrap();
    let lb = if master_kind == Kind::Lb { 0 } else { 1 };
    let wire = AdvertLog::start(&c.topo.client.ns, "eth0", case.ipv6).unwrap();
    let vip = case.vip();

    // Election: both start as backup, the higher priority's timer fires
    // first and the other accepts its adverts.
    let t0 = c.start(0).unwrap();
    c.start(1).unwrap();
    let limit = Duration::from_secs_f64(case.master_down(HIGH) + 2.0);
    c.wait_state(0, "VI_1", "MASTER", limit).unwrap();
    let elected = c
        .backup_to_master(0, "VI_1", t0)
        .unwrap_or_else(|| panic!("no BACKUP then MASTER notify from node1\n{}", c.report()));
    check_time(
        "start-up (BACKUP notify) -> node1 MASTER",
        elected.as_secs_f64(),
        case.master_down(HIGH),
        (EARLY, LATE),
        &c,
    );
    c.wait_holders(vip, &[0], Duration::from_secs(1)).unwrap();
    // Past node2's own master-down timer: still backup, still silent, so
    // it accepts node1's adverts.
    std::thread::sleep(Duration::from_secs_f64(
        case.master_down(LOW) - case.master_down(HIGH) + case.secs(1.0),
    ));
    assert_eq!(c.state(1, "VI_1"), "BACKUP", "{}", c.report());
    if !case.unicast {
        assert!(
            wire.from(&c.sources(1), t0).is_empty(),
            "node2 sent adverts while node1 was master\n{}",
            c.report()
        );
    }
    lb_sees_peer(&c, &wire, case, lb, t0);
    let ping = if case.ipv6 { "-6" } else { "-4" };
    c.topo
        .client
        .ns
        .exec(&["ping", ping, "-c", "1", "-W", "1", &vip.to_string()])
        .unwrap();

    // Clean stop: priority 0, node2 takes over after its skew time.
    let down = c.stop(0).unwrap();
    let gap = takeover(&c, &wire, case, 0, 1, down);
    c.wait_holders(vip, &[1], Duration::from_secs(1)).unwrap();
    check_time(
        "stop -> node2 takes over",
        gap,
        case.skew(),
        margins(case, case.skew()),
        &c,
    );
    c.wait_state(1, "VI_1", "MASTER", Duration::from_secs(1))
        .unwrap();
    if lb == 1 {
        lb_took_over(&c);
    }

    // Return: node1 starts as backup and preempts.
    let up = c.start(0).unwrap();
    c.wait_state(0, "VI_1", "MASTER", limit).unwrap();
    check_time(
        "restart -> node1 MASTER (preempt)",
        up.elapsed().as_secs_f64(),
        case.master_down(HIGH),
        (EARLY, RESTART_LATE),
        &c,
    );
    c.wait_holders(vip, &[0], Duration::from_secs(1)).unwrap();
    c.wait_state(1, "VI_1", "BACKUP", Duration::from_secs(1))
        .unwrap();

    if crash {
        let dead = c.crash(0).unwrap();
        let gap = takeover(&c, &wire, case, 0, 1, dead);
        let expected = case.master_down(LOW);
        let (early, late) = margins(case, expected);
        // Unicast is timed from the kill, which falls somewhere in node1's
        // advert cycle: up to one interval less than from its last advert.
        let early = if case.unicast {
            early + case.secs(1.0)
        } else {
            early
        };
        check_time(
            "crash -> node2 takes over",
            gap,
            expected,
            (early, late),
            &c,
        );
        if lb == 1 {
            lb_took_over(&c);
        }
        c.wait_state(1, "VI_1", "MASTER", Duration::from_secs(1))
            .unwrap();
        c.recover(0).unwrap();
        c.wait_state(0, "VI_1", "MASTER", limit).unwrap();
        // The restarted node removed what it left behind and took it back.
        c.wait_holders(vip, &[0], Duration::from_secs(1)).unwrap();
        c.wait_state(1, "VI_1", "BACKUP", Duration::from_secs(1))
            .unwrap();
    }
    lb_sees_peer(&c, &wire, case, lb, t0);
    let log = c.nodes[lb].notify_log();
    assert!(
        log.contains("INSTANCE VI_1 MASTER") && log.contains("INSTANCE VI_1 BACKUP"),
        "lb's notify calls: {log}\n{}",
        c.report()
    );
}

/// lb (node2) took over, and says why.
fn lb_took_over(c: &Cluster) {
    let v = c.lb_vrrp(1, "VI_1").unwrap();
    assert_eq!(v["state"], "master", "{v}");
    let reason = v["last_transition"]["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "no reason for the takeover: {v}");
}

const V2_PASS: Case = Case {
    version: 2,
    advert: Duration::from_secs(1),
    ipv6: false,
    unicast: false,
};
const V3_IPV4_100MS: Case = Case {
    version: 3,
    advert: Duration::from_millis(100),
    ipv6: false,
    unicast: false,
};
const V3_IPV6: Case = Case {
    version: 3,
    advert: Duration::from_secs(1),
    ipv6: true,
    unicast: false,
};
const V2_UNICAST: Case = Case {
    unicast: true,
    ..V2_PASS
};
const V3_UNICAST_100MS: Case = Case {
    unicast: true,
    ..V3_IPV4_100MS
};

#[test]
fn v2_pass_keepalived_master_lb_backup() {
    interop(V2_PASS, Kind::Keepalived, true);
}

#[test]
fn v2_pass_lb_master_keepalived_backup() {
    interop(V2_PASS, Kind::Lb, true);
}

#[test]
fn v3_ipv4_100ms_keepalived_master_lb_backup() {
    interop(V3_IPV4_100MS, Kind::Keepalived, true);
}

#[test]
fn v3_ipv4_100ms_lb_master_keepalived_backup() {
    interop(V3_IPV4_100MS, Kind::Lb, true);
}

#[test]
fn v3_ipv6_keepalived_master_lb_backup() {
    interop(V3_IPV6, Kind::Keepalived, false);
}

#[test]
fn v3_ipv6_lb_master_keepalived_backup() {
    interop(V3_IPV6, Kind::Lb, false);
}

#[test]
fn v2_unicast_keepalived_master_lb_backup() {
    interop(V2_UNICAST, Kind::Keepalived, false);
}

#[test]
fn v2_unicast_lb_master_keepalived_backup() {
    interop(V2_UNICAST, Kind::Lb, false);
}

#[test]
fn v3_unicast_100ms_keepalived_master_lb_backup() {
    interop(V3_UNICAST_100MS, Kind::Keepalived, true);
}

#[test]
fn v3_unicast_100ms_lb_master_keepalived_backup() {
    interop(V3_UNICAST_100MS, Kind::Lb, true);
}
