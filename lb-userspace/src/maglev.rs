//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), computed here in
//! userspace; the XDP program only indexes the finished table.

use std::net::IpAddr;

/// One real server as Maglev sees it. The permutation is derived from
/// `addr`/`port` (not from `id`), so two balancers with different backend
/// ids build the same assignment of flows to real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Backend id written into the table.
    pub id: u32,
    pub addr: IpAddr,
    pub port: u16,
    /// Relative share; 0 = not in the table.
    pub weight: u32,
}

/// The lookup table: `size` slots (a prime) of backend ids;
/// `lb_common::NO_BACKEND` everywhere when no entry has a weight.
pub fn build_table(_entries: &[Entry], _size: u32) -> Vec<u32> {
    todo!("maglev")
}
