//! A flood of random-tuple TCP segments at a VIP, sent from a namespace with
//! an AF_PACKET socket (no route, ARP or socket state of the sender is
//! involved, so every frame reaches the balancer as built).
//!
//! Every frame is an ACK (not a SYN) from a random client in 198.18.0.0/15
//! (RFC 2544's benchmarking range: no test host has such an address, so
//! the real servers' answers die in the balancer's namespace, which has no
//! route there) and a random port: each one looks like a packet of an
//! established connection the balancer has never seen, which is exactly
//! what takes a new flow-table entry (needed for takeover after failover).

use std::{
    fs::File,
    net::SocketAddrV4,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    netns::Netns,
    packet::{Frame, Mac, Transport, TCP_ACK},
};

/// What a flood sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodReport {
    pub frames: u64,
    pub secs: f64,
}

impl FloodReport {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.frames as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// A running flood; [`Flood::stop`] ends it and says what it sent.
pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<FloodReport>>>,
}

/// Where and how hard to flood.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    /// The sender's interface (in the sender's namespace).
    pub ifname: String,
    pub src_mac: Mac,
    /// The balancer's MAC on that link.
    pub dst_mac: Mac,
    pub vip: SocketAddrV4,
    /// Frames per second at most (the sender sleeps between batches), so
    /// the flood stays a flood of the flow table, not of the test's CPUs.
    pub rate: u32,
    /// Seed of the tuples: a run can be repeated.
    pub seed: u64,
}

/// xorshift64*: reproducible tuples without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One flood frame: a random client of 198.18.0.0/15 and port to `vip`.
fn frame(spec: &FloodSpec, rng: &mut Rng) -> Vec<u8> {
    let r = rng.next();
    let host = (r & 0x1_ffff) as u32;
    let src = std::net::Ipv4Addr::from(0xc612_0000 | host);
    let sport = 1024 + ((r >> 17) % 64_000) as u16;
    let mut f = Frame::tcp(&format!("{src}:{sport}"), &spec.vip.to_string())
        .macs(spec.src_mac, spec.dst_mac);
    if let Transport::Tcp { seq, flags, .. } = &mut f.transport {
        *seq = (r >> 32) as u32;
        *flags = TCP_ACK;
    }
    f.payload.clear();
    f.build()
}

fn packet_socket(ifname: &str) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface {ifname} in the flood's namespace");
    }
    // SAFETY: zeroed sockaddr_ll is valid; the fields we need are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index as i32;
    // SAFETY: addr is a sockaddr_ll of the length given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        bail!("binding to {ifname}: {}", std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn run(spec: FloodSpec, ns_file: File, stop: Arc<AtomicBool>) -> Result<FloodReport> {
    // SAFETY: setns on a valid namespace fd only moves this thread.
    if unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    let sock = packet_socket(&spec.ifname)?;
    let mut rng = Rng(spec.seed | 1);
    const BATCH: u32 = 256;
    let batch_time = Duration::from_secs_f64(f64::from(BATCH) / f64::from(spec.rate.max(1)));
    let start = Instant::now();
    let mut frames = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        for _ in 0..BATCH {
            let f = frame(&spec, &mut rng);
            // SAFETY: f is a valid buffer of f.len() bytes.
            let n = unsafe { libc::send(sock.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                // A full device queue is what a flood meets: try on.
                if e.raw_os_error() != Some(libc::ENOBUFS) {
                    bail!("sending a flood frame: {e}");
                }
            } else {
                frames += 1;
            }
        }
        if let Some(rest) = batch_time.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(FloodReport {
        frames,
        secs: start.elapsed().as_secs_f64(),
    })
}

impl Flood {
    /// Starts flooding from `ns` on a thread of its own.
    pub fn start(ns: &Netns, spec: FloodSpec) -> Result<Flood> {
        let path = format!("/run/netns/{}", ns.name());
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || run(spec, file, s));
        Ok(Flood {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) -> Result<FloodReport> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?,
            None => bail!("the flood was stopped twice"),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
