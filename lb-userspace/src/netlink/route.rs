//! Host routes owned by one route protocol number in one table: list,
//! add (idempotent, replacing), remove (idempotent). The announcer keeps
//! one such route per announced VIP for a BGP daemon to export; the kernel
//! forwards nothing by them unless an `ip rule` points at the table.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::{
    packet_route::{
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
        AddressFamily,
    },
    RouteMessageBuilder,
};

use super::{error::errno, interface_label, Netlink, NetlinkError, Result};

/// Which routes are ours: their table and route protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteOwner {
    pub table: u32,
    pub protocol: u8,
}

impl Netlink {
    /// The destinations of every host route (/32, /128) in `owner.table`
    /// with `owner.protocol`, both families.
    pub async fn owned_host_routes(&self, owner: RouteOwner) -> Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut message = RouteMessage::default();
            message.header.address_family = family;
            let mut stream = self.handle.route().get(message).execute();
            loop {
                match stream.try_next().await {
                    Ok(Some(m)) => {
                        if let Some(destination) = owned_host(&m, owner) {
                            out.push(destination);
                        }
                    }
                    Ok(None) => break,
                    Err(source) => return Err(NetlinkError::Routes(source)),
                }
            }
        }
        Ok(out)
    }

    /// Adds (or replaces) the host route `destination` on interface
    /// `index`, in `owner`'s table with `owner`'s protocol number.
    pub async fn add_host_route(
        &self,
        owner: RouteOwner,
        destination: IpAddr,
        index: u32,
    ) -> Result<()> {
        let message = host_route(owner, destination)
            .output_interface(index)
            .build();
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| NetlinkError::AddRoute {
                destination,
                interface: interface_label(index),
                table: owner.table,
                source,
            })
    }

    /// Removes the host route `destination` from `owner`'s table; already
    /// absent is success.
    pub async fn remove_host_route(&self, owner: RouteOwner, destination: IpAddr) -> Result<()> {
        let message = host_route(owner, destination).build();
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(source) => Err(NetlinkError::RemoveRoute {
                destination,
                table: owner.table,
                source,
            }),
        }
    }
}

fn host_route(owner: RouteOwner, destination: IpAddr) -> RouteMessageBuilder<IpAddr> {
    let prefix = if destination.is_ipv4() { 32 } else { 128 };
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(destination, prefix)
        // An address and its own prefix length: cannot be refused.
        .expect("a host prefix is valid")
        .table_id(owner.table)
        .protocol(RouteProtocol::from(owner.protocol))
        // Scope link, unicast: what `ip route add VIP/32 dev lo` makes, and
        // what BIRD's and FRR's kernel import take as a device route.
        .scope(RouteScope::Link)
        .kind(RouteType::Unicast)
}

/// The destination of `m` when it is a host route of `owner`.
fn owned_host(m: &RouteMessage, owner: RouteOwner) -> Option<IpAddr> {
    let mut table = u32::from(m.header.table);
    let mut destination = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = Some((*a).into()),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => destination = Some((*a).into()),
            _ => {}
        }
    }
    let full = match destination? {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (table == owner.table
        && u8::from(m.header.protocol) == owner.protocol
        && m.header.destination_prefix_length == full)
        .then_some(destination?)
}
