//! A packet generator for the rate suite: raw frames through an AF_PACKET
//! socket with `sendmmsg`, one sender thread per CPU inside the generator's
//! namespace.
//!
//! Why not `trafgen`: trafgen flushes its TX ring with MSG_DONTWAIT and
//! exits on EAGAIN, which is what a veth answers once the peer runs XDP
//! (native mode queues frames in the peer's ring, so the socket's send
//! buffer fills). This sender blocks instead, which is the backpressure a
//! NIC's full TX ring gives, and it works the same for every variant.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use anyhow::{bail, Context as _};

use lb_tests::netns::{Netns, ThreadNs};

/// Frames sent in one `sendmmsg`.
const BATCH: usize = 64;

pub struct Generator {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<u64>>>,
}

impl Generator {
    /// Starts `threads` senders of `frames` (sent round robin) out of `dev`
    /// in `ns`.
    pub fn start(
        ns: &Netns,
        dev: &str,
        frames: Vec<Vec<u8>>,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let ifindex = ns.ifindex(dev)?;
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(frames);
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (stop, frames) = (stop.clone(), frames.clone());
            let path = ns.path();
            handles.push(std::thread::spawn(move || {
                // A thread of its own: it sends from the namespace until it ends.
                let _in = ThreadNs::join(&path).context("generator namespace")?;
                send_loop(ifindex, &frames, &stop)
            }));
        }
        Ok(Generator {
            stop,
            threads: handles,
        })
    }

    /// Stops the senders; the number of frames the kernel accepted.
    pub fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let mut n = 0;
        for t in self.threads {
            n += t.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        }
        Ok(n)
    }
}

fn send_loop(ifindex: u32, frames: &[Vec<u8>], stop: &AtomicBool) -> anyhow::Result<u64> {
    // SAFETY: plain socket syscalls on a descriptor owned by this function.
    unsafe {
        // Protocol 0: this socket receives nothing.
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let mut sent = 0u64;
        let mut next = 0usize;
        let mut msgs: Vec<libc::mmsghdr> = vec![std::mem::zeroed(); BATCH];
        while !stop.load(Ordering::Relaxed) {
            for m in msgs.iter_mut() {
                m.msg_hdr.msg_name = &mut sll as *mut _ as *mut libc::c_void;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                m.msg_hdr.msg_iov = &mut iov[next];
                m.msg_hdr.msg_iovlen = 1;
                next = (next + 1) % iov.len();
            }
            let r = libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0);
            if r > 0 {
                sent += r as u64;
            } else {
                // ENOBUFS: the qdisc dropped; the device is saturated. Keep
                // offering load, as a generator at line rate would.
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOBUFS) && e.raw_os_error() != Some(libc::EAGAIN)
                {
                    libc::close(fd);
                    bail!("sendmmsg: {e}");
                }
                std::thread::yield_now();
            }
        }
        libc::close(fd);
        Ok(sent)
    }
}
