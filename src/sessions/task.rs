//! The sessions task: reads sshd's log, keeps the session table, puts events in the
//! outbox (durably, before the log position moves past them) and publishes the active
//! sessions for the heartbeat.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info, warn};

use super::parse::{parse_message, Record};
use super::procs;
use super::source::{self, LogItem, Position, Source};
use super::terminate::{self, TerminateError};
use super::track::{Lookups, Tracker};
use super::{ActiveSession, Session, SessionEvent};
use crate::durable::{self, FileMode};
use crate::keys::AccountKey;
use crate::keys::KeySet;
use crate::outbox::Outbox;
use crate::timefmt;

/// File of the session table and log position in the state directory.
pub const SESSIONS_FILE: &str = "sessions.json";
/// How often live sessions are checked against their processes.
const LIVENESS_CHECK: Duration = Duration::from_secs(5);
/// How often the log position is saved when only noise was read.
const POSITION_SAVE: Duration = Duration::from_secs(10);

/// What survives a restart: the open sessions of this boot and where reading stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsState {
    pub boot_id: String,
    pub open: Vec<Session>,
    pub position: Option<Position>,
}

/// Reads the saved session table (empty when missing or unreadable).
pub fn load_state(dir: &Path) -> SessionsState {
    std::fs::read(dir.join(SESSIONS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save_state(dir: &Path, state: &SessionsState) {
    let result = (|| -> Result<(), String> {
        let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let fd = open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| e.to_string())?;
        let mode = FileMode {
            owner: None,
            mode: Mode::S_IRUSR | Mode::S_IWUSR,
        };
        durable::replace_at(&fd, OsStr::new(SESSIONS_FILE), &bytes, mode, || true)
            .map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        error!("cannot save {}: {e}", dir.join(SESSIONS_FILE).display());
    }
}

/// Everything the task is handed.
pub struct SessionsTask {
    pub source: Source,
    pub state_dir: PathBuf,
    pub boot_id: String,
    pub keys: watch::Receiver<Option<Arc<KeySet>>>,
    /// End the live sessions of keys that leave the set in force.
    pub terminate_on_revoke: bool,
    pub outbox: Arc<Mutex<Outbox>>,
    pub delivery: Arc<Notify>,
    pub active: watch::Sender<Vec<ActiveSession>>,
}

impl SessionsTask {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        let saved = load_state(&self.state_dir);
        let now = timefmt::now();
        let (open, position) = if saved.boot_id == self.boot_id {
            (saved.open, saved.position)
        } else {
            // Another boot: its sessions ended with it; a journal cursor is still good.
            let position = saved
                .position
                .filter(|p| matches!(p, Position::Journal { .. }));
            (saved.open, position)
        };
        let mut tracker = Tracker::new(&self.boot_id, open);
        let mut state = SessionsState {
            boot_id: self.boot_id.clone(),
            open: Vec::new(),
            position,
        };
        let gone = tracker.close_gone(
            |s| !s.session_id.starts_with(&self.boot_id) || !procs::session_alive(s),
            now,
        );
        if !gone.is_empty() {
            info!(
                sessions = gone.len(),
                "sessions ended while the agent was down"
            );
        }
        self.commit(&tracker, &mut state, &gone);
        let (tx, mut rx) = mpsc::channel::<LogItem>(1024);
        let reader = match &self.source {
            Source::Journal => {
                let cursor = match &state.position {
                    Some(Position::Journal { cursor }) => Some(cursor.clone()),
                    _ => None,
                };
                info!("reading sshd's messages from the journal");
                tokio::spawn(source::follow_journal(cursor, self.boot_id.clone(), tx))
            }
            Source::File(path) => {
                info!(path = %path.display(), "reading sshd's messages from a syslog file");
                tokio::spawn(source::follow_file(
                    path.clone(),
                    state.position.clone(),
                    tx,
                ))
            }
        };
        let _reader = AbortOnDrop(reader);
        // Keys revoked while the agent was down end their sessions now.
        let mut revoked = RecentlyRevoked::default();
        revoked.update(self.keys.borrow().as_deref(), now);
        let mut keys = self.keys.clone();
        keys.mark_unchanged();
        self.revoke(&mut tracker, &mut state).await;
        let mut last_save = tokio::time::Instant::now();
        let mut dirty_position = false;
        loop {
            let check = async {
                if tracker.open_sessions().is_empty() {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep(LIVENESS_CHECK).await
                }
            };
            tokio::select! {
                changed = keys.changed() => {
                    revoked.update(self.keys.borrow().as_deref(), timefmt::now());
                    if changed.is_err() {
                        return;
                    }
                    self.revoke(&mut tracker, &mut state).await;
                }
                item = rx.recv() => {
                    let Some(first) = item else { return };
                    let mut items = vec![first];
                    while items.len() < 1024 {
                        match rx.try_recv() {
                            Ok(item) => items.push(item),
                            Err(_) => break,
                        }
                    }
                    let previous = state.position.clone();
                    let mut events = Vec::new();
                    for item in items {
                        if let Some(record) = &item.record {
                            events.extend(self.observe(&mut tracker, record, &revoked));
                        }
                        state.position = Some(item.position);
                    }
                    if !events.is_empty() {
                        if !self.commit(&tracker, &mut state, &events) {
                            state.position = previous;
                            continue;
                        }
                        // A session learnt of after its key went (the log lags a little)
                        // ends now.
                        if events.iter().any(|e| e.kind == super::EventKind::SessionOpened && e.key_id.is_some()) {
                            self.revoke(&mut tracker, &mut state).await;
                        }
                        last_save = tokio::time::Instant::now();
                        dirty_position = false;
                    } else {
                        dirty_position = true;
                    }
                }
                () = check => {
                    let gone = tracker.close_gone(|s| !procs::session_alive(s), timefmt::now());
                    if !gone.is_empty() {
                        self.commit(&tracker, &mut state, &gone);
                    }
                }
                () = tokio::time::sleep(POSITION_SAVE), if dirty_position => {}
            }
            if dirty_position && last_save.elapsed() >= POSITION_SAVE {
                state.open = tracker.open_sessions().to_vec();
                save_state(&self.state_dir, &state);
                last_save = tokio::time::Instant::now();
                dirty_position = false;
            }
        }
    }

    /// Ends the live sessions whose key is no longer in force for their user (deleted,
    /// expired or rejected), and reports each as `session_terminated`. Sessions of keys
    /// the agent does not manage (key id unknown at login), certificates and password
    /// logins are never touched.
    async fn revoke(&self, tracker: &mut Tracker, state: &mut SessionsState) {
        if !self.terminate_on_revoke {
            return;
        }
        let Some(keys) = self.keys.borrow().clone() else {
            return;
        };
        let now = timefmt::now();
        let revoked: Vec<Session> = tracker
            .open_sessions()
            .iter()
            .filter(|s| s.key_id.is_some())
            .filter(|s| {
                s.fingerprint.as_ref().is_some_and(|fp| {
                    !keys
                        .in_force_for(&s.user, now)
                        .iter()
                        .any(|k| k.fingerprint == *fp)
                })
            })
            .cloned()
            .collect();
        for session in revoked {
            let Some(uid) = nix::unistd::User::from_name(&session.user)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
            else {
                warn!(
                    "{}",
                    TerminateError::UnknownUser(session.session_id.clone())
                );
                continue;
            };
            let mut signalled: Vec<terminate::Proc> = Vec::new();
            let mut outcome = Ok(());
            for _ in 0..200 {
                match terminate::end_session(&session, uid, &signalled) {
                    Ok(procs) => signalled.extend(procs),
                    Err(e) => {
                        if signalled.is_empty() {
                            outcome = Err(e);
                        }
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                if terminate::all_gone(&signalled) {
                    break;
                }
            }
            let at = timefmt::now();
            let events: Vec<SessionEvent> = match outcome {
                Ok(()) => {
                    let left = !terminate::all_gone(&signalled);
                    warn!(
                        user = %session.user,
                        key_id = session.key_id.as_deref().unwrap_or("-"),
                        fingerprint = session.fingerprint.as_deref().unwrap_or("-"),
                        session_id = %session.session_id,
                        processes = signalled.len(),
                        "session terminated: its key is no longer in force{}",
                        if left { " (some processes still running)" } else { "" }
                    );
                    tracker
                        .terminated(&session.session_id, at)
                        .into_iter()
                        .collect()
                }
                Err(e) => {
                    // Already gone, or the pid now belongs to something else: closed.
                    info!("{e}");
                    tracker.close_gone(|s| s.session_id == session.session_id, at)
                }
            };
            self.commit(tracker, state, &events);
        }
    }

    fn observe(
        &self,
        tracker: &mut Tracker,
        record: &source::OwnedRecord,
        revoked: &RecentlyRevoked,
    ) -> Vec<SessionEvent> {
        let Some(message) = parse_message(&record.message) else {
            return Vec::new();
        };
        let now = timefmt::now();
        let keys = self.keys.borrow().clone();
        // The key in force now, or one revoked after the login was logged: the log is
        // read a little late, and such a session must still be known as that key's.
        let logged_at = record.at.unwrap_or(now);
        let key_id = |user: &str, fingerprint: &str| {
            keys.as_ref()
                .and_then(|k| k.key_by_fingerprint(user, fingerprint, now))
                .map(|k| k.id.clone())
                .or_else(|| revoked.key_id(user, fingerprint, logged_at))
        };
        let process_start = |pid: u32| procs::start_time_if_started_by(pid, logged_at);
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &process_start,
        };
        let record = Record {
            at: record.at,
            pid: record.pid,
            message: &record.message,
        };
        tracker.observe(&record, message, now, &lookups)
    }

    /// Events into the outbox first (durable), then the table and position, then the
    /// heartbeat's view.
    /// False when the events could not be made durable (the position must not move).
    fn commit(
        &self,
        tracker: &Tracker,
        state: &mut SessionsState,
        events: &[SessionEvent],
    ) -> bool {
        for event in events {
            log_event(event);
        }
        if !events.is_empty() {
            let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = outbox.append(events) {
                // Not durable: the saved position stays before these lines, so they are
                // read again after a restart.
                error!("{e}; the events will be read from the log again after a restart");
                return false;
            }
            drop(outbox);
            self.delivery.notify_one();
        }
        state.open = tracker.open_sessions().to_vec();
        save_state(&self.state_dir, state);
        let active: Vec<ActiveSession> = tracker
            .open_sessions()
            .iter()
            .map(Session::active)
            .collect();
        self.active.send_if_modified(|current| {
            let changed = *current != active;
            *current = active;
            changed
        });
        true
    }
}

/// One journal entry per session event, with its stable MESSAGE_ID and fields.
fn log_event(event: &SessionEvent) {
    use crate::logging::message_id;
    let key_id = event.key_id.as_deref().unwrap_or("-");
    let fingerprint = event.fingerprint.as_deref().unwrap_or("-");
    let (id, text) = match event.kind {
        super::EventKind::SessionOpened => (message_id::SESSION_OPENED, "session opened"),
        super::EventKind::SessionClosed => (message_id::SESSION_CLOSED, "session closed"),
        super::EventKind::SessionTerminated => {
            (message_id::SESSION_TERMINATED, "session terminated")
        }
    };
    info!(
        message_id = id,
        user = %event.user,
        key_id,
        fingerprint,
        source_ip = %event.source_ip,
        source_port = event.source_port,
        session_id = %event.session_id,
        "{text}"
    );
}

/// Keys that left the set in force lately, so a login logged before the revocation but
/// read after it is still tied to its key (and then ended).
#[derive(Default)]
struct RecentlyRevoked {
    /// The keys in force at the last update.
    in_force: Vec<AccountKey>,
    /// Keys that left the set, and when.
    removed: Vec<(AccountKey, time::OffsetDateTime)>,
}

impl RecentlyRevoked {
    /// How long a revoked key is remembered: far longer than any log delay.
    const KEEP: time::Duration = time::Duration::minutes(10);

    fn update(&mut self, keys: Option<&KeySet>, now: time::OffsetDateTime) {
        let Some(keys) = keys else { return };
        let current: Vec<AccountKey> = keys
            .keys
            .iter()
            .filter(|k| !k.is_expired(now))
            .cloned()
            .collect();
        // A key stays "in force" while the same key (id, fingerprint, users) is there.
        let identity = |k: &AccountKey| (k.id.clone(), k.fingerprint.clone(), k.users.clone());
        let present: std::collections::HashSet<_> = current.iter().map(identity).collect();
        for key in std::mem::take(&mut self.in_force) {
            if !present.contains(&identity(&key)) {
                self.removed.push((key, now));
            }
        }
        self.removed
            .retain(|(key, at)| now - *at < Self::KEEP && !present.contains(&identity(key)));
        self.in_force = current;
    }

    /// The id of a key that let `user` in with `fingerprint` and left the set after
    /// `logged_at`.
    fn key_id(
        &self,
        user: &str,
        fingerprint: &str,
        logged_at: time::OffsetDateTime,
    ) -> Option<String> {
        self.removed
            .iter()
            .rev()
            .find(|(key, removed_at)| {
                key.fingerprint == fingerprint && key.is_for(user) && *removed_at >= logged_at
            })
            .map(|(key, _)| key.id.clone())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
