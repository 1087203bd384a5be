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

use super::CheckError;
use crate::config::{HttpCheck, KindName};

/// Bodies are read up to this much when `expect_body` is set; a health
/// page is small, and an endless body must not exhaust memory.
pub const MAX_BODY: usize = 1 << 20;

pub async fn check(addr: SocketAddr, cfg: &HttpCheck) -> Result<(), CheckError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| CheckError::Connect {
            check: KindName::Http,
            addr,
            cause: e.to_string(),
        })?;
    // Once the answer is in, the connection is dropped with a reset.
    super::tcp::close_with_reset(&stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CheckError::HttpHandshake(e.to_string()))?;

    let host = cfg.host.clone().unwrap_or_else(|| addr.to_string());
    let req = Request::get(cfg.path.as_str())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "lb-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckError::HttpRequestBuild(e.to_string()))?;

    let exchange = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| CheckError::HttpRequest(e.to_string()))?;
        let status = resp.status().as_u16();
        if !cfg.expect_status.contains(&status) {
            return Err(CheckError::Status {
                got: status,
                expected: cfg.expect_status.clone(),
            });
        }
        if let Some(want) = &cfg.expect_body {
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| CheckError::BodyRead(e.to_string()))?
                .to_bytes();
            if !String::from_utf8_lossy(&body).contains(want.as_str()) {
                return Err(CheckError::Body {
                    want: want.clone(),
                    read: body.len(),
                });
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
            Err(e) => Err(CheckError::HttpConnection(e.to_string())),
        },
    }
}
