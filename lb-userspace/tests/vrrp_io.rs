//! The VRRP driver's I/O against a real kernel: two network namespaces on a
//! veth pair, adverts sent from one [`VrrpSocket`] and received by the
//! other (IPv4 and IPv6, multicast and unicast) in keepalived's IP-layer
//! form, virtual addresses moved through [`Netlink`] and seen by `ip`,
//! gratuitous ARP / unsolicited NA seen by the peer, and a link going down
//! reported by the link watch. Needs root (namespaces, raw sockets); run
//! one at a time: `cargo test -p lb-userspace --test vrrp_io -- --test-threads=1`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::join_namespace,
    netns::{run, unique_prefix, Netns},
    process::wait_for as wait_until_or_panic,
    require::{require_capabilities, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN},
};
use lb_userspace::{
    netlink::{Netlink, NudState},
    vrrp::{
        announce::{garp_frame, unsolicited_na_frame, Announcer},
        socket::{source_for, Family, Received, VrrpSocket, VRRP_GROUP_V4, VRRP_GROUP_V6},
    },
};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x01];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x02];
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const IP6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);
const IP6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 2);
/// The EUI-64 link-local addresses of MAC_A and MAC_B.
const LL_A: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0901);
const LL_B: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0902);
/// lb1's v2 advert from vrrpv2-pass.pcap; its content does not matter here.
const ADVERT: [u8; 20] = [
    0x21, 0x33, 0x96, 0x01, 0x01, 0x01, 0xda, 0x95, 0x0a, 0xc8, 0x00, 0x0a, 0x31, 0x31, 0x31, 0x31,
    0, 0, 0, 0,
];

fn require_root() {
    require_capabilities(
        "creates network namespaces and raw sockets",
        &[CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN],
    );
}

fn sh(args: &[&str]) -> String {
    run(Command::new(args[0]).args(&args[1..])).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Two namespaces, `a` (interface `va`, MAC_A) and `b` (`vb`, MAC_B), on
/// one veth pair; removed on drop (lb-tests' namespaces, so its
/// stale-namespace sweep also removes them).
struct Pair {
    a: String,
    b: String,
    _namespaces: [Netns; 2],
}

impl Pair {
    fn new() -> Pair {
        require_root();
        let prefix = format!("{}v", unique_prefix());
        let namespaces = [
            Netns::new(format!("{prefix}a")).unwrap(),
            Netns::new(format!("{prefix}b")).unwrap(),
        ];
        let pair = Pair {
            a: namespaces[0].name().to_string(),
            b: namespaces[1].name().to_string(),
            _namespaces: namespaces,
        };
        for ns in &pair._namespaces {
            // Addresses usable at once: no duplicate address detection.
            for key in ["default", "all"] {
                ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")
                    .unwrap();
            }
        }
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        sh(&[
            "ip",
            "-n",
            &pair.a,
            "link",
            "add",
            "va",
            "address",
            &mac(MAC_A),
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "address",
            &mac(MAC_B),
            "netns",
            &pair.b,
        ]);
        for (ns, dev, v4, v6) in [(&pair.a, "va", IP_A, IP6_A), (&pair.b, "vb", IP_B, IP6_B)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                dev,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        for (ns, dev, ll) in [(&pair.a, "va", LL_A), (&pair.b, "vb", LL_B)] {
            wait_for(&format!("{ll} on {ns}:{dev}"), || {
                addresses(ns, dev).contains(&ll.to_string())
            });
        }
        pair
    }
}

#[track_caller]
fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_until_or_panic(what, Duration::from_secs(5), Duration::from_millis(50), ok);
}

/// `ip -j addr show dev` in a namespace: every local address, with
/// `(tentative)` appended to addresses still in DAD.
fn addresses(ns: &str, dev: &str) -> Vec<String> {
    let out = sh(&["ip", "-n", ns, "-j", "addr", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut list = Vec::new();
    for link in v.as_array().unwrap() {
        for a in link["addr_info"].as_array().unwrap() {
            let mut s = format!(
                "{}/{}",
                a["local"].as_str().unwrap(),
                a["prefixlen"].as_u64().unwrap()
            );
            if a["tentative"].as_bool() == Some(true) {
                s.push_str("(tentative)");
            }
            list.push(s.clone());
            list.push(a["local"].as_str().unwrap().to_string());
        }
    }
    list
}

/// Moves the calling thread into namespace `ns`: sockets it opens from now
/// on live there (the ones opened before stay where they were).
fn enter(ns: &str) {
    join_namespace(ns);
}

/// Runs `f` on a fresh thread with its own single-threaded runtime (so the
/// thread's namespace changes never leak into the test harness).
fn on_thread<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
    .join()
    .unwrap()
}

/// An AF_PACKET socket seeing every frame arriving on one interface of the
/// namespace the thread is in.
struct Sniffer(OwnedFd);

impl Sniffer {
    fn open(ifindex: u32) -> Sniffer {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket/bind/setsockopt calls on the new fd.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0);
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            Sniffer(fd)
        }
    }

    /// The first incoming frame `want` accepts within 3 s.
    fn find(&self, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_secs(3) {
            // SAFETY: recv into a live buffer of the length given.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 && want(&buf[..n as usize]) {
                return buf[..n as usize].to_vec();
            }
        }
        panic!("no {what} arrived within 3 s");
    }
}

