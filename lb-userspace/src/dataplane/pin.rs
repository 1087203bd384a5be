//! The data plane's life beyond one agent process: where its maps and XDP
//! links are pinned on a BPF filesystem, the check that a pinned set can
//! be adopted by this build, and `lb unload`.
//!
//! Layout of the pin directory (default [`DEFAULT_PIN_DIR`]):
//! - one file per pinned map of `lb_common::layout::MAPS`, named as in
//!   `lb_common::names` (`SERVICES`, `FLOWS`, ...);
//! - `LAYOUT_VERSION`: a one-entry array holding the layout version of the
//!   pinned maps (`lb_common::layout::LAYOUT_VERSION`); a set with another
//!   version is refused, one without (pinned before versions were
//!   recorded) is adopted when its maps have the expected shapes;
//! - `FLOW_SEED`: a one-entry array holding the seed of the flow tags the
//!   pinned flow tables were written with (`lb_common::flow_table`), drawn
//!   at random when a set is created, so that nobody can choose tuples that
//!   share a set with somebody else's flow; an adopting agent loads its
//!   program with it;
//! - `link_<interface>`: the bpf_link attaching the program to that
//!   interface. The link holds the program, so the program needs no pin of
//!   its own; a new agent swaps its own program into the same link
//!   (`bpf_link_update`), which is atomic for packets.
//!
//! Pins live as long as the BPF filesystem they are on. The one mounted at
//! /sys/fs/bpf in the host's mount namespace lives until reboot. `ip netns
//! exec` gives its command a private mount namespace with a fresh /sys, so
//! an agent started that way mounts a private bpffs, and its pins (and
//! therefore its XDP links) go away when its last process exits: that is
//! a plain unload, not a restart that keeps forwarding.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, MapData, MapType},
    programs::links::PinnedLink,
};
use lb_common::layout::{
    Entries, MapKind, MapSpec, Pin, FLOW_SEED_MAP, LAYOUT_VERSION, MAPS, VERSION_MAP,
};

use super::loader::MapSizes;

/// Where `lb run` pins the data plane unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{path} is not on a BPF filesystem (mount one with `mount -t bpf bpf {path}`)")]
    NotBpffs { path: PathBuf },
    #[error("cannot mount a BPF filesystem on {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the data plane pinned in {dir} was left by an lb build with another map layout \
         ({detail}); it cannot be adopted: run `lb unload --pin-dir {dir}` (this detaches XDP \
         and drops the flow table), then `lb run` again"
    )]
    Layout { dir: PathBuf, detail: String },
    #[error(
        "the data plane pinned in {dir} has map layout version {pinned}, this lb build uses \
         version {ours}: it cannot be adopted: run `lb unload --pin-dir {dir}` (this detaches XDP \
         and drops the flow table), then `lb run` again"
    )]
    Version {
        dir: PathBuf,
        pinned: u32,
        ours: u32,
    },
    #[error("cannot record the layout version in {path}: {detail}")]
    RecordVersion { path: PathBuf, detail: String },
    #[error("cannot read or record the flow tags' seed in {path}: {detail}")]
    FlowSeed { path: PathBuf, detail: String },
    #[error(
        "another lb agent is running on the data plane pinned in {dir} (give each agent its own \
         --pin-dir)"
    )]
    Busy { dir: PathBuf },
    #[error(
        "the data plane pinned in {dir} is incomplete ({missing} missing): run `lb unload \
         --pin-dir {dir}`, then `lb run` again"
    )]
    Incomplete { dir: PathBuf, missing: String },
}

/// The aya map type of a [`MapKind`].
pub fn map_type(kind: MapKind) -> MapType {
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::LruHash => MapType::LruHash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
    }
}

/// The pinned maps, required ones first (`lb_common::layout::MAPS`).
fn pinned_maps() -> impl Iterator<Item = &'static MapSpec> {
    let pinned = |pin| MAPS.iter().filter(move |m| m.pin == pin);
    pinned(Pin::Required).chain(pinned(Pin::Optional))
}

/// Names of every map the agent pins.
pub fn map_names() -> Vec<&'static str> {
    pinned_maps().map(|m| m.name).collect()
}

/// A pin directory.
#[derive(Clone, Debug)]
pub struct PinDir {
    dir: PathBuf,
}

