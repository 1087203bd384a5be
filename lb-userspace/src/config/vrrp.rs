//! `[[vrrp_instance]]` and `[[vrrp_sync_group]]`: high availability with
//! VRRP (RFC 3768 version 2, RFC 5798 version 3), compatible with
//! keepalived's numbers (virtual_router_id, priority, advert_int,
//! auth_pass) so one keepalived node and one lb node can share a group.
//!
//! These are the validated, typed forms; the rules and messages live in
//! the validation of the raw file. A config may hold VRRP instances and no
//! virtual servers (keepalived is often used for VRRP alone, seed 003).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

/// Keepalived's default advert interval.
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_VRRP_VERSION: VrrpVersion = VrrpVersion::V2;
pub const DEFAULT_VRRP_PRIORITY: u8 = 100;
/// keepalived's `vrrp_garp_master_repeat` and `vrrp_garp_master_delay`:
/// on becoming master, 5 gratuitous ARPs / unsolicited neighbour
/// advertisements per address, and the same again 5 s later.
pub const DEFAULT_GARP_REPEAT: u32 = 5;
pub const DEFAULT_GARP_DELAY: Duration = Duration::from_secs(5);
/// How long a notify or fence script may run before it is killed.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses one advert can carry: the count field is one byte.
pub const MAX_ADVERT_ADDRESSES: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, whole-second intervals, optional simple password.
    V2,
    /// RFC 5798: IPv4 or IPv6, intervals in centiseconds, no authentication.
    V3,
}

impl VrrpVersion {
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

impl fmt::Display for VrrpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The state an instance starts in (`state = "backup" | "master"`). As in
/// keepalived, "master" only shortens the start-up when the priority is
/// 255 (the address owner); otherwise both start as backup and elect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpInitialState {
    Backup,
    Master,
}

/// A virtual address with its prefix length, as `ip addr add` takes it
/// (`"192.168.1.10/24"`; without a prefix: /32 or /128, as keepalived).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VirtualAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// A script to run, split into program and arguments the way keepalived
/// splits `notify_master "/path/script arg"` (whitespace, double quotes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// As written, for messages.
    pub line: String,
    /// Program first; never empty.
    pub argv: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpInstance {
    pub name: String,
    /// The interface adverts are sent and received on and the virtual
    /// addresses are added to.
    pub interface: String,
    /// 1..=255.
    pub virtual_router_id: u8,
    /// 1..=255; 255 = the address owner (starts as master at once).
    pub priority: u8,
    /// v2: whole seconds 1..=255. v3: a multiple of 10 ms, 10 ms..=40.95 s.
    pub advert_interval: Duration,
    pub version: VrrpVersion,
    pub initial_state: VrrpInitialState,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Version 2 simple password (keepalived's `auth_type PASS`), 1..=8
    /// bytes; `None` = no authentication.
    pub auth_pass: Option<String>,
    /// Carried in adverts and held by the master; one family, IPv4 with
    /// version 2. At most [`MAX_ADVERT_ADDRESSES`].
    pub virtual_addresses: Vec<VirtualAddress>,
    /// Held by the master but not carried in adverts (keepalived's
    /// `virtual_ipaddress_excluded`, its way past 20 addresses).
    pub virtual_addresses_excluded: Vec<VirtualAddress>,
    /// Unicast adverts to these peers instead of 224.0.0.18 / ff02::12.
    pub unicast_peers: Vec<IpAddr>,
    /// Source of unicast adverts (keepalived's `unicast_src_ip`); default:
    /// the interface's primary address of the family.
    pub unicast_source: Option<IpAddr>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    pub notify_stop: Option<Script>,
    /// Called with `INSTANCE <name> <STATE> <priority>` appended, as
    /// keepalived's `notify`.
    pub notify: Option<Script>,
    /// Called when another master is seen while this node is master (a
    /// healed partition), with `INSTANCE <name> <other master's address>`
    /// appended: the place for a fencing agent (seed 002's STONITH).
    pub fence: Option<Script>,
    pub notify_timeout: Duration,
    /// Virtual servers (by name) whose health this instance tracks: while
    /// every real server of one of them is down, the effective priority is
    /// `priority - track_weight` (at least 1).
    pub track_virtual_servers: Vec<String>,
    pub track_weight: u8,
    pub garp_repeat: u32,
    pub garp_delay: Duration,
}

impl VrrpInstance {
    /// Every address the master holds: advertised ones, then excluded ones.
    pub fn all_addresses(&self) -> impl Iterator<Item = &VirtualAddress> {
        self.virtual_addresses
            .iter()
            .chain(&self.virtual_addresses_excluded)
    }

    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses
            .first()
            .is_some_and(|a| a.address.is_ipv6())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpSyncGroup {
    pub name: String,
    /// Instance names; each in at most one group. They change state
    /// together: when one must leave master, all do.
    pub instances: Vec<String>,
    pub notify_master: Option<Script>,
    pub notify_backup: Option<Script>,
    pub notify_fault: Option<Script>,
    /// Called with `GROUP <name> <STATE> 0` appended.
    pub notify: Option<Script>,
}

/// The multicast group adverts go to (RFC 3768 / 5798).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