struct Ends {
    a: VrrpSocket,
    b: VrrpSocket,
    sniff_b: Sniffer,
    b_index: u32,
}

/// Opens a VRRP socket in each namespace (and a sniffer on b's interface);
/// `unicast` gives each end its unicast source. Must run on an
/// [`on_thread`] runtime.
async fn open_ends(pair: &Pair, family: Family, unicast: Option<(IpAddr, IpAddr)>) -> Ends {
    enter(&pair.b);
    let nl_b = Netlink::new().unwrap();
    let b_index = nl_b.link_index("vb").await.unwrap();
    let b = VrrpSocket::open("vb", b_index, family, unicast.map(|u| u.1)).unwrap();
    let sniff_b = Sniffer::open(b_index);
    enter(&pair.a);
    let nl_a = Netlink::new().unwrap();
    let a_index = nl_a.link_index("va").await.unwrap();
    let a = VrrpSocket::open("va", a_index, family, unicast.map(|u| u.0)).unwrap();
    if unicast.is_none() {
        let src = source_for(&nl_a, a_index, family).await.unwrap();
        a.set_source(src).unwrap();
    }
    Ends {
        a,
        b,
        sniff_b,
        b_index,
    }
}

async fn exchange(ends: &Ends, dst: IpAddr) -> Received {
    ends.a.send(dst, &ADVERT).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), ends.b.recv())
        .await
        .expect("no advert received within 3 s")
        .unwrap()
}

fn is_vrrp_v4(f: &[u8]) -> bool {
    f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 112
}

fn is_vrrp_v6(f: &[u8]) -> bool {
    f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 112
}

/// The IPv4 header keepalived sends: TOS 0xc0, DF clear, TTL 255.
fn assert_keepalived_ipv4_form(frame: &[u8]) {
    assert_eq!(frame[15], 0xc0, "TOS");
    assert_eq!(frame[20] & 0x40, 0, "DF must be clear");
    assert_eq!(frame[22], 255, "TTL");
}

/// Traffic class 0xc0 and hop limit 255.
fn assert_keepalived_ipv6_form(frame: &[u8]) {
    let tclass = ((frame[14] & 0x0f) << 4) | (frame[15] >> 4);
    assert_eq!(tclass, 0xc0, "traffic class");
    assert_eq!(frame[21], 255, "hop limit");
}

