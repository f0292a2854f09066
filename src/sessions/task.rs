//! The sessions task: reads sshd's log, keeps the session table, puts events in the
//! outbox (durably, before the log position moves past them) and publishes the active
//! sessions for the heartbeat.

use crate::api::model::{ActiveSession, EventKind, SessionEvent};
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

use super::boot_clock::{self, BootTicks};
use super::parse::{parse_message, Record};
use super::pidfd::PidFd;
use super::procs;
use super::proof;
use super::revocation::{
    self, Aftermath, Attempt, HostFacts, LineUse, Policy, RecentlyRevoked, Unproven, Verdict,
};
use super::source::{self, LogItem, Position, Source};
use super::terminate::{self, Ending, TerminateError};
use super::track::{Closing, Lookups, Seen, Tracker};
use super::Session;
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
    /// The last problem, for the status's `last_error`: an ending that could not be proven
    /// complete, or sshd's messages that cannot be read (the syslog socket's).
    pub sessions_problem: watch::Sender<Option<String>>,
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

/// Says at start what ending a session can reach on this host, when it is less than
/// the whole session.
fn warn_when_sessions_cannot_be_found_whole() {
    match terminate::probe_session_handle() {
        terminate::SessionHandle::Scope => {}
        terminate::SessionHandle::AuditSession => info!(
            "no systemd-logind: a revoked key's session is ended through its process tree \
             and its audit session id (pam_loginuid must be in sshd's PAM configuration; \
             an ending that found no such id is reported as not proven complete)"
        ),
        terminate::SessionHandle::TreeOnly => warn!(
            "no systemd-logind, and logins cannot get an audit session id here (the login \
             uid is set already and CAP_AUDIT_CONTROL is not granted): a revoked key's \
             session is ended through its process tree only; what it detached (setsid -f, \
             a tmux server, a double fork) cannot be told from the user's other processes \
             and may live on; each such ending is reported as not proven complete \
             (docs/containers.md)"
        ),
    }
}

/// The monitors of the open sessions, held by pidfds, and a waiter on each that says
/// when its process ends.
#[derive(Default)]
struct Held {
    fds: HashMap<String, PidFd>,
    exits: JoinSet<(u32, BootTicks)>,
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

/// The host's facts the revocation verdicts ask for: the held pidfds, the user database
/// and `/proc`.
impl HostFacts for Held {
    fn held(&self, session: &Session) -> bool {
        self.fds.contains_key(&session.session_id)
    }

