//! Test harness for `lb`: network namespaces and the seeds' topologies,
//! guards for the processes run inside them (nginx, socat, `lb run`), the
//! clients (curl, ab, wrk, UDP), packet builders for the
//! BPF_PROG_TEST_RUN fixtures, and the VRRP high-availability rigs (lb and
//! keepalived nodes on one segment, `vrrp`). Shared by the end-to-end tests,
//! the agent's own tests (`lb-userspace/tests`: also `lab`, `slapd`, `tls`,
//! `sockets`, `require`, `config_lines`), `cargo xtask demo` and
//! `cargo xtask bench`. Functions that take the `lb` binary take its path:
//! tests/tests pass `agent::lb_bin()` ($LB_BIN), lb-userspace's tests
//! `env!("CARGO_BIN_EXE_lb")`.

pub mod agent;
pub mod bgp;
pub mod client;
pub mod config_lines;
pub mod flood;
pub mod forwarding_checks;
pub mod lab;
pub mod netns;
pub mod nginx;
pub mod packet;
pub mod process;
pub mod require;
pub mod scenario;
pub mod slapd;
pub mod sockets;
pub mod tempdir;
pub mod tls;
pub mod topology;
pub mod udp;
pub mod vrrp;
pub mod xdp_pass;
