//! Sync groups: instances that change state together (NAT high
//! availability needs the client-side address and the real servers'
//! gateway to move as one). Pure: given one member's transition and every
//! instance's state, what the other members must do.
//!
//! - one member becomes master: every other member becomes master;
//! - one member leaves master for backup: every other master steps down;
//! - one member is in fault: the others are held in backup until no
//!   member is in fault any more.
//!
//! Only transitions a machine made on its own are fed back here: the ones
//! a directive causes are not, so one event cannot echo around a group.

use std::collections::HashMap;

use super::state::State;
use crate::config::{VrrpInstance, VrrpSyncGroup};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Call `Machine::follow(to)` on `member`.
    Follow {
        member: usize,
        to: State,
        reason: String,
    },
    /// Call `Machine::set_held(held)` on `member`.
    Hold {
        member: usize,
        held: bool,
        reason: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct SyncGroups {
    names: Vec<String>,
    /// Instance indexes per group.
    members: Vec<Vec<usize>>,
    /// Instance index -> group index.
    group_of: HashMap<usize, usize>,
}

impl SyncGroups {
    /// Groups by instance index in `instances`; unknown names are left
    /// out (the config validation refuses them).
    pub fn new(instances: &[VrrpInstance], groups: &[VrrpSyncGroup]) -> SyncGroups {
        let mut out = SyncGroups::default();
        for g in groups {
            let gi = out.names.len();
            let members: Vec<usize> = g
                .instances
                .iter()
                .filter_map(|n| instances.iter().position(|i| &i.name == n))
                .collect();
            for &m in &members {
                out.group_of.insert(m, gi);
            }
            out.names.push(g.name.clone());
            out.members.push(members);
        }
        out
    }

    /// The name of the group `member` belongs to.
    pub fn group_name(&self, member: usize) -> Option<&str> {
        self.group_of.get(&member).map(|&g| self.names[g].as_str())
    }

    /// Index of the group `member` belongs to.
    pub fn group_index(&self, member: usize) -> Option<usize> {
        self.group_of.get(&member).copied()
    }

    pub fn group_count(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, group: usize) -> &str {
        &self.names[group]
    }

    pub fn members(&self, group: usize) -> &[usize] {
        &self.members[group]
    }

    /// `member` moved from `from` to `to` by itself; `states` holds every
    /// instance's state after that move (indexed like the instances).
    pub fn react(
        &self,
        member: usize,
        from: State,
        to: State,
        states: &[State],
        member_name: &str,
    ) -> Vec<Directive> {
        let Some(&g) = self.group_of.get(&member) else {
            return Vec::new();
        };
        let name = &self.names[g];
        let others = self.members[g].iter().copied().filter(|&m| m != member);
        let any_fault = self.members[g].iter().any(|&m| states[m] == State::Fault);
        match (from, to) {
            (_, State::Fault) => others
                .map(|m| Directive::Hold {
                    member: m,
                    held: true,
                    reason: format!("sync group {name}: {member_name} in fault"),
                })
                .collect(),
            (State::Fault, _) if !any_fault => others
                .map(|m| Directive::Hold {
                    member: m,
                    held: false,
                    reason: format!("sync group {name}: no member in fault"),
                })
                .collect(),
            (_, State::Master) if !any_fault => others
                .filter(|&m| states[m] == State::Backup)
                .map(|m| Directive::Follow {
                    member: m,
                    to: State::Master,
                    reason: format!("sync group {name}: {member_name} became master"),
                })
                .collect(),
            (State::Master, State::Backup) => others
                .filter(|&m| states[m] == State::Master)
                .map(|m| Directive::Follow {
                    member: m,
                    to: State::Backup,
                    reason: format!("sync group {name}: {member_name} left master"),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::validate::tests::instance;

    fn setup() -> (Vec<VrrpInstance>, SyncGroups) {
        let names = ["VI_CLIENT", "VI_SERVERS", "VI_OTHER", "VI_ALONE"];
        let instances: Vec<VrrpInstance> = names
            .iter()
            .map(|n| {
                let mut i = instance();
                i.name = n.to_string();
                i
            })
            .collect();
        let group = VrrpSyncGroup {
            name: "G1".into(),
            instances: vec!["VI_CLIENT".into(), "VI_SERVERS".into(), "VI_OTHER".into()],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
        };
        let groups = SyncGroups::new(&instances, &[group]);
        (instances, groups)
    }

    fn follows(d: &[Directive]) -> Vec<(usize, State)> {
        d.iter()
            .map(|d| match d {
                Directive::Follow { member, to, .. } => (*member, *to),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn holds(d: &[Directive]) -> Vec<(usize, bool)> {
        d.iter()
            .map(|d| match d {
                Directive::Hold { member, held, .. } => (*member, *held),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    use State::{Backup, Fault, Master};

    #[test]
    fn one_becomes_master_all_become_master() {
        let (_, g) = setup();
        let states = [Master, Backup, Backup, Backup];
        let d = g.react(0, Backup, Master, &states, "VI_CLIENT");
        assert_eq!(follows(&d), vec![(1, Master), (2, Master)]);
        match &d[0] {
            Directive::Follow { reason, .. } => {
                assert_eq!(reason, "sync group G1: VI_CLIENT became master")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.group_name(1), Some("G1"));
        assert_eq!(g.group_name(3), None);
    }

    #[test]
    fn one_leaves_master_all_step_down() {
        let (_, g) = setup();
        let states = [Master, Backup, Master, Master];
        let d = g.react(1, Master, Backup, &states, "VI_SERVERS");
        assert_eq!(
            follows(&d),
            vec![(0, Backup), (2, Backup)],
            "VI_ALONE is not in G1"
        );
    }

    #[test]
    fn a_fault_holds_the_others_until_it_clears() {
        let (_, g) = setup();
        let states = [Master, Fault, Backup, Master];
        let d = g.react(1, Master, Fault, &states, "VI_SERVERS");
        assert_eq!(holds(&d), vec![(0, true), (2, true)]);
        // While a member is in fault, a master transition is not followed.
        let states = [Master, Fault, Backup, Master];
        assert!(g.react(0, Backup, Master, &states, "VI_CLIENT").is_empty());
        let states = [Backup, Backup, Backup, Master];
        let d = g.react(1, Fault, Backup, &states, "VI_SERVERS");
        assert_eq!(holds(&d), vec![(0, false), (2, false)]);
    }

    #[test]
    fn instances_outside_groups_do_nothing() {
        let (_, g) = setup();
        let states = [Backup, Backup, Backup, Master];
        assert!(g.react(3, Backup, Master, &states, "VI_ALONE").is_empty());
    }
}
