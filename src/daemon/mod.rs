//! The daemon: a thin shell that carries data between the enforcement core, the I/O
//! threads, the background tasks and the service manager. Nothing here blocks: files
//! are written by [`crate::enforce::worker`]s, NSS lookups run on the blocking pool.
//!
//! - [`tasks`]: the fetch task, the senders and the sessions task.
//! - [`reload`]: what a SIGHUP changes, and what needs a restart.
//! - [`once`]: `sync --once`.
//! - [`readiness`]: when READY is sent (pure).

pub mod once;
pub mod readiness;
pub mod reload;
pub mod tasks;

use crate::api::model::ActiveSession;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigSource};
use crate::drift_watch::DriftWatch;
use crate::enforce::{self, Enforcer};
use crate::sessions as sessions_mod;
use crate::sync::SyncEvent;
use crate::timefmt;
use crate::users::ManagedUser;
use tasks::{Background, Channels};

pub use once::{sync_once, OnceReport};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Watch(#[from] crate::drift_watch::WatchError),
}

/// Resolves the configured users on the blocking pool (NSS may be slow or hang).
pub async fn resolve_users(config: &Config) -> Vec<ManagedUser> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || enforce::resolve_users(&config))
        .await
        .unwrap_or_default()
}

/// A current-thread runtime as the agent's loops need it (the main loop, the sessions
/// thread): timers and I/O, and room for 64 I/O events a poll, not tokio's 1,024 (the
/// agent watches a handful of descriptors; each slot is memory held for good).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_io_events_per_tick(64)
        .build()
}

/// Logs the account managed for want of `[[users]]` and why (INFO), and what was passed
/// over on the way (WARN); nothing with `[[users]]`.
pub fn log_login_user(config: &Config) {
    let Some(user) = &config.login_user else {
        return;
    };
    for ignored in &user.ignored {
        warn!("{ignored}");
    }
    info!(user = %user.name, reason = %user.reason, "no [[users]] configured: managing the image's default login user {} ({})", user.name, user.reason);
}

/// Reads the configuration again, with the login user chosen again when it has no
/// `[[users]]` (on the blocking pool: the account lookup is NSS). `Err` says why not.
async fn load_config(source: &ConfigSource) -> Result<Config, String> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || {
        source
            .load()
            .and_then(|(config, _)| crate::login_user::distro_files::fill_in(config))
    })
    .await
    .map_err(|e| format!("the configuration could not be loaded: {e}"))?
    .map_err(|e| e.to_string())
}

