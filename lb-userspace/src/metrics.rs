//! The Prometheus endpoint (`[agent] metrics_listen`): `GET /metrics` in
//! the text exposition format, encoded by `prometheus-client`.
//!
//! The data plane's counters live in per-CPU BPF maps, so nothing is
//! counted here: every scrape takes the same snapshot `lb status` shows and
//! turns it into metrics, which keeps the two views equal by construction.
//! Metric names:
//! - `lb_service_packets_total`, `lb_service_bytes_total` (labels
//!   `service`, `vip`, `direction` = in | out), `lb_service_connections_total`;
//! - `lb_real_server_packets_total`, `lb_real_server_bytes_total`,
//!   `lb_real_server_connections_total` (plus `real_server`),
//!   `lb_real_server_flows` (flow-table entries), `lb_real_server_active`
//!   (1 while it may carry flows), `lb_real_server_weight`;
//! - `lb_xdp_verdicts_total{verdict}`, `lb_xdp_events_total{event}`;
//! - `lb_real_server_up` (1 while its health checks let it serve, 0 while
//!   down), `lb_health_transitions_total`, and
//!   `lb_health_check_duration_seconds` (histogram of every check's
//!   latency, fed by the health monitor's observer: [`HealthMetrics`]);
//! - `lb_build_info{version}` = 1;
//! - VRRP, per instance (label `instance`): `lb_vrrp_state{state}`, 1 for
//!   the current state and 0 for the others (init, backup, master, fault,
//!   stopped: one series per state, so `lb_vrrp_state{state="master"} == 1`
//!   selects masters and a change shows as a flip, not a number to decode);
//!   `lb_vrrp_priority` (configured), `lb_vrrp_effective_priority`,
//!   `lb_vrrp_handed_off`, `lb_vrrp_adverts_sent_total`,
//!   `lb_vrrp_adverts_received_total`, `lb_vrrp_adverts_rejected_total{reason}`,
//!   `lb_vrrp_master_conflicts_total`, and
//!   `lb_vrrp_last_transition_timestamp_seconds` (the status keeps the last
//!   transition, not a count: `changes()` over it counts transitions).
//! - `[announce]`: `lb_announce_vip{vip}` 1 while the VIP's route is in
//!   the table (announced), 0 while withdrawn, with
//!   `lb_announce_vip_withheld{vip,reason}` 1 for the reason (draining,
//!   no_real_server_up, not_attached, route_error); `lb_drain_state{state}`
//!   1 for the current one of announcing, draining, drained.
//!
//! Serving is [`server`]'s (hyper, with a connection cap and timeouts);
//! this file renders.

