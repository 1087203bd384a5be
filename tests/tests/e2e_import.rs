//! The round trip of `lb import keepalived`: seed 001's keepalived.conf
//! (three Apache servers behind LVS-NAT, as lb-userspace's import tests
//! have it), converted by the `lb` command, with only the interfaces
//! edited as its notes ask, runs seed 001's topology: the converted
//! HTTP_GET check finds every real server up, and the client reaches each
//! of them through the VIP.

use std::{collections::BTreeSet, net::IpAddr, path::Path, process::Command, time::Duration};

use lb_tests::{
    agent::{lb_bin, Agent},
    client::{curl, url},
    nginx::Nginx,
    tempdir::TempDir,
    topology::Topology,
};

#[test]
fn seed001_keepalived_conf_imported_serves_the_seed001_topology() {
    let bin = lb_bin();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lb-userspace/tests/data/keepalived/seed001-nat.conf");
    let out = Command::new(&bin)
        .args(["import", "keepalived"])
        .arg(&conf)
        .output()
        .expect("running lb import");
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lb import failed:\n{notes}");
    let toml = String::from_utf8(out.stdout).expect("UTF-8 TOML");
    // What the notes ask: the interfaces, which keepalived.conf does not
    // name (client side first, then the real servers' side).
    assert!(notes.contains("EDIT THE OUTPUT"), "{notes}");
    let placeholder = "interfaces = [\"eth0\"]";
    assert!(toml.contains(placeholder), "{toml}");

    let topo = Topology::nat(3).expect("building the seed 001 topology");
    let nginx: Vec<Nginx> = topo
        .reals
        .iter()
        .map(|h| Nginx::start(&h.ns, &h.name).expect("starting nginx"))
        .collect();
    let dir = TempDir::new("e2e-import").expect("temp dir");
    let socket = dir.join("lb.sock");
    let edited = toml.replace(
        placeholder,
        &format!(
            "interfaces = [\"{}\"]\ncontrol_socket = \"{}\"",
            topo.interfaces.join("\", \""),
            socket.display()
        ),
    );
    let agent = Agent::start_text(&bin, &topo.balancer.ns, dir.path(), &edited, socket)
        .unwrap_or_else(|e| panic!("{e:#}\nconfig:\n{edited}"));

    // keepalived's HTTP_GET, converted: every nginx answers it.
    for host in &topo.reals {
        agent
            .wait_health(&host.addr.to_string(), "up", Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let vip = url(IpAddr::V4(topo.vip), 80, "/");
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let body = curl(&topo.client.ns, &vip)
            .unwrap_or_else(|e| panic!("{e:#}\nlb log:\n{}", agent.log()));
        seen.insert(body.trim().to_string());
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from([
            "realserver1".into(),
            "realserver2".into(),
            "realserver3".into()
        ]),
        "answers through the VIP"
    );
    agent.stop().unwrap_or_else(|e| panic!("{e:#}"));
    drop(nginx);
}
