//! Which VIPs this node announces, and why not the others: pure, from
//! what the agent knows (attached or not, which services have a real
//! server up, draining or not).
//!
//! A VIP is announced when all of these hold:
//! - the agent runs with XDP attached (a stopped agent's routes are
//!   removed on a clean stop; `kill -9` leaves them, see `announce`);
//! - the node is not draining (`lb drain`);
//! - at least one virtual service on that address has a real server up
//!   (the same "up" as VRRP's `track_virtual_servers`: a sorry server
//!   does not count). One service up is enough: withdrawing a VIP because
//!   one of its ports lost its real servers everywhere would take the
//!   other ports down on every node at once.

use std::{collections::HashSet, net::IpAddr};

/// One virtual service as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceView {
    pub name: String,
    pub address: IpAddr,
    /// At least one real server is up (in this node's health checks).
    pub up: bool,
}

/// What the plan is computed from.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// `[announce] addresses`.
    pub addresses: &'a [IpAddr],
    pub services: &'a [ServiceView],
    pub attached: bool,
    pub draining: bool,
}

/// Why a VIP is not announced; the first that applies, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// No XDP program attached by this agent.
    NotAttached,
    /// `lb drain` is in force.
    Draining,
    /// Every service on the address has no real server up.
    NoRealServerUp,
}

impl Withheld {
    pub fn describe(self) -> &'static str {
        match self {
            Withheld::NotAttached => "the agent has no XDP program attached",
            Withheld::Draining => "the node is draining (lb drain; lb undrain announces again)",
            Withheld::NoRealServerUp => "no real server is up in any of its services",
        }
    }

    /// A short label for metrics and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Withheld::NotAttached => "not_attached",
            Withheld::Draining => "draining",
            Withheld::NoRealServerUp => "no_real_server_up",
        }
    }
}

/// The decision for one VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipPlan {
    pub address: IpAddr,
    /// `None`: announce it.
    pub withheld: Option<Withheld>,
    /// The services on this address, for the status.
    pub services: Vec<String>,
    /// Those of them with no real server up.
    pub services_down: Vec<String>,
}

impl VipPlan {
    pub fn announced(&self) -> bool {
        self.withheld.is_none()
    }
}

/// The decision for every configured VIP, in config order.
pub fn plan(inputs: &Inputs<'_>) -> Vec<VipPlan> {
    inputs
        .addresses
        .iter()
        .map(|&address| {
            let on_vip: Vec<&ServiceView> = inputs
                .services
                .iter()
                .filter(|s| s.address == address)
                .collect();
            let withheld = if !inputs.attached {
                Some(Withheld::NotAttached)
            } else if inputs.draining {
                Some(Withheld::Draining)
            } else if !on_vip.iter().any(|s| s.up) {
                Some(Withheld::NoRealServerUp)
            } else {
                None
            };
            VipPlan {
                address,
                withheld,
                services: on_vip.iter().map(|s| s.name.clone()).collect(),
                services_down: on_vip
                    .iter()
                    .filter(|s| !s.up)
                    .map(|s| s.name.clone())
                    .collect(),
            }
        })
        .collect()
}

/// The addresses a plan announces.
pub fn announced(plan: &[VipPlan]) -> HashSet<IpAddr> {
    plan.iter()
        .filter(|p| p.announced())
        .map(|p| p.address)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn services() -> Vec<ServiceView> {
        let s = |name: &str, address: &str, up| ServiceView {
            name: name.into(),
            address: ip(address),
            up,
        };
        vec![
            s("web", "192.0.2.10", true),
            s("tls", "192.0.2.10", false),
            s("mail", "192.0.2.20", false),
            s("dns", "2001:db8::53", true),
        ]
    }

    fn run(attached: bool, draining: bool) -> Vec<VipPlan> {
        let addresses = [ip("192.0.2.10"), ip("192.0.2.20"), ip("2001:db8::53")];
        let services = services();
        plan(&Inputs {
            addresses: &addresses,
            services: &services,
            attached,
            draining,
        })
    }

    #[test]
    fn a_vip_is_announced_while_one_of_its_services_has_a_real_server_up() {
        let p = run(true, false);
        let withheld: Vec<_> = p.iter().map(|v| v.withheld).collect();
        assert_eq!(withheld, [None, Some(Withheld::NoRealServerUp), None]);
        // One port down does not withdraw the VIP, but the status names it.
        assert_eq!(p[0].services, ["web", "tls"]);
        assert_eq!(p[0].services_down, ["tls"]);
        assert_eq!(
            announced(&p),
            HashSet::from([ip("192.0.2.10"), ip("2001:db8::53")])
        );
    }

    #[test]
    fn draining_withdraws_everything_and_says_so() {
        let p = run(true, true);
        assert!(announced(&p).is_empty());
        assert!(p.iter().all(|v| v.withheld == Some(Withheld::Draining)));
    }

    #[test]
    fn nothing_is_announced_without_xdp_attached() {
        let p = run(false, true);
        assert!(p.iter().all(|v| v.withheld == Some(Withheld::NotAttached)));
    }

    #[test]
    fn a_configured_vip_without_a_service_is_withheld() {
        // Cannot come from a validated config, but a plan must not
        // announce an address nothing serves.
        let addresses = [ip("198.51.100.1")];
        let p = plan(&Inputs {
            addresses: &addresses,
            services: &services(),
            attached: true,
            draining: false,
        });
        assert_eq!(p[0].withheld, Some(Withheld::NoRealServerUp));
    }
}
