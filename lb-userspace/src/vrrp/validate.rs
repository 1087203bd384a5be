//! What an instance accepts from the wire and what it sends: a decoded
//! advert checked against the instance's config, as keepalived 2.2.7
//! checks it (the probes in the shared data's README), and the advert the
//! instance sends built from its config. Pure.
//!
//! Each rejection carries the key `lb status` counts it under.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use thiserror::Error;

use super::codec::{Advert, Auth, AUTH_NONE, AUTH_PASSWORD};
use crate::config::{VrrpInstance, VrrpVersion};

/// RFC 3768 / 5798: adverts are sent with TTL / hop limit 255 and a
/// receiver drops anything else (it may have crossed a router).
pub const REQUIRED_TTL: u8 = 255;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Reject {
    #[error("TTL/hop limit {0}, 255 required")]
    Ttl(u8),
    #[error("virtual router id {0} is not this instance's")]
    Vrid(u8),
    #[error("version {got}, this instance speaks {ours}")]
    Version { got: u8, ours: u8 },
    #[error("authentication type {got}, expected {expected}")]
    AuthType { got: u8, expected: u8 },
    #[error("wrong password")]
    Password,
    #[error("advert interval {got:?}, ours is {ours:?} (version 2 requires them equal)")]
    Interval { got: Duration, ours: Duration },
    #[error("{got} addresses, {ours} configured")]
    AddressCount { got: usize, ours: usize },
    #[error("configured address {0} is not in the advert")]
    Addresses(IpAddr),
    #[error("unicast advert from {0}, which is not a unicast peer")]
    Source(IpAddr),
}

impl Reject {
    /// The key `lb status` counts this rejection under.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Ttl(_) => "ttl",
            Reject::Vrid(_) => "vrid",
            Reject::Version { .. } => "version",
            Reject::AuthType { .. } | Reject::Password => "auth",
            Reject::Interval { .. } => "interval",
            Reject::AddressCount { .. } => "address_count",
            Reject::Addresses(_) => "addresses",
            Reject::Source(_) => "source",
        }
    }
}

/// Checks an advert from `src`, received with `ttl`, against `instance`.
/// A version 3 advert whose interval differs from ours is accepted: the
/// state machine adopts the master's interval (RFC 5798, as keepalived).
pub fn validate(
    instance: &VrrpInstance,
    advert: &Advert,
    src: IpAddr,
    ttl: u8,
) -> Result<(), Reject> {
    if ttl != REQUIRED_TTL {
        return Err(Reject::Ttl(ttl));
    }
    if advert.vrid != instance.virtual_router_id {
        return Err(Reject::Vrid(advert.vrid));
    }
    if advert.version != instance.version {
        return Err(Reject::Version {
            got: advert.version.number(),
            ours: instance.version.number(),
        });
    }
    if !instance.unicast_peers.is_empty() && !instance.unicast_peers.contains(&src) {
        return Err(Reject::Source(src));
    }
    if instance.version == VrrpVersion::V2 {
        check_auth(instance, advert)?;
        let ours = instance.advert_interval;
        if advert.advert_interval.as_secs() != ours.as_secs() {
            return Err(Reject::Interval {
                got: advert.advert_interval,
                ours,
            });
        }
    }
    check_addresses(instance, advert)
}

fn check_auth(instance: &VrrpInstance, advert: &Advert) -> Result<(), Reject> {
    let got = advert.auth.unwrap_or_else(Auth::none);
    let expected = our_auth(instance);
    if got.kind != expected.kind {
        return Err(Reject::AuthType {
            got: got.kind,
            expected: expected.kind,
        });
    }
    if got.kind == AUTH_PASSWORD && got.data != expected.data {
        return Err(Reject::Password);
    }
    Ok(())
}

fn check_addresses(instance: &VrrpInstance, advert: &Advert) -> Result<(), Reject> {
    let ours = instance.virtual_addresses.len();
    if usize::from(advert.count) != ours || advert.addresses.len() != ours {
        return Err(Reject::AddressCount {
            got: usize::from(advert.count),
            ours,
        });
    }
    // Order does not matter (keepalived accepts the same set reversed).
    let theirs: BTreeSet<IpAddr> = advert.addresses.iter().copied().collect();
    match instance
        .virtual_addresses
        .iter()
        .find(|a| !theirs.contains(&a.address))
    {
        Some(missing) => Err(Reject::Addresses(missing.address)),
        None => Ok(()),
    }
}

fn our_auth(instance: &VrrpInstance) -> Auth {
    match (&instance.auth_pass, instance.version) {
        (Some(pass), VrrpVersion::V2) => Auth::password(pass),
        _ => Auth {
            kind: AUTH_NONE,
            data: [0; 8],
        },
    }
}

