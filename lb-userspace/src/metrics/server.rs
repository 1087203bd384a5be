//! Serving `/metrics` over HTTP/1.1 with hyper, with bounds so that no
//! client, slow or hostile, can hold the endpoint or grow the agent:
//! - at most [`MAX_CONNECTIONS`] connections at once ([`admit`]): a new
//!   one beyond that takes the place of the oldest connection still
//!   sending its request (a scraper sends its request in one go, a slow
//!   one loses nothing it had), and when every connection is past its
//!   request, the new one is answered 503 and closed at once;
//! - the request head must arrive within [`HEADER_TIMEOUT`] and fit in
//!   [`MAX_REQUEST_HEAD`] bytes (hyper answers 431 beyond);
//! - the whole response must be taken within [`WRITE_TIMEOUT`] of its
//!   first byte ([`WriteDeadline`]), else the connection is dropped;
//! - one request per connection (no keep-alive), which is all a scraper
//!   needs;
//! - `GET /metrics` only: 404 for another path, 405 for another method.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
    time::Sleep,
};

use super::{render, HealthMetrics};
use crate::status::Status;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response, from its first byte.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read (hyper's smallest buffer limit).
pub const MAX_REQUEST_HEAD: usize = 8192;

/// What to do with a new connection, given the open ones in the order
/// they were accepted, each with whether it is still sending its request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Admit after closing this open connection (by its index).
    Evict(usize),
    Refuse,
}

/// The admission rule (see the module doc); pure.
pub fn admit(reading: &[bool], cap: usize) -> Admission {
    if reading.len() < cap {
        return Admission::Admit;
    }
    match reading.iter().position(|r| *r) {
        Some(oldest) => Admission::Evict(oldest),
        None => Admission::Refuse,
    }
}

/// One open connection.
struct Open {
    id: u64,
    reading: Arc<AtomicBool>,
    task: AbortHandle,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: VecDeque<Open>,
}

/// Removes its connection from the table when the connection's task ends
/// (finished, failed or aborted).
struct Leave {
    table: Arc<Mutex<Connections>>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.open.retain(|c| c.id != self.id);
    }
}

/// Answer scrapes on `listener` until the task is dropped; `snapshot` gives
/// the current status (or an error, answered 503).
pub async fn serve<F, Fut>(listener: TcpListener, health: HealthMetrics, snapshot: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Status, String>> + Send + 'static,
{
    let table = Arc::new(Mutex::new(Connections::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: the cap should prevent them, but
                // never spin on one.
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut guard = table.lock().unwrap_or_else(|e| e.into_inner());
        let reading: Vec<bool> = guard
            .open
            .iter()
            .map(|c| c.reading.load(Ordering::Relaxed))
            .collect();
        match admit(&reading, MAX_CONNECTIONS) {
            Admission::Admit => {}
            Admission::Evict(i) => {
                if let Some(slow) = guard.open.remove(i) {
                    slow.task.abort();
                }
            }
            Admission::Refuse => {
                drop(guard);
                refuse(stream);
                continue;
            }
        }
        let id = guard.next_id;
        guard.next_id += 1;
        let reading = Arc::new(AtomicBool::new(true));
        let leave = Leave {
            table: table.clone(),
            id,
        };
        // Spawned with the table locked: the task's `Leave` cannot run
        // before its entry is in.
        let task = tokio::spawn(connection(
            stream,
            reading.clone(),
            health.clone(),
            snapshot.clone(),
            leave,
        ));
        guard.open.push_back(Open {
            id,
            reading,
            task: task.abort_handle(),
        });
    }
}

/// Beyond the cap with every connection busy answering: say so without
/// waiting (a fresh socket's buffer takes the few bytes) and close.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\
          Connection: close\r\n\r\n",
    );
}

async fn connection<F, Fut>(
    stream: TcpStream,
    reading: Arc<AtomicBool>,
    health: HealthMetrics,
    snapshot: F,
    _leave: Leave,
) where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Status, String>> + Send + 'static,
{
    let io = TokioIo::new(WriteDeadline::new(stream, WRITE_TIMEOUT));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        reading.store(false, Ordering::Relaxed);
        let (health, snapshot) = (health.clone(), snapshot.clone());
        async move { Ok::<_, std::convert::Infallible>(respond(&request, &health, snapshot).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(false)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        tracing::debug!("metrics endpoint: connection ended: {e}");
    }
}

async fn respond<F, Fut>(
    request: &Request<Incoming>,
    health: &HealthMetrics,
    snapshot: F,
) -> Response<Full<Bytes>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Status, String>>,
{
    if request.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics\n".into());
    }
    if request.method() != Method::GET {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: /metrics answers GET\n".into(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    match snapshot().await {
        Ok(status) => text(StatusCode::OK, render(&status, Some(health))),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// A stream whose writes must all be done within `limit` of the first one:
/// a client that stops reading cannot hold its connection (and the task
/// and buffers behind it) for longer.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
        }
    }

    /// Starts the clock at the first write; an error once it ran out.
    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not take the response in time",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_cap_every_connection_is_admitted() {
        assert_eq!(admit(&[], 2), Admission::Admit);
        assert_eq!(admit(&[false], 2), Admission::Admit);
    }

    #[test]
    fn at_the_cap_the_oldest_slow_request_makes_room() {
        assert_eq!(admit(&[false, true, true], 3), Admission::Evict(1));
        assert_eq!(admit(&[true, true], 2), Admission::Evict(0));
    }

    #[test]
    fn at_the_cap_with_every_response_under_way_the_newcomer_is_refused() {
        assert_eq!(admit(&[false, false], 2), Admission::Refuse);
    }

    #[tokio::test]
    async fn a_reader_that_stops_reading_times_the_writer_out() {
        use tokio::io::AsyncWriteExt as _;
        let (a, _b) = tokio::io::duplex(64);
        let mut writer = WriteDeadline::new(a, Duration::from_millis(50));
        let err = writer.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
