//! One module per suite; each returns a [`crate::report::Report`].

pub mod agent;
pub mod control;
pub mod http;
pub mod ipvs;
pub mod packet;
pub mod rate;
pub mod scaleout;
pub mod small_board;
pub mod vrrp;
