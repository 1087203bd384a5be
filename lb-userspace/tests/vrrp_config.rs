//! `[[vrrp_instance]]` and `[[vrrp_sync_group]]` as a user meets them
//! through `lb check`: the shipped examples parse to what they say, the
//! defaults are keepalived's, and each class of mistake is reported at the
//! line that holds it (found here by its content, not by a line number)
//! with what to change.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use lb_tests::config_lines::{after, assert_points_at, at, example, Spot};

use lb_userspace::config::{
    self, Config, Script, VirtualAddress, VrrpInitialState, VrrpInstance, VrrpVersion,
};

const ORIGIN: &str = "lb.toml";

/// A VRRP-only instance; `extra` goes at the end of its table.
fn instance(extra: &str) -> String {
    format!(
        "[[vrrp_instance]]
name = \"VI_1\"
interface = \"eth0\"
virtual_router_id = 51
virtual_addresses = [\"192.168.1.10/24\"]
{extra}
"
    )
}

fn parse(text: &str) -> Config {
    config::parse(text, ORIGIN).unwrap_or_else(|e| panic!("config should parse, got: {e}\n{text}"))
}

fn only(text: &str) -> VrrpInstance {
    let mut c = parse(text);
    assert_eq!(c.vrrp_instances.len(), 1);
    c.vrrp_instances.remove(0)
}

/// Asserts `text` is rejected with a one-line message that points at
/// `spot`, names `field` and contains every phrase.
#[track_caller]
fn rejected(text: &str, spot: Spot<'_>, field: &str, phrases: &[&str]) -> String {
    let msg = match config::parse(text, ORIGIN) {
        Ok(c) => panic!("config should be rejected, parsed as {c:#?}"),
        Err(e) => e.to_string(),
    };
    assert_points_at(&msg, ORIGIN, text, spot, field, phrases);
    msg
}

fn v4(a: &str, prefix_len: u8) -> VirtualAddress {
    VirtualAddress {
        address: a.parse().unwrap(),
        prefix_len,
    }
}

#[test]
fn every_example_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // `lb check` = parse + the host check; the host check depends
            // on this machine's interfaces, so it is tested on its own.
            config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 7, "only {seen} examples found in {}", dir.display());
}

#[test]
fn seed003_pair_keeps_keepalived_numbers() {
    let master = config::load(&example("seed003-vrrp-master.toml")).unwrap();
    let backup = config::load(&example("seed003-vrrp-backup.toml")).unwrap();
    // VRRP alone: no services, no [agent], no XDP interfaces.
    for c in [&master, &backup] {
        assert!(c.virtual_servers.is_empty());
        assert!(c.agent.interfaces.is_empty());
        assert_eq!(c.agent.control_socket, PathBuf::from("/run/lb/lb.sock"));
    }
    let (m, b) = (&master.vrrp_instances[0], &backup.vrrp_instances[0]);
    assert_eq!((m.name.as_str(), m.interface.as_str()), ("VI_1", "eth0"));
    assert_eq!((m.virtual_router_id, b.virtual_router_id), (51, 51));
    assert_eq!((m.priority, b.priority), (150, 100));
    assert_eq!(
        (m.initial_state, b.initial_state),
        (VrrpInitialState::Master, VrrpInitialState::Backup)
    );
    assert_eq!(m.advert_interval, Duration::from_secs(1));
    assert_eq!(m.version, VrrpVersion::V2);
    assert_eq!(m.auth_pass.as_deref(), Some("1111"));
    assert_eq!(m.virtual_addresses[0], v4("192.168.1.10", 24));
    assert_eq!(m.virtual_addresses.len(), 20);
    assert_eq!(m.virtual_addresses_excluded.len(), 3);
    assert_eq!(m.all_addresses().count(), 23);
    assert_eq!(
        m.notify_master.as_ref().map(|s| s.argv.clone()),
        Some(vec!["/etc/lb/notify.sh".to_string(), "master".to_string()])
    );
    assert_eq!(
        b.notify_backup.as_ref().map(|s| s.argv.clone()),
        Some(vec!["/etc/lb/notify.sh".to_string(), "backup".to_string()])
    );
    // The two nodes differ only in priority, state and notify lines.
    assert_eq!(m.virtual_addresses, b.virtual_addresses);
    assert_eq!(m.virtual_addresses_excluded, b.virtual_addresses_excluded);
}

