//! `sync --once`: one full fetch, saved and applied, every file answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::drift_watch::DriftWatch;
use crate::enforce::files::Done;
use crate::enforce::Enforcer;
use crate::sync;

/// How a round of writing went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OnceReport {
    pub written: usize,
    pub unchanged: usize,
    pub failed: usize,
}

/// The longest `sync --once` waits for the state save at the end.
const STATE_WAIT: Duration = Duration::from_secs(30);

/// `Err` says what failed.
pub async fn sync_once(config: Config) -> Result<OnceReport, String> {
    super::log_login_user(&config);
    let client = crate::api::ApiClient::new(&config.api).map_err(|e| e.to_string())?;
    let fetched = sync::fetch_full(&client).await.map_err(|e| e.to_string())?;
    let users = super::resolve_users(&config).await;
    let unresolved = users.len() != config.users.len();
    let (drift_tx, _drift) = mpsc::unbounded_channel();
    let watch = DriftWatch::new(drift_tx).map_err(|e| e.to_string())?;
    let (mut enforcer, mut answers) = Enforcer::new(config, users, Arc::new(Mutex::new(watch)));
    // Nothing applied in this process yet: every file gets a job, the command file is
    // written, and the set is saved.
    enforcer.accept(fetched, Instant::now());
    let mut report = OnceReport::default();
    while enforcer.outstanding() {
        let Some(attempt) = answers.files.recv().await else {
            break;
        };
        match &attempt.result {
            Ok(Done::Unchanged) => report.unchanged += 1,
            Ok(Done::Written { .. }) => report.written += 1,
            Err(_) => report.failed += 1,
        }
        enforcer.finished(attempt, Instant::now());
    }
    // The command file goes once the files have answered.
    enforcer.tick(Instant::now());
    while enforcer.command_file_writing() {
        match answers.command_file.recv().await {
            Some(written) => enforcer.command_file_written(written, Instant::now()),
            None => break,
        }
    }
    let saved = match enforcer.state_gate() {
        Some(gate) => tokio::task::spawn_blocking(move || gate.wait(STATE_WAIT))
            .await
            .unwrap_or(false),
        None => true,
    };
    if !saved {
        return Err("the key set could not be saved in the state directory in time".into());
    }
    if unresolved {
        return Err("some configured users could not be resolved".into());
    }
    if report.failed > 0 {
        return Err(format!(
            "{} user file(s) could not be written",
            report.failed
        ));
    }
    if enforcer.command_file_stale() {
        return Err("the AuthorizedKeysCommand file could not be written".into());
    }
    Ok(report)
}