#[test]
fn ipv4_multicast_advert_arrives_with_ttl_255_from_the_primary_address() {
    let pair = Pair::new();
    let (r, frame, b_index) = on_thread(async move || {
        let ends = open_ends(&pair, Family::V4, None).await;
        let r = exchange(&ends, VRRP_GROUP_V4.into()).await;
        let frame = ends.sniff_b.find("IPv4 VRRP frame", is_vrrp_v4);
        (r, frame, ends.b_index)
    });
    assert_eq!(r.src, IpAddr::V4(IP_A));
    assert_eq!(r.dst, IpAddr::V4(VRRP_GROUP_V4));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.ifindex, b_index);
    assert_eq!(r.payload, ADVERT);
    assert_eq!(frame[0..6], [0x01, 0x00, 0x5e, 0, 0, 0x12], "group MAC");
    assert_eq!(frame[6..12], MAC_A);
    assert_keepalived_ipv4_form(&frame);
}

#[test]
fn ipv6_multicast_advert_arrives_from_the_link_local_address() {
    let pair = Pair::new();
    let (r, frame, b_index) = on_thread(async move || {
        let ends = open_ends(&pair, Family::V6, None).await;
        let r = exchange(&ends, VRRP_GROUP_V6.into()).await;
        let frame = ends.sniff_b.find("IPv6 VRRP frame", is_vrrp_v6);
        (r, frame, ends.b_index)
    });
    assert_eq!(r.src, IpAddr::V6(LL_A));
    assert_eq!(r.dst, IpAddr::V6(VRRP_GROUP_V6));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.ifindex, b_index);
    assert_eq!(r.payload, ADVERT);
    assert_eq!(frame[0..6], [0x33, 0x33, 0, 0, 0, 0x12], "group MAC");
    assert_keepalived_ipv6_form(&frame);
}

#[test]
fn ipv4_unicast_advert_keeps_ttl_255() {
    let pair = Pair::new();
    let (r, frame) = on_thread(async move || {
        let ends = open_ends(&pair, Family::V4, Some((IP_A.into(), IP_B.into()))).await;
        let r = exchange(&ends, IP_B.into()).await;
        (r, ends.sniff_b.find("IPv4 VRRP frame", is_vrrp_v4))
    });
    assert_eq!(r.src, IpAddr::V4(IP_A));
    assert_eq!(r.dst, IpAddr::V4(IP_B));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.payload, ADVERT);
    assert_eq!(frame[0..6], MAC_B, "unicast to the peer's MAC");
    assert_keepalived_ipv4_form(&frame);
}

#[test]
fn ipv6_unicast_advert_keeps_hop_limit_255() {
    let pair = Pair::new();
    let (r, frame) = on_thread(async move || {
        let ends = open_ends(&pair, Family::V6, Some((IP6_A.into(), IP6_B.into()))).await;
        let r = exchange(&ends, IP6_B.into()).await;
        (r, ends.sniff_b.find("IPv6 VRRP frame", is_vrrp_v6))
    });
    assert_eq!(r.src, IpAddr::V6(IP6_A));
    assert_eq!(r.dst, IpAddr::V6(IP6_B));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.payload, ADVERT);
    assert_keepalived_ipv6_form(&frame);
}

#[test]
fn ipv6_unicast_advert_between_link_local_addresses() {
    // A link-local peer needs the interface as its scope; the socket adds it.
    let pair = Pair::new();
    let (r, b_index) = on_thread(async move || {
        let ends = open_ends(&pair, Family::V6, Some((LL_A.into(), LL_B.into()))).await;
        (exchange(&ends, LL_B.into()).await, ends.b_index)
    });
    assert_eq!(r.src, IpAddr::V6(LL_A));
    assert_eq!(r.dst, IpAddr::V6(LL_B));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.ifindex, b_index);
    assert_eq!(r.payload, ADVERT);
}