/// An optional deadline as a future that never fires when there is none.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP reloads the configuration from
/// `source` (an invalid file is logged and the running configuration kept).
pub async fn run(source: ConfigSource, config: Config) -> Result<(), DaemonError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    log_login_user(&config);
    let (drift_tx, mut drift_rx) = mpsc::unbounded_channel::<PathBuf>();
    let watch_files = Arc::new(Mutex::new(DriftWatch::new(drift_tx)?));
    let users = resolve_users(&config).await;
    let (mut enforcer, mut answers) = Enforcer::new(config, users, watch_files);
    enforcer.restore(Instant::now());
    crate::service::status("waiting for the first key set from the control plane");
    let mut ready = readiness::Readiness::new(Instant::now());
    let mut watchdog = crate::service::watchdog_period().map(tokio::time::interval);

    let boot_id = sessions_mod::procs::boot_id();
    let (keys_tx, keys_rx) = watch::channel(enforcer.key_set());
    let (report_tx, report_rx) = watch::channel(enforcer.report(timefmt::now()));
    let saved_sessions = sessions_mod::task::load_state(&enforcer.config().state_dir);
    let (active_tx, active_rx) = watch::channel::<Vec<ActiveSession>>(
        saved_sessions.open.iter().map(|s| s.active()).collect(),
    );
    let (sync_tx, mut sync_rx) = mpsc::channel::<SyncEvent>(8);
    let (host_keys_tx, host_keys_rx) = watch::channel(crate::host_keys::HostKeysReport::default());
    let (sessions_problem_tx, sessions_problem_rx) = watch::channel::<Option<String>>(None);
    let (outbox_drops_tx, outbox_drops) = watch::channel(crate::outbox::Drops::default());
    let channels = Channels {
        sessions_problem_tx,
        sessions_problem: sessions_problem_rx,
        outbox_drops_tx,
        outbox_drops,
        host_keys_tx,
        host_keys: host_keys_rx,
        boot_id,
        keys: keys_rx,
        report: report_rx,
        active_tx,
        active: active_rx,
        sync: sync_tx,
    };
    let mut background = Background::start(enforcer.config(), &channels);
    info!(
        users = enforcer.users().len(),
        "pictor-agent {} running",
        crate::VERSION
    );
    // After every event: the key set to the sessions task (every time: time passed,
    // keys may have expired), and, once the files have answered, the report, readiness
    // and the status line.
    let files_writer = crate::state::FilesWriter::new(enforcer.config().state_dir.clone());
    let publish = |enforcer: &Enforcer, ready: &mut readiness::Readiness| {
        keys_tx.send_replace(enforcer.key_set());
        if enforcer.settling(Instant::now()) {
            return;
        }
        report_tx.send_if_modified(|current| {
            let next = enforcer.report(timefmt::now());
            if current.files != next.files {
                files_writer.save(next.files.clone());
            }
            let changed = *current != next;
            *current = next;
            changed
        });
        if ready
            .after_event(
                enforcer.applied().is_some(),
                enforcer.settling(Instant::now()),
            )
            .is_some()
        {
            crate::service::ready(&enforcer.status_line());
        } else {
            crate::service::status(&enforcer.status_line());
        }
    };
    publish(&enforcer, &mut ready);

    loop {
        let expiry = enforcer.until_next_expiry(timefmt::now());
        let expiry_at = expiry.map(|wait| Instant::now() + wait);
        tokio::select! {
            Some(event) = sync_rx.recv() => {
                match event {
                    SyncEvent::Fetched(fetched) => enforcer.accept(fetched, Instant::now()),
                    SyncEvent::Failed(message) => enforcer.note_fetch_error(message),
                }
                publish(&enforcer, &mut ready);
            }
            Some(attempt) = answers.files.recv() => {
                enforcer.finished(attempt, Instant::now());
                publish(&enforcer, &mut ready);
            }
            Some(written) = answers.command_file.recv() => {
                enforcer.command_file_written(written, Instant::now());
                publish(&enforcer, &mut ready);
            }
            () = until(enforcer.next_wake()) => {
                enforcer.tick(Instant::now());
                publish(&enforcer, &mut ready);
            }
            Some(path) = drift_rx.recv() => enforcer.drifted(&path, Instant::now()),
            () = until(expiry_at) => {
                enforcer.enforce(Instant::now());
                publish(&enforcer, &mut ready);
            }
            () = until(ready.deadline()) => {
                if ready.at_deadline(Instant::now()).is_some() {
                    crate::service::ready("no key set yet: the control plane has not answered; nothing was changed");
                }
            }
            () = tick_of(watchdog.as_mut()) => crate::service::feed_watchdog(),
            _ = terminate.recv() => { info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { info!("SIGINT: stopping"); break; }
            _ = hangup.recv() => {
                reload(&source, &mut enforcer, &mut background, &channels).await;
                publish(&enforcer, &mut ready);
            }
        }
    }
    crate::service::stopping();
    background.stop().await;
    Ok(())
}

async fn tick_of(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGHUP: reads the configuration again and applies every part it can; what needs a
/// restart is named in one line.
async fn reload(
    source: &ConfigSource,
    enforcer: &mut Enforcer,
    background: &mut Background,
    channels: &Channels,
) {
    crate::service::reloading();
    let new_config = match load_config(source).await {
        Ok(config) => config,
        Err(e) => {
            error!("SIGHUP: {e}; keeping the running configuration");
            crate::service::ready(&format!("reload failed, running configuration kept: {e}"));
            return;
        }
    };
    let changes = reload::changes(enforcer.config(), &new_config);
    if new_config.login_user != enforcer.config().login_user {
        log_login_user(&new_config);
    }
    let users = resolve_users(&new_config).await;
    if changes.log_level {
        if let Err(e) = crate::logging::set_level(&new_config.log_level) {
            warn!("SIGHUP: [log] level: {e}; the previous level stays");
        }
    }
    let mut applied = new_config.clone();
    // Options read only at start keep their running value until a restart.
    applied.state_dir = enforcer.config().state_dir.clone();
    enforcer.reconfigure(applied, users, Instant::now());
    if changes.api {
        background.restart_api(enforcer.config(), channels);
    }
    if changes.sessions {
        background
            .restart_sessions(enforcer.config(), channels)
            .await;
    }
    if changes.host_keys {
        background.restart_host_keys(enforcer.config(), channels);
    }
    if changes.need_restart.is_empty() {
        info!(source = %source.describe(), "SIGHUP: configuration reloaded");
    } else {
        warn!(source = %source.describe(), "SIGHUP: configuration reloaded, except what needs a restart to apply: {}", changes.need_restart.join(", "));
    }
    crate::service::ready(&enforcer.status_line());
}
