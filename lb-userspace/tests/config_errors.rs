//! One test per class of config error a user can make, checking the message
//! a user would read from `lb check`: file, line, column, field, and what
//! to change. Plus: the shipped examples parse, and defaults apply.

use lb_tests::config_lines::{self, after, assert_points_at, at, locate, Spot};
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use lb_userspace::config::{self, Config, Forwarding, Protocol, Scheduler, XdpMode};

const ORIGIN: &str = "lb.toml";

/// The agent table most tests start with (2 lines).
const AGENT: &str = "[agent]\ninterfaces = [\"eth0\", \"eth1\"]\n";

fn parse(text: &str) -> Config {
    config::parse(text, ORIGIN).unwrap_or_else(|e| panic!("config should parse, got: {e}"))
}

/// Asserts `text` is rejected with a message that starts with
/// `lb.toml:<at>: field `<field>`: ` and contains every phrase.
#[track_caller]
fn rejected(text: &str, spot: Spot<'_>, field: &str, phrases: &[&str]) -> String {
    let msg = match config::parse(text, ORIGIN) {
        Ok(c) => panic!("config should be rejected, parsed as {c:#?}"),
        Err(e) => e.to_string(),
    };
    assert_points_at(&msg, ORIGIN, text, spot, field, phrases);
    msg
}

/// A NAT service: `extra_vs` at the end of the `[[virtual_server]]` table,
/// then its real server table, `extra_rs` at the end of it.
fn service(extra_vs: &str, extra_rs: &str) -> String {
    format!(
        "{AGENT}
[[virtual_server]]
name = \"web\"
address = \"192.168.253.120\"
port = 80
protocol = \"tcp\"
forwarding = \"nat\"
{extra_vs}
  [[virtual_server.real_server]]
  address = \"172.16.14.121\"
{extra_rs}"
    )
}

#[test]
fn toml_syntax_error() {
    let text = "[agent]\ninterfaces = [\"eth0\"\n";
    let msg = config::parse(text, ORIGIN).unwrap_err().to_string();
    // The missing `]` is noticed where the file ends: the line after the last.
    let end = format!("lb.toml:{}:1: TOML syntax error", text.lines().count() + 1);
    assert!(msg.starts_with(&end), "{msg}");
    assert!(msg.contains("expected `]`"), "{msg}");
    assert!(!msg.contains('\n'), "{msg:?}");

    let text = "[agent]\ninterfaces = [\"eth0\"]\ninterfaces = [\"eth1\"]\n";
    let msg = config::parse(text, ORIGIN).unwrap_err().to_string();
    let second = locate(text, at("interfaces = [\"eth1\"]", "interfaces"));
    assert!(
        msg.starts_with(&format!("lb.toml:{second}: TOML syntax error")),
        "{msg}"
    );
    assert!(msg.contains("duplicate key"), "{msg}");
}

#[test]
fn unknown_field() {
    rejected(
        &service("", "  wieght = 3\n"),
        at("wieght = 3", "wieght = 3"),
        "virtual_server[0].real_server[0].wieght",
        &["unknown field", "fix its spelling", "`weight`"],
    );
    rejected(
        &format!("{AGENT}xdp_flags = 1\n"),
        at("xdp_flags = 1", "xdp_flags = 1"),
        "agent.xdp_flags",
        &["unknown field", "`xdp_mode`"],
    );
    rejected(
        &format!("{AGENT}[[virtual_service]]\nname = \"x\"\n"),
        at("[[virtual_service]]", "virtual_service]]"),
        "virtual_service",
        &["unknown field", "`virtual_server`"],
    );
}