    fn uid(&self, user: &str) -> Option<u32> {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    fn has_user_child(&self, session: &Session, uid: u32) -> bool {
        self.fds.get(&session.session_id).is_some_and(|monitor| {
            terminate::has_user_child(&procs::snapshot(), monitor.pid(), uid)
        })
    }
}

/// The tokio instant of a moment on the boot clock (now, if it has passed).
fn deadline(at: BootTicks) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.since(boot_clock::now(), boot_clock::rate())
}

impl SessionsTask {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        let saved = load_state(&self.state_dir);
        let now = timefmt::now();
        let revocation::Resumed { open, position } =
            revocation::resume(&saved.boot_id, saved.open, saved.position, &self.boot_id);
        let mut held = Held::default();
        // The sessions of this boot whose monitor is the same process still are held
        // again; the rest ended while the agent was down.
        for (session, pid, start) in revocation::to_hold_again(&open, &self.boot_id) {
            if let Some(pidfd) = PidFd::open_same(pid, start) {
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
                     what; see docs/security.md, \"What file mode guarantees\")"
                );
                tokio::spawn(source::follow_file(
                    path.clone(),
                    state.position.clone(),
                    tx,
                ))
            }
            Source::Socket(path) => tokio::spawn(source::follow_socket(
                path.clone(),
                tx,
                self.sessions_problem.clone(),
            )),
        };
        let _reader = AbortOnDrop(reader);
        if self.terminate_on_revoke {
            warn_when_sessions_cannot_be_found_whole();
        }
        // Keys revoked while the agent was down end their sessions now.
        let mut revoked = RecentlyRevoked::default();
        revoked.update(self.keys.borrow().as_deref(), now, boot_clock::now());
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
                        boot_clock::now(),
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
                        if let Some(position) = item.position {
                            state.position = Some(position);
                        }
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
                        if revocation::review_after(&events) {
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

    /// Ends the live sessions the revocation review says to end ([`revocation::review`]),
    /// and reports each as `session_terminated`. Returns when to review again: at
    /// file-mode sessions too young to be ended yet, and at sessions that could not be
    /// ended.
    async fn revoke(
        &self,
        tracker: &mut Tracker,
        state: &mut SessionsState,
        held: &Held,
    ) -> Option<tokio::time::Instant> {
        let keys = self.keys.borrow().clone()?;
        let policy = Policy {
            terminate_on_revoke: self.terminate_on_revoke,
        };
        let rate = boot_clock::rate();
        let review = revocation::review(
            policy,
            tracker.open_sessions(),
            &keys,
            timefmt::now(),
            boot_clock::now(),
            rate,
            held,
        );
        let mut wake = review.look_again;
        for (session, verdict) in review.verdicts {
            let uid = match verdict {
                Verdict::End { uid } => uid,
                Verdict::Wait { .. } => continue,
                Verdict::Skip(reason) => {
                    warn!(
                        session_id = %session.session_id,
                        "not ending a session of a revoked key: {reason}"
                    );
                    continue;
                }
            };
            let Some(monitor) = held.fds.get(&session.session_id) else {
                continue;
            };
            let result = self.end(&session, monitor, uid).await;
            let attempt = match &result {
                Ok(ended) => Attempt::Ended {
                    proven_complete: ended.proven_complete,
                },
                Err(TerminateError::Gone(_)) => Attempt::AlreadyGone,
                Err(e) => {
                    error!("{e}; trying again in {:?}", revocation::RETRY_ENDING);
                    Attempt::Failed
                }
            };
            let events: Vec<SessionEvent> =
                match revocation::aftermath(attempt, boot_clock::now(), rate) {
                    Aftermath::Terminated { .. } => {
                        if let Ok(ended) = &result {
                            self.report_ended(&session, ended);
                        }
                        tracker
                            .terminated(&session.session_id, timefmt::now())
                            .into_iter()
                            .collect()
                    }
                    Aftermath::ClosedByItself => Vec::new(),
                    Aftermath::RetryAt(at) => {
                        wake = Some(revocation::soonest(wake, at));
                        Vec::new()
                    }
                };
            self.commit(tracker, state, &events);
        }
        wake.map(deadline)
    }

    /// The kill rounds of one session: every 2 ms until its processes are gone, for at
    /// most 500 rounds.
    async fn end(
        &self,
        session: &Session,
        monitor: &PidFd,
        uid: u32,
    ) -> Result<Ended, TerminateError> {
        let mut ending = Ending::start(&session.session_id, monitor, uid)?;
        loop {
            ending.round();
            tokio::time::sleep(Duration::from_millis(2)).await;
            if ending.done() {
                return Ok(Ended {
                    scope: ending.scope().is_some(),
                    processes: ending.signalled(),
                    proven_complete: ending.proven_complete(),
                });
            }
            if ending.rounds >= 500 {
                return Err(ending.give_up());
            }
        }
    }

    /// Logs an ended session; one not proven complete is an error, and the status says so.
    fn report_ended(&self, session: &Session, ended: &Ended) {
        let key_id = session.key_id.as_deref().unwrap_or("-");
        let fingerprint = session.fingerprint.as_deref().unwrap_or("-");
        let Ended {
            scope, processes, ..
        } = *ended;
        if ended.proven_complete {
            warn!(
                user = %session.user,
                key_id,
                fingerprint,
                session_id = %session.session_id,
                scope,
                processes,
                complete = true,
                "session terminated: its key is no longer in force"
            );
        } else {
            let what = unproven_ending(&session.session_id);
            error!(
                user = %session.user,
                key_id,
                fingerprint,
                session_id = %session.session_id,
                scope,
                processes,
                complete = false,
                "{what}"
            );
            self.sessions_problem.send_replace(Some(what));
        }
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
        let proof = record.origin.proof();
        let parsed = Record {
            at: record.at,
            pid: record.pid,
            message: &record.message,
        };
        let now = timefmt::now();
        let user = match revocation::line_use(&message, proof) {
            LineUse::Login { user } => user,
            LineUse::FirstMethod => {
                let lookups = Lookups {
                    key_id: &|_, _| None,
                    process_start: &|_| None,
                };
                let seen = Seen {
                    proof,
                    at: boot_clock::now(),
                };
                return tracker.observe(&parsed, message, now, seen, &lookups);
            }
            LineUse::Ignore => return Vec::new(),
        };
        if record.at.is_none() {
            // Said once, never silently: such sessions are dated when the line was read.
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                warn!("the time stamp of an sshd login line cannot be read; such sessions are dated when their line is read (docs/sshd-logs.md lists the stamps understood)");
            }
        }
        let keys = self.keys.borrow().clone();
        let monitor = match proof::verify_login(record.pid, user, &record.origin) {
            Ok(monitor) => Some(monitor),
            Err(refusal) => match revocation::unproven(&refusal, proof) {
                Unproven::OpenedAndGone => None,
                Unproven::HostCannotHold => {
                    warn!(pid = record.pid, "cannot prove a login: {refusal}");
                    return Vec::new();
                }
                Unproven::NotBelieved => {
                    debug!(pid = record.pid, "login line not believed: {refusal}");
                    return Vec::new();
                }
            },
        };
        let started = monitor.as_ref().map(PidFd::start);
        let key_id = |user: &str, fingerprint: &str| {
            revocation::key_for_login(keys.as_deref(), revoked, user, fingerprint, now, started)
        };
        let pid = record.pid;
        let process_start = |p: u32| started.filter(|_| p == pid);
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &process_start,
        };
        let seen = Seen {
            proof,
            at: boot_clock::now(),
        };
        let Some(monitor) = monitor else {
            // Root's sshd logged it and its process is gone: a past session.
            return tracker.opened_and_gone(&parsed, message, now, seen, &lookups);
        };
        let start = monitor.start();
        let events = tracker.observe(&parsed, message, now, seen, &lookups);
        if events.iter().any(|e| e.kind == EventKind::SessionOpened) {
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
        EventKind::SessionOpened => (message_id::SESSION_OPENED, "session opened"),
        EventKind::SessionClosed => (message_id::SESSION_CLOSED, "session closed"),
        EventKind::SessionTerminated => (message_id::SESSION_TERMINATED, "session terminated"),
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

/// What the kill rounds of one session did.
struct Ended {
    /// Through its logind scope.
    scope: bool,
    /// Processes signalled.
    processes: usize,
    proven_complete: bool,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
