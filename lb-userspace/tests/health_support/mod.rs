//! Real servers for the health-check tests, on loopback only: nginx and
//! slapd started from configs written into a private temporary directory,
//! stopped (and the directory removed) on `Drop`. A missing program is a
//! panic naming the Debian package, never a silent skip.

#![allow(dead_code)] // each test file uses its own part of the kit

pub mod tls;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// A directory removed with everything in it on `Drop`.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lb-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The program's path, or a panic saying which Debian package has it.
pub fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("`{program}` is not installed: this test needs it (apt-get install {package})");
}

/// A free loopback port (bound and released: the caller binds it next).
pub fn free_port() -> u16 {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free port on `ip` (bound and released: the caller binds it next).
pub fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `addr` accepts connections.
pub fn wait_listening(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not listen on {addr} within 10 s; its log:\n{log}");
}

/// A child process stopped and reaped on `Drop`.
pub struct Proc(Option<Child>);

impl Proc {
    /// SIGTERM (nginx's master then stops its workers; a SIGKILLed master
    /// would leave them serving), SIGKILL if it is still there after 5 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx on 127.0.0.1:`port`: `/` answers 200 "nginx-ok" for
/// `Host: good.example` and 421 for any other host; `/broken` answers 503.
pub struct Nginx {
    pub addr: SocketAddr,
    proc: Proc,
    dir: TempDir,
    bin: PathBuf,
}

impl Nginx {
    pub fn start() -> Self {
        let bin = require("nginx", "nginx-light");
        let dir = TempDir::new("nginx");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut n = Nginx {
            addr,
            proc: Proc(None),
            dir,
            bin,
        };
        n.restart();
        n
    }

    /// Starts it again (same port and config) after `stop`.
    pub fn restart(&mut self) {
        let d = self.dir.path();
        let child = Command::new(&self.bin)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        self.proc = Proc(Some(child));
        wait_listening(self.addr, "nginx", &d.join("error.log"));
    }

    /// Stops it (like `systemctl stop nginx`) and waits until the port
    /// is closed.
    pub fn stop(&mut self) {
        self.proc.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(50)).is_ok() {
            assert!(Instant::now() < deadline, "nginx still answers after kill");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// slapd on 127.0.0.1:`port`, mdb database `dc=example,dc=org` with root
/// DN `cn=admin,dc=example,dc=org` / `ROOT_PASSWORD`, loaded with slapadd.
pub struct Slapd {
    /// Plain LDAP (StartTLS too when started with TLS files).
    pub addr: SocketAddr,
    /// LDAP over TLS, when started with TLS files.
    pub ldaps_addr: Option<SocketAddr>,
    proc: Proc,
    dir: TempDir,
}

/// The server side of slapd's TLS: its certificate chain and key.
pub struct SlapdTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub const LDAP_SUFFIX: &str = "dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PASSWORD: &str = "s3cret";

impl Slapd {
    pub fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), None)
    }

    /// On `ip` (an address of the caller's network namespace); with `tls`
    /// it also serves StartTLS on `addr` and LDAPS on `ldaps_addr`.
    pub fn start_on(ip: IpAddr, tls: Option<SlapdTls<'_>>) -> Self {
        let slapd = require("slapd", "slapd");
        let slapadd = require("slapadd", "slapd");
        let dir = TempDir::new("slapd");
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema
pidfile {d}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix \"{LDAP_SUFFIX}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {d}/db
"
        );
        // TLS directives are global: they go before `database`.
        let conf = match &tls {
            None => conf,
            Some(t) => format!(
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n{conf}",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ),
        };
        std::fs::write(dir.path().join("slapd.conf"), conf).unwrap();
        let ldif = format!(
            "dn: {LDAP_SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{LDAP_SUFFIX}
objectClass: organizationalUnit
ou: people

dn: cn=probe,ou=people,{LDAP_SUFFIX}
objectClass: person
cn: probe
sn: Probe
"
        );
        std::fs::write(dir.path().join("data.ldif"), ldif).unwrap();
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(dir.path().join("data.ldif"))
            .output()
            .expect("slapadd runs");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let addr = SocketAddr::new(ip, free_port_on(ip));
        let ldaps_addr = tls.as_ref().map(|_| SocketAddr::new(ip, free_port_on(ip)));
        let mut urls = format!("ldap://{addr}/");
        if let Some(a) = ldaps_addr {
            urls.push_str(&format!(" ldaps://{a}/"));
        }
        let log = dir.path().join("slapd.log");
        // -d keeps slapd in the foreground, so Drop can stop it.
        let child = Command::new(&slapd)
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(dir.path().join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("slapd starts");
        let s = Slapd {
            addr,
            ldaps_addr,
            proc: Proc(Some(child)),
            dir,
        };
        wait_listening(addr, "slapd", &log);
        if let Some(a) = ldaps_addr {
            wait_listening(a, "slapd (ldaps)", &log);
        }
        s
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// Accepts TCP connections and never answers (nor closes them) while it
/// lives: an HTTP server hung after accept.
pub struct Silent {
    pub addr: SocketAddr,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Silent {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Ends when the sender is dropped.
            while let Err(std::sync::mpsc::TryRecvError::Empty) = rx.try_recv() {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Silent { addr, _stop: tx }
    }
}