#[test]
fn bad_address() {
    rejected(
        &service("", "").replace("192.168.253.120", "192.168.253.300"),
        at("address = \"192.168.253.300\"", "\"192.168.253.300\""),
        "virtual_server[0].address",
        &["`192.168.253.300` is not an IPv4 or IPv6 address"],
    );
    rejected(
        &service("", "").replace("\"172.16.14.121\"", "\"172.16.14.121:80\""),
        at("address = \"172.16.14.121:80\"", "\"172.16.14.121:80\""),
        "virtual_server[0].real_server[0].address",
        &[
            "not an IPv4 or IPv6 address",
            "port and prefix length are separate keys",
        ],
    );
    rejected(
        &service("", "").replace("192.168.253.120", "0.0.0.0"),
        at("address = \"0.0.0.0\"", "\"0.0.0.0\""),
        "virtual_server[0].address",
        &["unspecified address"],
    );
    rejected(
        &service("sorry_server = \"172.16.14.99\"\n", ""),
        at("sorry_server = \"172.16.14.99\"", "\"172.16.14.99\""),
        "virtual_server[0].sorry_server",
        &["not an address with a port"],
    );
    rejected(
        &format!("{AGENT}metrics_listen = \"localhost:9469\"\n"),
        at("metrics_listen = \"localhost:9469\"", "\"localhost:9469\""),
        "agent.metrics_listen",
        &["not an address with a port", "127.0.0.1:9469"],
    );
}

#[test]
fn duplicate_service() {
    let text = format!(
        "{}
[[virtual_server]]
name = \"web2\"
address = \"192.168.253.120\"
port = 80
protocol = \"tcp\"
forwarding = \"dr\"
",
        service("", "")
    );
    rejected(
        &text,
        after(
            "name = \"web2\"",
            "address = \"192.168.253.120\"",
            "\"192.168.253.120\"",
        ),
        "virtual_server[1].address",
        &[
            "duplicate service",
            "192.168.253.120 port 80 tcp",
            "already virtual_server[0]",
        ],
    );
    // Another protocol on the same address and port is another service.
    parse(&text.replace(
        "protocol = \"tcp\"\nforwarding = \"dr\"",
        "protocol = \"udp\"\nforwarding = \"dr\"",
    ));
}

#[test]
fn weight_out_of_range() {
    rejected(
        &service("", "  weight = 65536\n"),
        at("weight = 65536", "65536"),
        "virtual_server[0].real_server[0].weight",
        &["weight 65536 is out of range", "0 to 65535"],
    );
    rejected(
        &service("", "  weight = -1\n"),
        at("weight = -1", "-1"),
        "virtual_server[0].real_server[0].weight",
        &["weight -1 is out of range"],
    );
    // The bounds themselves are fine.
    assert_eq!(
        parse(&service("", "  weight = 65535\n")).virtual_servers[0].real_servers[0].weight,
        65535
    );
    assert_eq!(
        parse(&service("", "  weight = 0\n")).virtual_servers[0].real_servers[0].weight,
        0
    );
}

#[test]
fn weight_of_wrong_type() {
    rejected(
        &service("", "  weight = \"heavy\"\n"),
        at("weight = \"heavy\"", "\"heavy\""),
        "virtual_server[0].real_server[0].weight",
        &["invalid type: string \"heavy\", expected an integer"],
    );
}

#[test]
fn dr_real_server_with_another_port() {
    let text = service("", "  port = 8080\n").replace("\"nat\"", "\"dr\"");
    rejected(
        &text,
        at("port = 8080", "8080"),
        "virtual_server[0].real_server[0].port",
        &[
            "port 8080 differs from the VIP's port 80",
            "remove `port` or set it to 80",
        ],
    );
    // NAT may map ports; DR with the VIP's port (or none) is fine.
    assert_eq!(
        parse(&service("", "  port = 8080\n")).virtual_servers[0].real_servers[0].port,
        8080
    );
    parse(&service("", "  port = 80\n").replace("\"nat\"", "\"dr\""));
    rejected(
        &service("sorry_server = \"192.168.253.99:8080\"\n", "").replace("\"nat\"", "\"dr\""),
        at(
            "sorry_server = \"192.168.253.99:8080\"",
            "\"192.168.253.99:8080\"",
        ),
        "virtual_server[0].sorry_server",
        &["must listen on the VIP's port 80", "192.168.253.99:80"],
    );
}

