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
    control::{self, Request},
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
    },
    /// Validate a config file (and that its interfaces exist here).
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show services, real servers and counters of the running agent.
    Status {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Control socket (default: the config's, else /run/lb/lb.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Config whose [agent] control_socket to use.
        #[arg(long, short)]
        config: Option<PathBuf>,
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
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config),
        Command::Status {
            json,
            socket,
            config,
        } => status(json, socket_path(socket, config.as_deref())?),
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
    println!(
        "config OK: {} virtual services, {reals} real servers",
        config.virtual_servers.len()
    );
    Ok(())
}

fn run(path: &Path) -> Result<(), Failure> {
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
    runtime.block_on(agent::run(path.to_path_buf(), config))?;
    Ok(())
}

/// --socket, else the config's control_socket, else the default.
fn socket_path(socket: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(socket) = socket {
        return Ok(socket);
    }
    if let Some(path) = config {
        return Ok(config::load(path)
            .map_err(invalid_config)?
            .agent
            .control_socket);
    }
    Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET))
}

fn status(json: bool, socket: PathBuf) -> Result<(), Failure> {
    let answer = control::request(&socket, &Request::Status)?;
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
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("encoding the status as JSON")?
        );
    } else {
        print!("{}", status.render());
    }
    Ok(())
}
