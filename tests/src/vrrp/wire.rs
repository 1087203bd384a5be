//! What the VRRP nodes say on the wire, as a bystander on the segment hears
//! it: a raw IP socket (protocol 112) opened inside the client's namespace,
//! joined to 224.0.0.18 / ff02::12, read by a thread that timestamps every
//! advert. Takeover times are measured from these timestamps the way
//! `failover-measurements.txt` measured keepalived (old master's last
//! advert to the new master's first), so lb and keepalived are compared
//! with the same ruler.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

const IPPROTO_VRRP: i32 = 112;

/// One advert heard.
#[derive(Clone, Debug, PartialEq)]
pub struct Advert {
    pub at: Instant,
    pub src: IpAddr,
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// IPv4 only (the IPv6 socket gets no header).
    pub ttl: Option<u8>,
    pub addresses: Vec<IpAddr>,
}

/// A takeover seen on the wire.
#[derive(Clone, Debug)]
pub struct Takeover {
    /// Old master's last advert (before the new master's first).
    pub last_old: Advert,
    pub first_new: Advert,
}

impl Takeover {
    pub fn gap(&self) -> Duration {
        self.first_new.at.duration_since(self.last_old.at)
    }
}

/// The listening thread; stops when dropped.
#[derive(Debug)]
pub struct AdvertLog {
    heard: Arc<Mutex<Vec<Advert>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn check(rc: i32, what: &str) -> Result<()> {
    if rc < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &str) -> Result<()> {
    // SAFETY: `value` is a live, correctly sized option value for `name`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what)
}

fn open(ifname: &str, ipv6: bool) -> Result<OwnedFd> {
    let ifname_c = std::ffi::CString::new(ifname)?;
    // SAFETY: a NUL-terminated interface name.
    let ifindex = unsafe { libc::if_nametoindex(ifname_c.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW, IPPROTO_VRRP) };
    check(fd, "raw VRRP socket")?;
    // SAFETY: socket(2) returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        &timeout,
        "SO_RCVTIMEO",
    )?;
    if ipv6 {
        let group = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr {
                s6_addr: "ff02::12".parse::<Ipv6Addr>()?.octets(),
            },
            ipv6mr_interface: ifindex,
        };
        setsockopt(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            &group,
            "join ff02::12",
        )?;
    } else {
        let group = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::new(224, 0, 0, 18)).to_be(),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as i32,
        };
        setsockopt(
            &fd,
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &group,
            "join 224.0.0.18",
        )?;
    }
    Ok(fd)
}

/// Decodes what a raw socket returns: the IPv4 header first for IPv4,
/// the VRRP message alone for IPv6 (`src` from the socket address).
fn decode(buf: &[u8], ipv6_src: Option<Ipv6Addr>, at: Instant) -> Option<Advert> {
    let (src, ttl, msg) = match ipv6_src {
        Some(src) => (IpAddr::V6(src), None, buf),
        None => {
            if buf.len() < 20 {
                return None;
            }
            let ihl = usize::from(*buf.first()? & 0x0f) * 4;
            let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
            (IpAddr::V4(src), Some(*buf.get(8)?), buf.get(ihl..)?)
        }
    };
    if msg.len() < 8 {
        return None;
    }
    let count = usize::from(msg[3]);
    let width = if ipv6_src.is_some() { 16 } else { 4 };
    let addresses = (0..count)
        .filter_map(|k| {
            let a = msg.get(8 + k * width..8 + (k + 1) * width)?;
            Some(if width == 4 {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).ok()?))
            })
        })
        .collect();
    Some(Advert {
        at,
        src,
        version: msg[0] >> 4,
        vrid: msg[1],
        priority: msg[2],
        ttl,
        addresses,
    })
}

