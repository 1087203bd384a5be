//! LDAP checks over TLS (issue 10 item 11) against a real slapd with a
//! certificate made by the test: `tls = "ldaps"` and `"starttls"` succeed
//! with the right CA and fail (the real server goes down) with a wrong CA,
//! with a certificate for another address, and without a CA the system
//! trusts; StartTLS against a slapd without TLS fails with the reason.
//!
//! Each test runs in a network namespace of its own (created by the test,
//! gone with it): slapd listens on 192.0.2.10 there, the address its
//! certificate names. Needs root (namespaces), slapd, openssl and iproute2;
//! a missing one is a panic that names it.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use lb_tests::{
    lab::inside,
    netns::{unique_prefix, Netns},
    require::require_root,
    slapd::{Slapd, SlapdTls, LDAP_SUFFIX, ROOT_DN, ROOT_PASSWORD},
    sockets::Silent,
    tls::Pki,
};
use lb_userspace::{
    config::{CheckKind, HealthCheck, LdapBind, LdapCheck, LdapTls, Secret},
    health::{check_once, Health, Monitor, Target, TargetKey},
};

/// The real server's address (TEST-NET-1, on `lo` of the test's own
/// namespace only).
const SERVER: &str = "192.0.2.10";
/// A second address there, for a server whose certificate names SERVER.
const IMPOSTOR: &str = "192.0.2.11";

/// Runs `f` on a thread inside a new network namespace holding only `lo`
/// (up) with the `addresses` on it; what `f` starts is born there, and the
/// namespace goes, with anything left in it, when `f` returns.
fn in_private_netns<T: Send>(addresses: &[&str], f: impl FnOnce() -> T + Send) -> T {
    require_root("creates a network namespace");
    let ns = Netns::new(format!("{}tls", unique_prefix())).unwrap();
    for a in addresses {
        ns.ip(&["addr", "add", a, "dev", "lo"]).unwrap();
    }
    inside(&ns, f)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn ldap_tls(tls: LdapTls, ca_file: Option<&Path>) -> CheckKind {
    CheckKind::Ldap(LdapCheck {
        bind: Some(LdapBind {
            dn: ROOT_DN.into(),
            password: Secret::new(ROOT_PASSWORD),
        }),
        base: LDAP_SUFFIX.into(),
        filter: "(objectClass=person)".into(),
        tls,
        ca_file: ca_file.map(Path::to_path_buf),
    })
}

fn target(name: &str, addr: SocketAddr, kind: CheckKind, interval_ms: u64) -> Target {
    Target {
        key: TargetKey {
            service: name.into(),
            address: addr.ip(),
            port: addr.port(),
        },
        check: HealthCheck {
            kind,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(interval_ms * 9 / 10),
            rise: 1,
            fall: 1,
            port: None,
        }
        .into(),
    }
}

async fn once(addr: SocketAddr, kind: CheckKind) -> Result<(), String> {
    check_once(&target("ldap", addr, kind, 3000))
        .await
        .outcome_text()
}

#[track_caller]
fn assert_fails(r: Result<(), String>, phrases: &[&str]) {
    let e = r.expect_err("the check should fail");
    for p in phrases {
        assert!(e.contains(p), "{e:?} should contain {p:?}");
    }
}

#[test]
fn ldaps_and_starttls_verify_the_real_server() {
    in_private_netns(
        &[&format!("{SERVER}/32"), &format!("{IMPOSTOR}/32")],
        || {
            let pki = Pki::new("lb test CA", ip(SERVER)).unwrap();
            let other = Pki::new("some other CA", ip(SERVER)).unwrap();
            let server_tls = || SlapdTls {
                ca: &pki.ca,
                cert: &pki.cert,
                key: &pki.key,
            };
            let slapd = Slapd::start_on(ip(SERVER), Some(server_tls())).unwrap();
            // Right CA, but its certificate names SERVER, not this address.
            let impostor = Slapd::start_on(ip(IMPOSTOR), Some(server_tls())).unwrap();
            let (plain, ldaps) = (slapd.addr, slapd.ldaps_addr.unwrap());
            let ca = Some(pki.ca.as_path());
            block_on(async {
                // The right CA: both ways work, and plain LDAP still does.
                assert_eq!(once(ldaps, ldap_tls(LdapTls::Ldaps, ca)).await, Ok(()));
                assert_eq!(once(plain, ldap_tls(LdapTls::StartTls, ca)).await, Ok(()));
                assert_eq!(once(plain, ldap_tls(LdapTls::None, None)).await, Ok(()));

                // Another CA, or the system roots (which do not hold the
                // test's CA): the certificate does not verify.
                let wrong = Some(other.ca.as_path());
                let verify = ["certificate verify failed"];
                assert_fails(once(ldaps, ldap_tls(LdapTls::Ldaps, wrong)).await, &verify);
                assert_fails(
                    once(plain, ldap_tls(LdapTls::StartTls, wrong)).await,
                    &verify,
                );
                assert_fails(once(ldaps, ldap_tls(LdapTls::Ldaps, None)).await, &verify);
                // A certificate from the right CA for another address.
                assert_fails(
                    once(impostor.ldaps_addr.unwrap(), ldap_tls(LdapTls::Ldaps, ca)).await,
                    &["certificate verify failed", "IP address mismatch"],
                );
                assert_fails(
                    once(impostor.addr, ldap_tls(LdapTls::StartTls, ca)).await,
                    &["certificate verify failed", "IP address mismatch"],
                );
                // LDAPS to the plain port: a TLS error, not a hang.
                assert_fails(
                    once(plain, ldap_tls(LdapTls::Ldaps, ca)).await,
                    &["ldap connect"],
                );

                // Through the monitor: the real server checked with the wrong
                // CA goes down (leaves the Maglev table) with the reason; the
                // same server checked with the right one stays up.
                // Intervals of 1 s: a TLS handshake on this loaded 2-core
                // machine took more than 300 ms at times.
                let good = target("good", ldaps, ldap_tls(LdapTls::Ldaps, ca), 1000);
                let bad = target("wrong-ca", ldaps, ldap_tls(LdapTls::Ldaps, wrong), 1000);
                let (good_key, bad_key) = (good.key.clone(), bad.key.clone());
                let (mut mon, mut rx) = Monitor::new();
                mon.update([good, bad]);
                let mut seen = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
                // Until the good one is up and the bad one down (each decided
                // by its first result, a slow first handshake aside).
                loop {
                    let up = mon.status(&good_key).unwrap().state == Health::Up;
                    let down = mon.status(&bad_key).unwrap().state == Health::Down;
                    if up && down {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(t)) => seen.push((t.key.service, t.to, t.reason)),
                        _ => panic!("good not up or wrong-ca not down within 8 s: {seen:?}"),
                    }
                }
                let st = mon.status(&bad_key).unwrap();
                assert_eq!(st.state, Health::Down, "{seen:?}");
                assert!(!st.state.serves());
                let why = st.last.unwrap().outcome_text().unwrap_err();
                assert!(why.contains("certificate verify failed"), "{why}");
            });
        },
    );
}

