//! The agent's one door to rtnetlink: interfaces (index, MAC, up/down, MTU,
//! and a watch on their state), addresses (read, add, remove) and the
//! neighbour table, and host routes of one protocol number in one table
//! (the VIPs announced over BGP, see `announce`). VRRP adds and removes its virtual addresses here and
//! watches its interface; the DR neighbour keeper reads the neighbour table.
//! Nothing in the agent runs `ip`.
//!
//! One [`Netlink`] holds one rtnetlink socket, served by a task on the
//! current tokio runtime; it is cheap to clone and every call is a
//! request/response on that socket. Link and address watches open a socket
//! of their own subscribed to the kernel's link / address notifications.

mod address;
mod address_watch;
mod error;
mod link;
mod neighbour;
mod route;

use rtnetlink::Handle;

pub use address_watch::AddressWatch;
pub use error::NetlinkError;
pub use link::{LinkInfo, LinkRef, LinkWatch};
pub use neighbour::{Neighbour, NudState};
pub use route::RouteOwner;

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// A connection to the kernel's routing netlink, in the namespace of the
/// thread that created it.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the socket and spawns the task serving it on the current tokio
    /// runtime (must be called inside one). The task ends when the last
    /// clone of this `Netlink` is dropped.
    pub fn new() -> Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }
}

/// The name of interface `index` for messages, `#index` when it has none
/// (gone, or in another namespace).
pub(crate) fn interface_label(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes, NUL included,
    // into `buf`, and returns NULL when there is no such interface.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("#{index}");
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    name.to_string_lossy().into_owned()
}