use std::{net::SocketAddr, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::{
    health::{CheckObserver, CheckResult, TargetKey},
    status::{Stats, Status, VrrpStatus},
};

pub mod server;

pub use server::serve;

type Labels = Vec<(String, String)>;

fn counters(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauges(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn with(base: &Labels, extra: &[(&str, &str)]) -> Labels {
    let mut l = base.clone();
    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

/// Packets, bytes and connections of one service or real server.
struct Traffic {
    packets: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    conns: Family<Labels, Counter>,
}

impl Traffic {
    fn new(registry: &mut Registry, prefix: &str, what: &str) -> Self {
        Self {
            packets: counters(
                registry,
                &format!("{prefix}_packets"),
                &format!("Packets forwarded for the {what}, by direction"),
            ),
            bytes: counters(
                registry,
                &format!("{prefix}_bytes"),
                &format!("Bytes (frame length) forwarded for the {what}, by direction"),
            ),
            conns: counters(
                registry,
                &format!("{prefix}_connections"),
                &format!("New flows scheduled to the {what}"),
            ),
        }
    }

    fn record(&self, labels: &Labels, s: &Stats) {
        let inbound = with(labels, &[("direction", "in")]);
        let outbound = with(labels, &[("direction", "out")]);
        self.packets.get_or_create(&inbound).inc_by(s.in_packets);
        self.packets.get_or_create(&outbound).inc_by(s.out_packets);
        self.bytes.get_or_create(&inbound).inc_by(s.in_bytes);
        self.bytes.get_or_create(&outbound).inc_by(s.out_bytes);
        self.conns.get_or_create(labels).inc_by(s.conns);
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~8 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// Check latencies, recorded as checks end (the only metric kept between
/// scrapes: the rest is read from the maps and the monitor at scrape time).
#[derive(Clone)]
pub struct HealthMetrics {
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl HealthMetrics {
    /// For `health::Monitor::set_observer`.
    pub fn observer(&self) -> CheckObserver {
        let latency = self.latency.clone();
        std::sync::Arc::new(move |key: &TargetKey, result: &CheckResult| {
            let labels = vec![
                ("service".to_string(), key.service.clone()),
                (
                    "real_server".to_string(),
                    SocketAddr::new(key.address, key.port).to_string(),
                ),
                (
                    "result".to_string(),
                    if result.outcome.is_ok() {
                        "ok"
                    } else {
                        "failed"
                    }
                    .to_string(),
                ),
            ];
            latency
                .get_or_create(&labels)
                .observe(result.latency.as_secs_f64());
        })
    }
}

/// The metrics of `status`, in the text exposition format.
pub fn render(status: &Status, health: Option<&HealthMetrics>) -> String {
    let mut registry = Registry::default();
    if let Some(h) = health {
        registry.register(
            "lb_health_check_duration_seconds",
            "Latency of health checks, by result",
            h.latency.clone(),
        );
    }
    let up = gauges(
        &mut registry,
        "lb_real_server_up",
        "1 while the real server's health checks let it serve, 0 while down",
    );
    let transitions = counters(
        &mut registry,
        "lb_health_transitions",
        "Health state changes of the real server since it was added",
    );
    let services = Traffic::new(&mut registry, "lb_service", "virtual service");
    let reals = Traffic::new(&mut registry, "lb_real_server", "real server");
    let flows = gauges(
        &mut registry,
        "lb_real_server_flows",
        "Flow-table entries pointing at the real server (recent flows)",
    );
    let active = gauges(
        &mut registry,
        "lb_real_server_active",
        "1 while the real server may carry flows, 0 while removed or down",
    );
    let weight = gauges(
        &mut registry,
        "lb_real_server_weight",
        "Configured Maglev weight",
    );
    let verdicts = counters(&mut registry, "lb_xdp_verdicts", "Packets per XDP verdict");
    let events = counters(
        &mut registry,
        "lb_xdp_events",
        "Data-plane events (see the README)",
    );
    let build = gauges(&mut registry, "lb_build_info", "The lb agent's version");
    build
        .get_or_create(&vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )])
        .set(1);

    for s in &status.services {
        let labels: Labels = vec![
            ("service".into(), s.name.clone()),
            (
                "vip".into(),
                format!(
                    "{}/{}",
                    SocketAddr::new(parse_ip(&s.address), s.port),
                    s.protocol
                ),
            ),
        ];
        services.record(&labels, &s.stats);
        for r in &s.real_servers {
            let rl = with(
                &labels,
                &[(
                    "real_server",
                    &SocketAddr::new(parse_ip(&r.address), r.port).to_string(),
                )],
            );
            reals.record(&rl, &r.stats);
            flows.get_or_create(&rl).set(r.flows as i64);
            active.get_or_create(&rl).set(i64::from(r.active));
            weight.get_or_create(&rl).set(i64::from(r.weight));
            if let Some(h) = &r.health {
                up.get_or_create(&rl).set(i64::from(h.state != "down"));
                transitions.get_or_create(&rl).inc_by(h.transitions);
            }
        }
    }
    for (name, n) in &status.verdicts {
        verdicts
            .get_or_create(&vec![("verdict".into(), name.clone())])
            .inc_by(*n);
    }
    for (name, n) in &status.events {
        events
            .get_or_create(&vec![("event".into(), name.clone())])
            .inc_by(*n);
    }
    vrrp(&mut registry, &status.vrrp);
    if let Some(a) = &status.announce {
        announce(&mut registry, a);
    }
    if let Some(ms) = status.flows_counted_ago_ms {
        let age = Gauge::<f64, AtomicU64>::default();
        age.set(ms as f64 / 1000.0);
        registry.register(
            "lb_flows_counted_age_seconds",
            "Age of lb_real_server_flows: a big flow table is counted in the background",
            age,
        );
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// The drain states `AnnounceStatus::drain` reports.
const DRAIN_STATES: [&str; 3] = ["announcing", "draining", "drained"];

fn announce(registry: &mut Registry, a: &crate::status::AnnounceStatus) {
    let vip = gauges(
        registry,
        "lb_announce_vip",
        "1 while the VIP's route is in the table the BGP daemon announces, 0 while withdrawn",
    );
    let withheld = gauges(
        registry,
        "lb_announce_vip_withheld",
        "1 for the reason a configured VIP is not announced",
    );
    for v in &a.vips {
        let labels: Labels = vec![("vip".into(), v.address.clone())];
        vip.get_or_create(&labels).set(i64::from(v.announced));
        if let Some(reason) = &v.reason {
            withheld
                .get_or_create(&with(&labels, &[("reason", reason)]))
                .set(1);
        }
    }
    let drain = gauges(
        registry,
        "lb_drain_state",
        "1 for the node's drain state (announcing, draining, drained = safe to stop)",
    );
    for state in DRAIN_STATES {
        drain
            .get_or_create(&vec![("state".into(), state.into())])
            .set(i64::from(a.drain == state));
    }
}

/// The states a VRRP instance reports (`VrrpStatus::state`).
const VRRP_STATES: [&str; 5] = ["init", "backup", "master", "fault", "stopped"];

fn vrrp(registry: &mut Registry, instances: &[VrrpStatus]) {
    if instances.is_empty() {
        return;
    }
    let state = gauges(
        registry,
        "lb_vrrp_state",
        "1 for the VRRP instance's current state, 0 for the others",
    );
    let priority = gauges(registry, "lb_vrrp_priority", "Configured VRRP priority");
    let effective = gauges(
        registry,
        "lb_vrrp_effective_priority",
        "Priority the instance advertises now (tracking and handoff applied)",
    );
    let handed_off = gauges(
        registry,
        "lb_vrrp_handed_off",
        "1 while `lb vrrp handoff` holds the instance in backup",
    );
    let sent = counters(registry, "lb_vrrp_adverts_sent", "VRRP adverts sent");
    let received = counters(
        registry,
        "lb_vrrp_adverts_received",
        "VRRP adverts received and accepted",
    );
    let rejected = counters(
        registry,
        "lb_vrrp_adverts_rejected",
        "VRRP adverts ignored, by reason",
    );
    let conflicts = counters(
        registry,
        "lb_vrrp_master_conflicts",
        "Times another master was seen while this node was master",
    );
    let last = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(
        "lb_vrrp_last_transition_timestamp_seconds",
        "Unix time of the instance's last state transition",
        last.clone(),
    );
    for v in instances {
        let labels: Labels = vec![("instance".into(), v.name.clone())];
        let mut states: Vec<&str> = VRRP_STATES.to_vec();
        if !states.contains(&v.state.as_str()) {
            states.push(&v.state);
        }
        for s in states {
            state
                .get_or_create(&with(&labels, &[("state", s)]))
                .set(i64::from(s == v.state));
        }
        priority.get_or_create(&labels).set(i64::from(v.priority));
        effective
            .get_or_create(&labels)
            .set(i64::from(v.effective_priority));
        handed_off
            .get_or_create(&labels)
            .set(i64::from(v.handed_off));
        sent.get_or_create(&labels).inc_by(v.adverts_sent);
        received.get_or_create(&labels).inc_by(v.adverts_received);
        for (reason, n) in &v.rejected {
            rejected
                .get_or_create(&with(&labels, &[("reason", reason)]))
                .inc_by(*n);
        }
        conflicts.get_or_create(&labels).inc_by(v.master_conflicts);
        if let Some(t) = &v.last_transition {
            last.get_or_create(&labels)
                .set(t.at_unix_ms as f64 / 1000.0);
        }
    }
}

fn parse_ip(s: &str) -> std::net::IpAddr {
    s.parse()
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{RealServerStatus, ServiceStatus, VrrpTransition};

    #[test]
    fn announce_series_per_vip_and_drain_state() {
        use crate::status::{AnnounceStatus, VipStatus};
        let status = Status {
            announce: Some(AnnounceStatus {
                table: 200,
                protocol: 252,
                interface: "lo".into(),
                drain: "announcing".into(),
                vips: vec![
                    VipStatus {
                        address: "192.0.2.10".into(),
                        announced: true,
                        services: vec!["web".into()],
                        ..VipStatus::default()
                    },
                    VipStatus {
                        address: "192.0.2.20".into(),
                        announced: false,
                        reason: Some("no_real_server_up".into()),
                        services: vec!["api".into()],
                        ..VipStatus::default()
                    },
                ],
                ..AnnounceStatus::default()
            }),
            ..Status::default()
        };
        let text = render(&status, None);
        for line in [
            "lb_announce_vip{vip=\"192.0.2.10\"} 1\n",
            "lb_announce_vip{vip=\"192.0.2.20\"} 0\n",
            "lb_announce_vip_withheld{vip=\"192.0.2.20\",reason=\"no_real_server_up\"} 1\n",
            "lb_drain_state{state=\"announcing\"} 1\n",
            "lb_drain_state{state=\"drained\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("lb_announce_vip_withheld{vip=\"192.0.2.10\""));
        // Without [announce]: no announce series at all.
        assert!(!render(&Status::default(), None).contains("lb_announce"));
    }

    #[test]
    fn vrrp_series_per_instance() {
        let status = Status {
            vrrp: vec![VrrpStatus {
                name: "VI_1".into(),
                interface: "eth0".into(),
                virtual_router_id: 51,
                version: 2,
                state: "master".into(),
                priority: 150,
                effective_priority: 100,
                handed_off: true,
                last_transition: Some(VrrpTransition {
                    at_unix_ms: 1_700_000_000_500,
                    ..VrrpTransition::default()
                }),
                adverts_sent: 42,
                adverts_received: 3,
                rejected: [("auth".to_string(), 2u64)].into_iter().collect(),
                master_conflicts: 1,
                ..VrrpStatus::default()
            }],
            ..Status::default()
        };
        let text = render(&status, None);
        for line in [
            "lb_vrrp_state{instance=\"VI_1\",state=\"master\"} 1\n",
            "lb_vrrp_state{instance=\"VI_1\",state=\"backup\"} 0\n",
            "lb_vrrp_state{instance=\"VI_1\",state=\"fault\"} 0\n",
            "lb_vrrp_priority{instance=\"VI_1\"} 150\n",
            "lb_vrrp_effective_priority{instance=\"VI_1\"} 100\n",
            "lb_vrrp_handed_off{instance=\"VI_1\"} 1\n",
            "lb_vrrp_adverts_sent_total{instance=\"VI_1\"} 42\n",
            "lb_vrrp_adverts_received_total{instance=\"VI_1\"} 3\n",
            "lb_vrrp_adverts_rejected_total{instance=\"VI_1\",reason=\"auth\"} 2\n",
            "lb_vrrp_master_conflicts_total{instance=\"VI_1\"} 1\n",
            "lb_vrrp_last_transition_timestamp_seconds{instance=\"VI_1\"} 1700000000.5\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(
            text.matches("lb_vrrp_state{").count(),
            VRRP_STATES.len(),
            "{text}"
        );
    }

    #[test]
    fn counters_and_labels_appear_in_the_text_format() {
        let stats = Stats {
            conns: 3,
            in_packets: 10,
            in_bytes: 1000,
            out_packets: 8,
            out_bytes: 4000,
        };
        let status = Status {
            services: vec![ServiceStatus {
                name: "web".into(),
                address: "192.168.253.120".into(),
                port: 80,
                protocol: "tcp".into(),
                forwarding: "nat".into(),
                scheduler: "maglev".into(),
                stats,
                real_servers: vec![RealServerStatus {
                    address: "172.16.14.121".into(),
                    port: 80,
                    weight: 2,
                    flows: 5,
                    active: true,
                    sorry: false,
                    stats,
                    health: None,
                }],
            }],
            verdicts: [("redirect".to_string(), 18)].into_iter().collect(),
            events: Default::default(),
            source: None,
            vrrp: Vec::new(),
            announce: None,
            flows_counted_ago_ms: Some(1500),
            ebpf_log: None,
        };
        let h = HealthMetrics::default();
        let key = TargetKey {
            service: "web".into(),
            address: "172.16.14.121".parse().unwrap(),
            port: 80,
        };
        (h.observer())(
            &key,
            &CheckResult {
                at: std::time::SystemTime::now(),
                outcome: Ok(()),
                latency: std::time::Duration::from_millis(3),
            },
        );
        let text = render(&status, Some(&h));
        assert!(!text.contains("lb_vrrp"), "no VRRP, no VRRP series");
        for line in [
            "lb_service_packets_total{service=\"web\",vip=\"192.168.253.120:80/tcp\",direction=\"in\"} 10",
            "lb_service_connections_total{service=\"web\",vip=\"192.168.253.120:80/tcp\"} 3",
            "lb_real_server_bytes_total{service=\"web\",vip=\"192.168.253.120:80/tcp\",real_server=\"172.16.14.121:80\",direction=\"out\"} 4000",
            "lb_real_server_flows{service=\"web\",vip=\"192.168.253.120:80/tcp\",real_server=\"172.16.14.121:80\"} 5",
            "lb_xdp_verdicts_total{verdict=\"redirect\"} 18",
            "lb_build_info{version=\"",
            "lb_flows_counted_age_seconds 1.5",
            "lb_health_check_duration_seconds_count{service=\"web\",real_server=\"172.16.14.121:80\",result=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
