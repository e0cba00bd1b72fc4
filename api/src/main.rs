//! `piston`: the API server. Parses arguments, sets up logging, builds the engine and serves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use api::{AppState, Config};

/// Piston API server (Piston v2-compatible HTTP and WebSocket API, v3 repository routes).
///
/// Options come from, in increasing precedence: defaults, the TOML file, PISTON_* environment
/// variables, --set. See api/CONFIG.md for every option.
#[derive(Parser)]
#[command(name = "piston", version)]
struct Args {
    /// TOML configuration file (also PISTON_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (option bind_address).
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
    /// ppman data directory (option data_directory).
    #[arg(long, value_name = "DIR")]
    data_directory: Option<String>,
    /// Set any option, e.g. --set run_timeout=5000 (repeatable).
    #[arg(short = 's', long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let config_error = error.downcast_ref::<api::config::ConfigError>().is_some();
            let hint = config_error.then_some("every option is described in api/CONFIG.md");
            cli_support::report(&*error, hint);
            cli_support::exit_code(config_error)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(bind) = args.bind {
        overrides.push(("bind_address".to_owned(), bind));
    }
    if let Some(dir) = args.data_directory {
        overrides.push(("data_directory".to_owned(), dir));
    }
    for item in args.set {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--set {item:?} is not NAME=VALUE"))?;
        overrides.push((name.trim().to_owned(), value.to_owned()));
    }
    let config = Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;

    cli_support::init_tracing_or(config.log_level.as_filter());

    let engine = api::adapter::build(&config).context("cannot start the engine")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind_address)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind_address))?;
        tracing::info!(address = %config.bind_address, "listening");
        let state = AppState::new(Arc::clone(&engine), config);
        api::serve(listener, state, shutdown_signal())
            .await
            .context("server failed")
    });
    // Jobs still running after the shutdown bound are not waited for: their sandboxes die with
    // the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
