//! N lb nodes behind one ECMP route, each with its own flow table, all
//! sharing one service config: the model the `scaleout` suite runs.
//!
//! A packet of a flow reaches the node ECMP picks. That node does what
//! lb's data plane does (lb-ebpf `schedule.rs`): its flow table first (an
//! entry whose real server is still active wins), else the Maglev table's
//! slot for the flow, which it then remembers. Every node builds the same
//! Maglev table from the same config (`lb_userspace::maglev::build_table`)
//! and hashes flows with the kernel's own `flow_hash` and seed, so a node
//! that never saw a flow picks what the first node picked, unless the set
//! of real servers changed in between.

use std::collections::HashMap;

use lb_common::{
    hash::{flow_hash, MAGLEV_SEED},
    FlowKey, FAMILY_IPV4, PROTO_TCP,
};
use lb_userspace::maglev::{build_table, Entry};

use super::ecmp::{mix64, multipath_hash, Ecmp};

/// What the model needs of a flow: its two hashes, computed once.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    /// The router's multipath hash (which node).
    pub ecmp: u32,
    /// lb's flow hash (which Maglev slot).
    pub slot_hash: u32,
}

/// `n` TCP flows to one VIP (192.0.2.10:80) from clients spread over
/// 100.64.0.0/10 with random source ports, reproducible from `seed`.
pub fn flows(n: usize, seed: u64, router_secret: u64) -> Vec<Flow> {
    let vip = u32::from_ne_bytes([192, 0, 2, 10]);
    (0..n as u64)
        .map(|i| {
            let r = mix64(seed ^ mix64(i));
            let client = 0x6440_0000 | (r as u32 & 0x003f_ffff);
            let key = FlowKey {
                src: [client.to_be(), 0, 0, 0],
                dst: [vip, 0, 0, 0],
                src_port_be: (1024 + (r >> 32) as u16 % 64_512).to_be(),
                dst_port_be: 80u16.to_be(),
                proto: PROTO_TCP,
                family: FAMILY_IPV4,
                _pad: [0; 2],
            };
            Flow {
                ecmp: multipath_hash(&key, router_secret),
                slot_hash: flow_hash(&key, MAGLEV_SEED),
            }
        })
        .collect()
}

/// One service as every node has it: its real servers and Maglev table.
#[derive(Clone, Debug)]
pub struct Service {
    table: Vec<u32>,
    /// Indexed by backend id: still in the service.
    active: Vec<bool>,
}

impl Service {
    pub fn new(entries: &[Entry], table_size: u32) -> Self {
        let max = entries.iter().map(|e| e.id + 1).max().unwrap_or(0);
        let mut active = vec![false; max as usize];
        for e in entries.iter().filter(|e| e.weight > 0) {
            active[e.id as usize] = true;
        }
        Service {
            table: build_table(entries, table_size),
            active,
        }
    }

    /// The Maglev table's choice for a flow (what a node without an entry
    /// for it picks).
    pub fn maglev(&self, f: &Flow) -> u32 {
        self.table[(f.slot_hash % self.table.len() as u32) as usize]
    }

    pub fn is_active(&self, backend: u32) -> bool {
        self.active.get(backend as usize).copied().unwrap_or(false)
    }
}

/// The nodes and the route in front of them.
pub struct Cluster<E: Ecmp> {
    ecmp: E,
    /// Per node id: flow index -> backend id (the node's flow table).
    tables: HashMap<u32, HashMap<u32, u32>>,
    service: Service,
}

impl<E: Ecmp> Cluster<E> {
    pub fn new(ecmp: E, service: Service) -> Self {
        Cluster {
            ecmp,
            tables: HashMap::new(),
            service,
        }
    }

    /// One packet of flow `i`: the node it reaches and the real server
    /// that node sends it to.
    pub fn deliver(&mut self, i: u32, f: &Flow) -> (u32, u32) {
        let node = self.ecmp.pick(f.ecmp);
        let table = self.tables.entry(node).or_default();
        if let Some(&b) = table.get(&i) {
            if self.service.is_active(b) {
                return (node, b);
            }
        }
        let b = self.service.maglev(f);
        table.insert(i, b);
        (node, b)
    }

    /// The route now lists `nodes`; the flow tables of nodes that left go
    /// with them.
    pub fn set_nodes(&mut self, nodes: &[u32]) {
        self.ecmp.update(nodes);
        self.tables.retain(|id, _| nodes.contains(id));
    }

    /// Every node applies the new config (the same one).
    pub fn set_service(&mut self, service: Service) {
        self.service = service;
    }

