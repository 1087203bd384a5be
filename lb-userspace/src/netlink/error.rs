//! What can fail talking to rtnetlink, each saying what was being done and
//! on which interface.

use std::{io, net::IpAddr};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("reading interface {interface}: {source}")]
    Link {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("reading the addresses of {interface}: {source}")]
    Addresses {
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("adding {address}/{prefix_len} to {interface}: {source}")]
    AddAddress {
        interface: String,
        address: IpAddr,
        prefix_len: u8,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("removing {address}/{prefix_len} from {interface}: {source}")]
    RemoveAddress {
        interface: String,
        address: IpAddr,
        prefix_len: u8,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("reading the neighbour table: {0}")]
    Neighbours(#[source] rtnetlink::Error),
    #[error("reading the routing tables: {0}")]
    Routes(#[source] rtnetlink::Error),
    #[error("adding the route {destination} dev {interface} to table {table}: {source}")]
    AddRoute {
        destination: IpAddr,
        interface: String,
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("removing the route {destination} from table {table}: {source}")]
    RemoveRoute {
        destination: IpAddr,
        table: u32,
        #[source]
        source: rtnetlink::Error,
    },
}

/// The errno of a netlink error answer (positive, as in `libc`), if the
/// error is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}
