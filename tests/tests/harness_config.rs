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
