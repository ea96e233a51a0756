//! The `stompbox` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_TOML};
use crate::server::Server;
use crate::telemetry::{self, LogFormat};

/// Stompbox: a STOMP-over-WebSocket message broker.
#[derive(Debug, Parser)]
#[command(name = "stompbox", version, about)]
pub struct Cli {
    /// Configuration file. Default: ./broker.toml when present, else built-in defaults.
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do; without a subcommand the broker runs.
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the broker (the default).
    Run,
    /// Validate a configuration file and report errors with line and column.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the documented default configuration.
    PrintConfig,
    /// Print an argon2 hash for `[[auth.users]] password_hash`. Reads the password from the
    /// first line of standard input, so it stays out of shell history.
    HashPassword,
    /// Load-test a broker (this one or any STOMP-over-WebSocket broker).
    Bench(Box<crate::bench::BenchArgs>),
}

/// Entry point of the binary. Printing to stdout is its job (print-config, check-config).
#[allow(clippy::print_stdout)]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::PrintConfig) => {
            print!("{DEFAULT_CONFIG_TOML}");
            ExitCode::SUCCESS
        }
        Some(Cmd::CheckConfig { ref file }) => match Config::load(file) {
            Ok(config) => {
                println!("{}: ok", file.display());
                for note in config.notes() {
                    println!("note: {note}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::HashPassword) => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("cannot read the password from standard input");
                return ExitCode::FAILURE;
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("empty password");
                return ExitCode::FAILURE;
            }
            match crate::auth::hash_password(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Cmd::Bench(ref args)) => bench(args),
        Some(Cmd::Run) | None => run(&cli),
    }
}

/// The JSON result goes to stdout: that is the command's output.
#[allow(clippy::print_stdout)]
fn bench(args: &crate::bench::BenchArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(crate::bench::run(args)) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded runtime the broker and the load tool run on.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn load_config(path: Option<&Path>) -> Result<Config, crate::config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new("broker.toml").exists() => Config::load(Path::new("broker.toml")),
        None => Ok(Config::default()),
    }
}

fn run(cli: &Cli) -> ExitCode {
    telemetry::init(cli.verbose, cli.log_format);
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = std::sync::Arc::new(server);
        #[cfg(unix)]
        tokio::spawn(reload_on_sighup(std::sync::Arc::clone(&server)));
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown_shared().await;
        ExitCode::SUCCESS
    })
}

/// Re-reads the TLS certificate and key on every SIGHUP (certificate renewal without a
/// restart); established connections are untouched.
#[cfg(unix)]
async fn reload_on_sighup(server: std::sync::Arc<Server>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match server.reload_tls() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the current certificate")
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
