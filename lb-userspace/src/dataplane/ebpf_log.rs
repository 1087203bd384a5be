//! The data plane's log (`[agent] ebpf_log`): the switch the XDP program
//! reads on rare events ([`LogSwitch`], its `LOG_LEVEL` map), and the
//! reader that prints the program's aya-log records through `tracing`
//! ([`forward`]).
//!
//! The switch is a map, not a constant patched in at load time, so that
//! `lb reload` turns it on or off without loading or attaching anything.
//! Every record is printed at INFO with target `lb::xdp`, whatever its
//! level in the program: `ebpf_log` already chose which events are
//! recorded, and the agent's default filter (info) would otherwise hide
//! the very records `ebpf_log = "debug"` asked for (`RUST_LOG=lb::xdp=off`
//! silences them).

use aya::{
    maps::{Array, MapData},
    Ebpf,
};
use lb_common::names;
use tokio::task::JoinHandle;

use super::maps::{MapOpenError, MapWriteError};
use crate::config::EbpfLog;

/// The agent's handle on the program's `LOG_LEVEL` map and the level it
/// last wrote there.
pub struct LogSwitch {
    map: Array<MapData, u32>,
    level: EbpfLog,
}

impl LogSwitch {
    /// Takes the map out of the loaded object, as loaded: off (the
    /// program reads a zero as off).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapOpenError> {
        let name = names::LOG_LEVEL;
        let map = ebpf.take_map(name).ok_or(MapOpenError::Missing(name))?;
        let map =
            Array::try_from(map).map_err(|source| MapOpenError::WrongType { name, source })?;
        Ok(Self {
            map,
            level: EbpfLog::Off,
        })
    }

    /// Switch the program's log to `level`: one map write, seen by the
    /// next event.
    pub fn set(&mut self, level: EbpfLog) -> Result<(), MapWriteError> {
        self.map
            .set(0, level.level(), 0)
            .map_err(|source| MapWriteError {
                map: names::LOG_LEVEL,
                op: "update",
                source,
            })?;
        self.level = level;
        Ok(())
    }

    /// The level in force.
    pub fn level(&self) -> EbpfLog {
        self.level
    }
}

/// Prints the program's records (see the module doc).
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // The program sends every address as IPv6, IPv4 ones IPv4-mapped
        // (`lb-ebpf/src/log.rs` says why): shown as users write them.
        let message = record.args().to_string().replace("::ffff:", "");
        tracing::info!(target: "lb::xdp", "{message}");
    }

    fn flush(&self) {}
}

/// How often the agent empties the program's record buffer. The program
/// writes its records without waking a reader (a wakeup cost 7.4 us per
/// record, the record itself 0.13 us: BENCHMARKS.md "eBPF log switch
/// (issue 8)"), so the buffer is read on this timer: a record reaches the
/// log within this long, and the 128 KiB buffer (some 400 records) fills
/// only past 1,600 events a second, beyond which records are dropped.
pub const READ_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// Read the program's aya-log ring buffer every [`READ_PERIOD`] and print
/// each record; `None` when the object has no log map (it never logs).
pub fn forward(ebpf: &mut Ebpf) -> Option<JoinHandle<()>> {
    let mut logger = match aya_log::EbpfLogger::init_with_logger(ebpf, ToTracing) {
        Ok(logger) => logger,
        Err(e) => {
            tracing::warn!("the XDP object has no usable log map, ebpf_log prints nothing: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(READ_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            logger.flush();
        }
    }))
}
