//! TLS trust for LDAP checks (`tls = "ldaps" | "starttls"`): reading the
//! `ca_file` and building the connector that verifies a real server.
//!
//! # What is verified
//! The check connects to the real server's address, never to a name, so
//! that address is what the certificate must prove: OpenSSL (through
//! native-tls) checks the chain up to a trusted CA and that the
//! certificate's subjectAltName holds `IP:<real server address>`. A
//! certificate that only names the host (`DNS:ldap1.example.org`), or
//! another server's address, fails the check: accepting any name the CA
//! signed would let any host holding such a certificate collect the
//! bind password. Verification cannot be turned off.
//!
//! With `ca_file`, its certificates are the only trust anchors (the
//! system roots are not consulted: a private directory's CA is the usual
//! case, and a public CA has no business vouching for it); without it,
//! the system roots are. The file is read at every check, so a renewed
//! CA is picked up without a reload.

use std::{io::Read, path::Path};

use native_tls::{Certificate, TlsConnector};

/// A CA file larger than this is refused (a full system bundle is about
/// 200 KiB).
pub const CA_FILE_MAX: u64 = 1 << 20;

/// Why a `ca_file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read CA file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {path} is not a regular file")]
    NotAFile { path: String },
    #[error("CA file {path} is larger than {} KiB: it should hold PEM CA certificates only", CA_FILE_MAX / 1024)]
    TooLarge { path: String },
    #[error("CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----): {why}")]
    NoCertificate { path: String, why: String },
}

/// The PEM certificates in `path` (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<Certificate>, CaFileError> {
    let shown = path.display().to_string();
    let read = |source| CaFileError::Read {
        path: shown.clone(),
        source,
    };
    // Opened first and checked through the handle: a FIFO or a device is
    // refused before anything is read from it.
    let file = std::fs::File::open(path).map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(CaFileError::NotAFile { path: shown });
    }
    if meta.len() > CA_FILE_MAX {
        return Err(CaFileError::TooLarge { path: shown });
    }
    let mut pem = Vec::new();
    file.take(CA_FILE_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(read)?;
    let none = |why: String| CaFileError::NoCertificate {
        path: shown.clone(),
        why,
    };
    let certs = Certificate::stack_from_pem(&pem).map_err(|e| none(e.to_string()))?;
    if certs.is_empty() {
        return Err(none("the file is empty or has no certificate block".into()));
    }
    Ok(certs)
}

/// Why a check's TLS connector could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    #[error("TLS setup failed: {0}")]
    Build(#[from] native_tls::Error),
}

/// The connector a check uses: `ca_file`'s certificates as the only
/// roots, or the system's; hostname (address) verification on.
pub fn connector(ca_file: Option<&Path>) -> Result<TlsConnector, ConnectorError> {
    let mut builder = TlsConnector::builder();
    if let Some(path) = ca_file {
        builder.disable_built_in_roots(true);
        for ca in read_ca_file(path)? {
            builder.add_root_certificate(ca);
        }
    }
    Ok(builder.build()?)
}
