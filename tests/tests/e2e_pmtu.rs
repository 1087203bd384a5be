//! Path MTU discovery through the balancer (issue 10, item 2): a client
//! sits behind a router whose link towards it has MTU 1280, while the
//! real servers' links have 1500, so their TCP segments (MSS 1460, DF set
//! by Linux) do not fit. The router answers each with "fragmentation
//! needed" (ICMPv6: "packet too big") addressed to the VIP; only if lb
//! delivers it to the real server that owns the flow does that server
//! lower its path MTU, and a 1 MB download through the VIP complete.
//! Before lb delivered these errors the download stalled (the balancer's
//! own kernel swallowed them).
//!
//! The other way round, in NAT: a real server's own ICMP error about a
//! client's datagram ("port unreachable") must reach the client as the
//! VIP's, quoting the VIP, or the client's socket never learns of it (and
//! the real server's address leaks).
//!
//! Layout: the harness's NAT or DR topology, whose `client` namespace
//! becomes the router (forwarding on), plus a `far` namespace behind it
//! (10.7.0.2 / fd00:77::2, MTU 1500 on its own interface, so it announces
//! MSS 1460) on a veth whose router end has MTU 1280.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use lb_tests::agent::VirtualServer;
use lb_tests::client::url;
use lb_tests::netns::{run, unique_prefix, veth, Netns};
use lb_tests::scenario::Web;
use lb_tests::topology::{Forwarding, Topology, CLIENT, CLIENT6};

/// The narrow link (IPv6's minimum MTU, so it works for both families).
const NARROW_MTU: &str = "1280";
const FAR: &str = "10.7.0.2";
const FAR6: &str = "fd00:77::2";
const ROUTER_FAR: &str = "10.7.0.1";
const ROUTER_FAR6: &str = "fd00:77::1";
const FAR_NET: &str = "10.7.0.0/24";
const FAR_NET6: &str = "fd00:77::/64";
/// The download: 1 MiB of varied bytes, so a lost or misplaced segment
/// changes the digest.
const BYTES: usize = 1 << 20;
const FILE: &str = "pmtu.bin";
/// A download that needs longer has stalled (it takes well under a second
/// when path MTU discovery works; a black hole never finishes).
const TIMEOUT: Duration = Duration::from_secs(30);

