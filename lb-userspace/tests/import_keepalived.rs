//! `lb import keepalived` on the keepalived configs the seeds describe and
//! on every config of the VRRP captures (copied into tests/data so the
//! tests do not depend on ../shared): the output passes `lb check`'s
//! parser, and every statement line of the input is either converted or
//! listed with its reason.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use lb_tests::tempdir::TempDir;
use lb_userspace::{
    config::{self, Config, Forwarding, Protocol},
    import::{
        self,
        lexer::{lex, Token},
        Import, NoteKind,
    },
};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keepalived")
        .join(rel)
}

fn convert(rel: &str) -> Import {
    import::keepalived(&data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The output must pass `lb check` (its host-independent part).
fn checked(rel: &str, import: &Import) -> Config {
    config::parse(&import.toml, rel).unwrap_or_else(|e| {
        panic!(
            "{rel}: the converted config does not pass lb check: {e}\n{}",
            import.toml
        )
    })
}

/// Every line of every file read that holds a statement is either
/// converted or inside a note's lines: nothing dropped silently.
fn assert_every_line_accounted(rel: &str, import: &Import) {
    let mut accounted = BTreeSet::new();
    for at in &import.converted {
        accounted.insert((at.file, at.line));
    }
    for note in &import.notes {
        for line in note.at.line..=note.last_line {
            accounted.insert((note.at.file, line));
        }
    }
    for (file, path) in import.files.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: BTreeSet<u32> = lex(&text)
            .unwrap()
            .into_iter()
            .filter(|l| matches!(l.token, Token::Word { .. }))
            .map(|l| l.line)
            .collect();
        for line in lines {
            assert!(
                accounted.contains(&(file, line)),
                "{rel}: {}:{line} `{}` was neither converted nor listed\nnotes:\n{}",
                path.display(),
                text.lines().nth(line as usize - 1).unwrap_or("").trim(),
                notes(import)
            );
        }
    }
}

fn notes(import: &Import) -> String {
    import
        .notes
        .iter()
        .map(|n| import.render_note(n))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A note of `kind` on `line` of the file given whose text contains `needle`.
fn has_note(import: &Import, line: u32, kind: NoteKind, needle: &str) -> bool {
    import.notes.iter().any(|n| {
        n.at.file == 0
            && n.at.line == line
            && n.kind == kind
            && import.render_note(n).contains(needle)
    })
}

#[test]
fn seed001_three_apache_servers_behind_nat() {
    let import = convert("seed001-nat.conf");
    assert_every_line_accounted("seed001", &import);
    let config = checked("seed001", &import);
    let [vs] = config.virtual_servers.as_slice() else {
        panic!("one service expected:\n{}", import.toml)
    };
    assert_eq!(vs.address.to_string(), "192.168.253.120");
    assert_eq!(
        (vs.port, vs.protocol, vs.forwarding),
        (80, Protocol::Tcp, Forwarding::Nat)
    );
    let reals: Vec<String> = vs
        .real_servers
        .iter()
        .map(|r| format!("{}:{} w{}", r.address, r.port, r.weight))
        .collect();
    assert_eq!(
        reals,
        [
            "172.16.14.121:80 w1",
            "172.16.14.122:80 w1",
            "172.16.14.123:80 w1"
        ]
    );
    // HTTP_GET with keepalived's timing: delay_loop 6, connect_timeout 3,
    // nb_get_retry 3 = down after 4 failures, up after 1 success.
    let check = &vs.real_servers[0].health_check;
    assert_eq!(check.kind_name(), "http");
    assert_eq!(check.interval.as_secs(), 6);
    assert_eq!(check.timeout.as_secs(), 3);
    assert_eq!((check.rise, check.fall), (1, 4));
    // One shared check table, not three copies.
    assert_eq!(
        import.toml.matches("[virtual_server.health_check]").count(),
        1
    );
    // The interfaces are a placeholder the user is told to edit.
    assert_eq!(config.agent.interfaces, ["eth0"]);
    assert!(import
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::Edit && n.reason.contains("placeholder")));
    assert!(has_note(&import, 11, NoteKind::Changed, "Maglev"));
    assert!(has_note(
        &import,
        24,
        NoteKind::Changed,
        "delay_before_retry"
    ));
    // The TOML says where each key came from.
    assert!(
        import.toml.contains("port = 80  # line 9"),
        "{}",
        import.toml
    );
}

#[test]
fn seed000_lvs_dr_for_ldap_on_two_raspberry_pis() {
    let import = convert("seed000-dr-ldap.conf");
    assert_every_line_accounted("seed000", &import);
    assert!(
        has_note(&import, 27, NoteKind::NotConverted, "persistence"),
        "{}",
        notes(&import)
    );
    let config = checked("seed000", &import);
    let [vs] = config.virtual_servers.as_slice() else {
        panic!("one service expected:\n{}", import.toml)
    };
    assert_eq!(vs.address.to_string(), "192.168.1.182");
    assert_eq!((vs.port, vs.forwarding), (389, Forwarding::Dr));
    assert_eq!(vs.real_servers.len(), 2);
    let check = &vs.real_servers[1].health_check;
    assert_eq!(check.kind_name(), "tcp");
    assert_eq!(check.port, Some(389));
    assert_eq!((check.interval.as_secs(), check.timeout.as_secs()), (10, 3));
    // The VIP moves between the two Pis with VRRP, on eth0, which is also
    // where XDP attaches.
    assert_eq!(config.agent.interfaces, ["eth0"]);
    let [vi] = config.vrrp_instances.as_slice() else {
        panic!("one VRRP instance expected:\n{}", import.toml)
    };
    assert_eq!((vi.virtual_router_id, vi.priority), (82, 150));
    assert_eq!(vi.auth_pass.as_deref(), Some("ldapha"));
    assert_eq!(vi.virtual_addresses[0].to_string(), "192.168.1.182/24");
}

#[test]
fn seed003_master_backup_pair() {
    for (rel, priority) in [("seed003-master.conf", 150), ("seed003-backup.conf", 100)] {
        let import = convert(rel);
        assert_every_line_accounted(rel, &import);
        let config = checked(rel, &import);
        assert!(config.virtual_servers.is_empty());
        let [vi] = config.vrrp_instances.as_slice() else {
            panic!("{rel}: one VRRP instance expected:\n{}", import.toml)
        };
        assert_eq!(vi.name, "VI_1");
        assert_eq!(vi.interface, "eth0");
        assert_eq!((vi.virtual_router_id, vi.priority), (51, priority));
        assert_eq!(vi.advert_interval.as_secs(), 1);
        assert_eq!(vi.auth_pass.as_deref(), Some("1111"));
        assert_eq!(vi.virtual_addresses[0].address.to_string(), "192.168.1.10");
        // The mail settings are listed, not dropped.
        assert!(
            has_note(&import, 3, NoteKind::Ignored, "mail"),
            "{}",
            notes(&import)
        );
        // VRRP only: no XDP, no [agent] to edit.
        assert!(!import.toml.contains("[agent]"), "{}", import.toml);
    }
}

#[test]
fn seed003_more_than_twenty_addresses_and_scripts() {
    let import = convert("seed003-many-vips.conf");
    assert_every_line_accounted("seed003-many-vips", &import);
    let config = checked("seed003-many-vips", &import);
    let vi = &config.vrrp_instances[0];
    assert_eq!(vi.virtual_addresses.len(), 20);
    assert_eq!(vi.virtual_addresses_excluded.len(), 3);
    let script = vi.notify_master.as_ref().expect("notify_master");
    assert_eq!(script.argv, ["/etc/keepalived/hoge.sh"]);
    assert!(vi.notify_backup.is_some());
}

/// Every config the VRRP captures were made with converts and checks.
#[test]
fn every_vrrp_capture_config() {
    let root = data("vrrp");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 13, "the copied capture configs are missing");
    let mut converted = 0;
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for file in files {
            let rel = file.strip_prefix(data("")).unwrap().display().to_string();
            let import = convert(&rel);
            assert_every_line_accounted(&rel, &import);
            let config = checked(&rel, &import);
            assert!(!config.vrrp_instances.is_empty(), "{rel}: no instance");
            // global_defs is listed line by line.
            assert!(
                has_note(&import, 2, NoteKind::Ignored, "router_id"),
                "{rel}: {}",
                notes(&import)
            );
            capture_specifics(&rel, &import, &config);
            converted += 1;
        }
    }
    assert_eq!(converted, 25);
}

