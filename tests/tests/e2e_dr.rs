//! LVS-DR as in seed 000, with `lb` in place of IPVS: one segment, real
//! servers hold the VIP on `lo` and answer the client directly.

use std::collections::BTreeSet;
use std::net::IpAddr;

use lb_tests::client::{ab, curl, url};
use lb_tests::nginx::{check_shares, Nginx};
use lb_tests::scenario::Web;
use lb_tests::topology::Forwarding;

const REQUESTS: u32 = 3000;
const CONCURRENCY: u32 = 30;
const TOLERANCE: f64 = 0.2;

fn shares_follow_weights(weights: &[u32]) {
    let web = Web::start(Forwarding::Dr, weights);
    let before = web.counts();
    let report = ab(&web.topo.client.ns, &web.vip_url(), REQUESTS, CONCURRENCY).unwrap();
    assert_eq!(report.complete, REQUESTS as u64, "{report:?}");
    assert_eq!(report.failed, 0, "ab saw failed requests: {report:?}");
    assert_eq!(report.non_2xx, 0, "{report:?}");
    let counts: Vec<usize> = web
        .counts()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), REQUESTS as usize);
    check_shares(&counts, weights, TOLERANCE).unwrap();
    web.finish();
}

#[test]
fn dr_curl_through_vip_reaches_each_real_server() {
    let web = Web::start(Forwarding::Dr, &[1, 1, 1]);
    let seen = web.curl_until(&web.vip_url(), 3, 100);
    let names: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["realserver1", "realserver2", "realserver3"]),
        "answers through the VIP: {seen:?}"
    );
    web.finish();
}

#[test]
fn dr_ab_equal_weights_no_failures_even_shares() {
    shares_follow_weights(&[1, 1, 1]);
}

#[test]
fn dr_ab_weights_1_2_3_shares_follow_weights() {
    shares_follow_weights(&[1, 2, 3]);
}

#[test]
fn dr_weight_zero_gets_no_new_flows() {
    let weights = [0, 1, 1];
    let web = Web::start(Forwarding::Dr, &weights);
    let before = web.counts();
    let report = ab(&web.topo.client.ns, &web.vip_url(), 1000, 20).unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    let counts: Vec<usize> = web
        .counts()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(counts[0], 0, "the weight-0 server got requests: {counts:?}");
    web.finish();
}

#[test]
fn dr_balancer_own_address_works_while_attached() {
    let web = Web::start(Forwarding::Dr, &[1, 1, 1]);
    let own = Nginx::start_on(&web.topo.balancer.ns, "balancer", 8080).unwrap();
    let client = &web.topo.client.ns;
    client
        .exec(&[
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            &web.topo.balancer.addr.to_string(),
        ])
        .unwrap();
    let body = curl(client, &url(IpAddr::V4(web.topo.balancer.addr), 8080, "/")).unwrap();
    assert_eq!(body.trim(), "balancer");
    // Port 8080 on the VIP is no service: the balancer itself answers.
    let body = curl(client, &url(IpAddr::V4(web.topo.vip), 8080, "/")).unwrap();
    assert_eq!(body.trim(), "balancer");
    drop(own);
    web.finish();
}
