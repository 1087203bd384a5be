//! A watch on one interface's addresses (IPv4 and IPv6): VRRP picks the
//! source of its adverts again when they change, and leaves FAULT once an
//! interface that had no usable address gets one.

use futures_util::StreamExt;
use rtnetlink::{packet_core::NetlinkPayload, packet_route::RouteNetlinkMessage, MulticastGroup};
use tokio::sync::mpsc;

use super::{interface_label, Netlink, NetlinkError, Result};

/// Tells, as the interface index, that an address of the interface was
/// added or removed; the receiver reads the addresses again (a change
/// carries no list, and several may come in one burst). Dropping the
/// watch stops it.
pub struct AddressWatch {
    rx: mpsc::Receiver<u32>,
}

impl AddressWatch {
    /// The underlying channel, for callers that select on several.
    pub fn into_receiver(self) -> mpsc::Receiver<u32> {
        self.rx
    }
}

impl Netlink {
    /// Watches the addresses of interface `index` (see [`AddressWatch`]).
    /// A multicast subscription rather than polling: an address that
    /// appears ends a FAULT at once, and nothing runs while nothing
    /// changes.
    pub async fn watch_addresses(&self, index: u32) -> Result<AddressWatch> {
        let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(NetlinkError::Open)?;
        // A small queue is enough: one pending notice says "read again".
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                let message = tokio::select! {
                    _ = &mut connection => {
                        tracing::warn!(
                            "netlink address watch of {}: the socket closed",
                            interface_label(index)
                        );
                        return;
                    }
                    _ = tx.closed() => return,
                    m = messages.next() => match m {
                        Some((m, _)) => m,
                        None => return,
                    },
                };
                let ours = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m))
                    | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                        m.header.index == index
                    }
                    _ => false,
                };
                // Full: a notice is already waiting, this one adds nothing.
                if ours
                    && matches!(
                        tx.try_send(index),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
                {
                    return;
                }
            }
        });
        Ok(AddressWatch { rx })
    }
}