fn capture_specifics(rel: &str, import: &Import, config: &Config) {
    let vi = &config.vrrp_instances[0];
    let dir = rel.split('/').nth(1).unwrap();
    match dir {
        "vrrpv2-ah" => {
            assert_eq!(vi.auth_pass, None, "{rel}: AH is not PASS");
            assert!(import
                .notes
                .iter()
                .any(|n| n.kind == NoteKind::NotConverted && n.reason.contains("AH")));
        }
        "vrrpv2-pass" | "failover-v2" => assert_eq!(vi.auth_pass.as_deref(), Some("1111")),
        "vrrpv2-vmac" => assert!(import
            .notes
            .iter()
            .any(|n| n.what == "use_vmac" && n.kind == NoteKind::NotConverted)),
        "vrrpv2-unicast" | "vrrpv3-unicast" => {
            assert_eq!(vi.unicast_peers.len(), 1);
            assert!(vi.unicast_source.is_some());
        }
        "vrrpv3-ipv4-100ms" => assert_eq!(vi.advert_interval.as_millis(), 100),
        "vrrpv3-ipv6" => assert!(vi.is_ipv6()),
        "vrrp-multi-vip" => {
            assert_eq!(config.vrrp_instances.len(), 2);
            assert_eq!(config.vrrp_instances[1].advert_interval.as_millis(), 2500);
            assert_eq!(config.vrrp_instances[1].virtual_addresses.len(), 3);
        }
        _ => {}
    }
    if rel.ends_with("lb1.conf") && dir != "vrrp-multi-vip" && dir != "vrrpv2-ah" {
        let notify = vi.notify_master.as_ref().expect("notify_master");
        assert_eq!(
            notify.argv,
            ["/tmp/vrrp-capture/scripts/notify.sh", "lb1", "MASTER"]
        );
        assert!(vi.notify_stop.is_some());
    }
}

