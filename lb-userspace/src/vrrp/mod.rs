//! VRRP (RFC 3768 version 2, RFC 5798 version 3), compatible with
//! keepalived: two lb nodes, or one lb and one keepalived node, share the
//! virtual addresses; the master holds them and announces them. It never
//! touches the BPF maps: failover is addresses and ARP, the data plane is
//! the same on both nodes.
//!
//! - `codec`: the advert on the wire (pure);
//! - `validate`: what an instance accepts and what it sends (pure);
//! - `state`: one instance's state machine, time as input (pure);
//! - `sync`: sync groups (pure);
//! - `socket`, `announce`, `notify`: the raw socket, gratuitous ARP /
//!   unsolicited NA, the notify script runner;
//! - `reconfig`: what a reload may change live (pure);
//! - `driver`: the task that ties them together;
//! - this file: [`VrrpHandle`], what the agent holds.

pub mod announce;
pub mod codec;
mod driver;
pub mod notify;
pub mod reconfig;
pub mod socket;
pub mod state;
pub mod sync;
pub mod validate;

use std::{collections::HashSet, sync::Mutex, time::Duration};

use thiserror::Error;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    config::{VrrpInstance, VrrpSyncGroup},
    netlink::NetlinkError,
    status::VrrpStatus,
};
use driver::{Command, Driver};

/// How long [`VrrpHandle::shutdown`] waits at most beyond the notify
/// timeout: the priority 0 adverts and address removals take
/// milliseconds; this only guards against a wedged netlink socket.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum VrrpError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Announce(#[from] announce::AnnounceError),
    #[error(
        "VRRP instance {instance}: {addresses} virtual addresses make a {bytes}-byte advert, \
         more than the interface's MTU of {mtu}; move some to virtual_addresses_excluded \
         (held by the master but not advertised)"
    )]
    AdvertTooLarge {
        instance: String,
        addresses: usize,
        bytes: usize,
        mtu: u32,
    },
}

/// Why `lb vrrp handoff|resume`, or a reload's VRRP changes, were not
/// (all) carried out; the text is what the caller is answered.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The VRRP task has ended (the agent is stopping).
    #[error("VRRP is stopped")]
    Stopped,
    /// `lb vrrp handoff|resume INSTANCE` with an unknown name.
    #[error("no VRRP instance named {name:?} (instances: {})", .known.join(", "))]
    NoSuchInstance { name: String, known: Vec<String> },
    /// Instances a reload adds that could not start, each with why; the
    /// rest of the reload is applied.
    #[error("{}", not_added(.0))]
    NotAdded(Vec<(String, VrrpError)>),
}

