//! Enforcement: the key set in force, turned into what every managed file must hold,
//! carried to disk by one I/O thread per user, retried until it holds, and reported as
//! it really stands.
//!
//! - [`files`]: the pure core (wanted vs on disk, retries, drift pacing, the report).
//! - [`worker`]: the per-user I/O threads and the state-save gate.
//! - [`command_file`]: the AuthorizedKeysCommand file's writing thread, and
//!   [`command_file_state`] the pure state of when to write it and what its answers mean.
//! - [`report`]: the status's key side, `last_error` and the STATUS line (pure).
//! - [`Enforcer`] (here): the shell that owns both, the applied set, the
//!   AuthorizedKeysCommand file and the fetch error, and turns the core's notes into log
//!   lines.

pub mod command_file;
pub mod command_file_state;
pub mod files;
pub mod report;
pub mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::api::model::KeysReport;
use crate::authorized_keys::merge::{render_block, ManagedLine};
use crate::config::Config;
use crate::drift_watch::DriftWatch;
use crate::keys::KeySet;
use crate::logging::message_id;
use crate::state::{self, Applied};
use crate::sync::Fetched;
use crate::timefmt;
use crate::users::{self, ManagedUser};
use command_file_state::{CommandFileState, CommandNote};
use files::{Attempt, Files, Job, Note, Wanted, WantedKey};
use worker::{StateGate, Worker};

/// The longest the expiry timer sleeps before looking at the wall clock again, so a
/// clock that jumps forward still expires keys within this.
const EXPIRY_RECHECK: Duration = Duration::from_secs(60);

/// The agent's enforcement: configuration, users, what is in force, and every file.
pub struct Enforcer {
    config: Config,
    users: Vec<ManagedUser>,
    applied: Option<Applied>,
    files: Files,
    workers: BTreeMap<String, Worker>,
    answers: mpsc::UnboundedSender<Attempt>,
    watch: Arc<Mutex<DriftWatch>>,
    /// Opened when the set the newest jobs carry is durable in the state directory.
    gate: Option<Arc<StateGate>>,
    /// The last failed fetch, while it is the latest word from the control plane.
    fetch_error: Option<String>,
    /// When the AuthorizedKeysCommand file is written, and how its writes went.
    command_file: CommandFileState,
    command_writer: command_file::CommandFileWriter,
    /// `applied.json`'s writes, in order.
    applied_saver: state::Saver,
}

/// Where the enforcer's I/O answers: the users' threads ([`Enforcer::finished`]) and
/// the command file's writer ([`Enforcer::command_file_written`]).
pub struct Answers {
    pub files: mpsc::UnboundedReceiver<Attempt>,
    pub command_file: mpsc::UnboundedReceiver<command_file::Written>,
}