/// Multicast loop is off: a node never hears its own adverts (they would
/// look like another master's), in either family.
#[test]
fn a_node_does_not_receive_its_own_multicast_adverts() {
    let pair = Pair::new();
    for family in [Family::V4, Family::V6] {
        let ns = pair.a.clone();
        let heard = on_thread(async move || {
            enter(&ns);
            let nl = Netlink::new().unwrap();
            let index = nl.link_index("va").await.unwrap();
            let listener = VrrpSocket::open("va", index, family, None).unwrap();
            let sender = VrrpSocket::open("va", index, family, None).unwrap();
            sender.send(family.group(), &ADVERT).await.unwrap();
            tokio::time::timeout(Duration::from_millis(500), listener.recv())
                .await
                .ok()
        });
        assert!(
            heard.is_none(),
            "{family}: own advert looped back: {heard:?}"
        );
    }
}

#[test]
fn a_socket_of_the_wrong_family_refuses_the_destination() {
    let pair = Pair::new();
    let message = on_thread(async move || {
        let ends = open_ends(&pair, Family::V4, None).await;
        ends.a
            .send(VRRP_GROUP_V6.into(), &ADVERT)
            .await
            .unwrap_err()
            .to_string()
    });
    assert!(
        message.contains("ff02::12") && message.contains("va"),
        "{message}"
    );
}

#[test]
fn netlink_adds_and_removes_addresses_idempotently() {
    let pair = Pair::new();
    let ns = pair.a.clone();
    // DAD on, as on a real host: without NODAD the address would stay
    // tentative (unusable) for a second.
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.va.accept_dad=1",
    ]);
    let v4: IpAddr = "10.9.0.10".parse().unwrap();
    let v6: IpAddr = "fd00:9::10".parse().unwrap();
    on_thread(async move || {
        enter(&ns);
        let nl = Netlink::new().unwrap();
        let index = nl.link_index("va").await.unwrap();
        for _ in 0..2 {
            nl.add_address(index, v4, 24).await.unwrap();
            nl.add_address(index, v6, 64).await.unwrap();
        }
        let ours = nl.addresses(index).await.unwrap();
        assert!(
            ours.contains(&(v4, 24)) && ours.contains(&(v6, 64)),
            "{ours:?}"
        );
        // The primary address stays first: it is the advert source.
        assert_eq!(ours[0], (IpAddr::V4(IP_A), 24));
        let seen = addresses(&ns, "va");
        assert!(seen.contains(&"10.9.0.10/24".to_string()), "{seen:?}");
        // NODAD: usable at once, never tentative.
        assert!(seen.contains(&"fd00:9::10/64".to_string()), "{seen:?}");
        for _ in 0..2 {
            nl.remove_address(index, v4, 24).await.unwrap();
            nl.remove_address(index, v6, 64).await.unwrap();
        }
        let seen = addresses(&ns, "va");
        assert!(
            !seen.contains(&"10.9.0.10".to_string()) && !seen.contains(&"fd00:9::10".to_string()),
            "{seen:?}"
        );
        assert!(seen.contains(&"10.9.0.1/24".to_string()), "{seen:?}");
    });
}

#[test]
fn netlink_errors_name_the_interface() {
    let pair = Pair::new();
    let ns = pair.a.clone();
    on_thread(async move || {
        enter(&ns);
        let nl = Netlink::new().unwrap();
        let e = nl.link_index("nosuch0").await.unwrap_err().to_string();
        assert_eq!(e, "interface nosuch0 does not exist");
        let index = nl.link_index("va").await.unwrap();
        // A prefix length IPv4 does not have.
        let e = nl
            .add_address(index, "10.9.0.11".parse().unwrap(), 40)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("adding 10.9.0.11/40 to va: "), "{e}");
    });
}