#[test]
fn starttls_against_a_server_without_tls_fails_with_the_reason() {
    in_private_netns(&[&format!("{SERVER}/32")], || {
        let pki = Pki::new("lb test CA", ip(SERVER)).unwrap();
        let slapd = Slapd::start_on(ip(SERVER), None).unwrap();
        let ca = Some(pki.ca.as_path());
        block_on(async {
            let e = once(slapd.addr, ldap_tls(LdapTls::StartTls, ca))
                .await
                .unwrap_err();
            println!("starttls to a server without TLS: {e}");
            assert!(
                e.starts_with("ldap StartTLS refused by 192.0.2.10:")
                    && e.contains("protocolError (2)"),
                "{e}"
            );
            // Plain LDAP to the same server works: the failure is TLS's.
            assert_eq!(
                once(slapd.addr, ldap_tls(LdapTls::None, None)).await,
                Ok(())
            );
        });
    });
}

/// Client-side TCP connections to `port` still established (the test's
/// own namespace holds no others): a connection the check dropped is in
/// FIN_WAIT2 (the silent server never closes its side).
fn established_to(port: u16) -> usize {
    // thread-self: /proc/self/net is the main thread's namespace.
    let tcp = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
    let port_of = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
    let rows: Vec<Vec<&str>> = tcp
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // The listener (state 0A) shows this is the right namespace's table.
    assert!(
        rows.iter().any(|f| port_of(f[1]) == port && f[3] == "0A"),
        "no listener on {port} in {tcp}"
    );
    rows.iter()
        .filter(|f| port_of(f[2]) == port && f[3] == "01")
        .count()
}

#[test]
fn a_server_that_never_answers_starttls_times_out_and_leaves_no_socket() {
    in_private_netns(&[], || {
        let pki = Pki::new("lb test CA", ip(SERVER)).unwrap();
        let silent = Silent::start().unwrap();
        block_on(async {
            let mut t = target(
                "hung",
                silent.addr,
                ldap_tls(LdapTls::StartTls, Some(&pki.ca)),
                300,
            );
            std::sync::Arc::make_mut(&mut t.check).timeout = Duration::from_millis(100);
            // ldap3 sends StartTLS from a task of its own: it must end with
            // the check, not hold the connection until the server closes.
            // While a check waits for the answer, its connection counts.
            let mut long = t.clone();
            std::sync::Arc::make_mut(&mut long.check).timeout = Duration::from_secs(5);
            let in_flight = tokio::spawn(async move { check_once(&long).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(established_to(silent.addr.port()), 1);
            in_flight.abort();
            for _ in 0..20 {
                let r = check_once(&t).await;
                assert_eq!(
                    r.outcome_text(),
                    Err("ldap check timed out after 100ms".into())
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let open = established_to(silent.addr.port());
            assert_eq!(open, 0, "connections left open by 20 timed-out checks");
        });
    });
}
