use lb_tests::scenario::Web;
use lb_tests::topology::Forwarding;
#[test]
fn scratch() {
    let mode = if std::env::var("MODE").as_deref() == Ok("nat") {
        Forwarding::Nat
    } else {
        Forwarding::Dr
    };
    let web = Web::start(mode, &[1, 1, 1]);
    eprintln!(
        "READY {} {}",
        web.topo.balancer.ns.name(),
        web.agent.socket.display()
    );
    std::thread::sleep(std::time::Duration::from_secs(400));
    drop(web);
}