/// The advert `instance` sends with `priority` (effective, or 0 when
/// giving up) and `interval` (the configured one).
pub fn advert_for(instance: &VrrpInstance, priority: u8, interval: Duration) -> Advert {
    let addresses: Vec<IpAddr> = instance
        .virtual_addresses
        .iter()
        .map(|a| a.address)
        .collect();
    Advert {
        version: instance.version,
        vrid: instance.virtual_router_id,
        priority,
        count: addresses.len().min(255) as u8,
        auth: (instance.version == VrrpVersion::V2).then(|| our_auth(instance)),
        advert_interval: interval,
        checksum: 0,
        addresses,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::{
        VirtualAddress, VrrpInitialState, DEFAULT_GARP_DELAY, DEFAULT_GARP_REPEAT,
        DEFAULT_NOTIFY_TIMEOUT,
    };

    pub(crate) fn vip(s: &str) -> VirtualAddress {
        VirtualAddress {
            address: s.parse().unwrap(),
            prefix_len: 24,
        }
    }

    /// keepalived's side of the probes: VRID 51, PASS 1111, 1 s, one VIP.
    pub(crate) fn instance() -> VrrpInstance {
        VrrpInstance {
            name: "VI_1".into(),
            interface: "eth0".into(),
            virtual_router_id: 51,
            priority: 100,
            advert_interval: Duration::from_secs(1),
            version: VrrpVersion::V2,
            initial_state: VrrpInitialState::Backup,
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth_pass: Some("1111".into()),
            virtual_addresses: vec![vip("10.200.0.10")],
            virtual_addresses_excluded: vec![],
            unicast_peers: vec![],
            unicast_source: None,
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            fence: None,
            notify_timeout: DEFAULT_NOTIFY_TIMEOUT,
            track_virtual_servers: vec![],
            track_weight: 0,
            garp_repeat: DEFAULT_GARP_REPEAT,
            garp_delay: DEFAULT_GARP_DELAY,
        }
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));

    /// A correct advert from the peer ("DUT") with priority 200.
    fn good(i: &VrrpInstance) -> Advert {
        advert_for(i, 200, i.advert_interval)
    }

    fn reason(i: &VrrpInstance, a: &Advert, ttl: u8) -> &'static str {
        validate(i, a, PEER, ttl).unwrap_err().reason()
    }

    #[test]
    fn a_correct_advert_is_accepted() {
        let i = instance();
        assert_eq!(validate(&i, &good(&i), PEER, 255), Ok(()));
    }

    #[test]
    fn ttl_other_than_255_is_refused() {
        let i = instance();
        assert_eq!(reason(&i, &good(&i), 64), "ttl");
        assert_eq!(reason(&i, &good(&i), 254), "ttl");
    }

    #[test]
    fn another_vrid_is_refused() {
        let i = instance();
        let mut a = good(&i);
        a.vrid = 52;
        assert_eq!(reason(&i, &a, 255), "vrid");
    }

    #[test]
    fn a_v3_advert_to_a_v2_instance_is_refused() {
        let i = instance();
        let mut v3 = i.clone();
        v3.version = VrrpVersion::V3;
        let a = advert_for(&v3, 200, Duration::from_secs(1));
        assert_eq!(reason(&i, &a, 255), "version");
    }

    #[test]
    fn wrong_password_and_wrong_auth_type_are_refused() {
        let i = instance();
        let mut a = good(&i);
        a.auth = Some(Auth::password("1112"));
        assert_eq!(validate(&i, &a, PEER, 255), Err(Reject::Password));
        a.auth = Some(Auth::none());
        assert_eq!(reason(&i, &a, 255), "auth");
        let mut open = i.clone();
        open.auth_pass = None;
        assert_eq!(reason(&open, &good(&i), 255), "auth");
        assert_eq!(validate(&open, &good(&open), PEER, 255), Ok(()));
    }

    #[test]
    fn v2_interval_must_match_v3_interval_is_adopted() {
        let i = instance();
        let a = advert_for(&i, 200, Duration::from_secs(2));
        assert_eq!(reason(&i, &a, 255), "interval");
        let mut v3 = i.clone();
        v3.version = VrrpVersion::V3;
        v3.auth_pass = None;
        v3.advert_interval = Duration::from_millis(100);
        let a = advert_for(&v3, 200, Duration::from_secs(1));
        assert_eq!(validate(&v3, &a, PEER, 255), Ok(()));
    }

    #[test]
    fn address_count_and_set_must_match_in_any_order() {
        let mut i = instance();
        i.virtual_addresses = vec![vip("10.200.0.10"), vip("10.200.0.11")];
        let mut a = good(&i);
        a.addresses.reverse();
        assert_eq!(validate(&i, &a, PEER, 255), Ok(()), "reversed order");

        let mut missing = good(&i);
        missing.addresses.pop();
        missing.count = 1;
        assert_eq!(reason(&i, &missing, 255), "address_count");

        let mut extra = good(&i);
        extra.addresses.push("10.200.0.12".parse().unwrap());
        extra.count = 3;
        assert_eq!(reason(&i, &extra, 255), "address_count");

        let mut other = good(&i);
        other.addresses[1] = "10.200.0.99".parse().unwrap();
        assert_eq!(
            validate(&i, &other, PEER, 255),
            Err(Reject::Addresses("10.200.0.11".parse().unwrap()))
        );
        assert_eq!(reason(&i, &other, 255), "addresses");
    }

    #[test]
    fn unicast_adverts_only_from_the_peers() {
        let mut i = instance();
        i.unicast_peers = vec!["10.200.0.2".parse().unwrap()];
        assert_eq!(reason(&i, &good(&i), 255), "source");
        let peer: IpAddr = "10.200.0.2".parse().unwrap();
        assert_eq!(validate(&i, &good(&i), peer, 255), Ok(()));
    }

    #[test]
    fn what_we_send_is_what_keepalived_sends() {
        // keepalived's lb1 advert in vrrpv2-pass.pcap, byte for byte.
        let mut i = instance();
        i.priority = 150;
        let a = advert_for(&i, 150, i.advert_interval);
        let group: IpAddr = "224.0.0.18".parse().unwrap();
        let bytes = super::super::codec::encode(&a, PEER, group);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "213396010101da950ac8000a3131313100000000");
    }
}
