//! A UDP echo service (socat) on the real servers and a client that sends
//! one datagram per source port, so each is a new flow for the balancer.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::Netns;
use crate::process::{wait_until, ChildGuard};

/// Starts a UDP echo server on `port` in `ns` that answers each datagram
/// with `"<name> <line>"`, so the client sees which server answered.
pub fn echo_server(ns: &Netns, name: &str, port: u16) -> Result<ChildGuard> {
    let mut cmd = ns.command("socat");
    cmd.arg(format!("UDP4-RECVFROM:{port},fork,reuseaddr"))
        .arg(format!("SYSTEM:read l; echo {name} \"$l\""))
        .stdin(std::process::Stdio::null());
    let guard = ChildGuard::spawn(format!("UDP echo on {name}"), &mut cmd)?;
    let filter = format!("sport = :{port}");
    let listening = wait_until(Duration::from_secs(5), || {
        ns.exec(&["ss", "-Hlun", &filter])
            .map(|o| !o.trim().is_empty())
            .unwrap_or(false)
    });
    if !listening {
        bail!("socat on {name} is not listening on UDP {port}");
    }
    Ok(guard)
}

/// From inside `ns`, sends `count` datagrams to `to`, each from its own
/// socket (own source port), and returns each reply (None when lost).
pub fn echo_requests(ns: &Netns, to: SocketAddr, count: usize) -> Result<Vec<Option<String>>> {
    ns.enter(move || -> Result<Vec<Option<String>>> {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let mut socks = Vec::with_capacity(count);
        for i in 0..count {
            let s = UdpSocket::bind(bind).context("binding a UDP socket")?;
            s.connect(to)?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.send(format!("hello {i}\n").as_bytes())
                .with_context(|| format!("sending to {to}"))?;
            socks.push(s);
        }
        let mut replies = Vec::with_capacity(count);
        for s in socks {
            let mut buf = [0u8; 512];
            replies.push(
                s.recv(&mut buf)
                    .ok()
                    .map(|n| String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            );
        }
        Ok(replies)
    })?
}