impl Enforcer {
    /// Sets up enforcement for `users` (resolved by the caller, off the runtime); answers
    /// of the I/O threads arrive on the receiver handed back, for [`Enforcer::finished`].
    pub fn new(
        config: Config,
        users: Vec<ManagedUser>,
        watch: Arc<Mutex<DriftWatch>>,
    ) -> (Enforcer, Answers) {
        let (answers, receiver) = mpsc::unbounded_channel();
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let command_writer = command_file::CommandFileWriter::new(command_tx);
        let mut enforcer = Enforcer {
            config,
            users: Vec::new(),
            applied: None,
            files: Files::new(),
            workers: BTreeMap::new(),
            answers,
            watch,
            gate: None,
            fetch_error: None,
            command_file: CommandFileState::default(),
            command_writer,
            applied_saver: state::Saver::default(),
        };
        enforcer.set_users(users);
        let answers = Answers {
            files: receiver,
            command_file: command_rx,
        };
        (enforcer, answers)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn users(&self) -> &[ManagedUser] {
        &self.users
    }

    pub fn applied(&self) -> Option<&Applied> {
        self.applied.as_ref()
    }

    fn set_users(&mut self, users: Vec<ManagedUser>) {
        for user in &users {
            let current = self.users.iter().find(|u| u.name == user.name);
            if current == Some(user) && self.workers.contains_key(&user.name) {
                continue;
            }
            match Worker::spawn(user.clone(), self.answers.clone(), self.watch.clone()) {
                Ok(worker) => {
                    self.workers.insert(user.name.clone(), worker);
                    self.files.track(&user.name, user.path(), user.write_file);
                }
                Err(e) => {
                    error!(user = %user.name, "cannot start the I/O thread: {e}; its file is not managed")
                }
            }
        }
        self.users = users
            .into_iter()
            .filter(|u| self.workers.contains_key(&u.name))
            .collect();
    }

    /// Loads the last applied set from the state directory and enforces it (expired keys
    /// left out). Without a usable state file nothing is touched until the first fetch.
    pub fn restore(&mut self, now: Instant) {
        match state::load_applied(&self.config.state_dir) {
            Ok(Some(applied)) => {
                info!(version = %applied.key_set.version, keys = applied.key_set.keys.len(), "restored the last applied key set");
                self.applied = Some(applied);
                self.enforce(now);
                self.command_file_due(now);
            }
            Ok(None) => info!(
                "no applied key set yet: waiting for the first fetch before touching any file"
            ),
            Err(e) => error!("{e}"),
        }
    }

    /// Takes a freshly fetched set: saves it as the last good state (the files are
    /// renamed only once it is durable), then enforces it.
    pub fn accept(&mut self, fetched: Fetched, now: Instant) {
        if self.fetch_error.take().is_some() {
            info!("control plane reachable again");
        }
        if let Some(current) = &mut self.applied {
            if current.key_set == fetched.key_set {
                current.etag = fetched.etag;
                return;
            }
        }
        let previous_rejected: Vec<String> = self
            .applied
            .as_ref()
            .map(|a| a.key_set.rejected.iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default();
        for rejection in &fetched.key_set.rejected {
            if !previous_rejected.contains(&rejection.id) {
                warn!(message_id = message_id::KEY_REJECTED, key_id = %rejection.id, reason = %rejection.reason, "key rejected");
            }
        }
        let applied = Applied {
            key_set: fetched.key_set,
            applied_at: timefmt::now(),
            etag: fetched.etag,
        };
        let gate = StateGate::new();
        let opener = gate.clone();
        let saved = self.applied_saver.save_then(
            &self.config.state_dir,
            state::APPLIED,
            &applied,
            move |r| {
                if let Err(e) = r {
                    error!("{e}");
                }
                opener.open();
            },
        );
        if let Err(e) = saved {
            // Enforce anyway: a revocation must bite even when the state disk is full.
            error!("{e}");
            gate.open();
        }
        self.gate = Some(gate);
        info!(version = %applied.key_set.version, keys = applied.key_set.keys.len(), rejected = applied.key_set.rejected.len(), "applying key set");
        self.applied = Some(applied);
        // authorized_keys first (the path most logins take), then the command's file,
        // once the files have answered: its fsyncs would slow theirs down.
        self.enforce(now);
        self.command_file_due(now);
    }

    /// Notes a failed fetch; repeated identical errors are logged once.
    pub fn note_fetch_error(&mut self, message: String) {
        if self.fetch_error.as_deref() != Some(message.as_str()) {
            warn!("fetching the key list failed: {message}; the keys in force stay as they are");
        }
        self.fetch_error = Some(message);
    }

    /// Hands every file whose block changed (or is not known to be right) to its worker.
    pub fn enforce(&mut self, now: Instant) {
        let Some(applied) = &self.applied else { return };
        let wall = timefmt::now();
        let mut jobs = Vec::new();
        for user in &self.users {
            let keys = applied.key_set.in_force_for(&user.name, wall);
            let keys = if user.write_file { keys } else { Vec::new() };
            let lines: Vec<ManagedLine<'_>> = keys
                .iter()
                .map(|k| ManagedLine {
                    public_key: &k.public_key,
                    key_id: &k.id,
                })
                .collect();
            let wanted = Wanted {
                block: Arc::new(render_block(&lines)),
                keys: keys
                    .iter()
                    .map(|k| WantedKey {
                        id: k.id.clone(),
                        fingerprint: k.fingerprint.clone(),
                        public_key: k.public_key.clone(),
                    })
                    .collect(),
            };
            jobs.extend(self.files.want(&user.name, wanted, now, wall));
        }
        for job in jobs {
            self.dispatch(job);
        }
    }

    fn dispatch(&self, job: Job) {
        if let Some(worker) = self.workers.get(&job.user) {
            worker.send(job, self.gate.clone());
        }
    }

    /// Takes an I/O thread's answer.
    pub fn finished(&mut self, attempt: Attempt, now: Instant) {
        if attempt.generation == files::RELEASE {
            match &attempt.result {
                Ok(_) => {
                    info!(user = %attempt.user, "no longer managed: its managed block is removed")
                }
                Err(e) => {
                    error!(user = %attempt.user, "no longer managed, but its managed block could not be removed: {e}; remove it by hand")
                }
            }
            return;
        }
        let output = self
            .files
            .finished(attempt, now, timefmt::now(), fastrand::f64());
        self.carry_out(output);
        self.command_file_if_settled(now);
    }

    /// Runs what is due: retries (the command file's too), drift checks, hang deadlines.
    pub fn tick(&mut self, now: Instant) {
        let output = self.files.tick(now, timefmt::now());
        self.carry_out(output);
        self.command_file_if_settled(now);
    }

    /// The AuthorizedKeysCommand file must follow the set: written as soon as the
    /// authorized_keys files have answered (or are overdue).
    fn command_file_due(&mut self, now: Instant) {
        self.command_file.due();
        self.command_file_if_settled(now);
    }

    fn command_file_if_settled(&mut self, now: Instant) {
        if self
            .command_file
            .should_write(self.files.settling(now), now)
        {
            self.write_command_file();
        }
    }

    /// The next instant [`Enforcer::tick`] has work.
    pub fn next_wake(&self) -> Option<Instant> {
        [self.files.next_wake(), self.command_file.next_wake()]
            .into_iter()
            .flatten()
            .min()
    }

    /// True while a fresh job is out: the report waits for its answer.
    pub fn settling(&self, now: Instant) -> bool {
        self.files.settling(now)
    }

    /// True while any job is out.
    pub fn outstanding(&self) -> bool {
        self.files.outstanding()
    }

    /// The gate of the newest state save (`None`: nothing saved by this process).
    pub fn state_gate(&self) -> Option<Arc<StateGate>> {
        self.gate.clone()
    }

    /// The file at `path` (or its directory) changed.
    pub fn drifted(&mut self, path: &Path, now: Instant) {
        for user in self.users.iter().filter(|u| u.path() == path) {
            self.files.drifted(&user.name, now);
        }
    }

    fn carry_out(&mut self, output: files::Output) {
        for job in output.jobs {
            self.dispatch(job);
        }
        for note in output.notes {
            log_note(note);
        }
    }

    /// One line for the service manager's STATUS.
    pub fn status_line(&self) -> String {
        report::status_line(
            self.applied.as_ref(),
            self.users.len(),
            self.last_error().as_deref(),
            timefmt::now(),
        )
    }

    /// Everything that is wrong now, in one line; `None` when nothing is.
    pub fn last_error(&self) -> Option<String> {
        report::last_error(
            self.fetch_error.as_deref(),
            &self.files.report(),
            self.command_file.error(),
        )
    }

    /// Keeps the `authorized-keys` command's file in step with the set and the users:
    /// hands it to its writer; the outcome comes back to [`Enforcer::command_file_written`].
    /// Call on the runtime.
    fn write_command_file(&mut self) {
        let Some(applied) = &self.applied else { return };
        let users: Vec<String> = self.users.iter().map(|u| u.name.clone()).collect();
        let file = crate::authorized_keys::command::build(&applied.key_set, &users);
        let number = self.command_writer.write(
            self.config.state_dir.clone(),
            self.config.command_group.clone(),
            file,
        );
        self.command_file.handed(number);
    }

    /// Takes the outcome of a command-file write: logs what changed (once); a failure
    /// is retried by [`Enforcer::tick`].
    pub fn command_file_written(&mut self, written: command_file::Written, now: Instant) {
        let path = self
            .config
            .state_dir
            .join(crate::authorized_keys::command::COMMAND_FILE);
        for note in self.command_file.answered(&written, now) {
            match note {
                CommandNote::Private { why } => error!(
                    path = %path.display(),
                    "the AuthorizedKeysCommand file is readable by the agent only, so sshd's \
                     AuthorizedKeysCommand cannot read it and logins through it fail \
                     (authorized_keys files are unaffected): {why}; then reload the agent"
                ),
                CommandNote::GroupReadable => {
                    info!(path = %path.display(), group = %self.config.command_group, "the AuthorizedKeysCommand file is readable by its group again")
                }
                CommandNote::Failed { error } => error!(
                    "{error}; retrying every {} s",
                    command_file_state::RETRY.as_secs()
                ),
                CommandNote::UpToDate => {
                    info!("the AuthorizedKeysCommand file is up to date again")
                }
            }
        }
    }

    /// True while a command-file write is out.
    pub fn command_file_writing(&self) -> bool {
        self.command_file.writing()
    }

    /// True while the AuthorizedKeysCommand file lags the set in force.
    pub fn command_file_stale(&self) -> bool {
        self.command_file.error().is_some()
    }

    /// The key side of the agent status: what is in force, for whom, and each file.
    pub fn report(&self, now: OffsetDateTime) -> KeysReport {
        let users: Vec<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        report::keys_report(
            self.applied.as_ref(),
            &users,
            self.files.report(),
            self.last_error(),
            now,
        )
    }

    /// The key set in force, for the sessions task (fingerprint lookups and revocation);
    /// `None` until a set is applied, so nothing is revoked before the agent knows.
    /// Each key is granted only to the managed users it names: a session of an
    /// unmanaged user (root adding a key by hand) is never tied to an account key.
    pub fn key_set(&self) -> Option<Arc<KeySet>> {
        let users: Vec<String> = self.users.iter().map(|u| u.name.clone()).collect();
        self.applied
            .as_ref()
            .map(|a| Arc::new(a.key_set.granted_to(&users)))
    }

    /// How long until the next key expires (capped, so clock jumps are caught).
    pub fn until_next_expiry(&self, now: OffsetDateTime) -> Option<Duration> {
        let at = self.applied.as_ref()?.key_set.next_expiry(now)?;
        Some(expiry_wait(at, now))
    }

    /// Switches to a new configuration and its users (resolved by the caller): users no
    /// longer managed lose their block (by their own I/O thread, which then ends), new
    /// ones get theirs.
    pub fn reconfigure(&mut self, config: Config, users: Vec<ManagedUser>, now: Instant) {
        for old in &self.users {
            let kept = users
                .iter()
                .any(|u| u.name == old.name && u.path() == old.path());
            if kept {
                continue;
            }
            self.watch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unwatch(&old.path());
            self.files.forget(&old.name);
            if let Some(worker) = self.workers.remove(&old.name) {
                worker.send(
                    Job {
                        user: old.name.clone(),
                        generation: files::RELEASE,
                        block: Arc::new(Vec::new()),
                        check_only: false,
                    },
                    None,
                );
            }
        }
        self.config = config;
        self.set_users(users);
        self.enforce(now);
        self.command_file_due(now);
    }
}

/// How long the expiry timer sleeps for a key expiring `at`: until then (at once when
/// past), but never more than `EXPIRY_RECHECK` (a minute), so a clock that jumps is caught.
pub fn expiry_wait(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let wait = Duration::try_from(at - now).unwrap_or(Duration::ZERO);
    wait.min(EXPIRY_RECHECK)
}

/// Resolves the configured users (NSS: may block; call it off the runtime). One that
/// cannot be resolved is logged and skipped.
pub fn resolve_users(config: &Config) -> Vec<ManagedUser> {
    config
        .users
        .iter()
        .filter_map(|u| match users::resolve(u) {
            Ok(user) => Some(user),
            Err(e) => {
                error!("{e}; its keys are not managed");
                None
            }
        })
        .collect()
}

fn log_note(note: Note) {
    match note {
        Note::KeyAdded {
            user,
            id,
            fingerprint,
        } => {
            info!(message_id = message_id::KEY_ADDED, user, key_id = %id, fingerprint = %fingerprint, "key added")
        }
        Note::KeyRemoved {
            user,
            id,
            fingerprint,
        } => {
            info!(message_id = message_id::KEY_REMOVED, user, key_id = %id, fingerprint = %fingerprint, "key removed")
        }
        Note::DriftRepaired { user, path, what } => {
            warn!(message_id = message_id::DRIFT_REPAIRED, user = %user, path = %path.display(), "drift repaired: {what}; managed keys put back")
        }
        Note::Behind {
            user,
            path,
            error,
            retry_in,
        } => {
            let retry = match retry_in {
                Some(wait) => format!(
                    "; retrying in {:.1} s, then with backoff up to {} s, until it holds",
                    wait.as_secs_f64(),
                    files::RETRY_CAP.as_secs()
                ),
                None => String::new(),
            };
            error!(user = %user, path = %path.display(), "the file does not hold the keys in force: {error}{retry}")
        }
        Note::RevokedStillAccepted {
            user,
            path,
            key_ids,
            managed,
        } => {
            let (file, then) = if managed {
                ("this file", "it is retried until they are gone")
            } else {
                (
                    "this file sshd reads beside the managed one (a copy or second hard link of it; the agent never writes it)",
                    "remove it",
                )
            };
            if key_ids.is_empty() {
                info!(message_id = message_id::REVOCATION_PENDING, user = %user, path = %path.display(), "no deleted key is left in {file}")
            } else {
                error!(message_id = message_id::REVOCATION_PENDING, user = %user, path = %path.display(), key_ids = %key_ids.join(","), "keys deleted from the account can still log in through {file}: {}; {then}", key_ids.join(", "))
            }
        }
        Note::CaughtUp { user, path } => {
            info!(user = %user, path = %path.display(), "the file holds the keys in force again")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_timer_waits_until_the_key_expires_but_never_more_than_a_minute() {
        let now = crate::timefmt::parse("2026-11-30T04:00:00Z").expect("time");
        let soon = now + time::Duration::seconds(5);
        let late = now + time::Duration::hours(3);
        let past = now - time::Duration::seconds(1);
        assert_eq!(expiry_wait(soon, now), Duration::from_secs(5));
        assert_eq!(expiry_wait(late, now), EXPIRY_RECHECK);
        assert_eq!(expiry_wait(past, now), Duration::ZERO);
    }
}
