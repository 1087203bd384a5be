//! The checks every forwarding mode passes, written once for
//! `tests/e2e_nat.rs` and `tests/e2e_dr.rs`: each real server answers
//! through the VIP, `ab` sees no failure and the real servers' own logs
//! show shares that follow the weights, a weight-0 server gets nothing
//! new. Panics on failure, as tests want.

use std::collections::{BTreeMap, BTreeSet};

use crate::client::{ab, AbReport};
use crate::nginx::check_shares;
use crate::scenario::Web;
use crate::topology::Forwarding;

/// Requests and concurrency of one share measurement.
pub const REQUESTS: u32 = 3000;
pub const CONCURRENCY: u32 = 30;
/// The bound: each share within 20% of its weight's share.
pub const TOLERANCE: f64 = 0.2;

/// `ab` through the VIP from the client; its report and the requests each
/// real server logged meanwhile (in order).
pub fn ab_through_vip(web: &Web, requests: u32, concurrency: u32) -> (AbReport, Vec<usize>) {
    let before = web.counts();
    let report = ab(&web.topo.client.ns, &web.vip_url(), requests, concurrency)
        .unwrap_or_else(|e| panic!("{e:#}\nlb log:\n{}", web.agent.log()));
    let counts = web
        .counts()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    (report, counts)
}

/// curl through the VIP until each of three real servers answered (at
/// most 100 tries); how often each did.
pub fn every_real_server_answers(web: &Web) -> BTreeMap<String, usize> {
    let seen = web.curl_until(&web.vip_url(), 3, 100);
    let names: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["realserver1", "realserver2", "realserver3"]),
        "answers through the VIP: {seen:?}"
    );
    seen
}

/// One real server per weight: [`REQUESTS`] through the VIP all complete
/// with a 2xx, every one is logged by a real server, and the shares are
/// within [`TOLERANCE`] of the weights'.
pub fn shares_follow_weights(forwarding: Forwarding, weights: &[u32]) {
    let web = Web::start(forwarding, weights);
    let (report, counts) = ab_through_vip(&web, REQUESTS, CONCURRENCY);
    assert_eq!(report.complete, REQUESTS as u64, "{report:?}");
    assert_eq!(report.failed, 0, "ab saw failed requests: {report:?}");
    assert_eq!(report.non_2xx, 0, "{report:?}");
    assert_eq!(counts.iter().sum::<usize>(), REQUESTS as usize);
    check_shares(&counts, weights, TOLERANCE).unwrap();
    web.finish();
}

/// 1,000 requests through the VIP: none fails, and no real server of
/// weight 0 logs one. The counts per real server, for more checks.
pub fn weight_zero_gets_no_new_flows(web: &Web, weights: &[u32]) -> Vec<usize> {
    let (report, counts) = ab_through_vip(web, 1000, 20);
    assert_eq!(report.failed, 0, "{report:?}");
    for (i, _) in weights.iter().enumerate().filter(|(_, &w)| w == 0) {
        assert_eq!(counts[i], 0, "the weight-0 server got requests: {counts:?}");
    }
    counts
}