#[test]
fn interface_that_does_not_exist() {
    // Parsing never looks at the host (tests and build hosts lack the
    // production interfaces)...
    let text = "[agent]\ninterfaces = [\"lo\", \"lbtest-absent0\"]\n";
    let c = parse(text);
    // ...`lb check` / `lb run` call validate_host, which does.
    let msg = config::validate_host(&c).unwrap_err().to_string();
    let spot = locate(text, at("interfaces", "\"lbtest-absent0\""));
    assert!(
        msg.starts_with(&format!("lb.toml:{spot}: field `agent.interfaces[1]`: ")),
        "{msg}"
    );
    assert!(
        msg.contains("interface `lbtest-absent0` does not exist on this host"),
        "{msg}"
    );
    assert!(msg.contains("ip link"), "{msg}");
    config::validate_host(&parse("[agent]\ninterfaces = [\"lo\"]\n")).unwrap();
}

#[test]
fn bad_interface_name() {
    rejected(
        "[agent]\ninterfaces = [\"eth0\", \"a-very-long-interface-name\"]\n",
        at(
            "interfaces = [\"eth0\", \"a-very-long-interface-name\"]",
            "\"a-very-long-interface-n",
        ),
        "agent.interfaces[1]",
        &["too long for an interface name"],
    );
    rejected(
        "[agent]\ninterfaces = [\"eth0\", \"eth0\"]\n",
        at("interfaces = [\"eth0\", \"eth0\"]", "\"eth0\"]"),
        "agent.interfaces[1]",
        &["`eth0` is listed twice"],
    );
    rejected(
        "[agent]\ninterfaces = [\"\"]\n",
        at("interfaces = [\"\"]", "\"\"]"),
        "agent.interfaces[0]",
        &["is empty"],
    );
}

#[test]
fn maglev_table_size_not_prime_or_out_of_range() {
    rejected(
        &service("maglev_table_size = 65536\n", ""),
        at("maglev_table_size = 65536", "65536"),
        "virtual_server[0].maglev_table_size",
        &["65536 is not prime", "nearest primes are 65521 or 65537"],
    );
    rejected(
        &service("maglev_table_size = 7\n", ""),
        at("maglev_table_size = 7", "7"),
        "virtual_server[0].maglev_table_size",
        &["7 is out of range", "from 101 to 16777213"],
    );
    rejected(
        &service("maglev_table_size = 16777259\n", ""),
        at("maglev_table_size = 16777259", "16777259"),
        "virtual_server[0].maglev_table_size",
        &["out of range"],
    );
    // At least 100 slots per real server (Maglev's guidance).
    let mut text = service("maglev_table_size = 101\n", "");
    text.push_str("  [[virtual_server.real_server]]\n  address = \"172.16.14.122\"\n");
    rejected(
        &text,
        at("maglev_table_size = 101", "101"),
        "virtual_server[0].maglev_table_size",
        &[
            "101 slots is too small for 2 real servers",
            "at least 200, e.g. 211",
        ],
    );
    assert_eq!(
        parse(&service("maglev_table_size = 101\n", "")).virtual_servers[0].maglev_table_size,
        101
    );
}

#[test]
fn mixed_address_families() {
    rejected(
        &service("", "").replace("172.16.14.121", "2001:db8::121"),
        at("address = \"2001:db8::121\"", "\"2001:db8::121\""),
        "virtual_server[0].real_server[0].address",
        &[
            "2001:db8::121 is IPv6 but the VIP 192.168.253.120 is IPv4",
            "one address family",
        ],
    );
    rejected(
        &service("sorry_server = \"[2001:db8::99]:80\"\n", ""),
        at(
            "sorry_server = \"[2001:db8::99]:80\"",
            "\"[2001:db8::99]:80\"",
        ),
        "virtual_server[0].sorry_server",
        &["sorry server 2001:db8::99 is IPv6"],
    );
}

