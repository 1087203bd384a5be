//! The sysctls that decide whether the XDP program can forward what the
//! config asks for.
//!
//! The agent changes none. `bpf_fib_lookup`, which the program uses to
//! forward NAT packets, answers "forwarding disabled" when IPv4
//! forwarding is off on the receiving interface
//! (`net.ipv4.conf.<if>.forwarding`, set for all by `net.ipv4.ip_forward`)
//! or IPv6 forwarding is off (`net.ipv6.conf.all.forwarding`). NAT needs
//! forwarding, as IPVS NAT does (seed 001 turns it on); DR does not (its
//! next hops then come from the neighbour table). Silently turning a host
//! into a router is a decision for its administrator, so `lb run` logs an
//! error naming the sysctl to set and keeps running; the `fib_miss` event
//! counter shows the effect meanwhile.
//!
//! Likewise `net.ipv4.conf.<if>.accept_local`: when the balancer has no
//! resolved neighbour entry for the client (or its gateway), the program
//! hands an IPv4 NAT reply, already rewritten to come from the VIP, to the
//! kernel. The VIP is a local address, so the kernel drops that packet as a
//! martian unless `accept_local` is 1 on the interface it arrived on; with
//! it, the kernel forwards it and resolves the neighbour. The same holds
//! for replies larger than the egress MTU (a veth sender's offloaded or a
//! GRO-aggregated segment): the program hands them to the kernel, which
//! segments them. `lb run` warns
//! for each interface where it is 0 while an IPv4 NAT service exists.

use crate::config::{self, Config};

/// A sysctl that gets in the way of the configured services (see the
/// module doc): an error stops forwarding, a warning loses packets in a
/// corner case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Error(String),
    Warning(String),
}

impl Problem {
    pub fn log(&self) {
        match self {
            Problem::Error(m) => tracing::error!("{m}"),
            Problem::Warning(m) => tracing::warn!("{m}"),
        }
    }
}

/// One entry per sysctl that keeps the configured services from being
/// forwarded correctly.
pub fn forwarding_problems(config: &Config) -> Vec<Problem> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim() == "1")
            .unwrap_or(false)
    };
    let mut problems = Vec::new();
    // DR needs no forwarding: when the kernel's FIB refuses, its next hops
    // come from the neighbour table (`dataplane::dr_next_hops`), as IPVS DR
    // works with forwarding off (seed 000 never turns it on).
    let any = |v6: bool| {
        config
            .virtual_servers
            .iter()
            .any(|vs| vs.address.is_ipv6() == v6 && vs.forwarding == config::Forwarding::Nat)
    };
    if any(false) {
        for interface in &config.agent.interfaces {
            let path = format!("/proc/sys/net/ipv4/conf/{interface}/forwarding");
            if !read(&path) {
                problems.push(Problem::Error(format!(
                    "IPv4 forwarding is off on {interface}: the XDP program cannot forward IPv4 \
                     NAT virtual services (bpf_fib_lookup answers \"forwarding disabled\"); run \
                     `sysctl -w net.ipv4.ip_forward=1` (or net.ipv4.conf.{interface}.forwarding=1)"
                )));
            }
        }
    }
    let ipv4_nat = config
        .virtual_servers
        .iter()
        .any(|vs| vs.address.is_ipv4() && vs.forwarding == config::Forwarding::Nat);
    if ipv4_nat {
        for interface in &config.agent.interfaces {
            let path = format!("/proc/sys/net/ipv4/conf/{interface}/accept_local");
            if !read(&path) {
                problems.push(Problem::Warning(format!(
                    "net.ipv4.conf.{interface}.accept_local is 0: a NAT reply arriving on \
                     {interface} while the client's neighbour entry is unresolved, or larger \
                     than the egress MTU (offloaded or GRO-aggregated segments, as veths \
                     send), is dropped by the kernel (its source is the VIP, a local \
                     address); run `sysctl -w net.ipv4.conf.{interface}.accept_local=1`"
                )));
            }
        }
    }
    if any(true) && !read("/proc/sys/net/ipv6/conf/all/forwarding") {
        problems.push(Problem::Error(
            "IPv6 forwarding is off: the XDP program cannot forward IPv6 NAT virtual services \
             (bpf_fib_lookup answers \"forwarding disabled\"); run \
             `sysctl -w net.ipv6.conf.all.forwarding=1`"
                .to_string(),
        ));
    }
    problems
}