fn not_added(failed: &[(String, VrrpError)]) -> String {
    failed
        .iter()
        .map(|(name, e)| format!("adding {name}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The running VRRP instances. Dropping the handle stops them as
/// [`VrrpHandle::shutdown`] does, without waiting.
pub struct VrrpHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Vec<VrrpStatus>>,
    task: Mutex<Option<JoinHandle<()>>>,
    notify_timeout: Duration,
}

impl VrrpHandle {
    /// Opens the sockets, removes virtual addresses an earlier run left
    /// behind, and starts every instance (as backup, or master at once
    /// for priority 255). Needs a tokio runtime, CAP_NET_RAW and
    /// CAP_NET_ADMIN.
    pub async fn start(
        instances: &[VrrpInstance],
        groups: &[VrrpSyncGroup],
    ) -> Result<VrrpHandle, VrrpError> {
        let (status_tx, status) = watch::channel(Vec::new());
        let (driver, inputs) = Driver::open(instances, groups, status_tx).await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(driver.run(inputs, rx));
        Ok(VrrpHandle {
            commands,
            status,
            task: Mutex::new(Some(task)),
            notify_timeout: instances
                .iter()
                .map(|i| i.notify_timeout)
                .max()
                .unwrap_or_default(),
        })
    }

    /// Every instance as `lb status` shows it.
    pub fn status(&self) -> Vec<VrrpStatus> {
        let now = driver_unix_ms();
        let mut all = self.status.borrow().clone();
        for s in &mut all {
            if let Some(t) = &mut s.last_transition {
                t.ms_ago = now.saturating_sub(t.at_unix_ms);
            }
        }
        all
    }

    /// Changes of the status, for the agent's metrics or a waiting test.
    pub fn subscribe(&self) -> watch::Receiver<Vec<VrrpStatus>> {
        self.status.clone()
    }

    /// `lb vrrp handoff [INSTANCE]`: masters give up at once (priority 0)
    /// and every selected instance stays backup until [`Self::resume`].
    /// An instance in a sync group takes its whole group along.
    pub async fn handoff(&self, instance: Option<String>) -> Result<String, CommandError> {
        self.ask(|reply| Command::Handoff { instance, reply }).await
    }

    /// `lb vrrp resume [INSTANCE]`: back to normal elections.
    pub async fn resume(&self, instance: Option<String>) -> Result<String, CommandError> {
        self.ask(|reply| Command::Resume { instance, reply }).await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<String, CommandError>>) -> Command,
    ) -> Result<String, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)?
    }

    /// The virtual servers (by name) whose real servers are all down now;
    /// instances tracking one of them lower their priority by
    /// `track_weight`.
    pub fn set_tracked_down(&self, down: HashSet<String>) {
        let _ = self.commands.send(Command::TrackedDown(down));
    }

    /// A reload's live changes (see [`reconfig::plan`]): removed
    /// instances stop cleanly, changed ones take their new settings,
    /// added ones start. `Err` names the added instances that could not
    /// start (the rest is applied). (The handle's outer bound on a stop
    /// keeps the start-up notify_timeout; the driver's own wait for the
    /// scripts uses the new ones.)
    pub async fn reconfigure(&self, plan: reconfig::Plan) -> Result<(), CommandError> {
        if plan.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reconfigure { plan, reply })
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)?
    }

    /// A clean stop: masters send priority 0 and remove their addresses,
    /// notify_stop runs; returns when done, or after the notify timeout
    /// and a few seconds more.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Shutdown { reply }).is_ok() {
            let bound = self.notify_timeout + SHUTDOWN_GRACE;
            if tokio::time::timeout(bound, done).await.is_err() {
                tracing::warn!("VRRP: the stop did not finish within {bound:?}");
            }
        }
        let task = self.task.lock().map(|mut t| t.take()).unwrap_or_default();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Checks, before a reload applies anything, what could stop the
/// instances it adds from starting (their interface, the advert's size
/// against its MTU), so the reload is refused whole rather than applied
/// in part.
pub async fn check_addable(instances: &[VrrpInstance]) -> Result<(), VrrpError> {
    driver::preflight(instances).await
}

fn driver_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Answers `lb vrrp handoff|resume` from the control socket (see
/// `ControlServer::serve_with_vrrp`) until the socket's side closes.
pub async fn serve_control(
    handle: std::sync::Arc<VrrpHandle>,
    mut requests: mpsc::Receiver<crate::control::VrrpIncoming>,
) {
    use crate::control::{Response, VrrpRequest};
    while let Some((request, reply)) = requests.recv().await {
        let answer = match request {
            VrrpRequest::VrrpHandoff { instance } => handle.handoff(instance).await,
            VrrpRequest::VrrpResume { instance } => handle.resume(instance).await,
        };
        let _ = reply.send(match answer {
            Ok(m) => Response::message(m),
            Err(e) => Response::error(e.to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers `lb vrrp` and `lb reload` print, as before the errors
    /// had types.
    #[test]
    fn command_errors_read_as_before() {
        let unknown = CommandError::NoSuchInstance {
            name: "VI_X".into(),
            known: vec!["VI_1".into(), "VI_2".into()],
        };
        assert_eq!(
            unknown.to_string(),
            "no VRRP instance named \"VI_X\" (instances: VI_1, VI_2)"
        );
        let too_large = |instance: &str| VrrpError::AdvertTooLarge {
            instance: instance.into(),
            addresses: 400,
            bytes: 1620,
            mtu: 1500,
        };
        let failed = CommandError::NotAdded(vec![
            ("VI_3".into(), too_large("VI_3")),
            ("VI_4".into(), too_large("VI_4")),
        ]);
        let text = failed.to_string();
        assert!(
            text.starts_with("adding VI_3: VRRP instance VI_3: 400 virtual addresses")
                && text.contains("; adding VI_4: VRRP instance VI_4: "),
            "{text}"
        );
        assert_eq!(CommandError::Stopped.to_string(), "VRRP is stopped");
    }
}