/// Everything lb import knows, including an include, in one file: what is
/// converted is in the output, what is not is listed with its reason.
#[test]
fn every_construct_is_converted_or_listed() {
    let import = convert("everything/keepalived.conf");
    assert_every_line_accounted("everything", &import);
    let config = checked("everything", &import);
    assert_eq!(import.files.len(), 2, "the include was read");
    let names: Vec<&str> = config
        .virtual_servers
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "[2001:db8::80]:80/tcp",
            "10.0.0.100:80/tcp",
            "10.0.0.100:53/udp",
            "10.0.0.100:8080/tcp",
            // virtual_server group DNS: one service per member address.
            "10.0.2.1:53/udp",
            "10.0.2.2:53/udp",
            "10.0.2.3:53/udp"
        ]
    );
    let web = &config.virtual_servers[1];
    assert_eq!(web.sorry_server.unwrap().to_string(), "172.16.0.99:8080");
    let kinds: Vec<&str> = web
        .real_servers
        .iter()
        .map(|r| r.health_check.kind_name())
        .collect();
    assert_eq!(kinds, ["http", "tcp", "exec", "exec", "none"]);
    assert_eq!(web.real_servers[1].weight, 65535);
    // UDP DR: the real server's other port cannot be kept.
    assert_eq!(config.virtual_servers[2].real_servers[0].port, 53);
    for (line, kind, needle) in [
        (8, NoteKind::NotConverted, "IPVS"),
        (12, NoteKind::NotConverted, "no file matches"),
        (14, NoteKind::NotConverted, "lb tracks no scripts"),
        (23, NoteKind::NotConverted, "VI_GONE"),
        (40, NoteKind::Changed, "first 8"),
        (44, NoteKind::Edit, "eth9"),
        (58, NoteKind::NotConverted, "MAC"),
        (63, NoteKind::NotConverted, "unknown"),
        (71, NoteKind::Ignored, "version 3"),
        (85, NoteKind::NotConverted, "persistence"),
        (99, NoteKind::NotConverted, "digest"),
        (101, NoteKind::NotConverted, "one URL"),
        (104, NoteKind::Edit, "not below the interval"),
        (106, NoteKind::NotConverted, "one check per real server"),
        (112, NoteKind::Changed, "TLS"),
        (122, NoteKind::NotConverted, "exit status"),
        (127, NoteKind::Changed, "/bin/sh"),
        (131, NoteKind::NotConverted, "SMTP_CHECK"),
        (135, NoteKind::NotConverted, "listed twice"),
        (143, NoteKind::Changed, "VIP's port"),
        (148, NoteKind::NotConverted, "TUN"),
        (155, NoteKind::NotConverted, "firewall mark"),
        (160, NoteKind::NotConverted, "no virtual_server_group WEB"),
        (166, NoteKind::NotConverted, "NAT replies"),
        (172, NoteKind::NotConverted, "@host"),
        (178, NoteKind::NotConverted, "firewall mark"),
        (189, NoteKind::Ignored, "no virtual_server uses"),
    ] {
        assert!(
            has_note(&import, line, kind, needle),
            "no {kind:?} note on line {line} with `{needle}`:\n{}",
            notes(&import)
        );
    }
    // A parameter definition is converted (it is used where it is named).
    assert!(import
        .converted
        .iter()
        .any(|at| at.file == 0 && at.line == 171));
    // A block that was not converted is listed with all its lines.
    let tun = import.notes.iter().find(|n| n.at.line == 148).unwrap();
    assert_eq!(tun.last_line, 153);
    // VRRP: the sync group keeps the instances that exist.
    let [group] = config.vrrp_sync_groups.as_slice() else {
        panic!("one sync group:\n{}", import.toml)
    };
    assert_eq!(group.instances, ["VI_CLIENT", "VI_SERVERS"]);
    let client = config
        .vrrp_instances
        .iter()
        .find(|i| i.name == "VI_CLIENT")
        .unwrap();
    assert!(!client.preempt);
    assert_eq!(client.advert_interval.as_secs(), 2, "v2 rounds 1.5 s up");
    assert_eq!(client.auth_pass.as_deref(), Some("averylon"));
    assert_eq!(client.garp_repeat, 4);
    assert_eq!(client.garp_delay.as_secs(), 2, "from global_defs");
    assert_eq!(
        client.notify_master.as_ref().unwrap().argv,
        ["/etc/lb/notify.sh", "to master"]
    );
    let v6 = config
        .vrrp_instances
        .iter()
        .find(|i| i.name == "VI_V6")
        .unwrap();
    assert_eq!(v6.version.number(), 3);
    assert_eq!(config.agent.interfaces, ["eth0", "eth1"]);
}

