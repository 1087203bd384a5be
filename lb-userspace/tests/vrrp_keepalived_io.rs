//! The VRRP socket against a real keepalived 2.2 (started by the shared
//! `netns-keepalived.sh` in namespaces of its own): keepalived's adverts
//! arrive on a [`VrrpSocket`] with the fields validation needs, and adverts
//! sent from a [`VrrpSocket`] (built here by hand; the codec is another
//! module's) make keepalived yield, which it only does for adverts whose
//! IP layer it accepts (TTL 255, group, source, checksum over that
//! source). IPv4 v2 with PASS auth, IPv6 v3 from the link-local source,
//! IPv4 v3 unicast.
//!
//! Needs root and keepalived; the script is found through `LB_VRRP_DATA`
//! or `../shared/data/vrrp` above the repository. Run one at a time:
//! `cargo test -p lb-userspace --test vrrp_keepalived_io -- --test-threads=1`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::Command,
    sync::atomic::Ordering,
    time::Duration,
};

use lb_tests::{
    lab::join_namespace,
    netns::unique_prefix,
    require::{require, require_capabilities, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN},
};
use lb_userspace::{
    netlink::Netlink,
    vrrp::socket::{source_for, Family, Received, VrrpSocket, VRRP_GROUP_V4, VRRP_GROUP_V6},
};

const VRID: u8 = 51;
const KA_PRIORITY: u8 = 100;
const OUR_PRIORITY: u8 = 200;

fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LB_VRRP_DATA") {
        return d.into();
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The repository's parent (main checkout) or its grandparent (a
    // worktree under wt/).
    for up in ["../../shared/data/vrrp", "../../../shared/data/vrrp"] {
        let d = manifest.join(up);
        if d.join("netns-keepalived.sh").exists() {
            return d;
        }
    }
    panic!(
        "netns-keepalived.sh not found: set LB_VRRP_DATA to the directory of the shared VRRP \
         test data"
    );
}

fn require_root_and_keepalived() {
    require_capabilities(
        "creates network namespaces and raw sockets",
        &[CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN],
    );
    require("keepalived", "keepalived");
}

/// One netns-keepalived.sh topology with a unique prefix (named like
/// lb-tests' namespaces, so its stale sweep removes a crashed run's);
/// cleaned up on drop.
struct Keepalived {
    prefix: String,
    script: PathBuf,
}

impl Keepalived {
    fn start(args: &[&str]) -> Keepalived {
        require_root_and_keepalived();
        let ka = Keepalived {
            prefix: format!("{}k", unique_prefix()),
            script: data_dir().join("netns-keepalived.sh"),
        };
        ka.run(&[&["start"], args].concat());
        ka
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("NETNS_PREFIX", &self.prefix)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "start" {
            assert!(out.status.success(), "netns-keepalived.sh {args:?}: {text}");
        }
        (out.status.success(), text)
    }

    fn wait_state(&self, state: &str, seconds: u32) {
        let (ok, text) = self.run(&["wait-state", state, &seconds.to_string()]);
        let (_, log) = self.run(&["log"]);
        assert!(
            ok,
            "keepalived did not reach {state}: {text}\nkeepalived log:\n{log}"
        );
    }

    fn dut(&self) -> String {
        format!("{}-dut", self.prefix)
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.run(&["cleanup"]);
    }
}