    /// The largest number of flows one node remembers (against the flow
    /// table's size: the model forgets nothing).
    pub fn max_entries(&self) -> usize {
        self.tables.values().map(HashMap::len).max().unwrap_or(0)
    }
}

/// A change to a running cluster.
pub struct Change {
    /// Next hops of the route afterwards (node ids, route order).
    pub nodes: Vec<u32>,
    /// The service afterwards (the same as before if only nodes change).
    pub service: Service,
}

/// What a change did to established flows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub flows: u64,
    /// Flows whose real server is still in the service: those that could
    /// keep it.
    pub could_keep: u64,
    /// Of those, flows whose packets still reach the same real server.
    pub kept: u64,
    /// Flows that ECMP sent to another node.
    pub moved_node: u64,
    /// Of `could_keep`, flows for which the new Maglev table names the same
    /// real server: what a node without flow state would do for all.
    pub maglev_same: u64,
    /// Most flows any node remembers at the end.
    pub max_node_entries: usize,
}

impl Outcome {
    /// `kept` in percent of `could_keep`.
    pub fn kept_pct(&self) -> f64 {
        pct(self.kept, self.could_keep)
    }
}

pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Runs `flows` through the cluster until every node that sees one has its
/// entry, applies `change`, and runs them through again.
pub fn simulate<E: Ecmp>(mut cluster: Cluster<E>, flows: &[Flow], change: Change) -> Outcome {
    let before: Vec<(u32, u32)> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| cluster.deliver(i as u32, f))
        .collect();
    let old = cluster.service.clone();
    cluster.set_nodes(&change.nodes);
    cluster.set_service(change.service);
    let mut o = Outcome {
        flows: flows.len() as u64,
        ..Outcome::default()
    };
    for (i, (f, &(node0, b0))) in flows.iter().zip(&before).enumerate() {
        let (node1, b1) = cluster.deliver(i as u32, f);
        o.moved_node += u64::from(node1 != node0);
        if !cluster.service.is_active(b0) {
            continue;
        }
        o.could_keep += 1;
        o.kept += u64::from(b1 == b0);
        o.maglev_same += u64::from(cluster.service.maglev(f) == old.maglev(f));
    }
    o.max_node_entries = cluster.max_entries();
    o
}

#[cfg(test)]
mod tests {
    use super::super::ecmp::HashThreshold;
    use super::*;
    use crate::suites::control::entries;

    fn run(nodes: u32, after: Vec<u32>, service_after: Option<Vec<Entry>>) -> Outcome {
        let e = entries(50);
        let flows = flows(20_000, 1, 2);
        let ids: Vec<u32> = (0..nodes).collect();
        let cluster = Cluster::new(HashThreshold::new(&ids), Service::new(&e, 5003));
        let service = Service::new(service_after.as_ref().unwrap_or(&e), 5003);
        simulate(
            cluster,
            &flows,
            Change {
                nodes: after,
                service,
            },
        )
    }

    #[test]
    fn nodes_joining_and_leaving_move_flows_but_keep_their_real_server() {
        let join = run(10, (0..11).collect(), None);
        assert!(join.moved_node > 5_000, "{join:?}");
        assert_eq!(join.kept, join.flows);
        let leave = run(10, (0..10).filter(|&i| i != 3).collect(), None);
        assert!(leave.moved_node > 5_000, "{leave:?}");
        assert_eq!(leave.kept, leave.flows);
    }

    #[test]
    fn a_real_server_leaving_loses_only_its_own_flows() {
        let e: Vec<Entry> = entries(50).into_iter().filter(|e| e.id != 7).collect();
        let o = run(10, (0..10).collect(), Some(e));
        // About 1/50 of the flows were on real server 7.
        assert!((300..500).contains(&(o.flows - o.could_keep)), "{o:?}");
        assert_eq!(o.kept, o.could_keep);
        assert_eq!(o.moved_node, 0);
        // Maglev alone would have moved a few others too.
        assert!(o.maglev_same < o.could_keep, "{o:?}");
    }

    #[test]
    fn both_at_once_lose_flows_that_moved_node_and_maglev_slot() {
        let e: Vec<Entry> = entries(50).into_iter().filter(|e| e.id != 7).collect();
        let o = run(10, (0..11).collect(), Some(e));
        assert!(o.kept < o.could_keep, "{o:?}");
        // Only flows that changed node can lose their server.
        assert!(o.could_keep - o.kept <= o.moved_node, "{o:?}");
    }
}
