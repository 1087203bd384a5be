//! The scale-out simulation (issue 13): many lb nodes behind a router's
//! ECMP, pure and host-side. [`ecmp`] models the router's next-hop choice,
//! [`cluster`] the nodes (flow tables, lb's own Maglev table and flow
//! hash). The `scaleout` suite runs the scenarios and reports them.

pub mod cluster;
pub mod ecmp;
