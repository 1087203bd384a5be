//! systemd readiness: the `sd_notify` protocol (through the `sd-notify`
//! crate) for the packaged unit's `Type=notify`, so `systemctl start lb`
//! returns once the data plane forwards. Outside systemd (no
//! `NOTIFY_SOCKET` in the environment) it does nothing.

/// Tells systemd the agent is ready: call once the XDP program is attached
/// and the maps are filled. `status` is what `systemctl status` shows.
/// A failure is logged, not fatal: the agent forwards either way, and
/// systemd reports its own start timeout.
pub fn notify_ready(status: &str) {
    let state = [
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ];
    if let Err(e) = sd_notify::notify(&state) {
        tracing::warn!("telling systemd the agent is ready (sd_notify READY=1): {e}");
    }
}