#[test]
fn link_info_and_link_watch_follow_the_interface() {
    let pair = Pair::new();
    let ns = pair.a.clone();
    on_thread(async move || {
        enter(&ns);
        let nl = Netlink::new().unwrap();
        let info = nl.link("va").await.unwrap();
        let json = sh(&["ip", "-n", &ns, "-j", "link", "show", "dev", "va"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(u64::from(info.index), v[0]["ifindex"].as_u64().unwrap());
        assert_eq!(u64::from(info.mtu), v[0]["mtu"].as_u64().unwrap());
        assert_eq!(info.mac, MAC_A);
        assert!(info.up);
        assert_eq!(nl.link(info.index).await.unwrap(), info);

        let mut watch = nl.watch_link(info.index).await.unwrap();
        let next = async |w: &mut lb_userspace::netlink::LinkWatch| {
            tokio::time::timeout(Duration::from_secs(3), w.next())
                .await
                .expect("no link change reported within 3 s")
                .unwrap()
        };
        assert_eq!(next(&mut watch).await, (info.index, true));
        sh(&["ip", "-n", &ns, "link", "set", "va", "down"]);
        assert_eq!(next(&mut watch).await, (info.index, false));
        assert!(!nl.link("va").await.unwrap().up);
        sh(&["ip", "-n", &ns, "link", "set", "va", "up"]);
        assert_eq!(next(&mut watch).await, (info.index, true));
    });
}

#[test]
fn gratuitous_arp_updates_the_peers_neighbour_table() {
    let pair = Pair::new();
    // A Linux peer only learns a new entry from a gratuitous ARP with
    // arp_accept; routers and switches learn from it unconditionally.
    sh(&[
        "ip",
        "netns",
        "exec",
        &pair.b,
        "sysctl",
        "-qw",
        "net.ipv4.conf.vb.arp_accept=1",
    ]);
    let vip = Ipv4Addr::new(10, 9, 0, 10);
    let (frame, neighbours) = on_thread(async move || {
        enter(&pair.b);
        let nl_b = Netlink::new().unwrap();
        let b_index = nl_b.link_index("vb").await.unwrap();
        let sniff = Sniffer::open(b_index);
        enter(&pair.a);
        let a_index = Netlink::new().unwrap().link_index("va").await.unwrap();
        Announcer::new(a_index, MAC_A)
            .unwrap()
            .gratuitous_arp(vip)
            .await
            .unwrap();
        let frame = sniff.find("gratuitous ARP", |f| f[12..14] == [0x08, 0x06]);
        let mut neighbours = Vec::new();
        for _ in 0..20 {
            neighbours = nl_b.neighbours().await.unwrap();
            if neighbours.iter().any(|n| n.ip == IpAddr::V4(vip)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (frame, neighbours)
    });
    assert_eq!(frame, garp_frame(MAC_A, vip));
    let entry = neighbours
        .iter()
        .find(|n| n.ip == IpAddr::V4(vip))
        .unwrap_or_else(|| panic!("{vip} not in the peer's neighbour table: {neighbours:?}"));
    assert_eq!(entry.mac, Some(MAC_A));
    assert!(entry.state.is_usable(), "{entry:?}");
    assert_ne!(entry.state, NudState::Incomplete);
}

#[test]
fn unsolicited_na_reaches_the_peer_unchanged() {
    let pair = Pair::new();
    let vip: Ipv6Addr = "fd00:9::10".parse().unwrap();
    let frame = on_thread(async move || {
        enter(&pair.b);
        let b_index = Netlink::new().unwrap().link_index("vb").await.unwrap();
        let sniff = Sniffer::open(b_index);
        enter(&pair.a);
        let a_index = Netlink::new().unwrap().link_index("va").await.unwrap();
        Announcer::new(a_index, MAC_A)
            .unwrap()
            .unsolicited_na(vip)
            .await
            .unwrap();
        sniff.find("neighbour advertisement", |f| {
            f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136
        })
    });
    assert_eq!(frame, unsolicited_na_frame(MAC_A, vip));
}