fn receive(fd: &OwnedFd, ipv6: bool) -> Option<Advert> {
    let mut buf = [0u8; 2048];
    // SAFETY: zeroed sockaddr_in6 is a valid out-parameter, large enough
    // for either family.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: buffers valid for the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
            &mut from as *mut libc::sockaddr_in6 as *mut libc::sockaddr,
            &mut len,
        )
    };
    if n <= 0 {
        return None;
    }
    let at = Instant::now();
    let src = ipv6.then(|| Ipv6Addr::from(from.sin6_addr.s6_addr));
    decode(&buf[..n as usize], src, at)
}

impl AdvertLog {
    /// Starts listening on `ifname` inside `ns` (IPv4 adverts, or IPv6
    /// ones with `ipv6`).
    pub fn start(ns: &Netns, ifname: &str, ipv6: bool) -> Result<AdvertLog> {
        let ifname = ifname.to_string();
        let fd = ns
            .enter(move || open(&ifname, ipv6))?
            .with_context(|| format!("listening for adverts in {}", ns.name()))?;
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heard.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(advert) = receive(&fd, ipv6) {
                    h.lock().unwrap_or_else(|e| e.into_inner()).push(advert);
                }
            }
        });
        Ok(AdvertLog {
            heard,
            stop,
            thread: Some(thread),
        })
    }

    /// Every advert heard so far, oldest first.
    pub fn adverts(&self) -> Vec<Advert> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adverts from any of `sources` heard after `since`.
    pub fn from(&self, sources: &[IpAddr], since: Instant) -> Vec<Advert> {
        self.adverts()
            .into_iter()
            .filter(|a| a.at > since && sources.contains(&a.src))
            .collect()
    }

    /// The first advert from `new` after `since`, and the last one from
    /// `old` before it.
    pub fn takeover(&self, old: &[IpAddr], new: &[IpAddr], since: Instant) -> Option<Takeover> {
        let all = self.adverts();
        let first_new = all
            .iter()
            .find(|a| a.at > since && new.contains(&a.src) && a.priority > 0)?
            .clone();
        let last_old = all
            .iter()
            .rfind(|a| a.at < first_new.at && old.contains(&a.src))?
            .clone();
        Some(Takeover {
            last_old,
            first_new,
        })
    }

    /// Waits up to `limit` for a takeover from `old` to `new` after `since`.
    pub fn wait_takeover(
        &self,
        old: &[IpAddr],
        new: &[IpAddr],
        since: Instant,
        limit: Duration,
    ) -> Result<Takeover> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self.takeover(old, new, since) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                let heard: Vec<String> = self
                    .adverts()
                    .iter()
                    .filter(|a| a.at > since)
                    .map(|a| format!("{:?} {} prio {}", a.at - since, a.src, a.priority))
                    .collect();
                bail!(
                    "no takeover from {old:?} to {new:?} on the wire within {limit:?}; \
                     heard since: {heard:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AdvertLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_keepalived_v2_advert_with_ip_header() {
        // IPv4 header (TTL 255, 192.168.253.2 -> 224.0.0.18) + the v2
        // advert of vrrpv2-pass.pcap (VRID 51, prio 150, 10.200.0.10).
        let mut pkt = vec![
            0x45, 0xc0, 0, 40, 0, 1, 0, 0, 255, 112, 0, 0, 192, 168, 253, 2, 224, 0, 0, 18,
        ];
        pkt.extend([
            0x21, 0x33, 0x96, 0x01, 0x01, 0x01, 0xda, 0x95, 10, 200, 0, 10, b'1', b'1', b'1', b'1',
            0, 0, 0, 0,
        ]);
        let at = Instant::now();
        let a = decode(&pkt, None, at).unwrap();
        assert_eq!(a.src, "192.168.253.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (a.version, a.vrid, a.priority, a.ttl),
            (2, 51, 150, Some(255))
        );
        assert_eq!(a.addresses, vec!["10.200.0.10".parse::<IpAddr>().unwrap()]);
        assert!(decode(&pkt[..22], None, at).is_none(), "short message");
    }
}
