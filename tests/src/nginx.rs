//! nginx as a real server: answers `/` with its own name, serves files from
//! its own directory, throttled under `/slow/` (a large one for slow
//! downloads), and logs every
//! request so tests count each server's share from the server side. And
//! [`LocalNginx`], the HTTP real server of the agent's health-check tests.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;
use crate::process::{wait_until, ChildGuard};
use crate::require::require;
use crate::sockets::{free_port, wait_listening};
use crate::tempdir::TempDir;

/// Size of `/big.bin`: large enough that a rate-limited download outlives a
/// configuration change.
pub const BIG_FILE_BYTES: usize = 4 << 20;

/// Rate nginx sends anything under `/slow/` at (the server throttles:
/// curl's `--limit-rate` lets bursts through): `/slow/big.bin` takes 16 s.
pub const SLOW_BYTES_PER_SEC: usize = 256 << 10;

/// A running nginx inside a namespace; stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    pub name: String,
    // Field order: stop the process before removing its directory.
    _process: ChildGuard,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx in `ns` listening on port 80 (IPv4 and IPv6, every
    /// address, so a VIP on `lo` is served too) and waits until it answers.
    pub fn start(ns: &Netns, name: &str) -> Result<Nginx> {
        Nginx::start_on(ns, name, 80)
    }

    pub fn start_on(ns: &Netns, name: &str, port: u16) -> Result<Nginx> {
        Nginx::start_with(ns, name, port, "")
    }

    /// Like [`Nginx::start`], keeping idle keep-alive connections for 300 s
    /// and a million requests: a connection a test opens before an agent
    /// restart is still usable after it.
    pub fn start_held(ns: &Netns, name: &str) -> Result<Nginx> {
        Nginx::start_with(
            ns,
            name,
            80,
            "keepalive_timeout 300;\n keepalive_requests 1000000;\n",
        )
    }

    /// `http_extra`: directives added to the `http` block.
    fn start_with(ns: &Netns, name: &str, port: u16, http_extra: &str) -> Result<Nginx> {
        let dir = TempDir::new(&format!("nginx-{name}"))?;
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("big.bin"), vec![b'x'; BIG_FILE_BYTES])?;
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\n\
             worker_processes 1;\n\
             user root;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               {http_extra}\
               server {{\n\
                 listen {port} reuseport backlog=4096;\n\
                 listen [::]:{port} ipv6only=on reuseport backlog=4096;\n\
                 location = / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n\
                 location / {{ root {d}/www; }}\n\
                 location /slow/ {{ alias {d}/www/; limit_rate {SLOW_BYTES_PER_SEC}; }}\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = ns.command("nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(std::process::Stdio::null());
        let process = ChildGuard::spawn(format!("nginx {name}"), &mut cmd)?;
        let mut nginx = Nginx {
            name: name.to_string(),
            _process: process,
            dir,
        };
        let url = format!("http://127.0.0.1:{port}/");
        let ready = wait_until(Duration::from_secs(10), || {
            ns.exec(&["curl", "-sf", "-o", "/dev/null", "--max-time", "1", &url])
                .is_ok()
        });
        if !ready {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            if let Some(status) = nginx._process.try_wait() {
                bail!("nginx {name} exited ({status}): {log}");
            }
            bail!("nginx {name} does not answer on {url} after 10 s: {log}");
        }
        Ok(nginx)
    }

    /// The directory nginx serves (also under `/slow/`): tests put their
    /// own files there.
    pub fn www(&self) -> PathBuf {
        self.dir.join("www")
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    /// Requests logged so far (one access-log line each).
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.access_log())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Logged requests for exactly `path` (`GET /`, not `GET /big.bin`).
    /// A download is logged when it ends, so counting `/` keeps a long
    /// download out of a share measured meanwhile.
    pub fn requests_for(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} HTTP/");
        std::fs::read_to_string(self.access_log())
            .map(|s| s.lines().filter(|l| l.contains(&needle)).count())
            .unwrap_or(0)
    }

    /// Logged requests from `client` (the access log's first field).
    pub fn requests_from(&self, client: &str) -> Result<usize> {
        let log = std::fs::read_to_string(self.access_log())
            .with_context(|| format!("reading {}", self.access_log().display()))?;
        Ok(log
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(client))
            .count())
    }
}