fn content() -> Vec<u8> {
    // xorshift32: deterministic, not compressible, not periodic within 1 MiB.
    let mut x: u32 = 0x1b_2026;
    (0..BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha256(path: &std::path::Path) -> String {
    let out = run(Command::new("sha256sum").arg(path))
        .unwrap_or_else(|e| panic!("sha256sum (coreutils) on {}: {e:#}", path.display()));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Turns the topology's client into a router and hangs the far client off
/// it; returns the far client's namespace.
fn add_far_client(topo: &Topology) -> Netns {
    let router = &topo.client.ns;
    let far = Netns::new(format!("{}-far", unique_prefix())).expect("far namespace");
    veth(router, "far0", &far, "eth0").expect("router <-> far veth");
    router
        .ip(&["link", "set", "far0", "mtu", NARROW_MTU])
        .unwrap();
    router
        .ip(&["addr", "add", &format!("{ROUTER_FAR}/24"), "dev", "far0"])
        .unwrap();
    far.ip(&["addr", "add", &format!("{FAR}/24"), "dev", "eth0"])
        .unwrap();
    far.ip(&["route", "add", "default", "via", ROUTER_FAR])
        .unwrap();
    router.sysctl("net.ipv4.ip_forward", "1").unwrap();
    if topo.vip6.is_some() {
        router
            .ip(&[
                "addr",
                "add",
                &format!("{ROUTER_FAR6}/64"),
                "dev",
                "far0",
                "nodad",
            ])
            .unwrap();
        far.ip(&["addr", "add", &format!("{FAR6}/64"), "dev", "eth0", "nodad"])
            .unwrap();
        far.ip(&["-6", "route", "add", "default", "via", ROUTER_FAR6])
            .unwrap();
        router.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
    }
    // Who sends to the far client: the balancer in NAT (replies leave
    // through it), the real servers themselves in DR.
    match topo.forwarding {
        Forwarding::Nat => {
            let lb = &topo.balancer.ns;
            lb.ip(&["route", "add", FAR_NET, "via", &CLIENT.to_string()])
                .unwrap();
            lb.ip(&["-6", "route", "add", FAR_NET6, "via", &CLIENT6.to_string()])
                .unwrap();
        }
        Forwarding::Dr => {
            for h in &topo.reals {
                h.ns.ip(&["route", "add", FAR_NET, "via", &CLIENT.to_string()])
                    .unwrap();
            }
        }
    }
    far
}

/// `(name, value)` of the router's ICMP counters that count the errors
/// path MTU discovery depends on.
fn router_errors_sent(router: &Netns, v6: bool) -> u64 {
    let (file, name) = if v6 {
        ("/proc/net/snmp6", "Icmp6OutPktTooBigs")
    } else {
        ("/proc/net/snmp", "OutDestUnreachs")
    };
    let text = router.exec(&["cat", file]).unwrap();
    if v6 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no {name} in {file}"))
    } else {
        // Two lines: the "Icmp:" names, then the "Icmp:" values.
        let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
        let names: Vec<&str> = icmp.next().unwrap().split_whitespace().collect();
        let values: Vec<&str> = icmp.next().unwrap().split_whitespace().collect();
        let i = names.iter().position(|n| *n == name).unwrap();
        values[i].parse().unwrap()
    }
}

/// Downloads the file through `vip` from the far client and checks it.
fn download_through_narrow_link(forwarding: Forwarding, v6: bool) {
    let web = Web::start_with(forwarding, &[1, 1], |topo| {
        let vip = if v6 {
            IpAddr::V6(topo.vip6.expect("no IPv6 in this topology"))
        } else {
            IpAddr::V4(topo.vip)
        };
        vec![VirtualServer::for_topology(
            topo,
            "web",
            vip,
            80,
            "tcp",
            &[1, 1],
        )]
    });
    let expected = content();
    for n in &web.nginx {
        std::fs::write(n.www().join(FILE), &expected).unwrap();
    }
    let want = sha256(&web.nginx[0].www().join(FILE));
    let far = add_far_client(&web.topo);
    let vip = if v6 {
        IpAddr::V6(web.topo.vip6.unwrap())
    } else {
        IpAddr::V4(web.topo.vip)
    };
    let target = web.dir.join("downloaded.bin");
    let errors_before = router_errors_sent(&web.topo.client.ns, v6);
    let started = Instant::now();
    let got = far.exec(&[
        "curl",
        "-sS",
        "--max-time",
        &TIMEOUT.as_secs().to_string(),
        "-o",
        target.to_str().unwrap(),
        &url(vip, 80, &format!("/{FILE}")),
    ]);
    let took = started.elapsed();
    let errors = router_errors_sent(&web.topo.client.ns, v6) - errors_before;
    let status = web.agent.status_json().unwrap();
    let delivered = status["events"]["icmp_to_real"].as_u64().unwrap_or(0);
    if let Err(e) = got {
        panic!(
            "{forwarding} {}: the 1 MB download through the VIP failed after {took:?} \
             (path MTU black hole?): {e:#}\nthe router sent {errors} frag-needed/too-big \
             errors, lb delivered {delivered} to real servers\nlb log:\n{}",
            if v6 { "IPv6" } else { "IPv4" },
            web.agent.log()
        );
    }
    let len = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, BYTES as u64, "downloaded length");
    assert_eq!(sha256(&target), want, "downloaded bytes differ");
    // The test means something only if the narrow link really forced path
    // MTU discovery, and lb is what delivered the errors.
    assert!(
        errors > 0,
        "the router sent no frag-needed/too-big: the real servers' segments \
         already fit the narrow link, the test proves nothing"
    );
    assert!(
        delivered > 0,
        "the download completed but lb counted no ICMP error delivered \
         ({errors} sent by the router)"
    );
    drop(far);
    web.finish();
}

#[test]
fn pmtu_nat_ipv4_download_completes_through_a_narrow_link() {
    download_through_narrow_link(Forwarding::Nat, false);
}

#[test]
fn pmtu_nat_ipv6_download_completes_through_a_narrow_link() {
    download_through_narrow_link(Forwarding::Nat, true);
}

#[test]
fn pmtu_dr_ipv4_download_completes_through_a_narrow_link() {
    download_through_narrow_link(Forwarding::Dr, false);
}

/// A UDP port the real servers do not listen on: they answer "port
/// unreachable".
const CLOSED_PORT: u16 = 7009;
const DATAGRAMS: usize = 3;

/// What a client's connected UDP socket learns after sending to `to`:
/// Linux reports a matching "port unreachable" as ECONNREFUSED on the next
/// receive, and only when the error quotes the socket's own addresses and
/// ports (the VIP's, not the real server's).
fn refused(client: &Netns, to: SocketAddr) -> Vec<std::io::ErrorKind> {
    client
        .enter(move || {
            (0..DATAGRAMS)
                .map(|i| {
                    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                    let s = UdpSocket::bind(bind).unwrap();
                    s.connect(to).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    s.send(format!("hello {i}").as_bytes()).unwrap();
                    let mut buf = [0u8; 64];
                    match s.recv(&mut buf) {
                        Ok(_) => panic!("a closed port answered"),
                        Err(e) => e.kind(),
                    }
                })
                .collect()
        })
        .unwrap()
}

fn nat_port_unreachable_reaches_the_client(v6: bool) {
    let web = Web::start_with(Forwarding::Nat, &[1, 1], |topo| {
        let vip = if v6 {
            IpAddr::V6(topo.vip6.unwrap())
        } else {
            IpAddr::V4(topo.vip)
        };
        vec![VirtualServer::for_topology(
            topo,
            "closed",
            vip,
            CLOSED_PORT,
            "udp",
            &[1, 1],
        )]
    });
    let vip = if v6 {
        IpAddr::V6(web.topo.vip6.unwrap())
    } else {
        IpAddr::V4(web.topo.vip)
    };
    let kinds = refused(&web.topo.client.ns, SocketAddr::new(vip, CLOSED_PORT));
    // Read after the verdict on the sockets, whose message it completes.
    let translated = web
        .agent
        .status_json()
        .ok()
        .and_then(|s| s["events"]["icmp_from_real"].as_u64())
        .unwrap_or(0);
    assert!(
        kinds
            .iter()
            .all(|k| *k == std::io::ErrorKind::ConnectionRefused),
        "{}: the client's sockets saw {kinds:?}, not \"connection refused\": the real \
         servers' port unreachable did not reach them as the VIP's (lb translated \
         {translated})\nlb log:\n{}",
        if v6 { "IPv6" } else { "IPv4" },
        web.agent.log()
    );
    assert!(
        translated >= DATAGRAMS as u64,
        "icmp_from_real: {translated}"
    );
    web.finish();
}

#[test]
fn nat_ipv4_real_servers_port_unreachable_reaches_the_client_as_the_vips() {
    nat_port_unreachable_reaches_the_client(false);
}

#[test]
fn nat_ipv6_real_servers_port_unreachable_reaches_the_client_as_the_vips() {
    nat_port_unreachable_reaches_the_client(true);
}
