//! The `lb` command line's definition (clap), apart from `main.rs` so that
//! `cargo xtask man` can generate the man page and the shell completions
//! from it.
//!
//! xtask compiles this file on its own (`#[path]`), without the rest of
//! the library, whose build needs the eBPF toolchain that xtask installs:
//! so it uses only clap and std, and the defaults it shows are constants
//! here (a test checks they equal the library's).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Where the maps and links are pinned by default (the library's
/// `dataplane::pin::DEFAULT_PIN_DIR`).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";

/// Where `lb run` and `lb check` read their config by default.
pub const DEFAULT_CONFIG: &str = "/etc/lb/lb.toml";

/// The usual sequence, shown by `lb --help` and in the man page.
const EXAMPLES: &str = "Examples:
  lb import keepalived /etc/keepalived/keepalived.conf > /etc/lb/lb.toml
  lb check --config /etc/lb/lb.toml
  lb run --config /etc/lb/lb.toml
  lb status
  lb reload
  lb vrrp handoff      (before a reboot: the backup takes over; lb vrrp resume)
  lb drain --wait      (scale-out: withdraw the BGP announcements first; lb undrain)
  lb status --pinned   (no agent running: the pinned data plane)
  lb unload            (stop forwarding, remove the pinned maps)";

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "XDP layer-4 load balancer (DR and NAT, Maglev)",
    after_long_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Attach the load balancer and serve the config in the foreground.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Where the maps and XDP links are pinned (on a BPF filesystem);
        /// an agent restarted with the same directory adopts them.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Detach XDP from every interface and remove the pinned maps: the
    /// balancer stops forwarding. Refused while an agent runs.
    Unload {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Control socket of the agent that must not be running.
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file (and that its interfaces exist here).
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show services, real servers and counters of the running agent (or,
    /// with --pinned, of the pinned data plane).
    Status {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Control socket (default: the config's, else /run/lb/lb.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Config whose [agent] control_socket to use; with --pinned, where
        /// names and weights come from (default /etc/lb/lb.toml when
        /// readable).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Read the maps pinned in --pin-dir instead of asking the agent:
        /// works while no agent runs (the data plane keeps forwarding).
        #[arg(long)]
        pinned: bool,
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Planned VRRP handoff (e.g. before a reboot) and its end.
    Vrrp {
        #[command(subcommand)]
        action: VrrpAction,
        /// Control socket (default: the config's, else /run/lb/lb.sock).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        /// Config whose [agent] control_socket to use.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Ask the running agent to re-read its config file.
    Reload {
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Withdraw every VIP announced to the BGP daemon ([announce]) and keep
    /// forwarding what still arrives; says when the node is safe to stop.
    Drain {
        /// Wait until it is safe to stop (no new connection for
        /// [announce] drain_quiet, at least drain_min after the withdrawal)
        /// and print it.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// End a drain: announce the VIPs again (those with a real server up).
    Undrain {
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Convert another program's config to an lb config on stdout; what
    /// could not be converted is listed on stderr with file:line and why.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Subcommand)]
pub enum VrrpAction {
    /// Give up mastership now (a priority 0 advert: the backup takes over
    /// at once) and stay backup until `lb vrrp resume`.
    Handoff {
        /// The instance (the `name` of a `[[vrrp_instance]]`); default: all.
        instance: Option<String>,
    },
    /// End a handoff: elect normally again (a higher priority preempts).
    Resume {
        /// The instance; default: all.
        instance: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ImportFrom {
    /// A keepalived.conf (and the files it includes): virtual servers,
    /// real servers, checks, VRRP instances and sync groups.
    Keepalived {
        /// The keepalived.conf to convert, e.g. /etc/keepalived/keepalived.conf.
        file: PathBuf,
    },
}