/// The command itself: TOML on stdout, notes on stderr, exit 0.
#[test]
fn the_lb_command_prints_toml_and_lists_notes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(["import", "keepalived"])
        .arg(data("seed001-nat.conf"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("[[virtual_server]]"));
    assert!(
        stderr.contains("seed001-nat.conf:11: lb_algo rr: converted, differs"),
        "{stderr}"
    );
    assert!(stderr.contains("EDIT THE OUTPUT"), "{stderr}");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(["import", "keepalived", "/nonexistent/keepalived.conf"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// What keepalived tolerates and lb's validation refuses is adjusted with
/// a note, so the output still passes `lb check`.
#[test]
fn vrrp_that_lb_would_refuse_is_adjusted_and_listed() {
    let dir = TempDir::new("import-edges").unwrap();
    let many: String = (0..260)
        .map(|i| format!("        10.1.{}.{}/16\n", i / 250, i % 250 + 1))
        .collect();
    let text = format!(
        "vrrp_instance A {{
    state MASTER
    nopreempt
    preempt_delay 10
    interface eth0
    virtual_router_id 1
    unicast_src_ip 10.0.0.1
    virtual_ipaddress {{
        10.0.0.10/24
        fd00::10/64
        10.0.0.10/24
    }}
    notify_master relative.sh
}}
vrrp_instance B {{
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {{
        10.0.0.11
    }}
}}
vrrp_instance C {{
    interface eth0
    virtual_router_id 2
    virtual_ipaddress {{
        10.0.0.10/24
        10.0.0.12/24
    }}
}}
vrrp_instance D {{
    interface eth1
    virtual_router_id 3
}}
vrrp_instance E {{
    interface eth2
    virtual_router_id 4
    garp_master_repeat 500
    virtual_ipaddress {{
{many}    }}
}}
vrrp_sync_group G1 {{
    group {{
        A C
    }}
}}
vrrp_sync_group G2 {{
    group {{
        C
        D
    }}
}}
"
    );
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, &text).unwrap();
    let import = import::keepalived(&path).unwrap();
    assert_every_line_accounted("edges", &import);
    let config = checked("edges", &import);
    let names: Vec<&str> = config
        .vrrp_instances
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["A", "C", "E"], "{}", notes(&import));
    let a = &config.vrrp_instances[0];
    assert!(!a.preempt);
    assert_eq!(a.initial_state, config::VrrpInitialState::Backup);
    assert_eq!(a.unicast_source, None);
    assert_eq!(a.notify_master, None);
    assert_eq!(a.virtual_addresses.len(), 1);
    assert_eq!(a.virtual_addresses_excluded[0].to_string(), "fd00::10/64");
    let c = &config.vrrp_instances[1];
    assert_eq!(c.virtual_addresses[0].to_string(), "10.0.0.12/24");
    let e = &config.vrrp_instances[2];
    assert_eq!(e.virtual_addresses.len(), 255);
    assert_eq!(e.virtual_addresses_excluded.len(), 5);
    assert_eq!(e.garp_repeat, 100);
    let groups: Vec<(&str, Vec<String>)> = config
        .vrrp_sync_groups
        .iter()
        .map(|g| (g.name.as_str(), g.instances.clone()))
        .collect();
    assert_eq!(groups, [("G1", vec!["A".to_owned(), "C".to_owned()])]);
    for (line, kind, needle) in [
        (2, NoteKind::Changed, "backup used"),
        (4, NoteKind::Ignored, "nopreempt"),
        (7, NoteKind::Ignored, "multicast"),
        (10, NoteKind::Changed, "excluded"),
        (11, NoteKind::NotConverted, "twice"),
        (13, NoteKind::NotConverted, "absolute"),
        (15, NoteKind::NotConverted, "already an earlier instance's"),
        (26, NoteKind::NotConverted, "instance A"),
        (30, NoteKind::NotConverted, "no virtual_ipaddress"),
        (37, NoteKind::Changed, "1-100"),
        (298, NoteKind::Changed, "past the 255"),
        (306, NoteKind::NotConverted, "no converted vrrp_instance"),
        (308, NoteKind::NotConverted, "already in a group"),
    ] {
        assert!(
            has_note(&import, line, kind, needle),
            "no {kind:?} note on line {line} with `{needle}`:\n{}",
            notes(&import)
        );
    }
}

