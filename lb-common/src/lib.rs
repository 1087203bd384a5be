//! Everything that crosses the kernel boundary, defined once.
//!
//! The XDP program (`lb-ebpf`) and the agent (`lb-userspace`) both build this
//! crate: the program without features (`no_std`, no allocation), the agent
//! with `user`, which adds `aya::Pod` so the types can be map keys/values.
//!
//! Rules for the types in [`maps`]: `#[repr(C)]`, explicit padding fields,
//! no `bool`/`Option`/enum in a map value, byte order named in the field
//! (`_be` = network byte order, as it sits in the packet), and a size assert
//! so a layout change is a compile error on both sides at once.
//!
//! [`layout`] is the table of the maps (name, kind, key and value types,
//! where the size comes from, pinning) and the layout version pinned with
//! them.
//!
//! Pure functions that both sides need to agree on live here too: the flow
//! hash ([`hash`]) so a test can predict which real server a flow lands on,
//! and the checksum arithmetic ([`csum`]) so it can be unit-tested on the host.
#![no_std]

pub mod csum;
pub mod ebpf_log;
pub mod flow_table;
pub mod hash;
pub mod layout;
pub mod maps;

pub use flow_table::{FlowEntry, FlowSet};
pub use maps::*;
