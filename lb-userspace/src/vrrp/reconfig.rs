//! What a reload (`lb reload`, SIGHUP) may change in running VRRP
//! instances, decided before anything is applied (pure).
//!
//! Live: what only changes how an instance competes or reports —
//! priority, advert interval, preemption, tracking, authentication,
//! scripts, announcement counts — and whole instances added (started as
//! at `lb run`) or removed (stopped as at a clean stop: a master sends
//! priority 0 and removes its addresses first). A change inside an
//! instance that would move its addresses, socket or group (interface,
//! VRID, version, virtual addresses, unicast peers and source) and any
//! sync group change are refused, and the whole reload with them: the
//! rest of the file is not applied either. Those take a restart, after
//! `lb vrrp handoff` on a master so its addresses move cleanly (or
//! removing the instance in one reload and adding it back in the next).

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

/// What a reload does to the running instances.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Running instances with new live settings, in their new form.
    pub changed: Vec<VrrpInstance>,
    pub added: Vec<VrrpInstance>,
    /// By name.
    pub removed: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }

    /// For the reload's reply: "VI_1 changed, VI_2 added, VI_3 removed".
    pub fn describe(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        out.extend(self.changed.iter().map(|i| format!("{} changed", i.name)));
        out.extend(self.added.iter().map(|i| format!("{} added", i.name)));
        out.extend(self.removed.iter().map(|n| format!("{n} removed")));
        out.join(", ")
    }
}

/// What to do with the running instances; empty when VRRP is unchanged.
/// `Err` when a change needs a restart.
pub fn plan(
    running: &[VrrpInstance],
    running_groups: &[VrrpSyncGroup],
    new: &[VrrpInstance],
    new_groups: &[VrrpSyncGroup],
) -> Result<Plan, NeedsRestart> {
    let mut refused = Vec::new();
    if running_groups != new_groups {
        refused.push("[[vrrp_sync_group]] changed".to_string());
    }
    if running.is_empty() && !new.is_empty() {
        // No VRRP task runs: the agent started without instances.
        refused.push("the agent started without [[vrrp_instance]], so VRRP is not running".into());
    }
    let mut plan = Plan::default();
    for r in running {
        if !new.iter().any(|n| n.name == r.name) {
            plan.removed.push(r.name.clone());
        }
    }
    for n in new {
        let Some(r) = running.iter().find(|r| r.name == n.name) else {
            plan.added.push(n.clone());
            continue;
        };
        let fixed = fixed_fields(r, n);
        if !fixed.is_empty() {
            refused.push(format!("instance {}: {}", n.name, fixed.join(", ")));
        } else if r != n {
            plan.changed.push(n.clone());
        }
    }
    if refused.is_empty() {
        Ok(plan)
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
        assert_eq!(plan(&i, &[], &i, &[]), Ok(Plan::default()));
    }

    #[test]
    fn priority_and_interval_change_live() {
        let running = vec![instance()];
        let mut changed = instance();
        changed.priority = 200;
        changed.advert_interval = Duration::from_secs(2);
        changed.preempt = !changed.preempt;
        let new = vec![changed.clone()];
        let p = plan(&running, &[], &new, &[]).unwrap();
        assert_eq!(p.changed, vec![changed]);
        assert_eq!(p.describe(), "VI_1 changed");
    }

    #[test]
    fn instances_come_and_go_live() {
        let running = vec![instance()];
        let mut added = instance();
        added.name = "VI_2".into();
        let p = plan(&running, &[], &[added.clone()], &[]).unwrap();
        assert_eq!(
            (p.added, p.removed),
            (vec![added], vec!["VI_1".to_string()])
        );
        let e = plan(&[], &[], &running, &[]).unwrap_err();
        assert!(e.0[0].contains("started without"), "{e}");
    }

    #[test]
    fn address_and_socket_changes_are_refused_by_name() {
        let running = vec![instance()];
        let mut moved = instance();
        moved.interface = "eth9".into();
        moved.virtual_router_id = 99;
        moved.priority = 1;
        let e = plan(&running, &[], &[moved], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VRRP changes that need a restart: instance VI_1: interface, virtual_router_id; \
             nothing was applied (restart the agent for them, after `lb vrrp handoff` on a \
             master)"
        );
    }
}