/// Seed 001 converted, with the interfaces edited as lb import says,
/// serves what examples/seed001-nat.toml (the config the seed 001
/// end-to-end test and demo run) serves: same service, real servers,
/// weights and check; only names and check timing (keepalived's) differ.
#[test]
fn seed001_converted_matches_the_seed001_example() {
    let import = convert("seed001-nat.conf");
    let edited = import.toml.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\", \"eth1\"]",
    );
    let converted = config::parse(&edited, "converted").unwrap();
    let example_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed001-nat.toml");
    let example = config::load(&example_path).unwrap();
    assert_eq!(converted.agent, example.agent);
    let shape = |c: &Config| {
        c.virtual_servers
            .iter()
            .map(|vs| {
                let reals: Vec<String> = vs
                    .real_servers
                    .iter()
                    .map(|r| {
                        let http = match &r.health_check.kind {
                            config::CheckKind::Http(h) => {
                                format!("{} {:?}", h.path, h.expect_status)
                            }
                            other => format!("{other:?}"),
                        };
                        format!("{}:{} w{} {http}", r.address, r.port, r.weight)
                    })
                    .collect();
                format!(
                    "{}:{} {:?} {:?} {:?}",
                    vs.address, vs.port, vs.protocol, vs.forwarding, reals
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&converted), shape(&example));
}

/// A file cut anywhere (an editor's half-written state) gives a message
/// or a config, never a panic; and whatever it gives passes `lb check`.
#[test]
fn a_file_cut_at_any_line_never_panics() {
    let text = std::fs::read_to_string(data("everything/keepalived.conf")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let dir = TempDir::new("import-cut").unwrap();
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::copy(
        data("everything/conf.d/ipv6.conf"),
        dir.join("conf.d/ipv6.conf"),
    )
    .unwrap();
    let path = dir.join("keepalived.conf");
    let (mut ok, mut refused) = (0, 0);
    for cut in 0..=lines.len() {
        std::fs::write(&path, lines[..cut].join("\n")).unwrap();
        match import::keepalived(&path) {
            Ok(import) if import.notes.iter().any(|n| n.what == "(the whole file)") => {
                assert!(!import.toml.contains("[["), "cut at {cut}: {}", import.toml);
                refused += 1;
            }
            Ok(import) => {
                checked(&format!("cut at {cut}"), &import);
                assert_every_line_accounted(&format!("cut at {cut}"), &import);
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("not closed"), "cut at {cut}: {e}");
                refused += 1;
            }
        }
    }
    assert!(ok > 10 && refused > 10, "{ok} converted, {refused} refused");
}
