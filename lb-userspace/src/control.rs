//! The agent's control socket: a Unix stream socket, root-only, speaking
//! one JSON object per line.
//!
//! Protocol (each request and each response is one line of JSON; a client
//! may send several requests on one connection):
//! - `{"cmd":"status"}` -> `{"ok":true,"status":{...}}` (see [`Status`])
//! - `{"cmd":"reload"}` -> `{"ok":true,"message":"..."}`: re-read the
//!   config file the agent was started with and apply the difference.
//! - anything else -> `{"ok":false,"error":"..."}`.
//!
//! Protection is by file mode: the socket's directory is created 0700 when
//! it does not exist and the socket itself is 0600, so only root (the
//! agent's user) can connect.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::status::Status;

/// Longest request line accepted; requests are tiny.
const MAX_LINE: u64 = 64 * 1024;
/// How long a client may take to send a line, and how long `lb status`
/// waits for the agent (walking a large flow table takes a while).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
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
    #[error("permission denied on {}: the control socket is root-only, run this as root", .0.display())]
    PermissionDenied(PathBuf),
    #[error("another lb agent is already listening on {}: stop it first, or give this one another [agent] control_socket", .0.display())]
    InUse(PathBuf),
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
}

impl ControlServer {
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        let io = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
        }
        if path.exists() {
            // A live agent answers; a leftover from a crash does not.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept clients until the task is dropped, forwarding each request to
    /// `requests` and writing back the answer. A slow or broken client only
    /// holds its own task.
    pub async fn serve(&self, requests: mpsc::Sender<Incoming>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle_client(stream, requests.clone()));
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

async fn handle_client(stream: UnixStream, requests: mpsc::Sender<Incoming>) {
    let (read, mut write) = stream.into_split();
    let mut lines = AsyncBufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE * 16));
    loop {
        let mut line = String::new();
        let n = match tokio::time::timeout(CLIENT_TIMEOUT, lines.read_line(&mut line)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = if line.len() as u64 > MAX_LINE {
            Response::error("request line too long")
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if requests.send((request, tx)).await.is_err() {
                        return;
                    }
                    rx.await
                        .unwrap_or_else(|_| Response::error("the agent is shutting down"))
                }
                Err(e) => Response::error(format!(
                    "bad request ({e}): send one JSON object per line, e.g. {{\"cmd\":\"status\"}}"
                )),
            }
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Send one request to the agent listening on `path` and wait for its
/// answer (blocking; used by the `lb status`/`lb reload` commands).
pub fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
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
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
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
