//! The data plane as the agent sees it: loading and attaching the XDP
//! object ([`loader`]), the maps ([`maps`]), turning a config into map
//! contents ([`programmer`], with [`ids`] and [`ring`] allocation), reading
//! counters back ([`stats`], flows counted by [`flows`]), and keeping DR
//! real servers' neighbour entries resolved ([`neighbour`]) and copied
//! where the program finds them with forwarding off ([`dr_next_hops`]);
//! the index through which new flows find their service
//! ([`service_index`]); the program's log switch and the printing of its records ([`ebpf_log`]).

pub mod device;
pub mod dr_next_hops;
pub mod ebpf_log;
pub mod filter;
pub mod flows;
pub mod ids;
pub mod keys;
pub mod loader;
pub mod maps;
pub mod neighbour;
pub mod pin;
pub mod programmer;
pub mod ring;
pub mod service_index;
pub mod stats;
