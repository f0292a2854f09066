//! The command line: `run`, `sync --once`, `check-config`, `status`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::authorized_keys::write;
use crate::config::{self, Config};
use crate::daemon;
use crate::state;
use crate::timefmt;
use crate::users;

/// Keeps this instance's authorized_keys in step with the Pictor account's SSH keys.
#[derive(Debug, Parser)]
#[command(name = "pictor-agent", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: follow the key list and keep authorized_keys in step.
    /// SIGTERM/SIGINT stop it; SIGHUP reloads the configuration.
    Run,
    /// Fetch the key list once, apply it, and exit (0 when it worked).
    Sync {
        /// Required: one fetch and apply, then exit.
        #[arg(long, required = true)]
        once: bool,
    },
    /// Validate the configuration file and exit (0 when it is valid).
    CheckConfig,
    /// Show what is in force: version, when applied, keys per user, rejected keys.
    Status,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = config::load(&cli.config);
    init_logging(loaded.as_ref().ok().map(|c| c.log_level.as_str()));
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pictor-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::CheckConfig => check_config(&cli.config, &config),
        Command::Status => status(&config),
        Command::Sync { .. } => match runtime().map(|rt| rt.block_on(daemon::sync_once(config))) {
            Ok(Ok(report)) => {
                println!(
                    "synced: {} file(s) written, {} unchanged",
                    report.written, report.unchanged
                );
                ExitCode::SUCCESS
            }
            Ok(Err(e)) | Err(e) => {
                eprintln!("pictor-agent: sync failed: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            match runtime().map(|rt| rt.block_on(daemon::run(cli.config.clone(), config))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("pictor-agent: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("pictor-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Logs to stderr; `RUST_LOG` overrides the configured level.
fn init_logging(level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn check_config(path: &std::path::Path, config: &Config) -> ExitCode {
    let mut ok = true;
    for user in &config.users {
        if let Err(e) = users::resolve(user) {
            eprintln!("pictor-agent: {e}");
            ok = false;
        }
    }
    if let Err(e) = crate::api::token::Token::load(&config.api.token_file) {
        eprintln!("pictor-agent: {e}");
        ok = false;
    }
    if ok {
        println!("{}: configuration is valid", path.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn status(config: &Config) -> ExitCode {
    let applied = match state::load(&config.state_dir) {
        Ok(Some(applied)) => applied,
        Ok(None) => {
            println!(
                "no key set applied yet (state directory {})",
                config.state_dir.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pictor-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = timefmt::now();
    let set = &applied.key_set;
    println!("version:    {}", set.version);
    println!("applied at: {}", timefmt::format(applied.applied_at));
    for user_config in &config.users {
        let path = users::resolve(user_config).map(|u| u.path().display().to_string());
        println!(
            "user {} ({}):",
            user_config.name,
            path.as_deref().unwrap_or("unknown account")
        );
        let keys = set.in_force_for(&user_config.name, now);
        if keys.is_empty() {
            println!("  no keys in force");
        }
        for key in keys {
            let expiry = key
                .expires_at
                .map(|at| format!("  expires {}", timefmt::format(at)))
                .unwrap_or_default();
            println!("  {}  {}  {:?}{expiry}", key.id, key.fingerprint, key.name);
        }
        if let Ok(user) = users::resolve(user_config) {
            if let Err(e) = write::read(&user) {
                println!("  problem: {e}");
            }
        }
    }
    let expired: Vec<_> = set.keys.iter().filter(|k| k.is_expired(now)).collect();
    if !expired.is_empty() {
        println!("expired:");
        for key in expired {
            let at = key.expires_at.map(timefmt::format).unwrap_or_default();
            println!("  {}  {}  expired {at}", key.id, key.fingerprint);
        }
    }
    if !set.rejected.is_empty() {
        println!("rejected:");
        for rejection in &set.rejected {
            println!("  {}: {}", rejection.id, rejection.reason);
        }
    }
    ExitCode::SUCCESS
}
