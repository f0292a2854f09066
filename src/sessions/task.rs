//! The sessions task: reads sshd's log, keeps the session table, puts events in the
//! outbox (durably, before the log position moves past them) and publishes the active
//! sessions for the heartbeat.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::parse::{parse_message, Record, SshdMessage};
use super::pidfd::PidFd;
use super::procs;
use super::procs::Refusal;
use super::proof::{self, Proof};
use super::source::{self, LogItem, Position, Source};
use super::terminate::{self, Ending, TerminateError};
use super::track::{Closing, Lookups, Seen, Tracker};
use super::{ActiveSession, Session, SessionEvent};
use crate::keys::AccountKey;
use crate::keys::KeySet;
use crate::outbox::Outbox;
use crate::state;
use crate::timefmt;

/// File of the session table and log position in the state directory.
pub const SESSIONS_FILE: &str = state::SESSIONS.name;
/// How often the log position is saved when only noise was read.
const POSITION_SAVE: Duration = Duration::from_secs(10);

/// What survives a restart: the open sessions of this boot and where reading stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsState {
    pub boot_id: String,
    pub open: Vec<Session>,
    pub position: Option<Position>,
}

/// Reads the saved session table (empty when missing or unusable, which is logged).
pub fn load_state(dir: &Path) -> SessionsState {
    match state::load(dir, state::SESSIONS) {
        Ok(saved) => saved.unwrap_or_default(),
        Err(e) => {
            error!("{e}");
            SessionsState::default()
        }
    }
}

fn save_state(dir: &Path, sessions: &SessionsState) {
    if let Err(e) = state::save(dir, state::SESSIONS, sessions) {
        error!("{e}");
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
    /// The last ending that could not be proven complete, for the status's `last_error`.
    pub unproven: watch::Sender<Option<String>>,
}

/// What is said of a session ended without proof that every process of it is gone.
pub fn unproven_ending(session_id: &str) -> String {
    format!(
        "session {session_id} was ended (its connection and process tree), but this host \
         gives no kernel handle on the whole session (no logind scope, no audit session \
         id from pam_loginuid): processes it detached (setsid, daemons, tmux) cannot be \
         found and may still run"
    )
}

/// The monitors of the open sessions, held by pidfds, and a waiter on each that says
/// when its process ends.
#[derive(Default)]
struct Held {
    fds: HashMap<String, PidFd>,
    exits: JoinSet<(u32, u64)>,
}

impl Held {
    fn hold(&mut self, session_id: &str, pidfd: PidFd) {
        let waiter = pidfd.try_clone().and_then(|dup| {
            // SAFETY: a PidFd owns its descriptor, never swaps it, and returns that same
            // one from as_raw_fd until it is dropped with the AsyncFd.
            unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }
                .map_err(std::io::Error::from)
        });
        match waiter {
            Ok(waiter) => {
                let id = (pidfd.pid(), pidfd.start());
                self.exits.spawn(async move {
                    // Readable once the process has ended: the kernel's word.
                    let _ = waiter.readable().await;
                    id
                });
            }
            Err(e) => error!(
                session_id,
                "cannot wait on the session's process ({e}); its end is noticed at the next restart"
            ),
        }
        self.fds.insert(session_id.to_owned(), pidfd);
    }
}

