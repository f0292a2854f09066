//! The agent's heartbeat: `PUT .../agent-status` after every applied change and at least
//! every heartbeat interval, with the keys in force, rejected keys, active sessions and
//! the last error.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::api::shared::SharedClient;
use crate::enforce::files::FileReport;
use crate::host_keys::{HostKey, HostKeysReport};
use crate::keys::Rejection;
use crate::schedule::backoff_delay;
use crate::sessions::ActiveSession;

/// A key as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusKey {
    pub id: String,
    pub fingerprint: String,
    /// The managed users it is written for.
    pub users: Vec<String>,
}

/// The key side of the status, published by the main loop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeysReport {
    pub applied_version: Option<String>,
    pub applied_at: Option<String>,
    pub keys: Vec<StatusKey>,
    pub rejected_keys: Vec<Rejection>,
    pub last_error: Option<String>,
    /// Each managed file as it really stands (`files` in "Additions to v1").
    pub files: Vec<FileReport>,
}

/// The body of `PUT .../agent-status`.
#[derive(Debug, Serialize)]
pub struct AgentStatus<'a> {
    pub agent_version: &'static str,
    pub boot_id: &'a str,
    #[serde(flatten)]
    pub keys: &'a KeysReport,
    pub active_sessions: &'a [ActiveSession],
    /// `host_keys` in "Additions to v1".
    pub host_keys: &'a [HostKey],
}

/// How long changes are gathered before one status goes out.
const SETTLE: Duration = Duration::from_millis(20);

/// Runs until dropped.
pub async fn run(
    client: Arc<SharedClient>,
    boot_id: String,
    interval: Duration,
    mut keys: watch::Receiver<KeysReport>,
    mut sessions: watch::Receiver<Vec<ActiveSession>>,
    mut host_keys: watch::Receiver<HostKeysReport>,
    mut unproven: watch::Receiver<Option<String>>,
) {
    let mut failures = 0u32;
    let (mut keys_live, mut sessions_live, mut host_keys_live) = (true, true, true);
    let mut unproven_live = true;
    loop {
        let status = {
            let mut keys = keys.borrow_and_update().clone();
            let sessions = sessions.borrow_and_update().clone();
            let host_keys = host_keys.borrow_and_update().clone();
            // A host key file that was skipped is an error to report too (after the
            // keys' own, which matter more).
            if keys.last_error.is_none() {
                keys.last_error = host_keys.problem();
            }
            // A session ended without proof that all of it is gone: said until the
            // agent restarts, since a detached process of it may still run.
            if keys.last_error.is_none() {
                keys.last_error = unproven.borrow_and_update().clone();
            }
            (keys, sessions, host_keys)
        };
        let body = AgentStatus {
            agent_version: crate::VERSION,
            boot_id: &boot_id,
            keys: &status.0,
            active_sessions: &status.1,
            host_keys: &status.2.keys,
        };
        let result = match client.get() {
            Ok(api) => api.put_status(&body).await,
            Err(e) => Err(e),
        };
        let wait = match result {
            Ok(()) => {
                failures = 0;
                debug!(sessions = status.1.len(), "heartbeat sent");
                interval
            }
            Err(e) => {
                failures += 1;
                warn!("sending the agent status failed: {e}");
                backoff_delay(
                    failures,
                    client.config().backoff_max,
                    e.retry_after(),
                    fastrand::f64(),
                )
                .min(interval)
            }
        };
        if failures > 0 {
            // Failing: retry on the backoff schedule only, changes or not.
            tokio::time::sleep(wait).await;
            continue;
        }
        // A source that is gone (session reporting off) only stops waking us; the
        // interval goes on.
        tokio::select! {
            changed = keys.changed(), if keys_live => keys_live = changed.is_ok(),
            changed = sessions.changed(), if sessions_live => sessions_live = changed.is_ok(),
            changed = host_keys.changed(), if host_keys_live => host_keys_live = changed.is_ok(),
            changed = unproven.changed(), if unproven_live => unproven_live = changed.is_ok(),
            () = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
}
