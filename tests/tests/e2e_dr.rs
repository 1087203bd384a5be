//! LVS-DR as in seed 000, with `lb` in place of IPVS: one segment, real
//! servers hold the VIP on `lo` and answer the client directly.

use std::net::IpAddr;

use lb_tests::client::{curl, url};
use lb_tests::forwarding_checks as checks;
use lb_tests::nginx::Nginx;
use lb_tests::scenario::Web;
use lb_tests::topology::Forwarding;

#[test]
fn dr_curl_through_vip_reaches_each_real_server() {
    let web = Web::start(Forwarding::Dr, &[1, 1, 1]);
    checks::every_real_server_answers(&web);
    web.finish();
}

#[test]
fn dr_ab_equal_weights_no_failures_even_shares() {
    checks::shares_follow_weights(Forwarding::Dr, &[1, 1, 1]);
}

#[test]
fn dr_ab_weights_1_2_3_shares_follow_weights() {
    checks::shares_follow_weights(Forwarding::Dr, &[1, 2, 3]);
}

#[test]
fn dr_weight_zero_gets_no_new_flows() {
    let weights = [0, 1, 1];
    let web = Web::start(Forwarding::Dr, &weights);
    // Twice: the second run's flows find the table the first one left.
    checks::weight_zero_gets_no_new_flows(&web, &weights);
    checks::weight_zero_gets_no_new_flows(&web, &weights);
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