#[test]
fn duplicate_real_server() {
    let text = service(
        "",
        "  port = 80\n  [[virtual_server.real_server]]\n  address = \"172.16.14.121\"\n",
    );
    rejected(
        &text,
        after(
            "address = \"172.16.14.121\"",
            "[[virtual_server.real_server]]",
            "[[virtual_server.real_se",
        ),
        "virtual_server[0].real_server[1]",
        &[
            "172.16.14.121:80 is already virtual_server[0].real_server[0]",
            "list each real server once",
        ],
    );
    // Same address on another port is another real server (NAT).
    parse(&service(
        "",
        "  [[virtual_server.real_server]]\n  address = \"172.16.14.121\"\n  port = 8080\n",
    ));
}

#[test]
fn nat_real_server_in_two_services() {
    let text = format!(
        "{}
[[virtual_server]]
name = \"web-alt\"
address = \"192.168.253.121\"
port = 80
protocol = \"tcp\"
forwarding = \"nat\"
  [[virtual_server.real_server]]
  address = \"172.16.14.121\"
",
        service("", "")
    );
    rejected(
        &text,
        after(
            "address = \"192.168.253.121\"",
            "[[virtual_server.real_server]]",
            "[[virtual_server.real_se",
        ),
        "virtual_server[1].real_server[0]",
        &[
            "172.16.14.121:80/tcp is already in NAT virtual_server[0] (`web`)",
            "replies",
        ],
    );
}

#[test]
fn nat_sorry_server_shared_by_two_services() {
    let text = format!(
        "{}
[[virtual_server]]
name = \"web-alt\"
address = \"192.168.253.121\"
port = 80
protocol = \"tcp\"
forwarding = \"nat\"
sorry_server = \"172.16.14.99:80\"
  [[virtual_server.real_server]]
  address = \"172.16.14.122\"
",
        service("sorry_server = \"172.16.14.99:80\"", "")
    );
    rejected(
        &text,
        after(
            "address = \"192.168.253.121\"",
            "sorry_server = \"172.16.14.99:80\"",
            "\"172.16.14.99:80\"",
        ),
        "virtual_server[1].sorry_server",
        &[
            "sorry server 172.16.14.99:80/tcp is already in NAT virtual_server[0] (`web`)",
            "its own port",
        ],
    );
    // Its own real server as the sorry server is fine.
    parse(&service("sorry_server = \"172.16.14.121:80\"", ""));
}

#[test]
fn no_interfaces() {
    rejected(
        "[agent]\ninterfaces = []\n",
        at("interfaces = []", "[]"),
        "agent.interfaces",
        &["no interfaces", "at least one"],
    );
    rejected(
        "[agent]\nxdp_mode = \"auto\"\n",
        at("[agent]", "[agent]"),
        "agent.interfaces",
        &["missing"],
    );
    rejected(
        "[[virtual_server]]\nname = \"x\"\n",
        at("[[virtual_server]]", "[[virtual_server]]"),
        "agent.interfaces",
        &["no [agent] table"],
    );
}

#[test]
fn bad_enum_values() {
    rejected(
        &service("", "").replace("\"tcp\"", "\"sctp\""),
        at("protocol = \"sctp\"", "\"sctp\""),
        "virtual_server[0].protocol",
        &["`sctp` is not a supported protocol", "\"tcp\" or \"udp\""],
    );
    rejected(
        &service("", "").replace("\"nat\"", "\"tun\""),
        at("forwarding = \"tun\"", "\"tun\""),
        "virtual_server[0].forwarding",
        &[
            "`tun` is not a forwarding method (tunnel mode is not supported)",
            "\"nat\"",
            "\"dr\"",
        ],
    );
    rejected(
        &service("scheduler = \"wrr\"\n", ""),
        at("scheduler = \"wrr\"", "\"wrr\""),
        "virtual_server[0].scheduler",
        &["`wrr` is not a scheduler", "\"maglev\""],
    );
    rejected(
        &format!("{AGENT}xdp_mode = \"skb\"\n"),
        at("xdp_mode = \"skb\"", "\"skb\""),
        "agent.xdp_mode",
        &[
            "`skb` is not an XDP mode",
            "\"auto\"",
            "\"native\"",
            "\"generic\"",
        ],
    );
}

