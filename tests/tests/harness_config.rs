//! The configs the harness writes (for the e2e tests, the demo and the
//! bench) are valid for the agent's own parser, so an e2e failure is never
//! a harness typo.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use std::time::Duration;

use lb_tests::agent::{HealthCheck, LbConfig, RealServer, VirtualServer};
use lb_tests::topology::{Forwarding, VIP, VIP6};

fn service(forwarding: Forwarding, vip: IpAddr, protocol: &str, port: u16) -> VirtualServer {
    VirtualServer {
        name: format!(
            "{forwarding}-{protocol}-{port}-v{}",
            if vip.is_ipv4() { 4 } else { 6 }
        ),
        address: vip,
        port,
        protocol: protocol.into(),
        forwarding,
        real_servers: (0..3u8)
            .map(|i| RealServer {
                address: match vip {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(172, 16, 14, 121 + i)),
                    IpAddr::V6(_) => format!("fd00:14::{}", 121 + i).parse().unwrap(),
                },
                port: (forwarding == Forwarding::Nat).then_some(port),
                weight: u32::from(i),
            })
            .collect(),
        sorry_server: None,
        health_check: None,
    }
}

#[test]
fn generated_configs_parse() {
    let config = LbConfig {
        interfaces: vec!["eth0".into(), "eth1".into()],
        xdp_mode: "auto".into(),
        flow_table_size: 65536,
        control_socket: PathBuf::from("/tmp/x/lb.sock"),
        metrics_listen: Some("127.0.0.1:9469".parse().unwrap()),
        services: vec![
            VirtualServer {
                sorry_server: Some("172.16.14.99:80".parse().unwrap()),
                health_check: Some(HealthCheck {
                    port: Some(81),
                    ..HealthCheck::http(
                        Duration::from_millis(500),
                        Duration::from_millis(300),
                        2,
                        3,
                    )
                }),
                ..service(Forwarding::Nat, IpAddr::V4(VIP), "tcp", 8080)
            },
            service(Forwarding::Nat, IpAddr::V4(VIP), "tcp", 80),
            service(Forwarding::Nat, IpAddr::V4(VIP), "udp", 7000),
            service(Forwarding::Nat, IpAddr::V6(VIP6), "tcp", 80),
            service(Forwarding::Dr, IpAddr::V4(VIP), "tcp", 389),
        ],
        vrrp: Vec::new(),
        vrrp_sync_groups: Vec::new(),
    };
    let text = config.to_toml();
    let parsed = lb_userspace::config::parse(&text, "generated.toml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.virtual_servers.len(), 5, "{parsed:?}");
    let checked = &parsed.virtual_servers[0];
    assert_eq!(
        checked.sorry_server,
        Some("172.16.14.99:80".parse().unwrap())
    );
    let hc = &checked.real_servers[0].health_check;
    assert_eq!(hc.interval, Duration::from_millis(500));
    assert_eq!(hc.timeout, Duration::from_millis(300));
    assert_eq!((hc.rise, hc.fall, hc.port), (2, 3, Some(81)));
    assert_eq!(
        parsed.agent.metrics_listen,
        Some("127.0.0.1:9469".parse().unwrap())
    );
    assert_eq!(parsed.agent.control_socket, PathBuf::from("/tmp/x/lb.sock"));
}

/// The `[[vrrp_instance]]` / `[[vrrp_sync_group]]` sections the VRRP
/// tests write parse to what they mean, VRRP-only (no XDP interfaces) and
/// next to services.
#[test]
fn generated_vrrp_configs_parse() {
    use lb_tests::agent::{VrrpInstanceConfig, VrrpSyncGroupConfig};

    let v2 = VrrpInstanceConfig {
        auth_pass: Some("1111".into()),
        state: "master".into(),
        unicast_source: Some("192.168.253.2".parse().unwrap()),
        unicast_peers: vec!["192.168.253.3".parse().unwrap()],
        notify: Some("/tmp/x/notify.sh".into()),
        fence: Some("/tmp/x/fence.sh".into()),
        ..VrrpInstanceConfig::new("VI_CLIENT", "eth0", 51, 150, &["192.168.253.120/24"])
    };
    let v3 = VrrpInstanceConfig {
        version: 3,
        advert_interval: Duration::from_millis(100),
        preempt: false,
        ..VrrpInstanceConfig::new("VI_SERVERS", "eth1", 52, 100, &["172.16.14.120/24"])
    };
    let v6 = VrrpInstanceConfig {
        version: 3,
        ..VrrpInstanceConfig::new("VI_6", "eth0", 53, 100, &["fd00:253::120/64"])
    };
    let mut config = LbConfig {
        interfaces: Vec::new(),
        xdp_mode: "auto".into(),
        flow_table_size: 65536,
        control_socket: PathBuf::from("/tmp/x/lb.sock"),
        metrics_listen: None,
        services: Vec::new(),
        vrrp: vec![v2, v3, v6],
        vrrp_sync_groups: vec![VrrpSyncGroupConfig {
            name: "NAT".into(),
            instances: vec!["VI_CLIENT".into(), "VI_SERVERS".into()],
            notify: Some("/tmp/x/notify.sh".into()),
        }],
    };
    let text = config.to_toml();
    let parsed =
        lb_userspace::config::parse(&text, "vrrp.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.vrrp_instances.len(), 3, "{text}");
    let a = &parsed.vrrp_instances[0];
    assert_eq!((a.virtual_router_id, a.priority), (51, 150));
    assert_eq!(a.auth_pass.as_deref(), Some("1111"));
    assert_eq!(
        a.unicast_peers,
        vec!["192.168.253.3".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(a.virtual_addresses[0].to_string(), "192.168.253.120/24");
    assert_eq!(
        a.fence.as_ref().map(|s| s.line.as_str()),
        Some("/tmp/x/fence.sh")
    );
    let b = &parsed.vrrp_instances[1];
    assert_eq!(b.advert_interval, Duration::from_millis(100));
    assert!(!b.preempt);
    assert_eq!(parsed.vrrp_sync_groups[0].instances.len(), 2);

    // The same instances beside a DR service, with XDP on eth0.
    config.interfaces = vec!["eth0".into()];
    config.services = vec![service(Forwarding::Dr, IpAddr::V4(VIP), "tcp", 80)];
    let text = config.to_toml();
    lb_userspace::config::parse(&text, "vrrp-dr.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
}
