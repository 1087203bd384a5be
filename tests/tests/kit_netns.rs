//! The namespace kit on its own (`lb_tests::netns`), as the tests and the
//! benchmarks rely on it: veth ends set up as asked (tuned for XDP, or
//! plain with fixed MACs), sysctls landing in the namespace they were set
//! in, and threads moved into a namespace (named or private) and back.
//! Needs root and iproute2 + ethtool, as every namespace test does.

use lb_tests::netns::{mac_str, veth_with, Netns, ThreadNs, VethEnd, VethOptions};

/// `ethtool -k DEV` inside `ns`: the value of `feature` ("on" / "off").
fn feature(ns: &Netns, dev: &str, feature: &str) -> String {
    let out = ns
        .exec(&["ethtool", "-k", dev])
        .unwrap_or_else(|e| panic!("ethtool -k {dev} (apt-get install ethtool): {e:#}"));
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{feature}: ")))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {feature} in ethtool -k {dev}:\n{out}"))
        .to_string()
}

/// Interfaces of the calling thread's namespace, from /proc/thread-self,
/// sorted.
fn own_interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn veth_ends_are_tuned_or_plain_with_the_macs_asked_for() {
    let a = Netns::unique("a").unwrap();
    let b = Netns::unique("b").unwrap();
    let (mac_a, mac_b) = ([0x02, 0, 0, 0, 0x0a, 0x01], [0x02, 0, 0, 0, 0x0b, 0x01]);
    veth_with(
        &a,
        "t0",
        &b,
        "p0",
        VethOptions {
            a: VethEnd::TUNED.with_mac(mac_a),
            b: VethEnd::PLAIN.with_mac(mac_b),
        },
    )
    .unwrap();
    assert_eq!(a.mac("t0").unwrap(), mac_a, "{}", mac_str(&mac_a));
    assert_eq!(b.mac("p0").unwrap(), mac_b, "{}", mac_str(&mac_b));
    // The tuned end: NAPI for XDP_TX/REDIRECT into it, full checksums out.
    assert_eq!(feature(&a, "t0", "generic-receive-offload"), "on");
    assert_eq!(feature(&a, "t0", "tx-checksumming"), "off");
    // The plain end as `ip` made it.
    assert_eq!(feature(&b, "p0", "generic-receive-offload"), "off");
    assert_eq!(feature(&b, "p0", "tx-checksumming"), "on");
    // Both up, and each only in its own namespace.
    for (ns, dev) in [(&a, "t0"), (&b, "p0")] {
        let link = ns.ip(&["-o", "link", "show", dev]).unwrap();
        assert!(link.contains("UP"), "{dev} is not up: {link}");
    }
    assert!(b.ip(&["link", "show", "t0"]).is_err());
}

#[test]
fn a_sysctl_lands_in_its_namespace_only() {
    let one = Netns::unique("one").unwrap();
    let other = Netns::unique("other").unwrap();
    let read = |ns: &Netns| {
        ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"])
            .unwrap()
            .trim()
            .to_string()
    };
    one.sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(read(&one), "1");
    assert_eq!(read(&other), "0");
    one.sysctl("net.ipv4.ip_forward", "0").unwrap();
    assert_eq!(read(&one), "0");
    // A key that does not exist is an error naming it.
    let err = one.sysctl("net.ipv4.no_such_key", "1").unwrap_err();
    assert!(
        format!("{err:#}").contains("net.ipv4.no_such_key"),
        "{err:#}"
    );
}

#[test]
fn threads_join_a_namespace_or_a_private_one_and_come_back() {
    let before = own_interfaces();
    let ns = Netns::unique("join").unwrap();
    ns.ip(&["link", "add", "k0", "type", "veth", "peer", "name", "k1"])
        .unwrap();
    {
        let _in = ns.enter_thread().unwrap();
        assert_eq!(own_interfaces(), ["k0", "k1", "lo"]);
    }
    assert_eq!(own_interfaces(), before);
    // `enter` runs on another thread and leaves this one alone.
    let seen = ns.enter(own_interfaces).unwrap();
    assert_eq!(seen, ["k0", "k1", "lo"]);
    assert_eq!(own_interfaces(), before);
    {
        let _private = ThreadNs::private().unwrap();
        assert_eq!(own_interfaces(), ["lo"]);
    }
    assert_eq!(own_interfaces(), before);
}

#[test]
fn a_dead_runs_namespaces_are_removed_and_a_live_ones_kept() {
    // A run killed with SIGKILL leaves namespaces named with its pid: a
    // process that has exited (and been reaped) stands in for it. Like
    // `cargo xtask test` and lb-bench at start, this removes every dead
    // run's leftovers, not only the one made here.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let stale = format!("lbt{pid}x0-stale");
    let ip = |args: &[&str]| lb_tests::netns::run(std::process::Command::new("ip").args(args));
    ip(&["netns", "add", &stale]).unwrap();
    let live = Netns::unique("live").unwrap();
    let removed = lb_tests::netns::remove_stale();
    let listed = ip(&["netns", "list"]).unwrap();
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(removed.contains(&stale), "{stale} not removed: {removed:?}");
    assert!(!names.contains(&stale.as_str()), "{stale} still listed");
    assert!(!removed.iter().any(|n| n == live.name()), "{removed:?}");
    assert!(names.contains(&live.name()), "{} was removed", live.name());
}
