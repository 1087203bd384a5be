//! TCP check: the real server accepts a connection (keepalived's
//! TCP_CHECK). The connection is closed at once, without sending anything,
//! by a reset (see [`close_with_reset`]).

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::CheckError;
use crate::config::KindName;

pub async fn check(addr: SocketAddr) -> Result<(), CheckError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| CheckError::Connect {
            check: KindName::Tcp,
            addr,
            cause: e.to_string(),
        })?;
    close_with_reset(&stream);
    Ok(())
}

/// Makes dropping `stream` send a reset instead of a FIN (SO_LINGER 0), as
/// HAProxy closes its checks. A check connection carries nothing left to
/// deliver, and a FIN close costs three more packets per check and leaves
/// the socket in TIME_WAIT for a minute: at 1,000 checks a second that is
/// tens of thousands of sockets on the balancer and a good share of the
/// agent's CPU. Best effort: a socket that refuses it closes normally.
pub fn close_with_reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
