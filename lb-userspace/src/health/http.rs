//! HTTP check (keepalived's HTTP_GET): one `GET` on a fresh connection,
//! healthy when the status is one of `expect_status` and, if set, the body
//! contains `expect_body`. hyper's connection-level client: no pool (a
//! pooled connection would test the pool, not the server's accept path),
//! no redirects followed, no TLS.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::{body::Bytes, header, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::HttpCheck;

/// Bodies are read up to this much when `expect_body` is set; a health
/// page is small, and an endless body must not exhaust memory.
pub const MAX_BODY: usize = 1 << 20;

pub async fn check(addr: SocketAddr, cfg: &HttpCheck) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("http connect to {addr} failed: {e}"))?;
    // Once the answer is in, the connection is dropped with a reset.
    super::tcp::close_with_reset(&stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake failed: {e}"))?;

    let host = cfg.host.clone().unwrap_or_else(|| addr.to_string());
    let req = Request::get(cfg.path.as_str())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "lb-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("http request cannot be built: {e}"))?;

    let exchange = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("http request failed: {e}"))?;
        let status = resp.status().as_u16();
        if !cfg.expect_status.contains(&status) {
            return Err(format!(
                "http status {status}, expected {}",
                cfg.expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        if let Some(want) = &cfg.expect_body {
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("http body read failed: {e}"))?
                .to_bytes();
            if !String::from_utf8_lossy(&body).contains(want.as_str()) {
                return Err(format!(
                    "http body does not contain {want:?} ({} bytes read)",
                    body.len()
                ));
            }
        }
        Ok(())
    };
    tokio::pin!(exchange);
    // The connection future does the I/O and ends when the server closes;
    // that may happen just after the response arrived, so its clean end
    // hands over to the exchange rather than deciding.
    tokio::select! {
        biased;
        r = &mut exchange => r,
        r = conn => match r {
            Ok(()) => exchange.await,
            Err(e) => Err(format!("http connection failed: {e}")),
        },
    }
}
