//! `[[vrrp_instance]]` and `[[vrrp_sync_group]]`: high availability with
//! VRRP (RFC 3768 version 2, RFC 5798 version 3), compatible with
//! keepalived's numbers (virtual_router_id, priority, advert_int,
//! auth_pass) so one keepalived node and one lb node can share a group.
//!
//! These are the validated, typed forms; the rules and messages live in
//! `validate_vrrp` (its module doc lists every rule). A config may hold VRRP instances and no
//! virtual servers (keepalived is often used for VRRP alone, seed 003).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    time::Duration,
};

use super::words::config_words;

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
/// How far a tracked virtual server with every real server down lowers
/// the priority when `track_weight` is not given: as far as it goes
/// (effective priority 1), so any healthy peer takes over whatever the
/// two priorities are. A smaller drop can leave a broken node master
/// (150 - 50 ties a peer at 100, and the tie goes by address).
pub const DEFAULT_TRACK_WEIGHT: u8 = 254;
/// keepalived's own upper bound for `preempt_delay`.
pub const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// Bounds of `garp_repeat` (per address, per block).
pub const MAX_GARP_REPEAT: u32 = 100;
/// Bounds of `garp_delay` (0 = no second block).
pub const MAX_GARP_DELAY: Duration = Duration::from_secs(3600);
/// Bounds of `notify_timeout`.
pub const MIN_NOTIFY_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_NOTIFY_TIMEOUT: Duration = Duration::from_secs(300);
/// Version 2 advert interval: whole seconds in one byte.
pub const MAX_ADVERT_INTERVAL_V2: Duration = Duration::from_secs(255);
/// Version 3 advert interval: 12 bits of centiseconds.
pub const MIN_ADVERT_INTERVAL_V3: Duration = Duration::from_millis(10);
pub const MAX_ADVERT_INTERVAL_V3: Duration = Duration::from_millis(40_950);
/// Version 2 simple password: the 8 bytes of the advert's auth data.
pub const MAX_AUTH_PASS_LEN: usize = 8;

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

impl TryFrom<i64> for VrrpVersion {
    type Error = ();
    fn try_from(n: i64) -> Result<Self, ()> {
        match n {
            2 => Ok(VrrpVersion::V2),
            3 => Ok(VrrpVersion::V3),
            _ => Err(()),
        }
    }
}

impl FromStr for VrrpVersion {
    type Err = ();
    /// "2" | "3", as [`Display`](fmt::Display) writes it.
    fn from_str(s: &str) -> Result<Self, ()> {
        s.parse::<i64>().map_err(|_| ()).and_then(Self::try_from)
    }
}

config_words! {
    /// The state an instance starts in (`state = "backup" | "master"`). As in
    /// keepalived, "master" only shortens the start-up when the priority is
    /// 255 (the address owner); otherwise both start as backup and elect.
    /// Lower case only, as written in the config.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum VrrpInitialState {
        Backup = "backup",
        Master = "master",
    }
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

impl Script {
    /// Splits `line` into words: runs of whitespace separate words, double
    /// quotes group (and are removed), so `"/opt/my scripts/n.sh" master`
    /// is two words. Single quotes and backslashes are literal (no shell
    /// runs the script). The program must be an absolute path: the agent
    /// runs as root, and a PATH lookup would run whatever is first in the
    /// agent's PATH.
    pub fn parse(line: &str) -> Result<Script, ScriptError> {
        let mut argv = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    in_word = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if in_word {
                        argv.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                c => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if quoted {
            return Err(ScriptError::UnclosedQuote);
        }
        if in_word {
            argv.push(word);
        }
        let Some(program) = argv.first() else {
            return Err(ScriptError::Empty);
        };
        if !program.starts_with('/') {
            return Err(ScriptError::RelativeProgram(program.clone()));
        }
        if program.ends_with('/') {
            return Err(ScriptError::Directory(program.clone()));
        }
        Ok(Script {
            line: line.to_owned(),
            argv,
        })
    }

    pub fn program(&self) -> &str {
        &self.argv[0]
    }
}

/// Why a script line cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error(
        "no program: write the absolute path of the script, e.g. \"/etc/lb/notify.sh master\""
    )]
    Empty,
    #[error("a double quote is not closed: close it, or remove it")]
    UnclosedQuote,
    #[error("the program `{0}` is not an absolute path: write it in full, e.g. \"/etc/lb/{0}\" (no PATH lookup, no shell)")]
    RelativeProgram(String),
    #[error("the program `{0}` is a directory path: name the script file")]
    Directory(String),
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
    /// false only with `initial_state` Backup.
    pub preempt: bool,
    /// 0..=[`MAX_PREEMPT_DELAY`]; zero when `preempt` is false.
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
    /// [`MIN_NOTIFY_TIMEOUT`]..=[`MAX_NOTIFY_TIMEOUT`].
    pub notify_timeout: Duration,
    /// Virtual servers (by name) whose health this instance tracks: while
    /// every real server of one of them is down, the effective priority is
    /// `priority - track_weight` (at least 1).
    pub track_virtual_servers: Vec<String>,
    /// 0..=254, default [`DEFAULT_TRACK_WEIGHT`]; 0 = tracked for status
    /// only, the priority stays.
    pub track_weight: u8,
    /// 1..=[`MAX_GARP_REPEAT`].
    pub garp_repeat: u32,
    /// 0..=[`MAX_GARP_DELAY`]; 0 = no second block.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_on_whitespace_and_double_quotes() {
        let s = Script::parse("  /etc/lb/notify.sh   master \"two words\" x\"y z\"w ").unwrap();
        assert_eq!(
            s.argv,
            ["/etc/lb/notify.sh", "master", "two words", "xy zw"]
        );
        assert_eq!(s.program(), "/etc/lb/notify.sh");
        // An empty quoted word is a word; single quotes are literal.
        assert_eq!(
            Script::parse("/bin/x \"\" 'a b'").unwrap().argv,
            ["/bin/x", "", "'a", "b'"]
        );
        assert_eq!(Script::parse(""), Err(ScriptError::Empty));
        assert_eq!(Script::parse(" \t "), Err(ScriptError::Empty));
        assert_eq!(
            Script::parse("/bin/x \"open"),
            Err(ScriptError::UnclosedQuote)
        );
        assert_eq!(
            Script::parse("notify.sh master"),
            Err(ScriptError::RelativeProgram("notify.sh".into()))
        );
        assert_eq!(
            Script::parse("/etc/lb/"),
            Err(ScriptError::Directory("/etc/lb/".into()))
        );
    }

    #[test]
    fn enums_read_what_they_write() {
        for v in [VrrpVersion::V2, VrrpVersion::V3] {
            assert_eq!(v.to_string().parse(), Ok(v));
        }
        assert_eq!("4".parse::<VrrpVersion>(), Err(()));
        for s in [VrrpInitialState::Backup, VrrpInitialState::Master] {
            assert_eq!(s.to_string().parse(), Ok(s));
        }
        assert!("MASTER".parse::<VrrpInitialState>().is_err());
    }
}
