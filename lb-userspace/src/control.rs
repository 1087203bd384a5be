//! The agent's control socket: a Unix stream socket for root (and, for
//! `status` only, an `[agent] control_group`), speaking one JSON object per
//! line.
//!
//! Protocol (each request and each response is one line of JSON; a client
//! may send several requests on one connection):
//! - `{"cmd":"status"}` -> `{"ok":true,"status":{...}}` (see [`Status`])
//! - `{"cmd":"reload"}` -> `{"ok":true,"message":"..."}`: re-read the
//!   config file the agent was started with and apply the difference.
//! - `{"cmd":"drain"}` / `{"cmd":"undrain"}` -> `{"ok":true,"message":"..."}`:
//!   withdraw every VIP announced to the BGP daemon (keep forwarding) /
//!   announce again; refused without `[announce]`. `lb drain --wait`
//!   then polls `status` until `announce.drain` is "drained".
//! - `{"cmd":"vrrp_handoff","instance":"VI_1"}` -> `{"ok":true,"message":"..."}`:
//!   give up mastership now (priority 0 advert) and stay backup until
//!   resumed; without `instance` (or with `null`), every instance.
//! - `{"cmd":"vrrp_resume","instance":"VI_1"}`: end a handoff; normal
//!   election (and preemption) again. `instance` as above.
//! - anything else -> `{"ok":false,"error":"..."}`.
//!
//! The agent's main loop answers [`Request`]s; [`VrrpRequest`]s go to the
//! VRRP task when the server is given one ([`ControlServer::serve_with_vrrp`]),
//! else the server answers them itself: "no VRRP in this agent".
//!
//! Who may connect and what they may do: [`peer`] (root everything, the
//! `[agent] control_group`'s members read-only requests, everyone else
//! refused with an error line). Requests are read-only only when listed in
//! [`AnyRequest::read_only`]; anything else, new commands included, needs
//! root. The socket is born with its final mode ([`listen`]: 0600, or 0660
//! with the control group), its directory is created 0700 (0710 for the
//! group) when missing.
//!
//! Bounds, so no client can grow the agent or hold it: at most
//! [`MAX_CLIENTS`] connections at once, [`MAX_NON_ROOT_CLIENTS`] of them
//! from callers other than root (one more is answered "busy" and closed), request lines of at most [`MAX_LINE`] bytes read into a buffer
//! of that size (a longer line is answered with an error and the
//! connection closed, before anything more is read), [`IDLE_TIMEOUT`] to
//! send each request and [`WRITE_TIMEOUT`] to take each answer.

mod listen;
pub mod peer;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader as AsyncBufReader},
    net::{unix::OwnedReadHalf, UnixListener, UnixStream},
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
};

use crate::status::Status;
use peer::{Caller, ControlGroup};

/// Longest request line accepted, newline included; requests are tiny
/// (the longest names one VRRP instance or one real server).
pub const MAX_LINE: usize = 8 * 1024;
/// Connections served at once; `lb` opens one per command.
pub const MAX_CLIENTS: usize = 16;
/// Of those, connections from callers other than root.
pub const MAX_NON_ROOT_CLIENTS: usize = 12;
/// How long a connected client may take to send each request line.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read each answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `lb status` waits for the agent (walking a large flow table
/// takes a while).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests the agent's main loop answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
    /// `lb drain`: withdraw every announced VIP, keep forwarding.
    Drain,
    /// `lb undrain`: announce again.
    Undrain,
}

/// Requests for the VRRP instances (`lb vrrp handoff|resume [INSTANCE]`),
/// tagged by `cmd` like [`Request`]. `instance: None` = every instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd")]
pub enum VrrpRequest {
    /// Give up mastership at once and stay backup until `VrrpResume`.
    #[serde(rename = "vrrp_handoff")]
    VrrpHandoff {
        #[serde(default)]
        instance: Option<String>,
    },
    /// End a handoff: elect (and preempt) normally again.
    #[serde(rename = "vrrp_resume")]
    VrrpResume {
        #[serde(default)]
        instance: Option<String>,
    },
}

/// What the VRRP task receives: a request with the channel for its answer.
pub type VrrpIncoming = (VrrpRequest, oneshot::Sender<Response>);

/// The answer to a VRRP request when no VRRP task is wired to the socket.
pub const NO_VRRP: &str = "no VRRP in this agent: its config has no [[vrrp_instance]] \
                           (or this agent does not run VRRP)";

/// A request line, routed by its `cmd` to the agent's loop or the VRRP
/// task. Parsed in two steps so a bad request gets the error of the family
/// its `cmd` names, not serde's "did not match any variant".
enum AnyRequest {
    Agent(Request),
    Vrrp(VrrpRequest),
}

