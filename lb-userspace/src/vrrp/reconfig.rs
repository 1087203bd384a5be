//! What a reload (`lb reload`, SIGHUP) may change in running VRRP
//! instances, decided before anything is applied (pure).
//!
//! Live: what only changes how an instance competes or reports —
//! priority, advert interval, preemption, tracking, authentication,
//! scripts, announcement counts. Everything that would move addresses,
//! sockets or the group a master belongs to (interface, VRID, version,
//! virtual addresses, unicast peers and source, adding or removing an
//! instance, sync groups) is refused, and the whole reload with it: a
//! reload is applied completely or not at all. Those take a restart,
//! after `lb vrrp handoff` on a master so its addresses move cleanly.

use crate::config::{VrrpInstance, VrrpSyncGroup};

/// Why a reload cannot apply the new VRRP sections; names what needs a
/// restart.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "VRRP changes that need a restart: {}; nothing was applied (restart the agent for \
     them, after `lb vrrp handoff` on a master)",
    .0.join("; ")
)]
pub struct NeedsRestart(pub Vec<String>);

/// The instances whose live settings changed, in their new form; empty
/// when VRRP is unchanged. `Err` when a change needs a restart.
pub fn plan(
    running: &[VrrpInstance],
    running_groups: &[VrrpSyncGroup],
    new: &[VrrpInstance],
    new_groups: &[VrrpSyncGroup],
) -> Result<Vec<VrrpInstance>, NeedsRestart> {
    let mut refused = Vec::new();
    if running_groups != new_groups {
        refused.push("[[vrrp_sync_group]] changed".to_string());
    }
    for r in running {
        if !new.iter().any(|n| n.name == r.name) {
            refused.push(format!("instance {} removed", r.name));
        }
    }
    let mut live = Vec::new();
    for n in new {
        let Some(r) = running.iter().find(|r| r.name == n.name) else {
            refused.push(format!("instance {} added", n.name));
            continue;
        };
        let fixed = fixed_fields(r, n);
        if !fixed.is_empty() {
            refused.push(format!("instance {}: {}", n.name, fixed.join(", ")));
        } else if r != n {
            live.push(n.clone());
        }
    }
    if refused.is_empty() {
        Ok(live)
    } else {
        Err(NeedsRestart(refused))
    }
}

/// The keys that differ and cannot change while the instance runs.
fn fixed_fields(r: &VrrpInstance, n: &VrrpInstance) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |differs: bool, key: &'static str| {
        if differs {
            out.push(key);
        }
    };
    check(r.interface != n.interface, "interface");
    check(
        r.virtual_router_id != n.virtual_router_id,
        "virtual_router_id",
    );
    check(r.version != n.version, "version");
    check(
        r.virtual_addresses != n.virtual_addresses,
        "virtual_addresses",
    );
    check(
        r.virtual_addresses_excluded != n.virtual_addresses_excluded,
        "virtual_addresses_excluded",
    );
    check(r.unicast_peers != n.unicast_peers, "unicast_peers");
    check(r.unicast_source != n.unicast_source, "unicast_source");
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::vrrp::validate::tests::instance;

    #[test]
    fn unchanged_is_nothing_to_do() {
        let i = vec![instance()];
        assert_eq!(plan(&i, &[], &i, &[]), Ok(vec![]));
    }

    #[test]
    fn priority_and_interval_change_live() {
        let running = vec![instance()];
        let mut changed = instance();
        changed.priority = 200;
        changed.advert_interval = Duration::from_secs(2);
        changed.preempt = !changed.preempt;
        let new = vec![changed.clone()];
        assert_eq!(plan(&running, &[], &new, &[]), Ok(vec![changed]));
    }

    #[test]
    fn address_socket_and_membership_changes_are_refused_by_name() {
        let running = vec![instance()];
        let mut moved = instance();
        moved.interface = "eth9".into();
        moved.virtual_router_id = 99;
        moved.priority = 1;
        let mut added = instance();
        added.name = "VI_2".into();
        let e = plan(&running, &[], &[moved, added], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VRRP changes that need a restart: instance VI_1: interface, virtual_router_id; \
             instance VI_2 added; nothing was applied (restart the agent for them, after \
             `lb vrrp handoff` on a master)"
        );
        let e = plan(&running, &[], &[], &[]).unwrap_err();
        assert_eq!(e.0, vec!["instance VI_1 removed".to_string()]);
    }
}
