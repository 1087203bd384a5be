//! The `lb` agent: configuration, the data plane's maps, and the commands
//! built on them. `main.rs` is only the command line; everything else is a
//! library so the tests and the benchmarks drive the same code.

pub mod agent;
pub mod announce;
pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod health;
pub mod import;
pub mod maglev;
pub mod metrics;
pub mod netlink;
pub mod status;
pub mod systemd;
pub mod vrrp;

/// The XDP object, built from `lb-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

/// Minimal XDP programs (`lb-ebpf/src/baseline.rs`) the benchmarks compare against.
pub static BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-baseline"));

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_shows_the_librarys_defaults() {
        assert_eq!(
            crate::cli::DEFAULT_PIN_DIR,
            crate::dataplane::pin::DEFAULT_PIN_DIR
        );
    }
}