#[test]
fn empty_or_duplicate_names() {
    rejected(
        &service("", "").replace("\"web\"", "\"  \""),
        at("name = \"  \"", "\"  \""),
        "virtual_server[0].name",
        &["empty name"],
    );
    let text = format!(
        "{}
[[virtual_server]]
name = \"web\"
address = \"192.168.253.121\"
port = 80
protocol = \"tcp\"
forwarding = \"dr\"
",
        service("", "")
    );
    rejected(
        &text,
        after("address = \"172.16.14.121\"", "name = \"web\"", "\"web\""),
        "virtual_server[1].name",
        &["name `web` is already used by virtual_server[0]"],
    );
    rejected(
        &service("", "").replace("name = \"web\"\n", ""),
        at("[[virtual_server]]", "[[virtual_server]]"),
        "virtual_server[0].name",
        &["missing", "name = \"web\""],
    );
}

#[test]
fn port_zero() {
    rejected(
        &service("", "").replace("port = 80", "port = 0"),
        at("port = 0", "0"),
        "virtual_server[0].port",
        &["port 0 is out of range", "1 to 65535"],
    );
    rejected(
        &service("", "  port = 0\n"),
        at("port = 0", "0"),
        "virtual_server[0].real_server[0].port",
        &["port 0 is out of range"],
    );
    rejected(
        &service("sorry_server = \"172.16.14.99:0\"\n", ""),
        at("sorry_server = \"172.16.14.99:0\"", "\"172.16.14.99:0\""),
        "virtual_server[0].sorry_server",
        &["port 0"],
    );
    rejected(
        &service("", "").replace("port = 80", "port = 70000"),
        at("port = 70000", "70000"),
        "virtual_server[0].port",
        &["port 70000 is out of range"],
    );
}

#[test]
fn other_agent_values() {
    rejected(
        &format!("{AGENT}flow_table_size = 0\n"),
        at("flow_table_size = 0", "0"),
        "agent.flow_table_size",
        &["0 is out of range"],
    );
    rejected(
        &format!("{AGENT}control_socket = \"lb.sock\"\n"),
        at("control_socket = \"lb.sock\"", "\"lb.sock\""),
        "agent.control_socket",
        &["not an absolute file path"],
    );
}

#[test]
fn defaults_apply() {
    let c = parse(&service("", ""));
    assert_eq!(c.agent.interfaces, ["eth0", "eth1"]);
    assert_eq!(c.agent.xdp_mode, XdpMode::Auto);
    // 2^19 entries (8 MiB, 131,072 flows with room to spare): the default
    // maps fit a 1 GB Raspberry Pi (README "Small boards").
    assert_eq!(c.agent.flow_table_size, 524_288);
    assert_eq!(c.agent.control_socket, PathBuf::from("/run/lb/lb.sock"));
    assert_eq!(c.agent.metrics_listen, None);
    let vs = &c.virtual_servers[0];
    assert_eq!(vs.scheduler, Scheduler::Maglev);
    assert_eq!(vs.maglev_table_size, 65537);
    assert_eq!(vs.sorry_server, None);
    assert_eq!(
        vs.real_servers[0].port, 80,
        "real server port defaults to the VIP's"
    );
    assert_eq!(vs.real_servers[0].weight, 1);
}