impl AnyRequest {
    /// The request's `cmd`, for messages.
    fn command(&self) -> String {
        let value = match self {
            AnyRequest::Agent(r) => serde_json::to_value(r),
            AnyRequest::Vrrp(r) => serde_json::to_value(r),
        };
        value
            .ok()
            .and_then(|v| v.get("cmd")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Whether a member of the control group may send it. Only requests
    /// listed here are read-only: every other one, including commands
    /// added later, needs root.
    fn read_only(&self) -> bool {
        matches!(self, AnyRequest::Agent(Request::Status))
    }
}

fn parse_request(line: &str) -> Result<AnyRequest, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    let is_vrrp = value
        .get("cmd")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|c| c.starts_with("vrrp_"));
    if is_vrrp {
        serde_json::from_value(value).map(AnyRequest::Vrrp)
    } else {
        serde_json::from_value(value).map(AnyRequest::Agent)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn error(e: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(e.into()),
            ..Self::default()
        }
    }

    pub fn message(m: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: Some(m.into()),
            ..Self::default()
        }
    }

    pub fn status(status: Status) -> Self {
        Self {
            ok: true,
            status: Some(status),
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no lb agent is listening on {}: is `lb run` running?", .0.display())]
    NoAgent(PathBuf),
    #[error("permission denied on {}: the control socket is root-only (and, with [agent] control_group, its group's for `lb status`): run this as root", .0.display())]
    PermissionDenied(PathBuf),
    #[error("another lb agent is already listening on {}: stop it first, or give this one another [agent] control_socket", .0.display())]
    InUse(PathBuf),
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Group(#[from] peer::GroupError),
    #[error("the agent on {} answered something that is not a response: {source}", path.display())]
    Protocol {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A request from a client with the channel for its answer.
pub type Incoming = (Request, oneshot::Sender<Response>);

/// The bound socket; removes its file when dropped.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    group: Option<ControlGroup>,
    slots: Slots,
}

impl ControlServer {
    /// A root-only socket (mode 0600).
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        Self::bind_with_group(path, None)
    }

    /// A socket for root and, read-only, for `group`'s members (mode 0660
    /// and that group), or root-only without a group.
    pub fn bind_with_group(path: &Path, group: Option<ControlGroup>) -> Result<Self, ControlError> {
        let io = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            listen::prepare_dir(dir, group.as_ref()).map_err(io)?;
        }
        if path.exists() {
            // A live agent answers; a leftover from a crash does not.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = listen::bind(path, group.as_ref()).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener,
            group,
            slots: Slots::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept clients until the task is dropped, forwarding each request to
    /// `requests` and writing back the answer. A slow or broken client only
    /// holds its own task.
    ///
    /// VRRP requests are answered [`NO_VRRP`]: see [`Self::serve_with_vrrp`].
    pub async fn serve(&self, requests: mpsc::Sender<Incoming>) {
        self.serve_with_vrrp(requests, None).await
    }

    /// As [`Self::serve`], with VRRP requests forwarded to `vrrp` (answered
    /// [`NO_VRRP`] when `None`).
    pub async fn serve_with_vrrp(
        &self,
        requests: mpsc::Sender<Incoming>,
        vrrp: Option<mpsc::Sender<VrrpIncoming>>,
    ) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let caller = match peer::credentials(&stream) {
                        Ok(creds) => Caller::classify(&creds, self.group.as_ref()),
                        Err(e) => {
                            tracing::warn!(
                                "control socket: cannot read a client's credentials: {e}"
                            );
                            continue;
                        }
                    };
                    let Some(slots) = self.slots.take(&caller) else {
                        refuse_busy(&stream);
                        continue;
                    };
                    let routes = Routes {
                        agent: requests.clone(),
                        vrrp: vrrp.clone(),
                    };
                    tokio::spawn(async move {
                        handle_client(stream, routes, caller).await;
                        drop(slots);
                    });
                }
                Err(e) => {
                    tracing::warn!("control socket {}: accept: {e}", self.path.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a client's requests go.
struct Routes {
    agent: mpsc::Sender<Incoming>,
    vrrp: Option<mpsc::Sender<VrrpIncoming>>,
}

impl Routes {
    /// The answer to one request; `None` when its receiver is gone (the
    /// agent is stopping: the connection is closed).
    async fn answer(&self, request: AnyRequest) -> Option<Response> {
        let (tx, rx) = oneshot::channel();
        match request {
            AnyRequest::Agent(r) => self.agent.send((r, tx)).await.ok()?,
            AnyRequest::Vrrp(r) => match &self.vrrp {
                None => return Some(Response::error(NO_VRRP)),
                Some(vrrp) => vrrp.send((r, tx)).await.ok()?,
            },
        }
        Some(
            rx.await
                .unwrap_or_else(|_| Response::error("the agent is shutting down")),
        )
    }
}

/// Connection slots: [`MAX_CLIENTS`] in all, of which non-root callers
/// may hold [`MAX_NON_ROOT_CLIENTS`], so that a group member (or a refused
/// client) keeping connections open cannot lock root out.
struct Slots {
    all: Arc<Semaphore>,
    non_root: Arc<Semaphore>,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            all: Arc::new(Semaphore::new(MAX_CLIENTS)),
            non_root: Arc::new(Semaphore::new(MAX_NON_ROOT_CLIENTS)),
        }
    }
}

/// The permits a served connection holds until it ends.
type Held = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

impl Slots {
    /// The permits for one more connection from `caller`, if any is free.
    fn take(&self, caller: &Caller) -> Option<Held> {
        let non_root = match caller {
            Caller::Root => None,
            _ => Some(self.non_root.clone().try_acquire_owned().ok()?),
        };
        let all = self.all.clone().try_acquire_owned().ok()?;
        Some((all, non_root))
    }
}

/// One more client than [`MAX_CLIENTS`]: told so without waiting for it
/// (a fresh socket's buffer takes the line at once) and closed.
fn refuse_busy(stream: &UnixStream) {
    let line = response_line(&Response::error(
        "the agent is busy: too many control connections are open; try again",
    ));
    let _ = stream.try_write(&line);
}

fn response_line(response: &Response) -> Vec<u8> {
    let mut out = serde_json::to_vec(response).expect("responses serialize");
    out.push(b'\n');
    out
}

/// What reading one request line gave.
enum Line {
    Request(Vec<u8>),
    Eof,
    TooLong,
}

/// One line of at most [`MAX_LINE`] bytes: never buffers more than that.
async fn read_line(reader: &mut AsyncBufReader<OwnedReadHalf>) -> std::io::Result<Line> {
    let mut line = Vec::with_capacity(256);
    let n = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if line.last() != Some(&b'\n') && line.len() >= MAX_LINE {
        return Ok(Line::TooLong);
    }
    Ok(Line::Request(line))
}

/// The answer to one request line from `caller`.
async fn answer(line: &[u8], caller: &Caller, routes: &Routes) -> Option<Response> {
    let parsed = std::str::from_utf8(line)
        .map_err(|e| e.to_string())
        .and_then(|text| parse_request(text).map_err(|e| e.to_string()));
    let request = match parsed {
        Ok(request) => request,
        Err(e) => {
            if let Err(refusal) = caller.may("", true) {
                return Some(Response::error(refusal.to_string()));
            }
            return Some(Response::error(format!(
                "bad request ({e}): send one JSON object per line, e.g. {{\"cmd\":\"status\"}}"
            )));
        }
    };
    if let Err(refusal) = caller.may(&request.command(), request.read_only()) {
        return Some(Response::error(refusal.to_string()));
    }
    routes.answer(request).await
}

async fn handle_client(stream: UnixStream, routes: Routes, caller: Caller) {
    let (read, mut write) = stream.into_split();
    let mut reader = AsyncBufReader::with_capacity(1024, read);
    loop {
        let line = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader)).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) | Err(_) => return,
        };
        let (response, close) = match line {
            Line::Eof => return,
            Line::TooLong => (
                Response::error(format!(
                    "request line too long (over {MAX_LINE} bytes): closing the connection"
                )),
                true,
            ),
            Line::Request(line) if line.trim_ascii().is_empty() => continue,
            Line::Request(line) => match answer(&line, &caller, &routes).await {
                Some(response) => (response, matches!(caller, Caller::Stranger { .. })),
                None => return,
            },
        };
        let out = response_line(&response);
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&out)).await {
            Ok(Ok(())) if !close => {}
            _ => return,
        }
    }
}

