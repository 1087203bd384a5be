//! Stopping on SIGINT/SIGTERM: the agent's tasks end and its control socket
//! is removed; XDP stays attached and forwarding with the maps pinned (the
//! next `lb run` adopts them, `lb unload` removes everything).

use crate::config::EbpfLog;

use super::{
    events::Agent,
    startup::{Background, Xdp},
};

/// Stop what runs beside the event loop, then say what stays.
pub async fn stop(background: Background, mut agent: Agent, xdp: Option<Xdp>) {
    let Background {
        server,
        serving,
        metrics,
    } = background;
    // First: a master hands its addresses over (priority 0) while this
    // node still forwards what reaches it.
    if let Some(vrrp) = &agent.vrrp {
        vrrp.shutdown().await;
    }
    // Likewise: the BGP daemon withdraws the VIPs; XDP forwards what still
    // arrives (see `crate::announce` for why a clean stop withdraws).
    if let Some(announcer) = &mut agent.announcer {
        announcer.stop().await;
    }
    serving.abort();
    let _ = serving.await;
    // The last reference: removes the socket file.
    drop(server);
    if let Some(neighbours) = agent.neighbours {
        neighbours.stop();
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    // The program outlives the agent, but nobody reads its log any more:
    // its records would only fill the ring buffer.
    let off = agent
        .state
        .with(|s| s.dataplane.as_mut().map(|d| d.set_ebpf_log(EbpfLog::Off)))
        .await;
    if let Ok(Some(Err(e))) = off {
        tracing::warn!("ebpf_log: cannot switch the data plane's log off: {e}");
    }
    match xdp {
        Some(xdp) => tracing::info!(
            "stopped; XDP stays attached and forwarding with the maps pinned in {} (the next \
             `lb run` adopts them; `lb unload --pin-dir {}` removes everything)",
            xdp.pins.path().display(),
            xdp.pins.path().display()
        ),
        None => tracing::info!("stopped"),
    }
}
