//! Interface addresses: list, add (idempotent, IPv6 without duplicate
//! address detection so a virtual address is usable at once), remove
//! (idempotent).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::{
    packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    AddressMessageBuilder,
};

use super::{error::errno, interface_label, Netlink, NetlinkError, Result};

impl Netlink {
    /// Every address on interface `index` with its prefix length, IPv4 and
    /// IPv6 (link-local included), in the kernel's order (for IPv4 the
    /// primary address comes first).
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        loop {
            match stream.try_next().await {
                Ok(Some(m)) => {
                    if let Some(a) = local_address(&m) {
                        out.push((a, m.header.prefix_len));
                    }
                }
                Ok(None) => return Ok(out),
                Err(source) => {
                    return Err(NetlinkError::Addresses {
                        interface: interface_label(index),
                        source,
                    })
                }
            }
        }
    }

    /// Adds `address/prefix_len` to interface `index`; already there is
    /// success. IPv6 addresses are added with NODAD: a virtual address
    /// that waited for duplicate address detection would be unusable (and
    /// its neighbour advertisements refused) for a second or more after a
    /// failover.
    pub async fn add_address(&self, index: u32, address: IpAddr, prefix_len: u8) -> Result<()> {
        let mut request = self.handle.address().add(index, address, prefix_len);
        if address.is_ipv6() {
            let m = request.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(source) => Err(NetlinkError::AddAddress {
                interface: interface_label(index),
                address,
                prefix_len,
                source,
            }),
        }
    }

    /// Removes `address/prefix_len` from interface `index`; already absent
    /// is success.
    pub async fn remove_address(&self, index: u32, address: IpAddr, prefix_len: u8) -> Result<()> {
        let message = match address {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, prefix_len)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, prefix_len)
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ESRCH)) => Ok(()),
            Err(source) => Err(NetlinkError::RemoveAddress {
                interface: interface_label(index),
                address,
                prefix_len,
                source,
            }),
        }
    }
}

/// The interface's own address of a message: IFA_LOCAL when present (it
/// differs from IFA_ADDRESS only on point-to-point links, where IFA_ADDRESS
/// is the peer), else IFA_ADDRESS (IPv6 sends only that one).
fn local_address(m: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(l) => return Some(*l),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}