/// Send one request ([`Request`] or [`VrrpRequest`]) to the agent
/// listening on `path` and wait for its answer (blocking; used by the
/// `lb status`/`lb reload`/`lb vrrp` commands).
pub fn request<R: Serialize>(path: &Path, request: &R) -> Result<Response, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NoAgent(path.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ControlError::PermissionDenied(path.to_path_buf()),
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    // An agent that refuses the connection (busy, not allowed) answers at
    // once and closes: its line is still there to read if the write fails.
    let written = stream.write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        written.map_err(io)?;
        read.map_err(io)?;
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the agent closed the connection without answering",
        )));
    }
    serde_json::from_str(&answer).map_err(|source| ControlError::Protocol {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn requests_are_tagged_by_cmd() {
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"cmd":"reload"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"explode"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&VrrpRequest::VrrpHandoff {
                instance: Some("VI_1".into())
            })
            .unwrap(),
            r#"{"cmd":"vrrp_handoff","instance":"VI_1"}"#
        );
        // Without an instance: every instance.
        assert!(matches!(
            parse_request(r#"{"cmd":"vrrp_resume"}"#),
            Ok(AnyRequest::Vrrp(VrrpRequest::VrrpResume { instance: None }))
        ));
        assert!(matches!(
            parse_request(r#"{"cmd":"reload"}"#),
            Ok(AnyRequest::Agent(Request::Reload))
        ));
        let err = parse_request(r#"{"cmd":"vrrp_explode"}"#).err().unwrap();
        assert!(err.to_string().contains("vrrp_handoff"), "{err}");
    }

    #[tokio::test]
    async fn a_reader_gets_status_and_nothing_else_reaches_the_agent() {
        let (agent, mut agent_rx) = mpsc::channel::<Incoming>(4);
        let routes = Routes { agent, vrrp: None };
        let reader = Caller::Reader {
            uid: 1000,
            group: "lb".into(),
        };
        for line in [
            r#"{"cmd":"reload"}"#,
            r#"{"cmd":"vrrp_handoff","instance":"VI_1"}"#,
            r#"{"cmd":"vrrp_resume"}"#,
        ] {
            let answer = answer(line.as_bytes(), &reader, &routes).await.unwrap();
            let error = answer.error.unwrap_or_default();
            assert!(
                !answer.ok && error.contains("needs root"),
                "{line}: {error}"
            );
        }
        assert!(
            agent_rx.try_recv().is_err(),
            "a refused request reached the agent"
        );
        let replying = tokio::spawn(async move {
            let (request, reply) = agent_rx.recv().await.unwrap();
            assert_eq!(request, Request::Status);
            let _ = reply.send(Response::status(Status::default()));
        });
        let status = answer(br#"{"cmd":"status"}"#, &reader, &routes).await;
        assert!(status.unwrap().ok);
        replying.await.unwrap();
    }

    #[tokio::test]
    async fn vrrp_requests_go_to_the_vrrp_task_or_are_refused() {
        let (agent, _agent_rx) = mpsc::channel::<Incoming>(1);
        let refused = Routes {
            agent: agent.clone(),
            vrrp: None,
        };
        let handoff = || {
            AnyRequest::Vrrp(VrrpRequest::VrrpHandoff {
                instance: Some("VI_1".into()),
            })
        };
        assert_eq!(
            refused.answer(handoff()).await,
            Some(Response::error(NO_VRRP))
        );

        let (vrrp, mut vrrp_rx) = mpsc::channel::<VrrpIncoming>(1);
        let task = tokio::spawn(async move {
            let (req, reply) = vrrp_rx.recv().await.unwrap();
            let _ = reply.send(Response::message(format!("{req:?}")));
        });
        let routed = Routes {
            agent,
            vrrp: Some(vrrp),
        };
        let answer = routed.answer(handoff()).await.unwrap();
        assert_eq!(
            answer.message.as_deref(),
            Some(r#"VrrpHandoff { instance: Some("VI_1") }"#)
        );
        task.await.unwrap();
    }

    #[tokio::test]
    async fn server_answers_a_client_and_removes_its_socket() {
        let dir = std::env::temp_dir().join(format!("lb-control-test-{}", std::process::id()));
        let path = dir.join("sub").join("lb.sock");
        let server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        // A second agent on the same socket is refused.
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::InUse(_))
        ));

        let (tx, mut rx) = mpsc::channel::<Incoming>(4);
        let agent = tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(match req {
                    Request::Status => Response::status(Status::default()),
                    Request::Reload => Response::message("reloaded"),
                    Request::Drain | Request::Undrain => Response::message("drain"),
                });
            }
        });
        let serving = tokio::spawn(async move {
            server.serve(tx).await;
        });
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || request(&p, &Request::Reload))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, Response::message("reloaded"));
        // No VRRP task given to `serve`: the server answers for it.
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            request(&p, &VrrpRequest::VrrpResume { instance: None })
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answer, Response::error(NO_VRRP));
        serving.abort();
        let _ = serving.await;
        agent.abort();
        assert!(!path.exists(), "socket file left behind");
        let p = path.clone();
        let err = tokio::task::spawn_blocking(move || request(&p, &Request::Status))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("is `lb run` running?"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
