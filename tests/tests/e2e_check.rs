//! `lb check` as a user meets it: a config with a mistake exits 2 and says
//! which file and field; a good one exits 0. (One error class here; the
//! config module's tests cover every class.)

use lb_tests::agent::{check, lb_bin};
use lb_tests::tempdir::TempDir;

const GOOD: &str = r#"
[agent]
interfaces = ["lo"]

[[virtual_server]]
name = "web"
address = "192.168.253.120"
port = 80
protocol = "tcp"
forwarding = "nat"
scheduler = "maglev"

  [[virtual_server.real_server]]
  address = "172.16.14.121"
  port = 80
  weight = 1
"#;

#[test]
fn check_rejects_a_bad_address_with_exit_2_and_names_it() {
    let bin = lb_bin();
    let dir = TempDir::new("check").unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, GOOD).unwrap();
    let out = check(&bin, &good).unwrap();
    assert!(
        out.status.success(),
        "lb check rejected a valid config: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, GOOD.replace("172.16.14.121", "172.16.14.300")).unwrap();
    let out = check(&bin, &bad).unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "lb check exit status; output: {msg}"
    );
    assert!(
        msg.contains("bad.toml"),
        "message does not name the file: {msg}"
    );
    assert!(
        msg.contains("172.16.14.300") || msg.contains("address"),
        "message does not name the bad address: {msg}"
    );
}
