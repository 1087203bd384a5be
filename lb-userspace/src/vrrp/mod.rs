//! VRRP (RFC 3768 version 2, RFC 5798 version 3), compatible with
//! keepalived: two lb nodes, or one lb and one keepalived node, share the
//! virtual addresses; the master holds them.

pub mod codec;
pub mod state;
pub mod sync;
pub mod validate;
