//! A private PKI made with the openssl CLI for the LDAP TLS tests, and a
//! private network namespace to run a test in.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use super::{require, TempDir};

/// A CA and one server certificate it signed, as PEM files in a
/// temporary directory (removed on `Drop`).
pub struct Pki {
    pub ca: PathBuf,
    /// The server certificate, subjectAltName `IP:<server ip>` only.
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let bin = require("openssl", "openssl");
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA named `ca_name` and a certificate for `server_ip` signed by it.
    pub fn new(ca_name: &str, server_ip: IpAddr) -> Self {
        let dir = TempDir::new("pki");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca_subject = format!("/CN={ca_name}");
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
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
        openssl(d, &ca_args);
        let mut csr_args = vec!["req"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=ldap real server",
        ]);
        openssl(d, &csr_args);
        std::fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName=IP:{server_ip}\n\
                 extendedKeyUsage=serverAuth\n\
                 basicConstraints=critical,CA:FALSE\n"
            ),
        )
        .unwrap();
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
        );
        Pki {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs `f` on a thread of its own inside a new, empty network namespace
/// (only `lo`, brought up, plus `extra` addresses on it), and returns its
/// result; a panic in `f` is re-raised here with its message. Processes
/// `f` starts inherit the namespace; it disappears with them and the
/// thread, so nothing is left behind and nothing is configured outside.
pub fn in_private_netns<T: Send>(extra: &[&str], f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // SAFETY: unshare(2) on the calling thread only; no memory
            // effects. CLONE_NEWNET is allowed in a multi-threaded process.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) failed: {} (this test needs root or CAP_SYS_ADMIN)",
                std::io::Error::last_os_error()
            );
            let ip = require("ip", "iproute2");
            let run = |args: &[&str]| {
                let out = Command::new(&ip).args(args).output().expect("ip runs");
                assert!(
                    out.status.success(),
                    "ip {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(&["link", "set", "lo", "up"]);
            for a in extra {
                run(&["addr", "add", a, "dev", "lo"]);
            }
            f()
        });
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}