fn example(name: &str) -> Config {
    config::load(&config_lines::example(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_example_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3, "expected the examples in {}", dir.display());
}

#[test]
fn seed_examples_say_what_the_seeds_do() {
    let nat = example("seed001-nat.toml");
    let vs = &nat.virtual_servers[0];
    assert_eq!(vs.address, "192.168.253.120".parse::<IpAddr>().unwrap());
    assert_eq!(
        (vs.port, vs.protocol, vs.forwarding),
        (80, Protocol::Tcp, Forwarding::Nat)
    );
    let reals: Vec<String> = vs
        .real_servers
        .iter()
        .map(|r| SocketAddr::new(r.address, r.port).to_string())
        .collect();
    assert_eq!(
        reals,
        ["172.16.14.121:80", "172.16.14.122:80", "172.16.14.123:80"]
    );

    let dr = example("seed000-dr-ldap.toml");
    let vs = &dr.virtual_servers[0];
    assert_eq!(vs.address, "192.168.1.182".parse::<IpAddr>().unwrap());
    assert_eq!((vs.port, vs.forwarding), (389, Forwarding::Dr));
    assert!(vs.real_servers.iter().all(|r| r.port == 389));

    let full = example("full.toml");
    assert_eq!(
        full.agent.metrics_listen,
        Some("127.0.0.1:9469".parse().unwrap())
    );
    assert_eq!(
        full.virtual_servers[0].sorry_server,
        Some("172.16.14.99:80".parse().unwrap())
    );
    assert_eq!(full.virtual_servers[1].real_servers[1].weight, 0);
}

#[test]
fn unreadable_file_names_the_path() {
    let msg = config::load(Path::new("/nonexistent/lb.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("/nonexistent/lb.toml: cannot read config"),
        "{msg}"
    );
}

#[test]
fn single_table_where_a_list_is_expected() {
    rejected(
        &format!("{AGENT}[virtual_server]\nname = \"web\"\n"),
        at("[virtual_server]", "[virtual_server]"),
        "virtual_server",
        &["write `[[virtual_server]]` (double brackets)"],
    );
    rejected(
        &service(
            "[virtual_server.real_server]\naddress = \"172.16.14.122\"\n",
            "",
        )
        .replace(
            "  [[virtual_server.real_server]]\n  address = \"172.16.14.121\"\n",
            "",
        ),
        at(
            "[virtual_server.real_server]",
            "[virtual_server.real_server]",
        ),
        "virtual_server[0].real_server",
        &["write `[[virtual_server.real_server]]`"],
    );
}

#[test]
fn wrong_value_types_say_what_is_expected() {
    rejected(
        &service("", "").replace("port = 80", "port = \"80\""),
        at("port = \"80\"", "\"80\""),
        "virtual_server[0].port",
        &["invalid type: string \"80\", expected an integer"],
    );
    rejected(
        "[agent]\ninterfaces = \"eth0\"\n",
        at("interfaces = \"eth0\"", "\"eth0\""),
        "agent.interfaces",
        &["expected an array `[...]`"],
    );
}

#[test]
fn ebpf_log_is_off_unless_asked_and_names_its_levels() {
    use lb_userspace::config::EbpfLog;
    assert_eq!(parse(&service("", "")).agent.ebpf_log, EbpfLog::Off);
    for (text, level) in [
        ("off", EbpfLog::Off),
        ("info", EbpfLog::Info),
        ("debug", EbpfLog::Debug),
    ] {
        let c =
            parse(&service("", "").replacen(AGENT, &format!("{AGENT}ebpf_log = \"{text}\"\n"), 1));
        assert_eq!(c.agent.ebpf_log, level, "{text}");
    }
    rejected(
        &service("", "").replacen(AGENT, &format!("{AGENT}ebpf_log = \"trace\"\n"), 1),
        at("ebpf_log = \"trace\"", "\"trace\""),
        "agent.ebpf_log",
        &[
            "`trace` is not a data-plane log level",
            "\"off\" (the default)",
            "\"info\"",
            "\"debug\"",
        ],
    );
    rejected(
        &service("", "").replacen(AGENT, &format!("{AGENT}ebpf_log = true\n"), 1),
        at("ebpf_log = true", "true"),
        "agent.ebpf_log",
        &["invalid type: boolean `true`"],
    );
}
