//! LDAP check (seed 000's LDAP servers): a simple bind (anonymous, or
//! `bind_dn`/`bind_password`), then a search of `base` for `filter`
//! returning no attributes: scope base when `base` is empty (the root
//! DSE, readable anonymously on every LDAPv3 server), else subtree with a
//! size limit of 1. Healthy = the bind succeeds and the search returns at
//! least one entry (a server up with an unloaded or empty database is not
//! healthy). A search stopped by the size limit found an entry: healthy.
//! Errors name the step: "ldap bind failed: invalidCredentials (49)".
//!
//! With `tls = "ldaps"` (TLS from the first byte) or `"starttls"` (the
//! StartTLS operation, then TLS) the bind and its password only ever
//! travel encrypted, to a server whose certificate names the real
//! server's address and chains to `ca_file` (see [`super::tls`]). A server
//! that refuses StartTLS, or presents a certificate that does not verify,
//! fails the check before the bind is sent.

use std::net::SocketAddr;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope, SearchOptions};

use super::CheckError;
use crate::config::{LdapCheck, LdapTls};

/// RFC 4511 result codes that matter here.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;

pub async fn check(addr: SocketAddr, cfg: &LdapCheck) -> Result<(), CheckError> {
    let scheme = if cfg.tls == LdapTls::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let url = format!("{scheme}://{addr}");
    let settings = settings(cfg)?;
    let (conn, mut ldap) =
        LdapConnAsync::with_settings(settings, &url)
            .await
            .map_err(|e| match e {
                // The only LDAP operation before the bind is StartTLS: a
                // result here is the server refusing it.
                LdapError::LdapResult { result } if cfg.tls == LdapTls::StartTls => {
                    CheckError::StartTlsRefused {
                        addr,
                        result: describe(&result),
                    }
                }
                e => CheckError::LdapConnect {
                    url: url.clone(),
                    cause: e.to_string(),
                },
            })?;
    // The connection is driven here rather than on a spawned task, so that
    // a check dropped by its timeout drops the connection with it.
    let driver = conn.drive();
    tokio::pin!(driver);
    let session = session(&mut ldap, cfg);
    tokio::pin!(session);
    // The driver also ends cleanly right after our own unbind closes the
    // connection, possibly in the same poll that completed the session:
    // a clean end hands over to the session, which then knows its result
    // (or fails on the closed channel).
    tokio::select! {
        biased;
        r = &mut session => r,
        r = &mut driver => match r {
            Err(e) => Err(CheckError::LdapConnection(e.to_string())),
            Ok(()) => session.await,
        },
    }
}

/// StartTLS or not, and the connector that verifies the server.
fn settings(cfg: &LdapCheck) -> Result<LdapConnSettings, CheckError> {
    let settings = LdapConnSettings::new().set_starttls(cfg.tls == LdapTls::StartTls);
    if cfg.tls == LdapTls::None {
        return Ok(settings);
    }
    let connector = super::tls::connector(cfg.ca_file.as_deref())
        .map_err(|e| CheckError::Tls(e.to_string()))?;
    Ok(settings.set_connector(connector))
}

async fn session(ldap: &mut Ldap, cfg: &LdapCheck) -> Result<(), CheckError> {
    let (dn, password) = match &cfg.bind {
        Some(b) => (b.dn.as_str(), b.password.expose()),
        None => ("", ""),
    };
    let bound = ldap
        .simple_bind(dn, password)
        .await
        .map_err(|e| CheckError::Bind(e.to_string()))?;
    if bound.rc != SUCCESS {
        return Err(CheckError::Bind(describe(&bound)));
    }

    let scope = if cfg.base.is_empty() {
        Scope::Base
    } else {
        Scope::Subtree
    };
    // "1.1": no attributes, only whether entries match.
    let found = ldap
        .with_search_options(SearchOptions::new().sizelimit(1))
        .search(&cfg.base, scope, &cfg.filter, vec!["1.1"])
        .await
        .map_err(|e| CheckError::Search(e.to_string()))?;
    let (entries, result) = (found.0, found.1);
    if result.rc != SUCCESS && result.rc != SIZE_LIMIT_EXCEEDED {
        return Err(CheckError::SearchRefused {
            base: cfg.base.clone(),
            result: describe(&result),
        });
    }
    if entries.is_empty() {
        return Err(CheckError::NoEntry {
            base: cfg.base.clone(),
            filter: cfg.filter.clone(),
        });
    }
    // Politeness only: the check's outcome is known.
    let _ = ldap.unbind().await;
    Ok(())
}

/// "invalidCredentials (49)", plus the server's text when it gave one.
fn describe(r: &LdapResult) -> String {
    let name = match r.rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "result",
    };
    if r.text.is_empty() {
        format!("{name} ({})", r.rc)
    } else {
        format!("{name} ({}): {}", r.rc, r.text)
    }
}