#[test]
fn ha_nat_moves_the_vip_and_the_gateway_together() {
    let c = config::load(&example("ha-nat.toml")).unwrap();
    assert_eq!(c.virtual_servers.len(), 1);
    let names: Vec<&str> = c.vrrp_instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["VI_CLIENT", "VI_SERVERS"]);
    assert_eq!(
        c.vrrp_instances[0].virtual_addresses,
        [v4("192.168.253.120", 24)]
    );
    assert_eq!(
        c.vrrp_instances[1].virtual_addresses,
        [v4("172.16.14.120", 24)]
    );
    assert_eq!(c.vrrp_instances[0].track_virtual_servers, ["web"]);
    assert_eq!(c.vrrp_sync_groups.len(), 1);
    assert_eq!(c.vrrp_sync_groups[0].instances, ["VI_CLIENT", "VI_SERVERS"]);

    let dr = config::load(&example("ha-dr.toml")).unwrap();
    let i = &dr.vrrp_instances[0];
    assert_eq!(i.version, VrrpVersion::V3);
    assert_eq!(i.advert_interval, Duration::from_millis(100));
    assert!(i.fence.is_some());
}

#[test]
fn defaults_are_keepalived_s() {
    let i = only(&instance(""));
    assert_eq!(i.priority, 100);
    assert_eq!(i.version, VrrpVersion::V2);
    assert_eq!(i.advert_interval, Duration::from_secs(1));
    assert_eq!(i.initial_state, VrrpInitialState::Backup);
    assert!(i.preempt);
    assert_eq!(i.preempt_delay, Duration::ZERO);
    assert_eq!(i.auth_pass, None);
    assert!(i.unicast_peers.is_empty() && i.unicast_source.is_none());
    assert!(i.notify.is_none() && i.fence.is_none());
    assert_eq!(i.notify_timeout, Duration::from_secs(10));
    assert_eq!(i.garp_repeat, 5);
    assert_eq!(i.garp_delay, Duration::from_secs(5));
    assert!(i.track_virtual_servers.is_empty());
    assert_eq!(i.track_weight, config::DEFAULT_TRACK_WEIGHT);
    // A bare address is a host address, as in keepalived.
    let i = only(&instance("").replace("192.168.1.10/24", "192.168.1.10"));
    assert_eq!(i.virtual_addresses, [v4("192.168.1.10", 32)]);
}

