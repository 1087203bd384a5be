//! Plain TCP helpers for servers a test runs in its own network namespace
//! (or on the test's loopback): a free port, waiting for a listener, and a
//! server that accepts and never answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A free port on 127.0.0.1 (bound and released: the caller binds it next).
pub fn free_port() -> Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free port on `ip` (bound and released: the caller binds it next).
pub fn free_port_on(ip: IpAddr) -> Result<u16> {
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(listener.local_addr()?.port())
}

/// Waits up to 10 s until `addr` accepts connections; the error quotes
/// `log` (the server's log file) and names `what`.
pub fn wait_listening(addr: SocketAddr, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    bail!("{what} did not listen on {addr} within 10 s; its log:\n{log}");
}

/// Accepts TCP connections on 127.0.0.1 and never answers (nor closes
/// them) while it lives: a server hung after accept.
#[derive(Debug)]
pub struct Silent {
    pub addr: SocketAddr,
    // Dropping the sender ends the accepting thread.
    _stop: mpsc::Sender<()>,
}

impl Silent {
    /// Listens in the calling thread's network namespace.
    pub fn start() -> Result<Silent> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Err(mpsc::TryRecvError::Empty) = rx.try_recv() {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Silent { addr, _stop: tx })
    }
}
