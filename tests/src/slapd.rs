//! slapd as an LDAP real server for the health-check tests: an mdb
//! database loaded with slapadd from a config written into a private
//! temporary directory, optionally serving StartTLS and LDAPS; stopped (and
//! the directory removed) on drop. It listens in the network namespace of
//! the thread that starts it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::ChildGuard;
use crate::require::require;
use crate::sockets::{free_port_on, wait_listening};
use crate::tempdir::TempDir;

pub const LDAP_SUFFIX: &str = "dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PASSWORD: &str = "s3cret";

/// The server side of slapd's TLS: its certificate chain and key.
#[derive(Clone, Copy, Debug)]
pub struct SlapdTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A running slapd: database `dc=example,dc=org` with root DN
/// `cn=admin,dc=example,dc=org` / [`ROOT_PASSWORD`] and one person entry.
#[derive(Debug)]
pub struct Slapd {
    /// Plain LDAP (StartTLS too when started with TLS files).
    pub addr: SocketAddr,
    /// LDAP over TLS, when started with TLS files.
    pub ldaps_addr: Option<SocketAddr>,
    // Field order: stop the process before removing its directory.
    process: Option<ChildGuard>,
    _dir: TempDir,
}

impl Slapd {
    /// On 127.0.0.1, plain LDAP only.
    pub fn start() -> Result<Slapd> {
        Slapd::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), None)
    }

    /// On `ip` (an address of the caller's network namespace); with `tls`
    /// it also serves StartTLS on `addr` and LDAPS on `ldaps_addr`.
    pub fn start_on(ip: IpAddr, tls: Option<SlapdTls<'_>>) -> Result<Slapd> {
        let slapd = require("slapd", "slapd");
        let dir = TempDir::new("slapd")?;
        std::fs::create_dir_all(dir.join("db"))?;
        std::fs::write(dir.join("slapd.conf"), config(dir.path(), tls))?;
        load_database(&dir)?;

        let addr = SocketAddr::new(ip, free_port_on(ip)?);
        let ldaps_addr = match tls {
            Some(_) => Some(SocketAddr::new(ip, free_port_on(ip)?)),
            None => None,
        };
        let mut urls = format!("ldap://{addr}/");
        if let Some(a) = ldaps_addr {
            urls.push_str(&format!(" ldaps://{a}/"));
        }
        let log = dir.join("slapd.log");
        // -d keeps slapd in the foreground, so the guard can stop it.
        let mut cmd = Command::new(&slapd);
        cmd.args(["-d", "0", "-h", &urls, "-f"])
            .arg(dir.join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let process = ChildGuard::spawn("slapd", &mut cmd)?;
        let s = Slapd {
            addr,
            ldaps_addr,
            process: Some(process),
            _dir: dir,
        };
        wait_listening(addr, "slapd", &log)?;
        if let Some(a) = ldaps_addr {
            wait_listening(a, "slapd (ldaps)", &log)?;
        }
        Ok(s)
    }

    /// Stops it (SIGTERM, SIGKILL after 5 s), like `systemctl stop slapd`.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(libc::SIGTERM, Duration::from_secs(5));
        }
    }
}

fn config(dir: &Path, tls: Option<SlapdTls<'_>>) -> String {
    let d = dir.display();
    // TLS directives are global: they go before `database`.
    let tls = match tls {
        None => String::new(),
        Some(t) => format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        ),
    };
    format!(
        "{tls}include /etc/ldap/schema/core.schema
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
    )
}

/// The suffix, `ou=people` and `cn=probe` under it, with slapadd.
fn load_database(dir: &TempDir) -> Result<()> {
    let slapadd = require("slapadd", "slapd");
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
    std::fs::write(dir.join("data.ldif"), ldif)?;
    let out = Command::new(&slapadd)
        .arg("-f")
        .arg(dir.join("slapd.conf"))
        .arg("-l")
        .arg(dir.join("data.ldif"))
        .output()
        .context("running slapadd")?;
    if !out.status.success() {
        bail!("slapadd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
