//! Why a health check failed: [`CheckError`], one variant per way a
//! check fails. Its text is the reason `lb status`, the logs and a
//! health transition show ("ldap bind failed: invalidCredentials (49)"),
//! so the wording is part of lb's interface: change it only on purpose.
//!
//! A library's error is kept as its text, not as the error itself: a
//! result is cloned into every status snapshot and compared in tests, and
//! the errors of std::io, hyper and ldap3 can be neither cloned nor
//! compared.

use std::{net::SocketAddr, process::ExitStatus, time::Duration};

use crate::config::{show_duration, KindName};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No answer within the check's `timeout` (any kind).
    #[error("{check} check timed out after {}", show_duration(*.after))]
    Timeout { check: KindName, after: Duration },

    /// tcp, http: the connection was not established.
    #[error("{check} connect to {addr} failed: {cause}")]
    Connect {
        check: KindName,
        addr: SocketAddr,
        cause: String,
    },

    /// http: the HTTP/1 handshake on the new connection failed.
    #[error("http handshake failed: {0}")]
    HttpHandshake(String),
    /// http: the request could not be made from the config (a path or
    /// Host the HTTP library refuses).
    #[error("http request cannot be built: {0}")]
    HttpRequestBuild(String),
    /// http: sending the request or reading the response head failed.
    #[error("http request failed: {0}")]
    HttpRequest(String),
    /// http: the connection broke before an answer.
    #[error("http connection failed: {0}")]
    HttpConnection(String),
    /// http: an answer with a status not in `expect_status`.
    #[error("http status {got}, expected {}", either(.expected))]
    Status { got: u16, expected: Vec<u16> },
    /// http: the body could not be read (or was over `http::MAX_BODY`).
    #[error("http body read failed: {0}")]
    BodyRead(String),
    /// http: the body lacks `expect_body`.
    #[error("http body does not contain {want:?} ({read} bytes read)")]
    Body { want: String, read: usize },

    /// ldap: no connection (or no TLS session with `tls = "ldaps"`).
    #[error("ldap connect to {url} failed: {cause}")]
    LdapConnect { url: String, cause: String },
    /// ldap, `tls = "starttls"`: the server answered the StartTLS request
    /// with an error (`result` names it).
    #[error("ldap StartTLS refused by {addr}: {result} (is TLS configured on the server?)")]
    StartTlsRefused { addr: SocketAddr, result: String },
    /// ldap: the TLS connector could not be set up (`ca_file` unreadable
    /// since the config was loaded, or the TLS library refused).
    #[error("ldap {0}")]
    Tls(String),
    /// ldap: the connection broke during the check.
    #[error("ldap connection failed: {0}")]
    LdapConnection(String),
    /// ldap: the bind failed or was refused ("invalidCredentials (49)").
    #[error("ldap bind failed: {0}")]
    Bind(String),
    /// ldap: the search could not be sent or answered.
    #[error("ldap search failed: {0}")]
    Search(String),
    /// ldap: the server answered the search with an error result.
    #[error("ldap search of {base:?} failed: {result}")]
    SearchRefused { base: String, result: String },
    /// ldap: the search found nothing (an empty or unloaded database).
    #[error("ldap search of {base:?} for {filter} found no entry")]
    NoEntry { base: String, filter: String },

    /// exec: the command could not be started (not found, not executable).
    #[error("exec {program:?} failed to start: {cause}")]
    Spawn { program: String, cause: String },
    /// exec: waiting for the command failed.
    #[error("exec {program:?} failed: {cause}")]
    Wait { program: String, cause: String },
    /// exec: the command ended unsuccessfully; `said` is the last line it
    /// wrote to stderr (or else stdout), shortened.
    #[error("exec {program:?}: {status}{}", then(.said))]
    Exit {
        program: String,
        status: ExitStatus,
        said: Option<String>,
    },
}

/// ": what it said", or nothing.
fn then(said: &Option<String>) -> String {
    said.as_deref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// "200 or 204".
fn either(statuses: &[u16]) -> String {
    statuses
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// The texts `lb status` showed before the errors had types, kept.
    #[test]
    fn reasons_read_as_before() {
        let addr: SocketAddr = "172.16.14.121:80".parse().unwrap();
        let cases = [
            (
                CheckError::Timeout {
                    check: KindName::Http,
                    after: Duration::from_millis(100),
                },
                "http check timed out after 100ms",
            ),
            (
                CheckError::Connect {
                    check: KindName::Tcp,
                    addr,
                    cause: "Connection refused (os error 111)".into(),
                },
                "tcp connect to 172.16.14.121:80 failed: Connection refused (os error 111)",
            ),
            (
                CheckError::Status {
                    got: 503,
                    expected: vec![200, 204],
                },
                "http status 503, expected 200 or 204",
            ),
            (
                CheckError::Body {
                    want: "ok".into(),
                    read: 12,
                },
                "http body does not contain \"ok\" (12 bytes read)",
            ),
            (
                CheckError::NoEntry {
                    base: "dc=example,dc=org".into(),
                    filter: "(uid=probe)".into(),
                },
                "ldap search of \"dc=example,dc=org\" for (uid=probe) found no entry",
            ),
            (
                CheckError::Exit {
                    program: "check".into(),
                    status: ExitStatus::from_raw(1 << 8),
                    said: Some("curl: (7) Failed to connect".into()),
                },
                "exec \"check\": exit status: 1: curl: (7) Failed to connect",
            ),
            (
                CheckError::Exit {
                    program: "check".into(),
                    status: ExitStatus::from_raw(1 << 8),
                    said: None,
                },
                "exec \"check\": exit status: 1",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
