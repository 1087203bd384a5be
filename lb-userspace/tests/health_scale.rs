//! The cost of checking many real servers (issue 3's benchmark goal: 1,000
//! real servers checked every second under 5% of one core and 50 MB).
//! Not a timed test: run it on a quiet machine, release build:
//!   cargo test --release -p lb-userspace --test health_scale -- --ignored --nocapture
//! It prints the CPU share and RSS and fails only if every check did not
//! run or a healthy target went down.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::nginx::LocalNginx as Nginx;
use lb_userspace::{
    config::{CheckKind, HealthCheck, HttpCheck},
    health::{Health, Monitor, Target, TargetKey},
};

/// (utime, stime) of this process, in clock ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn thousand_http_targets_every_second() {
    thousand_targets_every_second(CheckKind::Http(HttpCheck {
        host: Some("good.example".into()),
        ..HttpCheck::default()
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --release --ignored --nocapture"]
async fn thousand_tcp_targets_every_second() {
    thousand_targets_every_second(CheckKind::Tcp).await;
}

async fn thousand_targets_every_second(kind: CheckKind) {
    const TARGETS: usize = 1000;
    const SECONDS: u64 = 10;
    let nginx = tokio::task::block_in_place(|| Nginx::start().unwrap());
    let name = kind.name();
    let check = HealthCheck {
        kind,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 2,
        fall: 3,
        port: Some(nginx.addr.port()),
    };
    // Distinct real servers (ports) that all reach the one nginx through
    // the check's `port`.
    let targets: Vec<Target> = (0..TARGETS)
        .map(|i| Target {
            key: TargetKey {
                service: "scale".into(),
                address: IpAddr::from([127, 0, 0, 1]),
                port: 10_000 + i as u16,
            },
            check: check.clone().into(),
        })
        .collect();
    let (mut mon, _rx) = Monitor::new();
    mon.update(targets);
    // Let the first round settle, then measure a steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t0, c0) = (Instant::now(), cpu_ticks());
    let checks0: u64 = mon.snapshot().iter().map(|(_, s)| s.checks).sum();
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    let (wall, c1) = (t0.elapsed(), cpu_ticks());
    let (user, sys) = (c1.0 - c0.0, c1.1 - c0.1);
    let snap = mon.snapshot();
    let checks: u64 = snap.iter().map(|(_, s)| s.checks).sum::<u64>() - checks0;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let share = |ticks: u64| 100.0 * ticks as f64 / ticks_per_s / wall.as_secs_f64();
    println!(
        "{TARGETS} {name} targets at 1s: {checks} checks in {wall:.1?}, agent CPU {:.1}% of one core \
         ({:.1}% user, {:.1}% system), RSS {} MiB",
        share(user + sys),
        share(user),
        share(sys),
        rss_kib() / 1024
    );
    let down: Vec<String> = snap
        .iter()
        .filter(|(_, s)| s.state == Health::Down)
        .map(|(k, s)| format!("{k}: {:?}", s.last.as_ref().map(|l| &l.outcome)))
        .collect();
    assert!(
        down.is_empty(),
        "{} healthy targets went down under load, e.g. {:?}",
        down.len(),
        &down[..down.len().min(3)]
    );
    let expected = TARGETS as u64 * SECONDS;
    assert!(
        checks >= expected * 9 / 10,
        "{checks} checks, expected about {expected}"
    );
}
