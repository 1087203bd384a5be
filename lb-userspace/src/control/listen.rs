//! Creating the control socket's file with its final mode and group from
//! the instant it appears at its path.
//!
//! Binding at the path and `chmod`ing after leaves a window in which the
//! socket carries the process umask's mode. Instead the socket is bound
//! under a hidden name next to the final one with umask 0177 (so it is born
//! 0600, root-only), given its group and group mode there, and then
//! `rename`d into place: the path never names a socket with any other mode.
//!
//! umask is per process, not per thread: [`UMASK`] serializes the binds
//! made by this process, and the agent binds before it starts anything
//! else that creates files.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::DirBuilderExt, fs::MetadataExt, fs::PermissionsExt},
    path::Path,
    sync::Mutex,
};

use tokio::net::UnixListener;

use super::peer::ControlGroup;

static UMASK: Mutex<()> = Mutex::new(());

/// Create the socket's directory when missing: 0700, or 0710 owned by the
/// control group (its members need to reach the socket, not list the
/// directory). An existing directory is left as it is, with a warning when
/// the group's members cannot reach the socket through it.
pub fn prepare_dir(dir: &Path, group: Option<&ControlGroup>) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    if !dir.exists() {
        let mode = if group.is_some() { 0o710 } else { 0o700 };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)?;
        if let Some(g) = group {
            chown(dir, g.gid)?;
        }
        return Ok(());
    }
    if let Some(g) = group {
        let meta = std::fs::metadata(dir)?;
        let mode = meta.permissions().mode();
        let searchable = mode & 0o001 != 0 || (meta.gid() == g.gid && mode & 0o010 != 0);
        if !searchable {
            tracing::warn!(
                "members of group `{}` ([agent] control_group) cannot reach the control socket: \
                 its directory {} (mode {:o}) is not searchable by them; give it mode 0711, or \
                 group `{}` with mode 0710 (with systemd: RuntimeDirectoryMode=0711)",
                g.name,
                dir.display(),
                mode & 0o7777,
                g.name
            );
        }
    }
    Ok(())
}

/// Bind `path` with mode [`socket_mode`] and, with a group, that group.
/// `path` must not exist (the caller removed a stale one).
pub fn bind(path: &Path, group: Option<&ControlGroup>) -> std::io::Result<UnixListener> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let hidden = path.with_file_name(format!(".{name}.{}.binding", std::process::id()));
    let _ = std::fs::remove_file(&hidden);
    let listener = {
        let _serial = UMASK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: umask(2) cannot fail; the previous mask is restored below.
        let previous = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(&hidden);
        // SAFETY: as above.
        unsafe { libc::umask(previous) };
        bound?
    };
    let placed = (|| {
        if let Some(g) = group {
            chown(&hidden, g.gid)?;
            std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o660))?;
        }
        std::fs::rename(&hidden, path)
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&hidden);
        return Err(e);
    }
    Ok(listener)
}

/// Give `path` group `gid`, keeping its owner.
fn chown(path: &Path, gid: u32) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path; uid -1 keeps the owner.
    if unsafe { libc::chown(c_path.as_ptr(), u32::MAX, gid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
