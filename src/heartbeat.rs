//! The agent's heartbeat: `PUT .../agent-status` after every applied change and at least
//! every heartbeat interval, with the keys in force, rejected keys, active sessions and
//! the last error.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::api::model::ActiveSession;
use crate::api::model::AgentStatus;
use crate::api::model::KeysReport;
use crate::api::shared::SharedClient;
use crate::host_keys::HostKeysReport;
use crate::outbox::Drops;
use crate::schedule::backoff_delay;

/// The drops line while it is news: until the outbox has drained since the last drop
/// and a status carrying the count has been accepted.
fn drops_shown(drops: &Drops, reported: u64) -> Option<String> {
    if drops.draining || drops.dropped > reported {
        drops.problem()
    } else {
        None
    }
}

/// `last_error`, everything wrong now in one line: the keys' own error, else a skipped
/// host key file (the keys' matter more); then events dropped from a full outbox.
fn last_error(
    keys: Option<String>,
    host_keys: Option<String>,
    drops: Option<String>,
) -> Option<String> {
    let first = keys.or(host_keys);
    match (first, drops) {
        (Some(first), Some(drops)) => Some(format!("{first}; {drops}")),
        (first, drops) => first.or(drops),
    }
}

/// How long changes are gathered before one status goes out.
const SETTLE: Duration = Duration::from_millis(20);

/// What a status is made of, each followed for changes.
pub struct Sources {
    pub keys: watch::Receiver<KeysReport>,
    pub sessions: watch::Receiver<Vec<ActiveSession>>,
    pub host_keys: watch::Receiver<HostKeysReport>,
    /// The sessions task's last problem: an ending not proven complete, sshd's
    /// messages that cannot be read or were dropped.
    pub sessions_problem: watch::Receiver<Option<String>>,
    pub drops: watch::Receiver<Drops>,
}

/// Runs until dropped.
pub async fn run(client: Arc<SharedClient>, boot_id: String, interval: Duration, sources: Sources) {
    let Sources {
        mut keys,
        mut sessions,
        mut host_keys,
        mut sessions_problem,
        mut drops,
    } = sources;
    let mut failures = 0u32;
    let (mut keys_live, mut sessions_live, mut host_keys_live, mut drops_live) =
        (true, true, true, true);
    let mut sessions_problem_live = true;
    // The drop count a status the control plane accepted has carried.
    let mut drops_reported = 0u64;
    loop {
        let (status, drops_now) = {
            let mut keys = keys.borrow_and_update().clone();
            let sessions = sessions.borrow_and_update().clone();
            let host_keys = host_keys.borrow_and_update().clone();
            let drops_now = *drops.borrow_and_update();
            // A session ended without proof that all of it is gone: said until the
            // agent restarts, since a detached process of it may still run; always
            // appended, never hidden behind another error.
            let sessions_problem_now = sessions_problem.borrow_and_update().clone();
            let appended = match (
                sessions_problem_now,
                drops_shown(&drops_now, drops_reported),
            ) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            };
            keys.last_error = last_error(keys.last_error.take(), host_keys.problem(), appended);
            ((keys, sessions, host_keys), drops_now)
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
                drops_reported = drops_now.dropped;
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
            changed = sessions_problem.changed(), if sessions_problem_live => sessions_problem_live = changed.is_ok(),
            changed = drops.changed(), if drops_live => drops_live = changed.is_ok(),
            () = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_events_are_reported_with_whatever_else_is_wrong() {
        let drops = Drops {
            dropped: 62,
            cap: 100,
            draining: true,
        };
        let line = drops_shown(&drops, 0).expect("shown");
        assert!(line.starts_with("62 session events dropped"), "{line}");
        assert_eq!(
            last_error(
                Some("fetch failed".into()),
                Some("host".into()),
                Some(line.clone())
            ),
            Some(format!("fetch failed; {line}"))
        );
        assert_eq!(
            last_error(None, Some("host".into()), Some(line.clone())),
            Some(format!("host; {line}"))
        );
        assert_eq!(last_error(None, None, None), None);
        // Still draining: shown even once reported.
        assert!(drops_shown(&drops, 62).is_some());
        // Drained and reported: no longer news; a new drop is.
        let drained = Drops {
            draining: false,
            ..drops
        };
        assert!(drops_shown(&drained, 62).is_none());
        assert!(drops_shown(&drained, 40).is_some());
        assert!(drops_shown(&Drops::default(), 0).is_none());
    }
}
