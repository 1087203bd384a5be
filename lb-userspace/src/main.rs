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
use clap::Parser;
use lb_userspace::{
    agent,
    cli::{Cli, Command, ImportFrom, VrrpAction, DEFAULT_CONFIG},
    config::{self, DEFAULT_CONTROL_SOCKET},
    control::{self, ControlError, Request, VrrpRequest},
    dataplane::{pin::PinDir, stats::pinned_snapshot},
    status::Status,
};

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
        } => {
            unload(pin_dir, socket_path(socket, config.as_deref())?)?;
            unload_routes(config.as_deref())
        }
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
        Command::Vrrp {
            action,
            socket,
            config,
        } => vrrp(action, socket_path(socket, config.as_deref())?),
        Command::Reload { socket, config } => {
            let path = socket_path(socket, config.as_deref())?;
            let answer = control::request(&path, &Request::Reload)?;
            if !answer.ok {
                return Err(anyhow::anyhow!(answer.error.unwrap_or_default()).into());
            }
            println!("{}", answer.message.unwrap_or_default());
            Ok(())
        }
        Command::Import {
            from: ImportFrom::Keepalived { file },
        } => import_keepalived(&file),
        Command::Drain {
            wait,
            timeout,
            socket,
            config,
        } => drain(
            socket_path(socket, config.as_deref())?,
            wait.then(|| std::time::Duration::from_secs(timeout)),
        ),
        Command::Undrain { socket, config } => {
            let path = socket_path(socket, config.as_deref())?;
            println!("{}", ask(&path, &Request::Undrain)?);
            Ok(())
        }
    }
}

/// The TOML on stdout, the notes on stderr, then the output's own
/// `lb check` (without the host): exit 2 if lb would refuse it.
fn import_keepalived(file: &Path) -> Result<(), Failure> {
    let import = lb_userspace::import::keepalived(file)?;
    print!("{}", import.toml);
    for note in &import.notes {
        eprintln!("{}", import.render_note(note));
    }
    eprintln!("{}", import.summary());
    config::parse(&import.toml, "the converted config").map_err(|e| Failure {
        code: 2,
        error: anyhow::anyhow!("the converted config does not pass lb check: {e}"),
    })?;
    Ok(())
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

/// `lb vrrp handoff|resume [INSTANCE]`: the agent's message, or its error.
fn vrrp(action: VrrpAction, socket: PathBuf) -> Result<(), Failure> {
    let request = match action {
        VrrpAction::Handoff { instance } => VrrpRequest::VrrpHandoff { instance },
        VrrpAction::Resume { instance } => VrrpRequest::VrrpResume { instance },
    };
    let answer = control::request(&socket, &request)?;
    if !answer.ok {
        return Err(anyhow::anyhow!(answer.error.unwrap_or_default()).into());
    }
    println!("{}", answer.message.unwrap_or_default());
    Ok(())
}

/// A request whose answer is a message: the message, or its error.
fn ask(socket: &Path, request: &Request) -> Result<String, Failure> {
    let answer = control::request(socket, request)?;
    if !answer.ok {
        return Err(anyhow::anyhow!(answer.error.unwrap_or_default()).into());
    }
    Ok(answer.message.unwrap_or_default())
}

/// `lb drain [--wait]`: withdraw, then (with a timeout) poll the status
/// until the agent says "drained".
fn drain(socket: PathBuf, wait: Option<std::time::Duration>) -> Result<(), Failure> {
    println!("{}", ask(&socket, &Request::Drain)?);
    let Some(timeout) = wait else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    loop {
        let answer = control::request(&socket, &Request::Status)?;
        let announce = answer.status.and_then(|s| s.announce);
        match announce.as_ref().map(|a| a.drain.as_str()) {
            Some("drained") => {
                let a = announce.expect("matched");
                println!(
                    "drained: safe to stop (withdrawn {:.1} s ago, no new connection for {:.1} s)",
                    a.drain_for_ms.unwrap_or(0) as f64 / 1000.0,
                    a.ms_since_new_conn.unwrap_or(0) as f64 / 1000.0
                );
                return Ok(());
            }
            Some("draining") => {}
            other => {
                return Err(anyhow::anyhow!(
                    "the agent is not draining any more ({}): was `lb undrain` run?",
                    other.unwrap_or("no [announce]")
                )
                .into())
            }
        }
        if started.elapsed() >= timeout {
            return Err(anyhow::anyhow!(
                "not drained after {} s: new connections still arrive (is the BGP daemon \
                 running and peering?)",
                timeout.as_secs()
            )
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `lb unload`: the announced routes go too (the config's `[announce]`:
/// --config, else /etc/lb/lb.toml when readable).
fn unload_routes(config: Option<&Path>) -> Result<(), Failure> {
    let explicit = config.is_some();
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    let announce = match config::load(path) {
        Ok(c) => c.announce,
        Err(e) if explicit => return Err(invalid_config(e)),
        Err(_) => None,
    };
    let Some(announce) = announce else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let removed = runtime
        .block_on(lb_userspace::announce::routes::remove_all(&announce))
        .context("removing the announced routes")?;
    if !removed.is_empty() {
        println!(
            "removed {} announced routes from table {}",
            removed.len(),
            announce.table
        );
    }
    Ok(())
}
