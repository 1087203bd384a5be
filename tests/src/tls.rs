//! A private PKI made with the openssl CLI for the LDAP-over-TLS tests: a
//! CA and one server certificate it signed, naming the server by its IP
//! address (what lb's LDAP check verifies).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::require::require;
use crate::tempdir::TempDir;

/// The CA's and server's PEM files, in a temporary directory removed on
/// drop.
#[derive(Debug)]
pub struct Pki {
    pub ca: PathBuf,
    /// The server certificate, subjectAltName `IP:<server ip>` only.
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: TempDir,
}

/// P-256 keys, unencrypted: quick to make, and what a test server needs.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let bin = require("openssl", "openssl");
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Pki {
    /// A CA named `ca_name` and a certificate for `server_ip` signed by it.
    pub fn new(ca_name: &str, server_ip: IpAddr) -> Result<Pki> {
        let dir = TempDir::new("pki")?;
        let d = dir.path();
        let ca_subject = format!("/CN={ca_name}");
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(NEW_EC_KEY);
        ca_args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &ca_subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca_args)?;
        let mut csr_args = vec!["req"];
        csr_args.extend(NEW_EC_KEY);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=ldap real server",
        ]);
        openssl(d, &csr_args)?;
        std::fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName=IP:{server_ip}\n\
                 extendedKeyUsage=serverAuth\n\
                 basicConstraints=critical,CA:FALSE\n"
            ),
        )?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )?;
        Ok(Pki {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
