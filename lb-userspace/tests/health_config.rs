//! `health_check` in the config: defaults, the per-real-server merge, and
//! one test per class of mistake, checking the message a user reads from
//! `lb check` (file:line:column, field, what to change).

use lb_tests::config_lines::{self, assert_points_at, at, Spot};
use std::time::Duration;

use lb_userspace::config::{
    self, CheckKind, Config, ExecCheck, HealthCheck, HttpCheck, LdapCheck, LdapTls,
};

const ORIGIN: &str = "lb.toml";

fn parse(text: &str) -> Config {
    config::parse(text, ORIGIN).unwrap_or_else(|e| panic!("config should parse, got: {e}"))
}

#[track_caller]
fn rejected(text: &str, spot: Spot<'_>, field: &str, phrases: &[&str]) {
    let msg = match config::parse(text, ORIGIN) {
        Ok(c) => panic!("config should be rejected, parsed as {c:#?}"),
        Err(e) => e.to_string(),
    };
    assert_points_at(&msg, ORIGIN, text, spot, field, phrases);
}

/// A NAT service with two real servers. `service_hc` is inserted as the
/// body of `[virtual_server.health_check]` when not empty; `rs0` goes at
/// the end of the first real server's table.
fn service(service_hc: &str, rs0: &str) -> String {
    let hc = if service_hc.is_empty() {
        String::new()
    } else {
        format!("[virtual_server.health_check]\n{service_hc}\n")
    };
    format!(
        "[agent]
interfaces = [\"eth0\"]

[[virtual_server]]
name = \"web\"
address = \"192.168.253.120\"
port = 80
protocol = \"tcp\"
forwarding = \"nat\"
{hc}[[virtual_server.real_server]]
address = \"172.16.14.121\"
{rs0}
[[virtual_server.real_server]]
address = \"172.16.14.122\"
"
    )
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn no_health_check_means_always_up() {
    let c = parse(&service("", ""));
    let vs = &c.virtual_servers[0];
    assert_eq!(vs.health_check, HealthCheck::none());
    for rs in &vs.real_servers {
        assert_eq!(rs.health_check.kind, CheckKind::None);
    }
}

#[test]
fn defaults_of_each_kind() {
    let c = parse(&service("kind = \"http\"", ""));
    let hc = &c.virtual_servers[0].real_servers[1].health_check;
    assert_eq!(
        *hc,
        HealthCheck {
            kind: CheckKind::Http(HttpCheck {
                path: "/".into(),
                host: None,
                expect_status: vec![200],
                expect_body: None,
            }),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
        }
    );
    assert_eq!(c.virtual_servers[0].real_servers[1].health_check_port(), 80);

    let c = parse(&service("kind = \"ldap\"", ""));
    assert_eq!(
        c.virtual_servers[0].health_check.kind,
        CheckKind::Ldap(LdapCheck {
            bind: None,
            base: String::new(),
            filter: "(objectClass=*)".into(),
            tls: LdapTls::None,
            ca_file: None,
        })
    );
}

#[test]
fn every_key_is_read() {
    let c = parse(&service(
        "kind = \"ldap\"\ninterval = \"5s\"\ntimeout = \"1.5s\"\nrise = 1\nfall = 5\nport = 1389\n\
         bind_dn = \"cn=admin,dc=example,dc=org\"\nbind_password = \"pw\"\n\
         base = \"dc=example,dc=org\"\nfilter = \"(uid=probe)\"",
        "",
    ));
    let hc = &c.virtual_servers[0].real_servers[0].health_check;
    assert_eq!(
        (hc.interval, hc.timeout, hc.rise, hc.fall, hc.port),
        (ms(5000), ms(1500), 1, 5, Some(1389))
    );
    let CheckKind::Ldap(l) = &hc.kind else {
        panic!("{hc:?}")
    };
    let bind = l.bind.as_ref().unwrap();
    assert_eq!(
        (bind.dn.as_str(), bind.password.expose()),
        ("cn=admin,dc=example,dc=org", "pw")
    );
    assert_eq!(
        (l.base.as_str(), l.filter.as_str()),
        ("dc=example,dc=org", "(uid=probe)")
    );
}

#[test]
fn real_server_override_is_merged_key_by_key() {
    let c = parse(&service(
        "kind = \"http\"\ninterval = \"3s\"\npath = \"/health\"\nhost = \"www.example.org\"",
        "health_check = { timeout = \"200ms\", path = \"/ready\" }",
    ));
    let vs = &c.virtual_servers[0];
    let own = &vs.real_servers[0].health_check;
    let CheckKind::Http(http) = &own.kind else {
        panic!("{own:?}")
    };
    assert_eq!(http.path, "/ready", "its own key wins");
    assert_eq!(
        http.host.as_deref(),
        Some("www.example.org"),
        "inherited key"
    );
    assert_eq!((own.interval, own.timeout), (ms(3000), ms(200)));
    let other = &vs.real_servers[1].health_check;
    assert_eq!(*other, vs.health_check, "no override: the service's check");

    // Another kind inherits only the kind-independent keys.
    let c = parse(&service(
        "kind = \"http\"\ninterval = \"3s\"\nport = 8080\npath = \"/health\"",
        "health_check = { kind = \"exec\", command = [\"/bin/check\", \"{address}\", \"{port}\"] }",
    ));
    let own = &c.virtual_servers[0].real_servers[0].health_check;
    assert_eq!(
        own.kind,
        CheckKind::Exec(ExecCheck {
            command: vec!["/bin/check".into(), "{address}".into(), "{port}".into()]
        })
    );
    assert_eq!((own.interval, own.port), (ms(3000), Some(8080)));
    assert_eq!(
        c.virtual_servers[0].real_servers[0].health_check_port(),
        8080
    );

    // One real server opts out.
    let c = parse(&service(
        "kind = \"tcp\"",
        "health_check = { kind = \"none\" }",
    ));
    assert_eq!(
        c.virtual_servers[0].real_servers[0].health_check,
        HealthCheck::none()
    );
    assert_eq!(
        c.virtual_servers[0].real_servers[1].health_check.kind,
        CheckKind::Tcp
    );
}

#[test]
fn passwords_do_not_leak_into_debug_output() {
    let c = parse(&service(
        "kind = \"ldap\"\nbind_dn = \"cn=admin\"\nbind_password = \"hunter2\"",
        "",
    ));
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn kind_missing_or_unknown() {
    rejected(
        &service("interval = \"1s\"", ""),
        at(
            "[virtual_server.health_check]",
            "[virtual_server.health_check]",
        ),
        "virtual_server[0].health_check.kind",
        &["missing", "kind = \"tcp\""],
    );
    rejected(
        &service("kind = \"icmp\"", ""),
        at("kind = \"icmp\"", "\"icmp\""),
        "virtual_server[0].health_check.kind",
        &["`icmp` is not a health check kind"],
    );
    // A real server's table without kind, under a service without one.
    rejected(
        &service("", "health_check = { rise = 1 }"),
        at("health_check = { rise = 1 }", "{ rise = 1 }"),
        "virtual_server[0].real_server[0].health_check.kind",
        &["missing"],
    );
}

#[test]
fn key_of_another_kind() {
    rejected(
        &service("kind = \"tcp\"\npath = \"/\"", ""),
        at("path = \"/\"", "\"/\""),
        "virtual_server[0].health_check.path",
        &["belongs to kind = \"http\"", "this check is kind = \"tcp\""],
    );
    // The override changes the kind but keeps a key of the old one.
    rejected(
        &service(
            "kind = \"http\"",
            "health_check = { kind = \"tcp\", expect_status = [200] }",
        ),
        at(
            "health_check = { kind = \"tcp\", expect_status = [200] }",
            "[200] }",
        ),
        "virtual_server[0].real_server[0].health_check.expect_status",
        &["belongs to kind = \"http\""],
    );
    rejected(
        &service("kind = \"none\"\ninterval = \"1s\"", ""),
        at("interval = \"1s\"", "\"1s\""),
        "virtual_server[0].health_check.interval",
        &["no effect with kind = \"none\""],
    );
}

#[test]
fn bad_durations_and_timeout_not_below_interval() {
    rejected(
        &service("kind = \"tcp\"\ninterval = \"2\"", ""),
        at("interval = \"2\"", "\"2\""),
        "virtual_server[0].health_check.interval",
        &["`2` is not a duration", "\"500ms\""],
    );
    rejected(
        &service("kind = \"tcp\"\ninterval = \"5ms\"", ""),
        at("interval = \"5ms\"", "\"5ms\""),
        "virtual_server[0].health_check.interval",
        &["5ms is out of range", "10ms to 1h"],
    );
    rejected(
        &service("kind = \"tcp\"\ninterval = \"1s\"\ntimeout = \"1s\"", ""),
        at("timeout = \"1s\"", "\"1s\""),
        "virtual_server[0].health_check.timeout",
        &["timeout 1s is not less than interval 1s"],
    );
    // Default timeout (1s) against a short interval: the interval is what
    // the user wrote.
    rejected(
        &service("kind = \"tcp\"\ninterval = \"500ms\"", ""),
        at("interval = \"500ms\"", "\"500ms\""),
        "virtual_server[0].health_check.interval",
        &["timeout 1s is not less than interval 500ms"],
    );
    // An override that shortens the interval below the inherited timeout
    // is reported at the override.
    rejected(
        &service(
            "kind = \"tcp\"\ninterval = \"2s\"\ntimeout = \"800ms\"",
            "health_check = { interval = \"500ms\" }",
        ),
        at("health_check = { interval = \"500ms\" }", "\"500ms\" }"),
        "virtual_server[0].real_server[0].health_check.interval",
        &["timeout 800ms is not less than interval 500ms"],
    );
    rejected(
        &service("kind = \"tcp\"\ninterval = 2", ""),
        at("interval = 2", "2"),
        "virtual_server[0].health_check.interval",
        &["invalid type: integer `2`", "string"],
    );
}

#[test]
fn counts_ports_and_statuses_out_of_range() {
    rejected(
        &service("kind = \"tcp\"\nrise = 0", ""),
        at("rise = 0", "0"),
        "virtual_server[0].health_check.rise",
        &["0 is out of range: use 1 to 1000"],
    );
    rejected(
        &service("kind = \"tcp\"\nfall = 1001", ""),
        at("fall = 1001", "1001"),
        "virtual_server[0].health_check.fall",
        &["1001 is out of range"],
    );
    rejected(
        &service("kind = \"tcp\"\nport = 70000", ""),
        at("port = 70000", "70000"),
        "virtual_server[0].health_check.port",
        &["port 70000 is out of range"],
    );
    rejected(
        &service("kind = \"http\"\nexpect_status = [200, 99]", ""),
        at("expect_status = [200, 99]", "99]"),
        "virtual_server[0].health_check.expect_status[1]",
        &["99 is not an HTTP status"],
    );
    rejected(
        &service("kind = \"http\"\nexpect_status = []", ""),
        at("expect_status = []", "[]"),
        "virtual_server[0].health_check.expect_status",
        &["empty list"],
    );
    rejected(
        &service("kind = \"http\"\npath = \"health\"", ""),
        at("path = \"health\"", "\"health\""),
        "virtual_server[0].health_check.path",
        &["not an absolute request path"],
    );
}

#[test]
fn ldap_mistakes() {
    rejected(
        &service("kind = \"ldap\"\nbind_dn = \"cn=admin\"", ""),
        at("bind_dn = \"cn=admin\"", "\"cn=admin\""),
        "virtual_server[0].health_check.bind_dn",
        &["without `bind_password`"],
    );
    rejected(
        &service("kind = \"ldap\"\nbind_password = \"x\"", ""),
        at("bind_password = \"x\"", "\"x\""),
        "virtual_server[0].health_check.bind_password",
        &["without `bind_dn`"],
    );
    rejected(
        &service("kind = \"ldap\"\nfilter = \"objectClass=*)\"", ""),
        at("filter = \"objectClass=*)\"", "\"objectClass=*)\""),
        "virtual_server[0].health_check.filter",
        &["is not an LDAP search filter"],
    );
}

/// `tls` and `ca_file` of an LDAP check (issue 10 item 11).
#[test]
fn ldap_tls_mistakes() {
    let ldap = |lines: &str| service(&format!("kind = \"ldap\"\n{lines}"), "");
    rejected(
        &ldap("tls = \"ssl\""),
        at("tls = \"ssl\"", "\"ssl\""),
        "virtual_server[0].health_check.tls",
        &["`ssl` is not an LDAP TLS mode", "\"ldaps\"", "\"starttls\""],
    );
    for lines in [
        "ca_file = \"/etc/ssl/certs/ca.pem\"",
        "tls = \"none\"\nca_file = \"/x\"",
    ] {
        rejected(
            &ldap(lines),
            at("ca_file = ", "\""),
            "virtual_server[0].health_check.ca_file",
            &["never used", "tls = \"ldaps\"", "remove `ca_file`"],
        );
    }
    let dir = lb_tests::tempdir::TempDir::new("ca").unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "just some text\n").unwrap();
    let cases = [
        (
            "/nonexistent/ca.pem",
            vec!["cannot read CA file /nonexistent/ca.pem", "No such file"],
        ),
        ("ca.pem", vec!["relative path", "/etc/lb/"]),
        ("/dev/null", vec!["/dev/null is not a regular file"]),
        (dir.path().to_str().unwrap(), vec!["is not a regular file"]),
        (not_pem.to_str().unwrap(), vec!["holds no PEM certificate"]),
    ];
    for (path, phrases) in cases {
        rejected(
            &ldap(&format!("tls = \"starttls\"\nca_file = \"{path}\"")),
            at("ca_file = ", "\""),
            "virtual_server[0].health_check.ca_file",
            &phrases,
        );
    }
}

#[test]
fn ldap_tls_is_read() {
    let pki = lb_tests::tls::Pki::new("config test CA", "172.16.14.121".parse().unwrap()).unwrap();
    let ca = pki.ca.display().to_string();
    // tls from the service, ca_file from the real server: merged.
    let c = parse(&service(
        "kind = \"ldap\"\ntls = \"ldaps\"\nport = 636",
        &format!("health_check = {{ ca_file = \"{ca}\" }}"),
    ));
    let rs = &c.virtual_servers[0].real_servers;
    let CheckKind::Ldap(l) = &rs[0].health_check.kind else {
        panic!("{:?}", rs[0].health_check)
    };
    assert_eq!(
        (l.tls, l.ca_file.as_deref()),
        (LdapTls::Ldaps, Some(pki.ca.as_path()))
    );
    let CheckKind::Ldap(l) = &rs[1].health_check.kind else {
        panic!("{:?}", rs[1].health_check)
    };
    assert_eq!((l.tls, l.ca_file.as_deref()), (LdapTls::Ldaps, None));
    let c = parse(&service(
        &format!("kind = \"ldap\"\ntls = \"starttls\"\nca_file = \"{ca}\""),
        "",
    ));
    let CheckKind::Ldap(l) = &c.virtual_servers[0].health_check.kind else {
        panic!()
    };
    assert_eq!(
        (l.tls, l.ca_file.as_deref()),
        (LdapTls::StartTls, Some(pki.ca.as_path()))
    );

    // An IPv6 real server cannot be checked over TLS yet: said at its
    // address rather than left down forever.
    let v6 = "[agent]
interfaces = [\"eth0\"]

[[virtual_server]]
name = \"ldap6\"
address = \"2001:db8::10\"
port = 389
protocol = \"tcp\"
forwarding = \"nat\"
health_check = { kind = \"ldap\", tls = \"starttls\" }

[[virtual_server.real_server]]
address = \"2001:db8::21\"
";
    rejected(
        v6,
        at("address = \"2001:db8::21\"", "\"2001:db8::21\""),
        "virtual_server[0].real_server[0].address",
        &["cannot verify an IPv6", "tls = \"none\""],
    );
    assert!(config::parse(&v6.replace("starttls", "none"), ORIGIN).is_ok());
}

#[test]
fn exec_mistakes() {
    rejected(
        &service("kind = \"exec\"", ""),
        at(
            "[virtual_server.health_check]",
            "[virtual_server.health_check]",
        ),
        "virtual_server[0].health_check.command",
        &["missing", "{address}"],
    );
    rejected(
        &service("kind = \"exec\"\ncommand = []", ""),
        at("command = []", "[]"),
        "virtual_server[0].health_check.command",
        &["no program"],
    );
    rejected(
        &service("kind = \"exec\"\ncommand = [\"check\", \"{adress}\"]", ""),
        at("command = [\"check\", \"{adress}\"]", "\"{adress}\"]"),
        "virtual_server[0].health_check.command[1]",
        &["unknown placeholder `{adress}`", "{address} and {port}"],
    );
}

#[test]
fn unknown_key_in_health_check() {
    rejected(
        &service("kind = \"http\"\ndelay_loop = \"2s\"", ""),
        at("delay_loop = \"2s\"", "delay_loop = \"2s\""),
        "virtual_server[0].health_check.delay_loop",
        &["unknown field", "`interval`"],
    );
    rejected(
        &service("", "health_check = { kind = \"tcp\", retry = 3 }"),
        at(
            "health_check = { kind = \"tcp\", retry = 3 }",
            "retry = 3 }",
        ),
        "virtual_server[0].real_server[0].health_check.retry",
        &["unknown field"],
    );
}

fn example(name: &str) -> Config {
    config::load(&config_lines::example(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn examples_check_their_real_servers() {
    let nat = example("seed001-nat.toml");
    for rs in &nat.virtual_servers[0].real_servers {
        assert_eq!(rs.health_check.kind_name(), "http");
        assert_eq!(rs.health_check_port(), 80);
    }
    let dr = example("seed000-dr-ldap.toml");
    let CheckKind::Ldap(l) = &dr.virtual_servers[0].real_servers[0].health_check.kind else {
        panic!("seed 000 checks LDAP")
    };
    assert_eq!(l.base, "dc=example,dc=org");
    assert!(l.bind.is_some());

    let full = example("full.toml");
    let web = &full.virtual_servers[0];
    assert_eq!(web.real_servers[0].health_check, web.health_check);
    assert_eq!(web.real_servers[1].health_check.kind_name(), "exec");
    assert_eq!(web.real_servers[1].health_check_port(), 8080);
    assert_eq!(
        full.virtual_servers[1].real_servers[0].health_check,
        HealthCheck::none(),
        "a service without health_check: always up"
    );
}
