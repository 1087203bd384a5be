//! BPF_PROG_TEST_RUN fixtures of the real XDP object (`lb_userspace::EBPF_OBJECT`).
//!
//! Each test loads the object, fills its maps with `lb_common` types as the
//! agent would, and runs frames through the program: tables of (what, input
//! frame, expected verdict, expected output frame, expected event), in the
//! manner of Katran's tests. Expected frames are built from scratch by
//! `lb_tests::packet`, so the program's incremental checksum updates are
//! compared with full recomputations.
//!
//! `bpf_fib_lookup` inside a test run answers from the network namespace of
//! the ingress device named in the run's context (`xdp_md.ingress_ifindex`,
//! passed through `ctx_in`). Each test therefore moves its thread into a
//! private namespace with the seed 001 balancer's two interfaces (veth),
//! addresses, permanent neighbour entries and forwarding on; the kernel's
//! real routing decides where a packet goes. Needs root (CAP_SYS_ADMIN,
//! CAP_BPF, CAP_NET_ADMIN) and `ip` (iproute2).

#[path = "common/xdp_world.rs"]
mod xdp_world;

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, SocketAddr},
};

use lb_common::{
    event, names, verdict, Flow, NO_BACKEND, PROTO_TCP, PROTO_UDP, SVC_F_DR, SVC_F_NAT,
};
use lb_tests::packet::{
    verify_checksums, Frame, Mac, CLIENT_MAC, ETH_P_8021Q, TCP_ACK, TCP_PSH, TCP_SYN,
};
use xdp_world::*;

// One file per topic under xdp_fixtures/, each a table or a few tests
// over the same world; `table` is the harness they share.
#[path = "xdp_fixtures/dr.rs"]
mod dr;
#[path = "xdp_fixtures/edges.rs"]
mod edges;
#[path = "xdp_fixtures/filter.rs"]
mod filter;
#[path = "xdp_fixtures/flows.rs"]
mod flows;
#[path = "xdp_fixtures/forwarding.rs"]
mod forwarding;
#[path = "xdp_fixtures/next_hops.rs"]
mod next_hops;
#[path = "xdp_fixtures/parse.rs"]
mod parse;
#[path = "xdp_fixtures/service_index.rs"]
mod service_index;
#[path = "xdp_fixtures/table.rs"]
mod table;

use flows::kernel_choice;
use table::*;