/// One's-complement sum of 16-bit words.
fn sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| (u32::from(c[0]) << 8) | u32::from(*c.get(1).unwrap_or(&0)))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A v2 advert with simple-password auth (RFC 3768 5.3; the checksum
/// covers the message only).
fn advert_v2(vip: Ipv4Addr, password: &[u8]) -> Vec<u8> {
    let mut m = vec![0x21, VRID, OUR_PRIORITY, 1, 1, 1, 0, 0];
    m.extend_from_slice(&vip.octets());
    let mut auth = [0u8; 8];
    auth[..password.len()].copy_from_slice(password);
    m.extend_from_slice(&auth);
    let c = fold(sum(&m));
    m[6..8].copy_from_slice(&c.to_be_bytes());
    m
}

/// A v3 advert, 1 s interval, checksum over the pseudo-header of `src`
/// and `dst` (RFC 5798 5.2.8).
fn advert_v3(vip: IpAddr, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let mut m = vec![0x31, VRID, OUR_PRIORITY, 1, 0x00, 100, 0, 0];
    let pseudo = match (vip, src, dst) {
        (IpAddr::V4(v), IpAddr::V4(s), IpAddr::V4(d)) => {
            m.extend_from_slice(&v.octets());
            [
                &s.octets()[..],
                &d.octets(),
                &[0, 112],
                &(m.len() as u16).to_be_bytes(),
            ]
            .concat()
        }
        (IpAddr::V6(v), IpAddr::V6(s), IpAddr::V6(d)) => {
            m.extend_from_slice(&v.octets());
            [
                &s.octets()[..],
                &d.octets(),
                &(m.len() as u32).to_be_bytes(),
                &[0, 0, 0, 112],
            ]
            .concat()
        }
        _ => panic!("mixed families"),
    };
    let c = fold(sum(&pseudo) + sum(&m));
    m[6..8].copy_from_slice(&c.to_be_bytes());
    m
}

fn enter(ns: &str) {
    join_namespace(ns);
}

/// In the DUT namespace: receives keepalived's first advert, then sends
/// the advert `make` builds every second until keepalived is BACKUP (at
/// most 8 s). Returns what was received.
fn exchange(
    ka: &Keepalived,
    family: Family,
    unicast: Option<IpAddr>,
    make: impl Fn(IpAddr) -> (IpAddr, Vec<u8>) + Send + 'static,
) -> Received {
    let dut = ka.dut();
    let (tx, rx) = std::sync::mpsc::channel();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let sender = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            enter(&dut);
            let nl = Netlink::new().unwrap();
            let index = nl.link_index("eth0").await.unwrap();
            let socket = VrrpSocket::open("eth0", index, family, unicast).unwrap();
            if unicast.is_none() {
                socket
                    .set_source(source_for(&nl, index, family).await.unwrap())
                    .unwrap();
            }
            let received = tokio::time::timeout(Duration::from_secs(8), socket.recv())
                .await
                .expect("no advert from keepalived within 8 s")
                .unwrap();
            tx.send(received).unwrap();
            let (dst, advert) = make(socket.source().unwrap());
            for _ in 0..8 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                socket.send(dst, &advert).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    let received = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the DUT thread failed");
    ka.wait_state("BACKUP", 6);
    done.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    received
}

#[test]
fn v2_pass_ipv4_multicast_interoperates_with_keepalived() {
    let ka = Keepalived::start(&["2", "100", "1", "--auth-pass", "1111"]);
    ka.wait_state("MASTER", 6);
    let vip = Ipv4Addr::new(10, 200, 0, 10);
    let r = exchange(&ka, Family::V4, None, move |_| {
        (VRRP_GROUP_V4.into(), advert_v2(vip, b"1111"))
    });
    assert_eq!(r.src, IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)));
    assert_eq!(r.dst, IpAddr::V4(VRRP_GROUP_V4));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.payload[..3], [0x21, VRID, KA_PRIORITY]);
    assert_eq!(r.payload.len(), 20);
}

#[test]
fn v3_ipv6_multicast_from_link_local_interoperates_with_keepalived() {
    let ka = Keepalived::start(&["3", "100", "1", "--ipv6"]);
    ka.wait_state("MASTER", 6);
    let vip: Ipv6Addr = "fd00:200::10".parse().unwrap();
    let r = exchange(&ka, Family::V6, None, move |src| {
        let group = IpAddr::V6(VRRP_GROUP_V6);
        (group, advert_v3(vip.into(), src, group))
    });
    assert_eq!(r.src, "fe80::ff:fe00:2".parse::<IpAddr>().unwrap());
    assert_eq!(r.dst, IpAddr::V6(VRRP_GROUP_V6));
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.payload[..3], [0x31, VRID, KA_PRIORITY]);
    assert_eq!(r.payload.len(), 8 + 16);
}

#[test]
fn v3_ipv4_unicast_interoperates_with_keepalived() {
    let ka = Keepalived::start(&["3", "100", "1", "--unicast"]);
    ka.wait_state("MASTER", 6);
    let dut: IpAddr = "10.200.0.1".parse().unwrap();
    let peer: IpAddr = "10.200.0.2".parse().unwrap();
    let vip: IpAddr = "10.200.0.10".parse().unwrap();
    let r = exchange(&ka, Family::V4, Some(dut), move |src| {
        (peer, advert_v3(vip, src, peer))
    });
    assert_eq!(r.src, peer);
    assert_eq!(r.dst, dut);
    assert_eq!(r.ttl_or_hoplimit, 255);
    assert_eq!(r.payload[..3], [0x31, VRID, KA_PRIORITY]);
}
