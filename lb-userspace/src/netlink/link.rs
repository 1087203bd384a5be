//! Interfaces: index by name, MAC, MTU, whether they can carry traffic,
//! and a watch on that last one (VRRP goes to FAULT when its interface
//! goes down).

use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::{
    packet_core::NetlinkPayload,
    packet_route::{
        link::{LinkAttribute, LinkFlags, LinkMessage},
        RouteNetlinkMessage,
    },
    MulticastGroup,
};
use tokio::sync::mpsc;

use super::{error::errno, interface_label, Netlink, NetlinkError, Result};

/// An interface by name or by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRef {
    Name(String),
    Index(u32),
}

impl From<&str> for LinkRef {
    fn from(name: &str) -> Self {
        LinkRef::Name(name.to_string())
    }
}

impl From<String> for LinkRef {
    fn from(name: String) -> Self {
        LinkRef::Name(name)
    }
}

impl From<u32> for LinkRef {
    fn from(index: u32) -> Self {
        LinkRef::Index(index)
    }
}

impl std::fmt::Display for LinkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkRef::Name(n) => f.write_str(n),
            LinkRef::Index(i) => f.write_str(&interface_label(*i)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// All zero for interfaces without an Ethernet address (lo, tunnels).
    pub mac: [u8; 6],
    /// Administratively up *and* running (carrier present, peer up for a
    /// veth): the interface can send and receive.
    pub up: bool,
    pub mtu: u32,
}

impl LinkInfo {
    fn from_message(m: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: m.header.index,
            name: String::new(),
            mac: [0; 6],
            up: is_up(m.header.flags),
            mtu: 0,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::Address(mac) if mac.len() == 6 => info.mac.copy_from_slice(mac),
                _ => {}
            }
        }
        info
    }
}

fn is_up(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running)
}

/// Changes of one interface's [`LinkInfo::up`], as `(index, up)`: first
/// the state when the watch started, then each change. An interface that
/// disappears is reported down once. Dropping the watch stops it.
pub struct LinkWatch {
    rx: mpsc::Receiver<(u32, bool)>,
}

impl LinkWatch {
    /// The next state; `None` once the netlink socket failed (logged).
    pub async fn next(&mut self) -> Option<(u32, bool)> {
        self.rx.recv().await
    }

    /// The underlying channel, for callers that select on several.
    pub fn into_receiver(self) -> mpsc::Receiver<(u32, bool)> {
        self.rx
    }
}

impl Netlink {
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        Ok(self.link(name).await?.index)
    }

    pub async fn link(&self, which: impl Into<LinkRef>) -> Result<LinkInfo> {
        let which = which.into();
        let request = match &which {
            LinkRef::Name(n) => self.handle.link().get().match_name(n.clone()),
            LinkRef::Index(i) => self.handle.link().get().match_index(*i),
        };
        match request.execute().try_next().await {
            Ok(Some(m)) => Ok(LinkInfo::from_message(&m)),
            Ok(None) => Err(NetlinkError::NoSuchInterface(which.to_string())),
            Err(e) if errno(&e) == Some(libc::ENODEV) => {
                Err(NetlinkError::NoSuchInterface(which.to_string()))
            }
            Err(source) => Err(NetlinkError::Link {
                interface: which.to_string(),
                source,
            }),
        }
    }

    /// Watches interface `index` going up and down (see [`LinkWatch`]).
    /// Subscribes before reading the current state, so no change between
    /// the two is lost.
    pub async fn watch_link(&self, index: u32) -> Result<LinkWatch> {
        let (connection, _handle, mut messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(NetlinkError::Open)?;
        let (tx, rx) = mpsc::channel(16);
        let first = self.link(index).await?;
        let mut last = first.up;
        let _ = tx.send((index, last)).await;
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                let message = tokio::select! {
                    _ = &mut connection => {
                        tracing::warn!("netlink link watch of {}: the socket closed", interface_label(index));
                        return;
                    }
                    _ = tx.closed() => return,
                    m = messages.next() => match m {
                        Some((m, _)) => m,
                        None => return,
                    },
                };
                let up = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m))
                        if m.header.index == index =>
                    {
                        is_up(m.header.flags)
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m))
                        if m.header.index == index =>
                    {
                        false
                    }
                    _ => continue,
                };
                if up != last {
                    last = up;
                    if tx.send((index, up)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(LinkWatch { rx })
    }
}
