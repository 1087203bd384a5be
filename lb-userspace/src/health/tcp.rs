//! TCP check: the real server accepts a connection (keepalived's
//! TCP_CHECK). The connection is closed at once, without sending anything.

use std::net::SocketAddr;

use tokio::net::TcpStream;

pub async fn check(addr: SocketAddr) -> Result<(), String> {
    TcpStream::connect(addr)
        .await
        .map(drop)
        .map_err(|e| format!("tcp connect to {addr} failed: {e}"))
}
