//! The data plane's log switch (`[agent] ebpf_log`): which rare events the
//! XDP program reports through aya-log. The agent writes the level into the
//! one-entry `u32` array [`MAP`] at start and on every reload; the program
//! reads it only where such an event happens (never for an ordinary
//! packet), so the switch costs nothing while it is off.

/// The level map's name (kernel map type: array of one `u32`).
pub const MAP: &str = "LOG_LEVEL";

/// Nothing is logged (the default).
pub const OFF: u32 = 0;
/// A packet for a service with no real server and no sorry server
/// (dropped), and an established flow chosen again because its real server
/// went down or was removed.
pub const INFO: u32 = 1;
/// INFO, and a new flow sent to a sorry server, and an established flow
/// chosen again because its address:port now belongs to another service.
pub const DEBUG: u32 = 2;
