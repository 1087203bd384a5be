//! Test harness for `lb`: network namespaces and the seeds' topologies,
//! guards for the processes run inside them (nginx, socat, `lb run`), the
//! clients (curl, ab, wrk, UDP), packet builders for the
//! BPF_PROG_TEST_RUN fixtures, and the VRRP high-availability rigs (lb and
//! keepalived nodes on one segment, `vrrp`). Shared by the end-to-end tests,
//! `cargo xtask demo` and `cargo xtask bench`.

pub mod agent;
pub mod bgp;
pub mod client;
pub mod flood;
pub mod netns;
pub mod nginx;
pub mod packet;
pub mod process;
pub mod scenario;
pub mod tempdir;
pub mod topology;
pub mod udp;
pub mod vrrp;
pub mod xdp_pass;