/// nginx on 127.0.0.1 of the calling thread's network namespace, for the
/// agent's HTTP health-check tests: `/` answers 200 "nginx-ok" for `Host:
/// good.example` and 421 for any other host; `/broken` answers 503. It can
/// be stopped and started again on the same port.
#[derive(Debug)]
pub struct LocalNginx {
    pub addr: SocketAddr,
    // Field order: stop the process before removing its directory.
    process: Option<ChildGuard>,
    dir: TempDir,
    bin: PathBuf,
}

impl LocalNginx {
    pub fn start() -> Result<LocalNginx> {
        let bin = require("nginx", "nginx-light");
        let dir = TempDir::new("nginx")?;
        let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port()?);
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    server {{
        listen {addr} default_server;
        location / {{ return 421 \"wrong host\\n\"; }}
    }}
    server {{
        listen {addr};
        server_name good.example;
        location / {{ return 200 \"nginx-ok\\n\"; }}
        location /broken {{ return 503 \"broken\\n\"; }}
    }}
}}
"
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let mut n = LocalNginx {
            addr,
            process: None,
            dir,
            bin,
        };
        n.restart()?;
        Ok(n)
    }

    /// Starts it again (same port and config) after `stop`.
    pub fn restart(&mut self) -> Result<()> {
        let d = self.dir.path();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.process = Some(ChildGuard::spawn("nginx", &mut cmd)?);
        wait_listening(self.addr, "nginx", &d.join("error.log"))
    }

    /// Stops it (SIGTERM: the master then stops its workers, which a
    /// SIGKILLed master would leave serving), like `systemctl stop nginx`,
    /// and waits until the port is closed.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop(libc::SIGTERM, Duration::from_secs(5));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(50)).is_ok() {
            if Instant::now() >= deadline {
                bail!(
                    "nginx still answers on {} 5 s after it was stopped",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// Shares of `counts` (each divided by their sum).
pub fn shares(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// Checks each count's share against its weight's share, allowing
/// `tolerance` relative error (0.2 = within 20% of the expected share).
/// The error message lists every server's numbers.
pub fn check_shares(counts: &[usize], weights: &[u32], tolerance: f64) -> Result<()> {
    let total_w: u32 = weights.iter().sum();
    let got = shares(counts);
    let mut bad = Vec::new();
    let mut table = String::new();
    for (i, (&w, &share)) in weights.iter().zip(&got).enumerate() {
        let want = w as f64 / total_w as f64;
        table += &format!(
            "\n  realserver{}: weight {w}, {} requests, share {:.3}, expected {:.3}",
            i + 1,
            counts[i],
            share,
            want
        );
        if (share - want).abs() > tolerance * want {
            bad.push(i + 1);
        }
    }
    if !bad.is_empty() {
        bail!(
            "real servers {bad:?} are off their weight share by more than {:.0}%:{table}",
            tolerance * 100.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_within_tolerance_pass_and_outside_fail() {
        check_shares(&[500, 1000, 1500], &[1, 2, 3], 0.2).unwrap();
        check_shares(&[1000, 1000, 1000], &[1, 1, 1], 0.2).unwrap();
        let err = check_shares(&[1500, 1000, 500], &[1, 2, 3], 0.2).unwrap_err();
        assert!(err.to_string().contains("[1, 3]"), "{err}");
        // Weight 0 expects nothing: one stray request fails.
        assert!(check_shares(&[10, 10, 1], &[1, 1, 0], 0.2).is_err());
    }
}