/// A session whose login was read from a syslog file is ended only after this long
/// without a second, contradicting login logged for its connection (see the README,
/// "What file mode guarantees").
const FILE_MODE_SETTLE: Duration = Duration::from_secs(1);

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
        let mut held = Held::default();
        // The sessions of this boot whose monitor is the same process still are held
        // again; the rest ended while the agent was down.
        for session in &open {
            if !session.session_id.starts_with(&self.boot_id) {
                continue;
            }
            if let Some(pidfd) = session
                .process_start
                .and_then(|start| PidFd::open_same(session.monitor_pid, start))
            {
                held.hold(&session.session_id, pidfd);
            }
        }
        let mut tracker = Tracker::new(&self.boot_id, open, Closing::ProcessExit);
        let mut state = SessionsState {
            boot_id: self.boot_id.clone(),
            open: Vec::new(),
            position,
        };
        let gone = tracker.close_gone(|s| !held.fds.contains_key(&s.session_id), now);
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
                info!("reading sshd's messages from the journal (only what root's sshd sent)");
                tokio::spawn(source::follow_journal(cursor, self.boot_id.clone(), tx))
            }
            Source::File(path) => {
                warn!(
                    path = %path.display(),
                    "reading sshd's messages from a syslog file: any local user can write \
                     lines there, so a login is believed only for a live sshd connection of \
                     its user, and a session is ended for a revoked key only when no other \
                     login was logged for its connection (the journal proves who logged \
                     what; see the README, \"What file mode guarantees\")"
                );
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
        revoked.update(
            self.keys.borrow().as_deref(),
            now,
            procs::ticks_since_boot_now(),
        );
        let mut keys = self.keys.clone();
        keys.mark_unchanged();
        let mut settle = self.revoke(&mut tracker, &mut state, &held).await;
        let mut last_save = tokio::time::Instant::now();
        let mut dirty_position = false;
        loop {
            let settled = async {
                match settle {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                changed = keys.changed() => {
                    revoked.update(
                        self.keys.borrow().as_deref(),
                        timefmt::now(),
                        procs::ticks_since_boot_now(),
                    );
                    if changed.is_err() {
                        return;
                    }
                    settle = self.revoke(&mut tracker, &mut state, &held).await;
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
                            events.extend(self.observe(&mut tracker, &mut held, record, &revoked));
                        }
                        state.position = Some(item.position);
                    }
                    let contested = tracker.take_contested();
                    if !contested.is_empty() && events.is_empty() {
                        // The account must stop showing the key at once.
                        self.commit(&tracker, &mut state, &[]);
                    }
                    for session in contested {
                        warn!(
                            message_id = crate::logging::message_id::SESSION_CONTESTED,
                            user = %session.user,
                            session_id = %session.session_id,
                            monitor_pid = session.monitor_pid,
                            "two different logins were logged for one sshd connection: \
                             one is forged; which key opened it is unknown: it is reported \
                             contested and ended when any account key claimed for it is \
                             deleted"
                        );
                    }
                    if !events.is_empty() {
                        if !self.commit(&tracker, &mut state, &events) {
                            state.position = previous;
                            continue;
                        }
                        // A session learnt of after its key went (the log lags a little)
                        // ends now.
                        if events.iter().any(|e| e.kind == super::EventKind::SessionOpened && e.key_id.is_some()) {
                            settle = self.revoke(&mut tracker, &mut state, &held).await;
                        }
                        last_save = tokio::time::Instant::now();
                        dirty_position = false;
                    } else {
                        dirty_position = true;
                    }
                }
                Some(Ok((pid, start))) = held.exits.join_next() => {
                    held.fds.retain(|_, fd| !(fd.pid() == pid && fd.start() == start));
                    if let Some(event) = tracker.closed(pid, start, timefmt::now()) {
                        self.commit(&tracker, &mut state, &[event]);
                    }
                }
                () = settled => {
                    settle = self.revoke(&mut tracker, &mut state, &held).await;
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
    /// expired or rejected), and reports each as `session_terminated`; a contested
    /// session when any account key claimed for it is ([`Session::lost_its_key`]).
    /// Sessions of keys the agent does not manage (key id unknown at login),
    /// certificates and password logins are never touched. Returns when to look again: at
    /// file-mode sessions too young to be ended yet, and at sessions that could not be
    /// ended.
    async fn revoke(
        &self,
        tracker: &mut Tracker,
        state: &mut SessionsState,
        held: &Held,
    ) -> Option<tokio::time::Instant> {
        if !self.terminate_on_revoke {
            return None;
        }
        let keys = self.keys.borrow().clone()?;
        let now = timefmt::now();
        let revoked: Vec<Session> = tracker
            .open_sessions()
            .iter()
            .filter(|s| {
                let in_force = keys.in_force_for(&s.user, now);
                s.lost_its_key(|fp| in_force.iter().any(|k| k.matches_fingerprint(fp)))
            })
            .cloned()
            .collect();
        let mut wake = None;
        for session in revoked {
            let Some(monitor) = held.fds.get(&session.session_id) else {
                warn!("{}", TerminateError::NotHeld(session.session_id.clone()));
                continue;
            };
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
            if session.proof == Proof::LogText {
                let settle_ticks = FILE_MODE_SETTLE.as_secs() * procs::clock_ticks_per_second();
                let age = procs::ticks_since_boot_now().saturating_sub(session.seen_at);
                if age < settle_ticks {
                    let left = Duration::from_millis(
                        (settle_ticks - age) * 1000 / procs::clock_ticks_per_second() + 10,
                    );
                    let at = tokio::time::Instant::now() + left;
                    wake = Some(wake.map_or(at, |w: tokio::time::Instant| w.min(at)));
                    continue;
                }
                // sshd forks the user's child only once authentication has succeeded
                // (after logging it): without one, the login line cannot be its.
                if !terminate::has_user_child(&procs::snapshot(), monitor.pid(), uid) {
                    warn!(
                        session_id = %session.session_id,
                        "not ending a session read from a syslog file: its sshd has no \
                         process of the user, so its login line is not proven"
                    );
                    continue;
                }
            }
            let outcome = match Ending::start(&session.session_id, monitor, uid) {
                Ok(mut ending) => loop {
                    ending.round();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if ending.done() {
                        break Ok((
                            ending.scope().is_some(),
                            ending.signalled(),
                            ending.proven_complete(),
                        ));
                    }
                    if ending.rounds >= 500 {
                        break Err(ending.give_up());
                    }
                },
                Err(e) => Err(e),
            };
            let at = timefmt::now();
            let events: Vec<SessionEvent> = match outcome {
                Ok((scope, processes, complete)) => {
                    if complete {
                        warn!(
                            user = %session.user,
                            key_id = session.key_id.as_deref().unwrap_or("-"),
                            fingerprint = session.fingerprint.as_deref().unwrap_or("-"),
                            session_id = %session.session_id,
                            scope,
                            processes,
                            complete,
                            "session terminated: its key is no longer in force"
                        );
                    } else {
                        let what = unproven_ending(&session.session_id);
                        error!(
                            user = %session.user,
                            key_id = session.key_id.as_deref().unwrap_or("-"),
                            fingerprint = session.fingerprint.as_deref().unwrap_or("-"),
                            session_id = %session.session_id,
                            scope,
                            processes,
                            complete,
                            "{what}"
                        );
                        self.unproven.send_replace(Some(what));
                    }
                    tracker
                        .terminated(&session.session_id, at)
                        .into_iter()
                        .collect()
                }
                Err(TerminateError::Gone(_)) => {
                    // Ended by itself: its exit is reported as a close by its waiter.
                    Vec::new()
                }
                Err(e) => {
                    // Not ended (survivors, or its scope could not be read): tried again
                    // in a second, for as long as the key stays revoked.
                    error!("{e}; trying again in 1 s");
                    let at = tokio::time::Instant::now() + Duration::from_secs(1);
                    wake = Some(wake.map_or(at, |w: tokio::time::Instant| w.min(at)));
                    Vec::new()
                }
            };
            self.commit(tracker, state, &events);
        }
        wake
    }

    fn observe(
        &self,
        tracker: &mut Tracker,
        held: &mut Held,
        record: &source::OwnedRecord,
        revoked: &RecentlyRevoked,
    ) -> Vec<SessionEvent> {
        let Some(message) = parse_message(&record.message) else {
            return Vec::new();
        };
        // Live, only logins matter: a session ends when its process does.
        let user = match &message {
            SshdMessage::Accepted(login) => login.user,
            // The first method of a multi-method login, which names the key: believed
            // from the journal only (root's sshd sent it, the kernel says). In a file,
            // anyone could write one ahead of sshd's and tie a session to another key.
            SshdMessage::Partial(_) if record.origin.proof() == Proof::Kernel => {
                let parsed = Record {
                    at: record.at,
                    pid: record.pid,
                    message: &record.message,
                };
                let lookups = Lookups {
                    key_id: &|_, _| None,
                    process_start: &|_| None,
                };
                let seen = Seen {
                    proof: Proof::Kernel,
                    at: procs::ticks_since_boot_now(),
                };
                return tracker.observe(&parsed, message, timefmt::now(), seen, &lookups);
            }
            _ => return Vec::new(),
        };
        let now = timefmt::now();
        if record.at.is_none() {
            // Said once, never silently: such sessions are dated when the line was read.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                warn!("the time stamp of an sshd login line cannot be read; such sessions are dated when their line is read (docs/sshd-logs.md lists the stamps understood)");
            }
        }
        let keys = self.keys.borrow().clone();
        let monitor = match proof::verify_login(record.pid, user, &record.origin) {
            Ok(monitor) => monitor,
            Err(Refusal::NoProcess(_) | Refusal::Exiting(_) | Refusal::StartedAfter { .. })
                if record.origin.proof() == Proof::Kernel =>
            {
                // Root's sshd logged it (journald says so), and its process has ended
                // since: a past session, opened and closed.
                let key_id = |user: &str, fingerprint: &str| {
                    keys.as_ref()
                        .and_then(|k| k.key_by_fingerprint(user, fingerprint, now))
                        .map(|k| k.id.clone())
                        .or_else(|| revoked.key_id(user, fingerprint, 0))
                };
                let lookups = Lookups {
                    key_id: &key_id,
                    process_start: &|_| None,
                };
                let seen = Seen {
                    proof: Proof::Kernel,
                    at: procs::ticks_since_boot_now(),
                };
                let parsed = Record {
                    at: record.at,
                    pid: record.pid,
                    message: &record.message,
                };
                return tracker.opened_and_gone(&parsed, message, now, seen, &lookups);
            }
            Err(refusal @ Refusal::Pidfd { .. }) => {
                // Not a doubtful line but a host that cannot hold processes (a seccomp
                // filter or kernel without pidfd_open): no session can be proven here.
                warn!(pid = record.pid, "cannot prove a login: {refusal}");
                return Vec::new();
            }
            Err(refusal) => {
                debug!(pid = record.pid, "login line not believed: {refusal}");
                return Vec::new();
            }
        };
        let start = monitor.start();
        // The key in force now, or one revoked after the monitor process started: the
        // log is read a little late, and such a session must still be known as that
        // key's. (The kernel's start time, not the line's stamp, which is a claim.)
        let key_id = |user: &str, fingerprint: &str| {
            keys.as_ref()
                .and_then(|k| k.key_by_fingerprint(user, fingerprint, now))
                .map(|k| k.id.clone())
                .or_else(|| revoked.key_id(user, fingerprint, start))
        };
        let pid = record.pid;
        let process_start = |p: u32| (p == pid).then_some(start);
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &process_start,
        };
        let seen = Seen {
            proof: record.origin.proof(),
            at: procs::ticks_since_boot_now(),
        };
        let parsed = Record {
            at: record.at,
            pid: record.pid,
            message: &record.message,
        };
        let events = tracker.observe(&parsed, message, now, seen, &lookups);
        if events
            .iter()
            .any(|e| e.kind == super::EventKind::SessionOpened)
        {
            if let Some(session) = tracker
                .open_sessions()
                .iter()
                .find(|s| s.monitor_pid == pid && s.process_start == Some(start))
            {
                held.hold(&session.session_id, monitor);
            }
        }
        events
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
    /// Keys that left the set, when (wall clock, to forget them), and when in ticks
    /// since boot (to compare with process start times).
    removed: Vec<(AccountKey, time::OffsetDateTime, u64)>,
}

impl RecentlyRevoked {
    /// How long a revoked key is remembered: far longer than any log delay.
    const KEEP: time::Duration = time::Duration::minutes(10);

    fn update(&mut self, keys: Option<&KeySet>, now: time::OffsetDateTime, now_ticks: u64) {
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
                self.removed.push((key, now, now_ticks));
            }
        }
        self.removed
            .retain(|(key, at, _)| now - *at < Self::KEEP && !present.contains(&identity(key)));
        self.in_force = current;
    }

    /// The id of a key that let `user` in with `fingerprint` and left the set after the
    /// connection's monitor started (`started`, ticks since boot): before that, the key
    /// could not have opened it through the agent's files.
    fn key_id(&self, user: &str, fingerprint: &str, started: u64) -> Option<String> {
        self.removed
            .iter()
            .rev()
            .find(|(key, _, removed_at)| {
                key.matches_fingerprint(fingerprint) && key.is_for(user) && *removed_at >= started
            })
            .map(|(key, _, _)| key.id.clone())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