#[test]
fn every_key_is_read() {
    let text = "[[virtual_server]]
name = \"web\"
address = \"192.168.1.10\"
port = 80
protocol = \"tcp\"
forwarding = \"dr\"
  [[virtual_server.real_server]]
  address = \"192.168.1.20\"

[agent]
interfaces = [\"eth0\"]

[[vrrp_instance]]
name = \"VI_6\"
interface = \"eth0\"
virtual_router_id = 7
priority = 255
advert_interval = \"250ms\"
version = 3
state = \"master\"
preempt = true
preempt_delay = \"30s\"
virtual_addresses = [\"fd00::10/64\", \"fd00::11\"]
virtual_addresses_excluded = [\"192.168.1.10/24\"]
unicast_peers = [\"fd00::2\"]
unicast_source = \"fd00::1\"
notify_master = '\"/opt/my scripts/n.sh\" master'
notify_backup = \"/etc/lb/n.sh backup\"
notify_fault = \"/etc/lb/n.sh fault\"
notify_stop = \"/etc/lb/n.sh stop\"
notify = \"/etc/lb/n.sh\"
fence = \"/etc/lb/fence.sh --hard\"
notify_timeout = \"30s\"
track_virtual_servers = [\"web\"]
track_weight = 50
garp_repeat = 3
garp_delay = \"0s\"

[[vrrp_sync_group]]
name = \"G1\"
instances = [\"VI_6\"]
notify_master = \"/etc/lb/g.sh master\"
notify_backup = \"/etc/lb/g.sh backup\"
notify_fault = \"/etc/lb/g.sh fault\"
notify = \"/etc/lb/g.sh\"
";
    let c = parse(text);
    let i = &c.vrrp_instances[0];
    assert_eq!((i.virtual_router_id, i.priority), (7, 255));
    assert_eq!(i.version, VrrpVersion::V3);
    assert_eq!(i.advert_interval, Duration::from_millis(250));
    assert_eq!(i.preempt_delay, Duration::from_secs(30));
    assert!(i.is_ipv6());
    assert_eq!(i.virtual_addresses[1].prefix_len, 128);
    assert_eq!(i.virtual_addresses_excluded, [v4("192.168.1.10", 24)]);
    assert_eq!(i.unicast_peers, ["fd00::2".parse::<IpAddr>().unwrap()]);
    assert_eq!(i.unicast_source, Some("fd00::1".parse().unwrap()));
    assert_eq!(
        i.notify_master,
        Some(Script {
            line: "\"/opt/my scripts/n.sh\" master".into(),
            argv: vec!["/opt/my scripts/n.sh".into(), "master".into()],
        })
    );
    assert_eq!(
        i.fence.as_ref().unwrap().argv,
        ["/etc/lb/fence.sh", "--hard"]
    );
    for s in [&i.notify_backup, &i.notify_fault, &i.notify_stop, &i.notify] {
        assert_eq!(s.as_ref().unwrap().program(), "/etc/lb/n.sh");
    }
    assert_eq!(i.notify_timeout, Duration::from_secs(30));
    assert_eq!((i.track_weight, i.garp_repeat), (50, 3));
    assert_eq!(i.garp_delay, Duration::ZERO);
    let g = &c.vrrp_sync_groups[0];
    assert_eq!(g.name, "G1");
    assert_eq!(g.notify.as_ref().unwrap().argv, ["/etc/lb/g.sh"]);
    assert!(g.notify_master.is_some() && g.notify_backup.is_some() && g.notify_fault.is_some());
}

#[test]
fn vrrp_only_config_needs_no_agent_but_services_still_do() {
    let c = parse(&instance(""));
    assert!(c.agent.interfaces.is_empty());
    let c = parse(&format!(
        "[agent]\ncontrol_socket = \"/run/lb/ha.sock\"\n{}",
        instance("")
    ));
    assert_eq!(c.agent.control_socket, PathBuf::from("/run/lb/ha.sock"));
    parse(&format!("[agent]\ninterfaces = []\n{}", instance("")));

    // With a virtual server the old rule and message stand.
    let text = format!(
        "{}[[virtual_server]]
name = \"web\"
address = \"192.168.1.10\"
port = 80
protocol = \"tcp\"
forwarding = \"dr\"
",
        instance("")
    );
    let msg = config::parse(&text, ORIGIN).unwrap_err().to_string();
    assert!(
        msg.starts_with("lb.toml:1:1: field `agent.interfaces`: no [agent] table"),
        "{msg}"
    );
}

#[test]
fn required_keys_point_at_the_table() {
    for (key, example) in [
        ("name", "name = \"VI_1\""),
        ("interface", "interface = \"eth0\""),
        ("virtual_router_id", "virtual_router_id = 51"),
        (
            "virtual_addresses",
            "virtual_addresses = [\"192.168.1.10/24\"]",
        ),
    ] {
        let text = format!("# a VRRP node\n\n{}", instance(""))
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .collect::<Vec<_>>()
            .join("\n");
        rejected(
            &text,
            at("[[vrrp_instance]]", "[[vrrp_instance]]"),
            &format!("vrrp_instance[0].{key}"),
            &["missing", example],
        );
    }
}

#[test]
fn names_and_interfaces() {
    let text = format!("{}{}", instance(""), instance(""));
    rejected(
        &text.replacen("virtual_router_id = 51", "virtual_router_id = 52", 1),
        // The second instance's name: after the first one's VRID.
        after("virtual_router_id = 52", "name = \"VI_1\"", "\"VI_1\""),
        "vrrp_instance[1].name",
        &["already used by vrrp_instance[0]", "its own name"],
    );

    rejected(
        &instance("").replace("\"VI_1\"", "\"VI 1\""),
        at("name =", "\"VI 1\""),
        "vrrp_instance[0].name",
        &["without spaces"],
    );
    rejected(
        &instance("").replace("\"eth0\"", "\"\""),
        at("interface =", "\"\""),
        "vrrp_instance[0].interface",
        &["is empty", "name an interface"],
    );
    rejected(
        &instance("").replace("\"eth0\"", "\"a-very-long-ifname\""),
        at("interface =", "\"a-very"),
        "vrrp_instance[0].interface",
        &["too long"],
    );
}

#[test]
fn numbers_out_of_range() {
    for (from, to, field, phrase) in [
        (
            "virtual_router_id = 51",
            "virtual_router_id = 0",
            "virtual_router_id",
            "use 1 to 255",
        ),
        (
            "virtual_router_id = 51",
            "virtual_router_id = 256",
            "virtual_router_id",
            "use 1 to 255",
        ),
    ] {
        let text = instance("").replace(from, to);
        let value = to.rsplit(' ').next().unwrap();
        rejected(
            &text,
            at(to, value),
            &format!("vrrp_instance[0].{field}"),
            &[phrase],
        );
    }
    for (line, field, phrases) in [
        (
            "priority = 0",
            "priority",
            &["use 1 to 255", "giving up"][..],
        ),
        ("priority = 256", "priority", &["use 1 to 255"]),
        ("version = 4", "version", &["use 2", "or 3"]),
        ("track_weight = 255", "track_weight", &["use 0 to 254"]),
        ("garp_repeat = 0", "garp_repeat", &["use 1 to 100"]),
    ] {
        let extra = if field == "track_weight" {
            format!("{line}\ntrack_virtual_servers = [\"web\"]")
        } else {
            line.to_string()
        };
        let text = format!(
            "[agent]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"web\"\n\
             address = \"10.0.0.1\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"dr\"\n{}",
            instance(&extra)
        );
        let value = line.rsplit(' ').next().unwrap();
        rejected(
            &text,
            at(line, value),
            &format!("vrrp_instance[0].{field}"),
            phrases,
        );
    }
}

#[test]
fn advert_interval_fits_the_version() {
    for (extra, value, phrases) in [
        (
            "advert_interval = \"500ms\"",
            "\"500ms\"",
            &["version 2", "whole seconds", "version = 3"][..],
        ),
        (
            "advert_interval = \"1500ms\"",
            "\"1500ms\"",
            &["whole seconds"],
        ),
        (
            "advert_interval = \"256s\"",
            "\"256s\"",
            &["\"1s\" to \"255s\""],
        ),
        (
            "advert_interval = \"15ms\"\nversion = 3",
            "\"15ms\"",
            &["multiple of 10ms"],
        ),
        (
            "advert_interval = \"41s\"\nversion = 3",
            "\"41s\"",
            &["40.95 s"],
        ),
        (
            "advert_interval = \"1\"",
            "\"1\"",
            &["not a duration", "\"1s\""],
        ),
        // keepalived's `advert_int 1`, written as a number.
        ("advert_interval = 1", "1", &["expected a string", "\"1s\""]),
    ] {
        rejected(
            &instance(extra),
            at("advert_interval", value),
            "vrrp_instance[0].advert_interval",
            phrases,
        );
    }
    let i = only(&instance("version = 3\nadvert_interval = \"40950ms\""));
    assert_eq!(i.advert_interval, Duration::from_millis(40_950));
    assert_eq!(
        only(&instance("advert_interval = \"255s\"")).advert_interval,
        Duration::from_secs(255)
    );
}

#[test]
fn auth_pass_rules_and_secrecy() {
    let secret = "s3cr3t-too-long";
    let msg = rejected(
        &instance(&format!("auth_pass = \"{secret}\"")),
        at("auth_pass", "\""),
        "vrrp_instance[0].auth_pass",
        &["15 bytes", "8", "keepalived silently", "shorten it"],
    );
    assert!(!msg.contains(secret), "the password leaked: {msg}");

    let msg = rejected(
        &instance("auth_pass = \"hunter2\"\nversion = 3"),
        at("auth_pass", "\""),
        "vrrp_instance[0].auth_pass",
        &["version 3 has no authentication", "version = 2"],
    );
    assert!(!msg.contains("hunter2"), "the password leaked: {msg}");

    rejected(
        &instance("auth_pass = \"\""),
        at("auth_pass", "\""),
        "vrrp_instance[0].auth_pass",
        &["empty password", "remove `auth_pass`"],
    );
    // A number where the password's string belongs: serde would quote it.
    let msg = rejected(
        &instance("auth_pass = 98765"),
        at("auth_pass", "98765"),
        "vrrp_instance[0].auth_pass",
        &["expected a string in quotes", "secret"],
    );
    assert!(!msg.contains("98765"), "the password leaked: {msg}");

    assert_eq!(
        only(&instance("auth_pass = \"12345678\""))
            .auth_pass
            .as_deref(),
        Some("12345678")
    );
}

#[test]
fn state_and_preemption() {
    rejected(
        &instance("state = \"MASTER\""),
        at("state", "\"MASTER\""),
        "vrrp_instance[0].state",
        &["\"backup\"", "\"master\"", "lower case"],
    );
    rejected(
        &instance("state = \"master\"\npreempt = false"),
        at("preempt =", "false"),
        "vrrp_instance[0].preempt",
        &["set state = \"backup\""],
    );
    rejected(
        &instance("preempt = false\npreempt_delay = \"10s\""),
        at("preempt_delay", "\"10s\""),
        "vrrp_instance[0].preempt_delay",
        &["no effect with preempt = false"],
    );
    rejected(
        &instance("preempt_delay = \"1001s\""),
        at("preempt_delay", "\"1001s\""),
        "vrrp_instance[0].preempt_delay",
        &["use 0ms to 1000s"],
    );
    let i = only(&instance("preempt = false"));
    assert!(!i.preempt);
}

#[test]
fn virtual_addresses_are_checked_one_by_one() {
    let with = |list: &str| instance("").replace("[\"192.168.1.10/24\"]", list);
    rejected(
        &with("[]"),
        at("virtual_addresses", "[]"),
        "vrrp_instance[0].virtual_addresses",
        &["no addresses"],
    );
    for (list, value, field, phrases) in [
        (
            "[\"192.168.1.10/24\", \"192.168.1.300\"]",
            "\"192.168.1.300\"",
            "virtual_addresses[1]",
            &["not an address", "192.168.1.10/24"][..],
        ),
        (
            "[\"192.168.1.10/33\"]",
            "\"192.168.1.10/33\"",
            "virtual_addresses[0]",
            &["`/33`", "use 1 to 32"],
        ),
        (
            "[\"224.0.0.18\"]",
            "\"224.0.0.18\"",
            "virtual_addresses[0]",
            &["multicast"],
        ),
        (
            "[\"fd00::10/64\"]",
            "\"fd00::10/64\"",
            "virtual_addresses[0]",
            &["IPv6", "version = 3"],
        ),
        (
            "[\"192.168.1.10/24\", \"192.168.1.10/32\"]",
            "\"192.168.1.10/32\"",
            "virtual_addresses[1]",
            &["already listed", "once"],
        ),
    ] {
        rejected(
            &with(list),
            at("virtual_addresses", value),
            &format!("vrrp_instance[0].{field}"),
            phrases,
        );
    }
    rejected(
        &instance("version = 3")
            .replace("[\"192.168.1.10/24\"]", "[\"192.168.1.10\", \"fd00::1\"]"),
        at("virtual_addresses", "\"fd00::1\""),
        "vrrp_instance[0].virtual_addresses[1]",
        &[
            "is IPv6 but virtual_addresses[0] is IPv4",
            "one instance per family",
        ],
    );
    rejected(
        &instance("virtual_addresses_excluded = [\"192.168.1.10\"]"),
        at("virtual_addresses_excluded", "\"192.168.1.10\""),
        "vrrp_instance[0].virtual_addresses_excluded[0]",
        &["already listed as vrrp_instance[0].virtual_addresses[0]"],
    );
}

#[test]
fn more_than_255_advertised_addresses() {
    let list: Vec<String> = (0..256)
        .map(|n| format!("\"10.0.{}.{}\"", n / 250, n % 250 + 1))
        .collect();
    let text = instance("").replace(
        "[\"192.168.1.10/24\"]",
        &format!("[\n{}\n]", list.join(",\n")),
    );
    rejected(
        &text,
        at(&list[255], &list[255]),
        "vrrp_instance[0].virtual_addresses[255]",
        &["at most 255", "virtual_addresses_excluded"],
    );
    // 255 advertised and the rest excluded is seed 003's shape, past
    // keepalived's 20.
    let text = instance(&format!("virtual_addresses_excluded = [{}]", list[255])).replace(
        "[\"192.168.1.10/24\"]",
        &format!("[{}]", list[..255].join(", ")),
    );
    let i = only(&text);
    assert_eq!(
        (
            i.virtual_addresses.len(),
            i.virtual_addresses_excluded.len()
        ),
        (255, 1)
    );
}

#[test]
fn instances_do_not_share_routers_or_addresses() {
    let second = |vrid: u32, iface: &str, addr: &str| {
        format!(
            "[[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"{iface}\"\n\
             virtual_router_id = {vrid}\nvirtual_addresses = [\"{addr}\"]\n"
        )
    };
    let text = format!("{}{}", instance(""), second(51, "eth0", "192.168.1.20/24"));
    rejected(
        &text,
        after("name = \"VI_2\"", "virtual_router_id = 51", "51"),
        "vrrp_instance[1].virtual_router_id",
        &["virtual router 51 (IPv4) on `eth0` is already vrrp_instance[0] (`VI_1`)"],
    );
    let text = format!("{}{}", instance(""), second(52, "eth0", "192.168.1.10/32"));
    rejected(
        &text,
        at(
            "virtual_addresses = [\"192.168.1.10/32\"]",
            "\"192.168.1.10/32\"",
        ),
        "vrrp_instance[1].virtual_addresses[0]",
        &[
            "already an address of vrrp_instance[0] (`VI_1`) on `eth0`",
            "keep it in one",
        ],
    );
    // Another interface, or another family with the same VRID: allowed.
    parse(&format!(
        "{}{}",
        instance(""),
        second(51, "eth1", "192.168.2.10/24")
    ));
    let v6 = second(51, "eth0", "fd00::10/64")
        .replace("virtual_router_id", "version = 3\nvirtual_router_id");
    parse(&format!("{}{v6}", instance("")));
}

#[test]
fn unicast_peers_and_source() {
    rejected(
        &instance("unicast_peers = [\"10.0.0.2\", \"fd00::2\"]"),
        at("unicast_peers", "\"fd00::2\""),
        "vrrp_instance[0].unicast_peers[1]",
        &["is IPv6 but the instance's virtual addresses are IPv4"],
    );
    rejected(
        &instance("unicast_peers = [\"10.0.0.2\", \"10.0.0.2\"]"),
        at("unicast_peers", "\"10.0.0.2\"]"),
        "vrrp_instance[0].unicast_peers[1]",
        &["listed twice"],
    );
    rejected(
        &instance("unicast_source = \"10.0.0.1\""),
        at("unicast_source", "\"10.0.0.1\""),
        "vrrp_instance[0].unicast_source",
        &["no effect without `unicast_peers`"],
    );
    rejected(
        &instance("unicast_peers = [\"peer-b\"]"),
        at("unicast_peers", "\"peer-b\""),
        "vrrp_instance[0].unicast_peers[0]",
        &["not an IP address"],
    );
}

#[test]
fn scripts_are_split_like_keepalived_and_need_an_absolute_program() {
    for (line, value, phrases) in [
        (
            "notify_master = \"notify.sh master\"",
            "\"notify.sh",
            &[
                "`notify.sh` is not an absolute path",
                "\"/etc/lb/notify.sh\"",
            ][..],
        ),
        (
            "notify = '\"/etc/lb/my script.sh'",
            "'\"/etc",
            &["double quote is not closed"],
        ),
        ("fence = \"  \"", "\"  \"", &["no program"]),
    ] {
        let key = line.split(' ').next().unwrap();
        rejected(
            &instance(line),
            at(line, value),
            &format!("vrrp_instance[0].{key}"),
            phrases,
        );
    }
    let i = only(&instance("notify = '/etc/lb/n.sh \"two words\" x'"));
    assert_eq!(i.notify.unwrap().argv, ["/etc/lb/n.sh", "two words", "x"]);
}

#[test]
fn tracking_names_existing_virtual_servers() {
    rejected(
        &instance("track_virtual_servers = [\"web\"]"),
        at("track_virtual_servers", "\"web\""),
        "vrrp_instance[0].track_virtual_servers[0]",
        &["no virtual server is named `web`", "no virtual servers"],
    );
    let services = "[agent]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"web\"\n\
                    address = \"10.0.0.1\"\nport = 80\nprotocol = \"tcp\"\nforwarding = \"dr\"\n";
    rejected(
        &format!(
            "{services}{}",
            instance("track_virtual_servers = [\"wbe\"]")
        ),
        at("track_virtual_servers", "\"wbe\""),
        "vrrp_instance[0].track_virtual_servers[0]",
        &["use one of \"web\""],
    );
    rejected(
        &instance("track_weight = 10"),
        at("track_weight", "10"),
        "vrrp_instance[0].track_weight",
        &["no effect without `track_virtual_servers`"],
    );
    let i = only(&format!(
        "{services}{}",
        instance("track_virtual_servers = [\"web\"]\ntrack_weight = 0")
    ));
    assert_eq!((i.track_virtual_servers.len(), i.track_weight), (1, 0));
}

#[test]
fn durations_of_announcements_and_scripts() {
    for (line, value, key, phrase) in [
        (
            "garp_delay = \"2h\"",
            "\"2h\"",
            "garp_delay",
            "use 0ms to 1h",
        ),
        (
            "notify_timeout = \"0s\"",
            "\"0s\"",
            "notify_timeout",
            "use 1s to 5m",
        ),
        (
            "notify_timeout = \"301s\"",
            "\"301s\"",
            "notify_timeout",
            "use 1s to 5m",
        ),
        (
            "notify_timeout = \"soon\"",
            "\"soon\"",
            "notify_timeout",
            "not a duration",
        ),
    ] {
        rejected(
            &instance(line),
            at(line, value),
            &format!("vrrp_instance[0].{key}"),
            &[phrase],
        );
    }
}

#[test]
fn sync_groups() {
    let two = format!(
        "{}{}",
        instance(""),
        instance("")
            .replace("VI_1", "VI_2")
            .replace("51", "52")
            .replace("192.168.1.10", "172.16.14.120")
    );
    let group = |extra: &str| format!("{two}\n[[vrrp_sync_group]]\nname = \"G1\"\n{extra}\n");

    let c = parse(&group("instances = [\"VI_1\", \"VI_2\"]"));
    assert_eq!(c.vrrp_sync_groups[0].instances, ["VI_1", "VI_2"]);

    rejected(
        &group("instances = [\"VI_1\", \"VI_3\"]"),
        at("instances =", "\"VI_3\""),
        "vrrp_sync_group[0].instances[1]",
        &[
            "no VRRP instance is named `VI_3`",
            "use one of \"VI_1\", \"VI_2\"",
        ],
    );
    rejected(
        &group("instances = []"),
        at("instances =", "[]"),
        "vrrp_sync_group[0].instances",
        &["no instances"],
    );
    rejected(
        &group(""),
        at("[[vrrp_sync_group]]", "[[vrrp_sync_group]]"),
        "vrrp_sync_group[0].instances",
        &["missing", "instances = "],
    );
    rejected(
        &group("instances = [\"VI_1\", \"VI_1\"]"),
        at("instances =", "\"VI_1\"]"),
        "vrrp_sync_group[0].instances[1]",
        &["listed twice in this group"],
    );
    let text = group("instances = [\"VI_1\"]\n[[vrrp_sync_group]]\nname = \"G2\"\ninstances = [\"VI_2\", \"VI_1\"]");
    rejected(
        &text,
        at("instances = [\"VI_2\"", "\"VI_1\""),
        "vrrp_sync_group[1].instances[1]",
        &["already in vrrp_sync_group[0]", "one group"],
    );
    let text =
        group("instances = [\"VI_1\"]\n[[vrrp_sync_group]]\nname = \"G1\"\ninstances = [\"VI_2\"]");
    let msg = config::parse(&text, ORIGIN).unwrap_err().to_string();
    assert!(
        msg.contains(
            "field `vrrp_sync_group[1].name`: name `G1` is already used by vrrp_sync_group[0]"
        ),
        "{msg}"
    );
    rejected(
        &group("instances = [\"VI_1\"]\nnotify = \"./g.sh\""),
        at("notify =", "\"./g.sh\""),
        "vrrp_sync_group[0].notify",
        &["not an absolute path"],
    );
}

#[test]
fn misspelt_keys_and_single_brackets() {
    rejected(
        &instance("advert_int = 1"),
        at("advert_int =", "advert_int"),
        "vrrp_instance[0].advert_int",
        &["unknown field", "advert_interval"],
    );
    let msg = config::parse("[vrrp_instance]\nname = \"VI_1\"\n", ORIGIN)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("field `vrrp_instance`"), "{msg}");
    assert!(
        msg.contains("`[[vrrp_instance]]` (double brackets)"),
        "{msg}"
    );
}
