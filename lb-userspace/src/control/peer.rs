//! Who is on the other end of a control connection, and what they may do.
//!
//! The file mode of the socket keeps most users out, but not all: a process
//! with CAP_DAC_OVERRIDE that is not root, or one handed a connected fd,
//! gets past it. So every connection's credentials are read from the kernel
//! (SO_PEERCRED for uid/gid, SO_PEERGROUPS for the supplementary groups,
//! both taken when the client connected) and checked here:
//! - uid 0 may send every request;
//! - a member of `[agent] control_group` may send read-only requests
//!   (`status`);
//! - everyone else is refused.
//!
//! [`Caller::classify`] and [`Caller::may`] are pure; [`credentials`] is
//! the only part that talks to the kernel.

use std::{ffi::CString, os::fd::AsRawFd};

/// What the kernel says about a connected peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (empty when the kernel could not say).
    pub groups: Vec<u32>,
}

/// The control group: its name (for messages) and gid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlGroup {
    pub name: String,
    pub gid: u32,
}

/// What a connected peer is allowed to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// uid 0: everything.
    Root,
    /// A member of the control group: read-only requests.
    Reader { uid: u32, group: String },
    /// Refused outright, whatever the request.
    Stranger { refusal: Refusal },
}

/// Why a caller may not send a request; the text is the error line the
/// client is sent, saying what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not root, with a control group configured that it is not in.
    #[error(
        "permission denied: uid {uid} is neither root nor a member of group `{group}` \
         ([agent] control_group); run this as root, or add the user to that group \
         for `lb status`"
    )]
    NotInGroup { uid: u32, group: String },
    /// Not root, and no control group configured.
    #[error(
        "permission denied: uid {uid} is not root; the control socket is root-only \
         (set [agent] control_group to let a group run `lb status`)"
    )]
    NotRoot { uid: u32 },
    /// A control group member asking for more than reading.
    #[error(
        "permission denied: `{command}` needs root; uid {uid} is in group `{group}` \
         ([agent] control_group), which may only read status"
    )]
    NeedsRoot {
        command: String,
        uid: u32,
        group: String,
    },
}

impl Caller {
    /// Classify `peer` given the configured group (if any).
    pub fn classify(peer: &Credentials, group: Option<&ControlGroup>) -> Self {
        if peer.uid == 0 {
            return Caller::Root;
        }
        match group {
            Some(g) if peer.gid == g.gid || peer.groups.contains(&g.gid) => Caller::Reader {
                uid: peer.uid,
                group: g.name.clone(),
            },
            Some(g) => Caller::Stranger {
                refusal: Refusal::NotInGroup {
                    uid: peer.uid,
                    group: g.name.clone(),
                },
            },
            None => Caller::Stranger {
                refusal: Refusal::NotRoot { uid: peer.uid },
            },
        }
    }

    /// `Ok` when this caller may send a request whose read-only-ness is
    /// `read_only`, else why not.
    pub fn may(&self, command: &str, read_only: bool) -> Result<(), Refusal> {
        match self {
            Caller::Root => Ok(()),
            Caller::Reader { .. } if read_only => Ok(()),
            Caller::Reader { uid, group } => Err(Refusal::NeedsRoot {
                command: command.to_owned(),
                uid: *uid,
                group: group.clone(),
            }),
            Caller::Stranger { refusal } => Err(refusal.clone()),
        }
    }
}

/// SO_PEERGROUPS (Linux 4.13+; asm-generic value, the same on every
/// architecture lb builds for). Not exported by the libc crate.
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer credentials of a connected Unix stream socket.
pub fn credentials(stream: &tokio::net::UnixStream) -> std::io::Result<Credentials> {
    let cred = stream.peer_cred()?;
    Ok(Credentials {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups: peer_groups(stream.as_raw_fd()).unwrap_or_default(),
    })
}

fn peer_groups(fd: libc::c_int) -> std::io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a writable buffer of `len` bytes; the kernel
        // writes at most `len` bytes and sets `len` to the size it needs.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

/// Why a configured control group cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(
        "[agent] control_group: no group `{0}` on this host: create it (`groupadd {0}`) or \
         remove the setting"
    )]
    Unknown(String),
    #[error("[agent] control_group: looking up group `{name}`: {source}")]
    Lookup {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// The gid of group `name` (a name from the group database, or a number).
pub fn resolve_group(name: &str) -> Result<ControlGroup, GroupError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(ControlGroup {
            name: name.to_string(),
            gid,
        });
    }
    let c_name = CString::new(name).map_err(|_| GroupError::Unknown(name.to_string()))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: all-zero is a valid `struct group` (pointers null).
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives it
        // and `group`'s strings (unused after the call) point into it.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(GroupError::Lookup {
                name: name.to_string(),
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        if result.is_null() {
            return Err(GroupError::Unknown(name.to_string()));
        }
        return Ok(ControlGroup {
            name: name.to_string(),
            gid: group.gr_gid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Credentials {
        Credentials {
            uid,
            gid,
            pid: Some(1),
            groups: groups.to_vec(),
        }
    }

    fn lb_group() -> ControlGroup {
        ControlGroup {
            name: "lb".into(),
            gid: 990,
        }
    }

    #[test]
    fn root_may_do_everything() {
        let root = Caller::classify(&peer(0, 0, &[]), Some(&lb_group()));
        assert_eq!(root, Caller::Root);
        assert!(root.may("reload", false).is_ok());
        assert!(root.may("status", true).is_ok());
    }

    #[test]
    fn a_group_member_may_only_read() {
        for member in [peer(1000, 990, &[]), peer(1000, 1000, &[4, 990])] {
            let caller = Caller::classify(&member, Some(&lb_group()));
            assert!(matches!(caller, Caller::Reader { .. }), "{caller:?}");
            assert!(caller.may("status", true).is_ok());
            let err = caller.may("reload", false).unwrap_err();
            assert!(
                matches!(err, Refusal::NeedsRoot { uid: 1000, .. }),
                "{err:?}"
            );
            let err = err.to_string();
            assert!(
                err.contains("`reload` needs root") && err.contains("group `lb`"),
                "{err}"
            );
        }
    }

    #[test]
    fn everyone_else_is_refused_with_what_to_do() {
        let with_group = Caller::classify(&peer(1000, 1000, &[4]), Some(&lb_group()));
        let err = with_group.may("status", true).unwrap_err().to_string();
        assert!(err.contains("uid 1000") && err.contains("`lb`"), "{err}");
        let without = Caller::classify(&peer(1000, 990, &[990]), None);
        let err = without.may("status", true).unwrap_err().to_string();
        assert!(
            err.contains("root-only") && err.contains("control_group"),
            "{err}"
        );
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(resolve_group("root").unwrap().gid, 0);
        assert_eq!(resolve_group("4242").unwrap().gid, 4242);
        let err = resolve_group("no-such-group-lb").unwrap_err();
        assert!(
            err.to_string().contains("groupadd no-such-group-lb"),
            "{err}"
        );
    }
}
