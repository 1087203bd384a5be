//! The configs the harness writes (for the e2e tests, the demo and the
//! bench) are valid for the agent's own parser, so an e2e failure is never
//! a harness typo.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use lb_tests::agent::{LbConfig, RealServer, VirtualServer};
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
    }
}

#[test]
fn generated_configs_parse() {
    let config = LbConfig {
        interfaces: vec!["eth0".into(), "eth1".into()],
        xdp_mode: "auto".into(),
        flow_table_size: 65536,
        control_socket: PathBuf::from("/tmp/x/lb.sock"),
        services: vec![
            service(Forwarding::Nat, IpAddr::V4(VIP), "tcp", 80),
            service(Forwarding::Nat, IpAddr::V4(VIP), "udp", 7000),
            service(Forwarding::Nat, IpAddr::V6(VIP6), "tcp", 80),
            service(Forwarding::Dr, IpAddr::V4(VIP), "tcp", 389),
        ],
    };
    let text = config.to_toml();
    let parsed = lb_userspace::config::parse(&text, "generated.toml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.virtual_servers.len(), 4, "{parsed:?}");
    assert_eq!(parsed.agent.control_socket, PathBuf::from("/tmp/x/lb.sock"));
}
