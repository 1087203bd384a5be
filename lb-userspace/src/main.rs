//! The `lb` command line. Everything it does lives in the library; this
//! file only parses arguments, picks exit codes and prints errors.
//!
//! Exit codes: 0 success; 1 runtime failure (no privileges, no agent,
//! load/attach failed); 2 invalid config.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lb_userspace::{
    agent,
    config::{self, DEFAULT_CONTROL_SOCKET},
    control::{self, ControlError, Request},
    dataplane::{
        pin::{PinDir, DEFAULT_PIN_DIR},
        stats::pinned_snapshot,
    },
    status::Status,
};

const DEFAULT_CONFIG: &str = "/etc/lb/lb.toml";

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "XDP layer-4 load balancer (DR and NAT, Maglev)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Ask the running agent to re-read its config file.
    Reload {
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            code: 1,
            error: e.into(),
        }
    }
}

fn invalid_config(e: config::ConfigError) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("lb: {}", describe(&error));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line. Library errors already quote
/// their cause in their message, so a cause is only appended when it adds
/// something.
fn describe(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run { config, pin_dir } => run(&config, pin_dir),
        Command::Unload {
            pin_dir,
            socket,
            config,
        } => unload(pin_dir, socket_path(socket, config.as_deref())?),
        Command::Check { config } => check(&config),
        Command::Status {
            json,
            socket,
            config,
            pinned,
            pin_dir,
        } => {
            if pinned {
                pinned_status(json, config, &pin_dir)
            } else {
                status(json, socket_path(socket, config.as_deref())?, &pin_dir)
            }
        }
        Command::Reload { socket, config } => {
            let path = socket_path(socket, config.as_deref())?;
            let answer = control::request(&path, &Request::Reload)?;
            if !answer.ok {
                return Err(anyhow::anyhow!(answer.error.unwrap_or_default()).into());
            }
            println!("{}", answer.message.unwrap_or_default());
            Ok(())
        }
    }
}

fn load_checked(path: &Path) -> Result<config::Config, Failure> {
    let config = config::load(path).map_err(invalid_config)?;
    config::validate_host(&config).map_err(invalid_config)?;
    Ok(config)
}

fn check(path: &Path) -> Result<(), Failure> {
    let config = load_checked(path)?;
    let reals: usize = config
        .virtual_servers
        .iter()
        .map(|vs| vs.real_servers.len())
        .sum();
    let mut summary = format!(
        "config OK: {} virtual services, {reals} real servers",
        config.virtual_servers.len()
    );
    if !config.vrrp_instances.is_empty() {
        summary.push_str(&format!(
            ", {} VRRP instances, {} sync groups",
            config.vrrp_instances.len(),
            config.vrrp_sync_groups.len()
        ));
    }
    println!("{summary}");
    Ok(())
}

fn unload(pin_dir: PathBuf, socket: PathBuf) -> Result<(), Failure> {
    if control::request(&socket, &Request::Status).is_ok() {
        return Err(anyhow::anyhow!(
            "an agent is running on {}: stop it first (it would re-pin what unload removes)",
            socket.display()
        )
        .into());
    }
    let pins = PinDir::new(&pin_dir);
    if !pin_dir.exists() {
        println!("nothing pinned in {}", pin_dir.display());
        return Ok(());
    }
    let _lock = pins.lock()?;
    let detached = pins.unload()?;
    for interface in &detached {
        println!("detached from {interface}");
    }
    println!("removed the data plane pinned in {}", pin_dir.display());
    Ok(())
}

fn run(path: &Path, pin_dir: PathBuf) -> Result<(), Failure> {
    let config = load_checked(path)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(agent::run(path.to_path_buf(), config, pin_dir))?;
    Ok(())
}

/// --socket, else the config's control_socket, else the default.
fn socket_path(socket: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(socket) = socket {
        return Ok(socket);
    }
    if let Some(path) = config {
        if let Some(socket) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| config::control_socket_of(&text))
        {
            return Ok(socket);
        }
        return Ok(config::load(path)
            .map_err(invalid_config)?
            .agent
            .control_socket);
    }
    Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET))
}

/// `lb status --pinned`: the maps alone, no agent needed.
fn pinned_status(json: bool, config: Option<PathBuf>, pin_dir: &Path) -> Result<(), Failure> {
    let explicit = config.is_some();
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = match config::load(&path) {
        Ok(c) => Some(c),
        Err(e) if explicit => return Err(invalid_config(e)),
        Err(_) => None,
    };
    let status = pinned_snapshot(&PinDir::new(pin_dir), config.as_ref())
        .context("reading the pinned data plane")?;
    print_status(json, &status)
}

fn status(json: bool, socket: PathBuf, pin_dir: &Path) -> Result<(), Failure> {
    let answer = match control::request(&socket, &Request::Status) {
        Ok(answer) => answer,
        Err(e @ ControlError::NoAgent(_)) if PinDir::new(pin_dir).path().exists() => {
            return Err(anyhow::anyhow!(
                "{e} (the data plane pinned in {} forwards without it: `lb status --pinned` \
                 shows it)",
                pin_dir.display()
            )
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    let status = match (answer.ok, answer.status) {
        (true, Some(status)) => status,
        _ => {
            return Err(anyhow::anyhow!(
                "the agent could not report its status: {}",
                answer
                    .error
                    .unwrap_or_else(|| "no status in its answer".into())
            )
            .into())
        }
    };
    print_status(json, &status)
}

fn print_status(json: bool, status: &Status) -> Result<(), Failure> {
    // `lb status | head` must end quietly, as ipvsadm's output does, not
    // panic on a closed pipe. Only here: the agent must never die of one.
    // SAFETY: restoring the default disposition of one signal.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(status).context("encoding the status as JSON")?
        );
    } else {
        print!("{}", status.render());
    }
    Ok(())
}
