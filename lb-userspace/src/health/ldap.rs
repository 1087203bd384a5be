//! LDAP check (seed 000's LDAP servers): a simple bind (anonymous, or
//! `bind_dn`/`bind_password`), then a search of `base` for `filter`
//! returning no attributes: scope base when `base` is empty (the root
//! DSE, readable anonymously on every LDAPv3 server), else subtree with a
//! size limit of 1. Healthy = the bind succeeds and the search returns at
//! least one entry (a server up with an unloaded or empty database is not
//! healthy). A search stopped by the size limit found an entry: healthy.
//! Errors name the step: "ldap bind failed: invalidCredentials (49)".
//! With `tls = "ldaps"` or `"starttls"` the connection is encrypted before
//! the bind (OpenSSL through native-tls), verified against `ca_file` or the
//! system roots and the real server's IP address.

use std::net::SocketAddr;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchOptions};

use crate::config::{LdapCheck, LdapTls};

/// RFC 4511 result codes that matter here.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;

pub async fn check(addr: SocketAddr, cfg: &LdapCheck) -> Result<(), String> {
    let scheme = if cfg.tls == LdapTls::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let url = format!("{scheme}://{addr}");
    let settings = settings(cfg)?;
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .map_err(|e| format!("ldap connect to {url} failed: {e}"))?;
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
            Err(e) => Err(format!("ldap connection failed: {e}")),
            Ok(()) => session.await,
        },
    }
}

/// The TLS settings: StartTLS or not, and the CA to trust.
fn settings(cfg: &LdapCheck) -> Result<LdapConnSettings, String> {
    let mut settings = LdapConnSettings::new().set_starttls(cfg.tls == LdapTls::StartTls);
    if let Some(path) = &cfg.ca_file {
        // Read at every check so a renewed CA file is picked up.
        let pem =
            std::fs::read(path).map_err(|e| format!("ldap CA file {}: {e}", path.display()))?;
        let ca = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("ldap CA file {}: {e}", path.display()))?;
        let connector = native_tls::TlsConnector::builder()
            .add_root_certificate(ca)
            .build()
            .map_err(|e| format!("ldap TLS setup failed: {e}"))?;
        settings = settings.set_connector(connector);
    }
    Ok(settings)
}

async fn session(ldap: &mut Ldap, cfg: &LdapCheck) -> Result<(), String> {
    let (dn, password) = match &cfg.bind {
        Some(b) => (b.dn.as_str(), b.password.expose()),
        None => ("", ""),
    };
    let bound = ldap
        .simple_bind(dn, password)
        .await
        .map_err(|e| format!("ldap bind failed: {e}"))?;
    if bound.rc != SUCCESS {
        return Err(format!("ldap bind failed: {}", describe(&bound)));
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
        .map_err(|e| format!("ldap search failed: {e}"))?;
    let (entries, result) = (found.0, found.1);
    if result.rc != SUCCESS && result.rc != SIZE_LIMIT_EXCEEDED {
        return Err(format!(
            "ldap search of {:?} failed: {}",
            cfg.base,
            describe(&result)
        ));
    }
    if entries.is_empty() {
        return Err(format!(
            "ldap search of {:?} for {} found no entry",
            cfg.base, cfg.filter
        ));
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