impl PinDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn link(&self, interface: &str) -> PathBuf {
        self.dir.join(format!("link_{interface}"))
    }

    /// Make sure the directory exists on a BPF filesystem. When its parent
    /// is /sys/fs/bpf and nothing is mounted there (a minimal system, or a
    /// private mount namespace), a bpffs is mounted first.
    pub fn prepare(&self) -> Result<(), PinError> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(parent) {
            if parent != Path::new("/sys/fs/bpf") {
                return Err(PinError::NotBpffs {
                    path: parent.to_path_buf(),
                });
            }
            mount_bpffs(parent)?;
            tracing::warn!(
                "no BPF filesystem was mounted on {}: mounted one (in a private mount \
                 namespace such as `ip netns exec` gives, the pins end with the agent)",
                parent.display()
            );
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| PinError::Io {
            what: "creating",
            path: self.dir.clone(),
            source,
        })
    }

    /// Hold the directory for this process (released when the returned
    /// file closes, so also by `kill -9`): two agents adopting the same
    /// maps would undo each other's writes.
    pub fn lock(&self) -> Result<std::fs::File, PinError> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open(&self.dir).map_err(|source| PinError::Io {
            what: "opening",
            path: self.dir.clone(),
            source,
        })?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(PinError::Busy {
                dir: self.dir.clone(),
            });
        }
        Ok(file)
    }

    /// The sizes of the pinned maps when a data plane is pinned here and
    /// this build can adopt it; `None` when nothing is pinned.
    pub fn probe(&self) -> Result<Option<MapSizes>, PinError> {
        let required: Vec<&MapSpec> = MAPS.iter().filter(|m| m.pin == Pin::Required).collect();
        let present: Vec<bool> = required.iter().map(|m| self.map(m.name).exists()).collect();
        if present.iter().all(|p| !p) {
            return Ok(None);
        }
        if let Some(i) = present.iter().position(|p| !p) {
            return Err(PinError::Incomplete {
                dir: self.dir.clone(),
                missing: required[i].name.to_string(),
            });
        }
        if let Some(pinned) = self.pinned_version()? {
            if pinned != LAYOUT_VERSION {
                return Err(PinError::Version {
                    dir: self.dir.clone(),
                    pinned,
                    ours: LAYOUT_VERSION,
                });
            }
        }
        let mut sizes = MapSizes {
            services: 0,
            backends: 0,
            ring_slots: 0,
            flow_sets: 0,
            flow_sets_v6: 0,
        };
        for spec in pinned_maps().filter(|m| self.map(m.name).exists()) {
            let n = self.check_shape(spec)?;
            self.check_entries(spec, n, &mut sizes)?;
        }
        Ok(Some(sizes))
    }

    fn layout_err(&self, detail: String) -> PinError {
        PinError::Layout {
            dir: self.dir.clone(),
            detail,
        }
    }

    /// The pinned map `spec` has the kind, key and value sizes this build
    /// expects; its number of entries.
    fn check_shape(&self, spec: &MapSpec) -> Result<u32, PinError> {
        let name = spec.name;
        let data = MapData::from_pin(self.map(name))
            .map_err(|e| self.layout_err(format!("{name}: {e}")))?;
        let info = data
            .info()
            .map_err(|e| self.layout_err(format!("{name}: {e}")))?;
        let got_kind = info
            .map_type()
            .map_err(|e| self.layout_err(format!("{name}: {e}")))?;
        let kind = map_type(spec.kind);
        let (key, value) = (spec.key_size, spec.value_size);
        if got_kind != kind
            || info.key_size() as usize != key
            || info.value_size() as usize != value
        {
            return Err(self.layout_err(format!(
                "{name} is a {got_kind:?} with {}-byte keys and {}-byte values, this build \
                 expects a {kind:?} with {key}-byte keys ({}) and {value}-byte values ({})",
                info.key_size(),
                info.value_size(),
                spec.key_type,
                spec.value_type
            )));
        }
        Ok(info.max_entries())
    }

    /// Take the size of a map sized by the config; check a compiled-in one.
    fn check_entries(&self, spec: &MapSpec, n: u32, sizes: &mut MapSizes) -> Result<(), PinError> {
        let name = spec.name;
        match spec.entries {
            Entries::Services => sizes.services = n,
            Entries::Backends => sizes.backends = n,
            Entries::RingSlots => sizes.ring_slots = n,
            Entries::Flows => sizes.flow_sets = n,
            Entries::FlowsV6 => sizes.flow_sets_v6 = n,
            // The meaning of an index depends on the size: no other is usable.
            Entries::Exactly(want) if n != want => {
                return Err(self.layout_err(format!("{name} has {n} entries, not {want}")))
            }
            Entries::Exactly(_) => {}
            Entries::AppendOnly(want) if n > want => {
                return Err(self.layout_err(format!("{name} has {n} entries, more than {want}")))
            }
            // Events are only ever appended: an older build's shorter
            // array is adopted (so an upgrade keeps forwarding and the
            // flow table), and the newer entries count nothing until
            // `lb unload`.
            Entries::AppendOnly(want) if n < want => {
                let missing = if name == lb_common::names::EVENT_STATS {
                    format!(
                        "events {}",
                        lb_common::event::NAMES[n as usize..].join(", ")
                    )
                } else {
                    format!("entries {n}..{want}")
                };
                tracing::warn!(
                    "the pinned {name} was created by an older lb build: {missing} are not \
                     counted until `lb unload --pin-dir {}` and `lb run`",
                    self.dir.display()
                );
            }
            Entries::AppendOnly(_) => {}
        }
        Ok(())
    }

    /// The layout version pinned here; `None` for a set pinned before
    /// versions were recorded (version 1, adopted when its maps have the
    /// expected shapes: the layout did not change).
    fn pinned_version(&self) -> Result<Option<u32>, PinError> {
        let path = self.map(VERSION_MAP);
        if !path.exists() {
            return Ok(None);
        }
        let err = |e: &dyn std::fmt::Display| self.layout_err(format!("{VERSION_MAP}: {e}"));
        let data = MapData::from_pin(&path).map_err(|e| err(&e))?;
        let array: Array<MapData, u32> =
            Array::try_from(aya::maps::Map::Array(data)).map_err(|e| err(&e))?;
        array.get(&0, 0).map(Some).map_err(|e| err(&e))
    }

    /// Pin this build's layout version with the maps (a fresh set, or an
    /// adopted one that had none). Call after the maps are pinned.
    pub fn record_version(&self) -> Result<(), PinError> {
        if self.pinned_version()? == Some(LAYOUT_VERSION) {
            return Ok(());
        }
        let path = self.map(VERSION_MAP);
        let err = |detail: String| PinError::RecordVersion {
            path: path.clone(),
            detail,
        };
        let mut array: Array<MapData, u32> = Array::create(1, 0).map_err(|e| err(e.to_string()))?;
        array
            .set(0, LAYOUT_VERSION, 0)
            .map_err(|e| err(e.to_string()))?;
        // A version map of another layout would have been refused by
        // `probe`; one of this layout was returned above.
        remove_file(&path)?;
        array.pin(&path).map_err(|e| err(e.to_string()))
    }

    /// The seed of the flow tags for the maps about to be loaded here:
    /// the pinned one when `adopting` a set that has one; otherwise a new
    /// random seed, pinned before the maps are (a set adopted without one,
    /// which only a crash between the two could leave, gets a new seed: its
    /// flows are forgotten and scheduled again by the Maglev ring).
    pub fn flow_seed(&self, adopting: bool) -> Result<u64, PinError> {
        let path = self.map(FLOW_SEED_MAP);
        let err = |detail: String| PinError::FlowSeed {
            path: path.clone(),
            detail,
        };
        if adopting && path.exists() {
            let data = MapData::from_pin(&path).map_err(|e| err(e.to_string()))?;
            let array: Array<MapData, u64> =
                Array::try_from(aya::maps::Map::Array(data)).map_err(|e| err(e.to_string()))?;
            return array.get(&0, 0).map_err(|e| err(e.to_string()));
        }
        if adopting {
            tracing::warn!(
                "the pinned data plane in {} has no {FLOW_SEED_MAP}: its flows are scheduled \
                 again by the Maglev ring",
                self.dir.display()
            );
        }
        let seed = random_seed().map_err(|e| err(e.to_string()))?;
        let mut array: Array<MapData, u64> = Array::create(1, 0).map_err(|e| err(e.to_string()))?;
        array.set(0, seed, 0).map_err(|e| err(e.to_string()))?;
        remove_file(&path)?;
        array.pin(&path).map_err(|e| err(e.to_string()))?;
        Ok(seed)
    }

    /// Remove the pins of the maps, the layout version and the flow seed,
    /// leaving the links: what `unload` does after detaching, and what an
    /// agent does before it replaces the maps of an older layout (the
    /// programs in the links keep their maps until it swaps in its own).
    pub fn remove_maps(&self) -> Result<(), PinError> {
        for name in map_names().into_iter().chain([VERSION_MAP, FLOW_SEED_MAP]) {
            remove_file(&self.map(name))?;
        }
        Ok(())
    }

    /// Interfaces with a pinned link.
    pub fn linked_interfaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut list: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("link_"))
                    .map(str::to_string)
            })
            .collect();
        list.sort();
        list
    }

    /// Detach from one interface: the link goes when its pin and our fd do.
    pub fn remove_link(&self, interface: &str) -> Result<(), PinError> {
        let path = self.link(interface);
        match PinnedLink::from_pin(&path) {
            Ok(link) => {
                let fd = link.unpin().map_err(|source| PinError::Io {
                    what: "removing",
                    path: path.clone(),
                    source,
                })?;
                drop(fd);
                Ok(())
            }
            // Not a link (or unreadable): removing the file is all there is.
            Err(_) => remove_file(&path),
        }
    }

    /// `lb unload`: detach from every interface, remove every pin and the
    /// directory. Returns the interfaces detached.
    pub fn unload(&self) -> Result<Vec<String>, PinError> {
        let interfaces = self.linked_interfaces();
        for interface in &interfaces {
            self.remove_link(interface)?;
        }
        self.remove_maps()?;
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PinError::Io {
                    what: "removing",
                    path: self.dir.clone(),
                    source,
                })
            }
        }
        Ok(interfaces)
    }
}

/// Eight bytes from the kernel's random pool (never 0 in practice; any
/// value works as a seed).
fn random_seed() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: `bytes` is a writable buffer of the length passed.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(bytes))
}

fn remove_file(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PinError::Io {
            what: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes only into the struct we pass.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(path: &Path) -> Result<(), PinError> {
    let err = |source| PinError::Mount {
        path: path.to_path_buf(),
        source,
    };
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let fstype = c"bpf";
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}
