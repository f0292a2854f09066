//! Wiring: the agent's state in memory, and the main loop that applies key sets from
//! the fetch task, expires keys on time, repairs drift, and reacts to signals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info, warn};

use crate::api::shared::SharedClient;
use crate::heartbeat::{KeysReport, StatusKey};
use crate::keys::KeySet;
use crate::outbox::Outbox;
use crate::sessions::{self as sessions_mod, ActiveSession};

use crate::authorized_keys::merge::{self, render_block, ManagedLine};
use crate::authorized_keys::write::{self, Outcome, WriteError};
use crate::config::{self, Config};
use crate::state::{self, Applied};
use crate::sync::{self, Fetched, SyncEvent};
use crate::timefmt;
use crate::users::{self, ManagedUser};
use crate::watch::DriftWatch;

/// The longest the expiry timer sleeps before looking at the wall clock again, so a
/// clock that jumps forward still expires keys within this.
const EXPIRY_RECHECK: Duration = Duration::from_secs(60);
/// How long drift events are gathered before the file is repaired once.
const DRIFT_SETTLE: Duration = Duration::from_millis(20);

/// A key as written for one user: what is logged when it comes or goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WrittenKey {
    id: String,
    fingerprint: String,
}

/// The agent: configuration, managed users and what is in force.
pub struct Agent {
    config: Config,
    users: Vec<ManagedUser>,
    applied: Option<Applied>,
    /// Per user: the keys last written successfully.
    written: HashMap<String, Vec<WrittenKey>>,
    last_error: Option<String>,
    /// The state of a set being applied, written on another thread while the users'
    /// files are prepared, and waited for before the first of them is renamed in place.
    pending_state: Option<state::PendingSave>,
    /// The last write of the AuthorizedKeysCommand file failed: it may still grant a
    /// revoked key, so it is retried every [`COMMAND_FILE_RETRY`] until it succeeds.
    command_file_stale: bool,
    /// Why the AuthorizedKeysCommand file is readable by the agent only (its group is
    /// missing or cannot be given the file), as last logged: said once, not at every write.
    command_file_private: Option<String>,
}

/// How often a failed write of the AuthorizedKeysCommand file is tried again.
pub const COMMAND_FILE_RETRY: Duration = Duration::from_secs(5);

/// How a round of writing went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnforceReport {
    pub written: usize,
    pub unchanged: usize,
    pub failed: usize,
}

impl Agent {
    /// Resolves the configured users; one that cannot be resolved is logged and skipped.
    pub fn new(config: Config) -> Agent {
        let users = resolve_users(&config);
        Agent {
            config,
            users,
            applied: None,
            written: HashMap::new(),
            last_error: None,
            pending_state: None,
            command_file_stale: false,
            command_file_private: None,
        }
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

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Loads the last applied set from the state directory and enforces it (expired keys
    /// left out). Without a usable state file nothing is touched until the first fetch.
    pub fn restore(&mut self) -> EnforceReport {
        match state::load(&self.config.state_dir) {
            Ok(Some(applied)) => {
                info!(version = %applied.key_set.version, keys = applied.key_set.keys.len(), "restored the last applied key set");
                self.applied = Some(applied);
                self.write_command_file();
                self.enforce(timefmt::now())
            }
            Ok(None) => {
                info!(
                    "no applied key set yet: waiting for the first fetch before touching any file"
                );
                EnforceReport::default()
            }
            Err(e) => {
                error!("{e}");
                EnforceReport::default()
            }
        }
    }

    /// Takes a freshly fetched set: saves it as the last good state, then enforces it.
    pub fn accept(&mut self, fetched: Fetched) -> EnforceReport {
        if self.last_error.take().is_some() {
            info!("control plane reachable again");
        }
        let now = timefmt::now();
        if let Some(current) = &mut self.applied {
            if current.key_set == fetched.key_set {
                current.etag = fetched.etag;
                return EnforceReport::default();
            }
        }
        let previous_rejected: Vec<String> = self
            .applied
            .as_ref()
            .map(|a| a.key_set.rejected.iter().map(|r| r.id.clone()).collect())
            .unwrap_or_default();
        for rejection in &fetched.key_set.rejected {
            if !previous_rejected.contains(&rejection.id) {
                warn!(message_id = crate::logging::message_id::KEY_REJECTED, key_id = %rejection.id, reason = %rejection.reason, "key rejected");
            }
        }
        let applied = Applied {
            format: state::FORMAT,
            key_set: fetched.key_set,
            applied_at: now,
            etag: fetched.etag,
        };
        match state::begin_save(&self.config.state_dir, &applied) {
            Ok(pending) => self.pending_state = Some(pending),
            // Enforce anyway: a revocation must bite even when the state disk is full.
            Err(e) => error!("{e}"),
        }
        info!(version = %applied.key_set.version, keys = applied.key_set.keys.len(), rejected = applied.key_set.rejected.len(), "applying key set");
        self.applied = Some(applied);
        // Order: the state durable first (a crash after it re-applies the new set at
        // start-up, so a revoked key never comes back), then the files sshd reads,
        // authorized_keys before the command's file (the path most logins take goes
        // first). The state's write overlaps with preparing the first file: it is
        // waited for just before that file's rename, or here if no file changed.
        let report = self.enforce(now);
        finish_state_save(&mut self.pending_state);
        self.write_command_file();
        report
    }

    /// Notes a failed fetch; repeated identical errors are logged once.
    pub fn note_error(&mut self, message: String) {
        if self.last_error.as_deref() != Some(message.as_str()) {
            warn!("fetching the key list failed: {message}; the keys in force stay as they are");
        }
        self.last_error = Some(message);
    }

    /// Writes every user's block for the set in force at `now`.
    pub fn enforce(&mut self, now: OffsetDateTime) -> EnforceReport {
        let mut report = EnforceReport::default();
        for index in 0..self.users.len() {
            match self.enforce_user(index, now) {
                Ok(Outcome::Unchanged) => report.unchanged += 1,
                Ok(Outcome::Written { .. }) => report.written += 1,
                Err(_) => report.failed += 1,
            }
        }
        report
    }

    /// Writes one user's block (errors are logged and returned).
    pub fn enforce_user(
        &mut self,
        index: usize,
        now: OffsetDateTime,
    ) -> Result<Outcome, WriteError> {
        let Some(applied) = &self.applied else {
            return Ok(Outcome::Unchanged);
        };
        let user = &self.users[index];
        let keys = applied.key_set.in_force_for(&user.name, now);
        let lines: Vec<ManagedLine<'_>> = keys
            .iter()
            .map(|k| ManagedLine {
                public_key: &k.public_key,
                key_id: &k.id,
            })
            .collect();
        let block = render_block(&lines);
        let wanted: Vec<WrittenKey> = keys
            .iter()
            .map(|k| WrittenKey {
                id: k.id.clone(),
                fingerprint: k.fingerprint.clone(),
            })
            .collect();
        // With the file turned off, only a block left from before is removed.
        let pending_state = &mut self.pending_state;
        let result = write::apply_then(user, if user.write_file { &block } else { &[] }, || {
            finish_state_save(pending_state)
        });
        match &result {
            Ok(outcome) => {
                let before = self.written.get(&user.name);
                // The same keys as last written, yet the file needed writing: drift.
                if let (Outcome::Written { previous }, Some(before)) = (outcome, before) {
                    let wanted_block = if user.write_file {
                        block.as_slice()
                    } else {
                        &[]
                    };
                    if *before == wanted {
                        if let Some(drift) =
                            merge::describe_drift(previous.as_deref(), wanted_block)
                        {
                            warn!(message_id = crate::logging::message_id::DRIFT_REPAIRED, user = %user.name, path = %user.path().display(), "drift repaired: {drift}; managed keys put back");
                        }
                    }
                }
                log_key_changes(
                    &user.name,
                    before.map(Vec::as_slice).unwrap_or_default(),
                    &wanted,
                );
                self.written.insert(user.name.clone(), wanted);
            }
            Err(e) => error!("{e}"),
        }
        result
    }

    /// Enforces the user whose managed file is `path`, after a drift event.
    pub fn enforce_path(&mut self, path: &Path, now: OffsetDateTime) {
        if let Some(index) = self.users.iter().position(|u| u.path() == path) {
            let _ = self.enforce_user(index, now);
        }
    }

    /// One line for the service manager's STATUS.
    pub fn status_line(&self) -> String {
        let users = self.users.len();
        let base = match &self.applied {
            Some(applied) => {
                let now = timefmt::now();
                let keys = applied
                    .key_set
                    .keys
                    .iter()
                    .filter(|k| !k.is_expired(now))
                    .count();
                format!(
                    "key set {} in force: {keys} key(s) for {users} user(s)",
                    applied.key_set.version
                )
            }
            None => format!("no key set yet for {users} user(s)"),
        };
        match &self.last_error {
            Some(error) => format!("{base}; control plane: {error}"),
            None => base,
        }
    }

    /// Keeps the `authorized-keys` command's file in step with the set and the users:
    /// mode 0640 with the configured group, or 0600 (never world-readable) when that
    /// group is missing or cannot be given the file, which is logged as an error once.
    pub fn write_command_file(&mut self) {
        use crate::authorized_keys::command::{self, Readers, WriteError};
        let Some(applied) = &self.applied else { return };
        let users: Vec<String> = self.users.iter().map(|u| u.name.clone()).collect();
        let file = command::build(&applied.key_set, &users);
        let dir = &self.config.state_dir;
        let group = &self.config.command_group;
        let (result, private) = match command::resolve_group(group) {
            Ok(gid) => match command::write(dir, &file, Readers::Group(gid)) {
                Err(WriteError::Group { source, .. }) => (
                    command::write(dir, &file, Readers::OwnerOnly),
                    Some(format!(
                        "it cannot be given to group {group} ({source}): the agent needs root \
                         or CAP_CHOWN, as the packaged unit gives it"
                    )),
                ),
                result => (result, None),
            },
            Err(why) => (
                command::write(dir, &file, Readers::OwnerOnly),
                Some(format!(
                    "{why}: create it (the packages make pictor-keys), or set [state] \
                     authorized_keys_command_group to the group of sshd's \
                     AuthorizedKeysCommandUser"
                )),
            ),
        };
        if result.is_ok() && private != self.command_file_private {
            let path = dir.join(command::COMMAND_FILE);
            match &private {
                Some(why) => error!(
                    path = %path.display(),
                    "the AuthorizedKeysCommand file is readable by the agent only, so sshd's \
                     AuthorizedKeysCommand cannot read it and logins through it fail \
                     (authorized_keys files are unaffected): {why}; then reload the agent"
                ),
                None => {
                    info!(path = %path.display(), group = %group, "the AuthorizedKeysCommand file is readable by its group again")
                }
            }
            self.command_file_private = private;
        }
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.command_file_stale) {
                    info!("the AuthorizedKeysCommand file is up to date again");
                }
            }
            Err(e) => {
                error!("{e}; retrying every {} s", COMMAND_FILE_RETRY.as_secs());
                self.command_file_stale = true;
            }
        }
    }

    /// True while the AuthorizedKeysCommand file lags the set in force.
    pub fn command_file_stale(&self) -> bool {
        self.command_file_stale
    }

    /// The key side of the agent status: what is in force now and for whom.
    pub fn report(&self, now: OffsetDateTime) -> KeysReport {
        let Some(applied) = &self.applied else {
            return KeysReport {
                last_error: self.last_error.clone(),
                ..KeysReport::default()
            };
        };
        let keys = applied
            .key_set
            .keys
            .iter()
            .filter(|k| !k.is_expired(now))
            .map(|k| StatusKey {
                id: k.id.clone(),
                fingerprint: k.fingerprint.clone(),
                users: self
                    .users
                    .iter()
                    .filter(|u| k.is_for(&u.name))
                    .map(|u| u.name.clone())
                    .collect(),
            })
            .collect();
        KeysReport {
            applied_version: Some(applied.key_set.version.clone()),
            applied_at: Some(timefmt::format(applied.applied_at)),
            keys,
            rejected_keys: applied.key_set.rejected.clone(),
            last_error: self.last_error.clone(),
        }
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
        let wait = Duration::try_from(at - now).unwrap_or(Duration::ZERO);
        Some(wait.min(EXPIRY_RECHECK))
    }

    /// Switches to a new configuration: users no longer managed lose their block, new
    /// ones get theirs.
    pub fn reconfigure(&mut self, config: Config) {
        let new_users = resolve_users(&config);
        for old in &self.users {
            if !new_users.iter().any(|u| u.path() == old.path()) {
                match write::apply(old, &[]) {
                    Ok(_) => {
                        info!(user = %old.name, path = %old.path().display(), "no longer managed: managed block removed")
                    }
                    Err(e) => error!("{e}"),
                }
                self.written.remove(&old.name);
            }
        }
        self.users = new_users;
        self.config = config;
        self.write_command_file();
        self.enforce(timefmt::now());
    }
}

fn resolve_users(config: &Config) -> Vec<ManagedUser> {
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

fn log_key_changes(user: &str, before: &[WrittenKey], after: &[WrittenKey]) {
    for key in after.iter().filter(|k| !before.contains(k)) {
        info!(message_id = crate::logging::message_id::KEY_ADDED, user, key_id = %key.id, fingerprint = %key.fingerprint, "key added");
    }
    for key in before.iter().filter(|k| !after.contains(k)) {
        info!(message_id = crate::logging::message_id::KEY_REMOVED, user, key_id = %key.id, fingerprint = %key.fingerprint, "key removed");
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
}

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP reloads the configuration file at
/// `config_path` (an invalid file is logged and the running configuration kept).
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), DaemonError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    // A test hook for the watchdog system test: with PICTOR_AGENT_TEST_HOOKS=1 in the
    // environment, SIGUSR1 hangs the main loop (the process stays alive, the loop stops).
    let mut hang = match std::env::var_os("PICTOR_AGENT_TEST_HOOKS") {
        Some(_) => Some(signal(SignalKind::user_defined1()).map_err(DaemonError::Signals)?),
        None => None,
    };

    let mut agent = Agent::new(config);
    agent.restore();
    // READY once a key set is in force: the cached one now, else the first fetch, else
    // (control plane unreachable, nothing cached) after READY_AT_THE_LATEST, so sshd,
    // ordered after us, is never held up for long.
    let mut ready = agent.applied().is_some();
    if ready {
        crate::service::ready(&agent.status_line());
    } else {
        crate::service::status("waiting for the first key set from the control plane");
    }
    let not_ready_deadline = tokio::time::Instant::now() + crate::service::READY_AT_THE_LATEST;
    let mut watchdog = crate::service::watchdog_period().map(tokio::time::interval);

    let (drift_tx, mut drift_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watch = DriftWatch::new(drift_tx)?;
    for user in agent.users() {
        if let Err(e) = watch.watch(&user.path()) {
            warn!("{e}; drift in it is repaired only at the next key change");
        }
    }

    let boot_id = sessions_mod::procs::boot_id();
    let (keys_tx, keys_rx) = watch::channel(agent.key_set());
    let (report_tx, report_rx) = watch::channel(agent.report(timefmt::now()));
    let saved_sessions = sessions_mod::task::load_state(&agent.config().state_dir);
    let (active_tx, active_rx) = watch::channel::<Vec<ActiveSession>>(
        saved_sessions.open.iter().map(|s| s.active()).collect(),
    );

    let (sync_tx, mut sync_rx) = mpsc::channel::<SyncEvent>(8);
    let mut client = SharedClient::new(agent.config().api.clone());
    let mut follower = Tasks::default();
    follower.spawn(sync::follow(client.clone(), sync_tx.clone()));
    let mut reporters = Tasks::default();
    let outbox = start_sessions(&agent, &boot_id, keys_rx, active_tx, &mut reporters);
    let spawn_senders = |tasks: &mut Tasks, client: &Arc<SharedClient>| {
        if let Some((outbox, wake)) = &outbox {
            tasks.spawn(crate::delivery::deliver(
                client.clone(),
                outbox.clone(),
                wake.clone(),
            ));
        }
        tasks.spawn(crate::heartbeat::run(
            client.clone(),
            boot_id.clone(),
            client.config().heartbeat,
            report_rx.clone(),
            active_rx.clone(),
        ));
    };
    let mut senders = Tasks::default();
    spawn_senders(&mut senders, &client);
    info!(
        users = agent.users().len(),
        "pictor-agent {} running",
        crate::VERSION
    );
    let publish = |agent: &Agent| {
        // Sent every time, even with the same set: time passed, keys may have expired.
        keys_tx.send_replace(agent.key_set());
        report_tx.send_if_modified(|current| {
            let next = agent.report(timefmt::now());
            let changed = *current != next;
            *current = next;
            changed
        });
    };

    let mut drift_pending: Vec<PathBuf> = Vec::new();
    let mut drift_deadline: Option<tokio::time::Instant> = None;
    loop {
        let drift_timer = async {
            match drift_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let watchdog_tick = async {
            match watchdog.as_mut() {
                Some(interval) => {
                    interval.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let hang_signal = async {
            match hang.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let expiry = agent.until_next_expiry(timefmt::now());
        let expiry_timer = async {
            match expiry {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(event) = sync_rx.recv() => {
                match event {
                    SyncEvent::Fetched(fetched) => {
                        agent.accept(fetched);
                    }
                    SyncEvent::Failed(message) => agent.note_error(message),
                }
                publish(&agent);
                if !ready && agent.applied().is_some() {
                    ready = true;
                    crate::service::ready(&agent.status_line());
                } else {
                    crate::service::status(&agent.status_line());
                }
            }
            () = tokio::time::sleep_until(not_ready_deadline), if !ready => {
                ready = true;
                crate::service::ready("no key set yet: the control plane has not answered; nothing was changed");
            }
            () = watchdog_tick => crate::service::feed_watchdog(),
            () = hang_signal => {
                error!("test hook: hanging the main loop (PICTOR_AGENT_TEST_HOOKS)");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            () = tokio::time::sleep(COMMAND_FILE_RETRY), if agent.command_file_stale() => {
                agent.write_command_file();
            }
            () = expiry_timer => {
                agent.enforce(timefmt::now());
                publish(&agent);
            }
            Some(path) = drift_rx.recv() => {
                // Gather a burst of events (an editor's save is several) and repair once,
                // without holding up the rest of the loop meanwhile.
                if !drift_pending.contains(&path) {
                    drift_pending.push(path);
                }
                drift_deadline.get_or_insert_with(|| tokio::time::Instant::now() + DRIFT_SETTLE);
            }
            () = drift_timer => {
                drift_deadline = None;
                for path in std::mem::take(&mut drift_pending) {
                    agent.enforce_path(&path, timefmt::now());
                    if let Err(e) = watch.watch(&path) {
                        warn!("{e}");
                    }
                }
            }
            _ = terminate.recv() => { info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { info!("SIGINT: stopping"); break; }
            _ = hangup.recv() => match reload_config(&config_path) {
                Ok(new_config) => {
                    info!(path = %config_path.display(), "SIGHUP: configuration reloaded");
                    let api_changed = new_config.api != agent.config().api;
                    for user in agent.users() {
                        watch.unwatch(&user.path());
                    }
                    agent.reconfigure(new_config);
                    for user in agent.users() {
                        if let Err(e) = watch.watch(&user.path()) {
                            warn!("{e}");
                        }
                    }
                    if api_changed {
                        client = SharedClient::new(agent.config().api.clone());
                        follower.abort_all();
                        follower.spawn(sync::follow(client.clone(), sync_tx.clone()));
                        senders.abort_all();
                        spawn_senders(&mut senders, &client);
                    }
                    publish(&agent);
                    crate::service::ready(&agent.status_line());
                }
                Err(e) => {
                    error!("SIGHUP: {e}; keeping the running configuration");
                    crate::service::ready(&format!("reload failed, running configuration kept: {e}"));
                }
            },
        }
    }
    crate::service::stopping();
    follower.abort_all();
    senders.abort_all();
    reporters.abort_all();
    Ok(())
}

/// Tells the service manager a reload began, and reads the configuration again.
fn reload_config(path: &Path) -> Result<Config, config::ConfigError> {
    crate::service::reloading();
    config::load(path)
}

/// Background tasks aborted together (on reload or stop).
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(task));
    }

    fn abort_all(&mut self) {
        for task in self.0.drain(..) {
            task.abort();
        }
    }
}

/// Starts the sessions task when enabled; returns the outbox and its delivery wake-up.
fn start_sessions(
    agent: &Agent,
    boot_id: &str,
    keys: watch::Receiver<Option<Arc<KeySet>>>,
    active: watch::Sender<Vec<ActiveSession>>,
    tasks: &mut Tasks,
) -> Option<(Arc<Mutex<Outbox>>, Arc<Notify>)> {
    let config = &agent.config().sessions;
    if !config.enabled {
        info!("session reporting is disabled ([sessions] enabled = false)");
        return None;
    }
    if let Err(e) = state::ensure_dir(&agent.config().state_dir) {
        error!("{e}; session reporting is off");
        return None;
    }
    let outbox = match Outbox::open(&agent.config().state_dir, config.outbox_max_events) {
        Ok(outbox) => Arc::new(Mutex::new(outbox)),
        Err(e) => {
            error!("{e}; session reporting is off");
            return None;
        }
    };
    let wake = Arc::new(Notify::new());
    let task = sessions_mod::task::SessionsTask {
        source: sessions_mod::source::choose(config.log_source, config.log_file.as_deref()),
        state_dir: agent.config().state_dir.clone(),
        boot_id: boot_id.to_owned(),
        keys,
        terminate_on_revoke: config.terminate_on_revoke,
        outbox: outbox.clone(),
        delivery: wake.clone(),
        active,
    };
    tasks.spawn(task.run());
    Some((outbox, wake))
}

/// Waits for a state save in progress, if any (a failure is logged: the keys are
/// enforced anyway).
fn finish_state_save(pending: &mut Option<state::PendingSave>) {
    if let Some(save) = pending.take() {
        if let Err(e) = save.wait() {
            error!("{e}");
        }
    }
}

/// `sync --once`: one full fetch, saved and applied. `Err` says what failed.
pub async fn sync_once(config: Config) -> Result<EnforceReport, String> {
    let client = crate::api::ApiClient::new(&config.api).map_err(|e| e.to_string())?;
    let fetched = sync::fetch_full(&client).await.map_err(|e| e.to_string())?;
    let mut agent = Agent::new(config);
    if let Ok(Some(previous)) = state::load(&agent.config.state_dir) {
        agent.applied = Some(previous);
    }
    // Start from what is on disk so additions and removals are logged correctly.
    let report = agent.accept(fetched);
    let report = if report == EnforceReport::default() {
        // The same set as on disk: the files are brought in step all the same, the
        // AuthorizedKeysCommand file too (missing, or left with another mode or group).
        agent.write_command_file();
        agent.enforce(timefmt::now())
    } else {
        report
    };
    if agent.users.len() != agent.config.users.len() {
        return Err("some configured users could not be resolved".into());
    }
    if report.failed > 0 {
        return Err(format!(
            "{} user file(s) could not be written",
            report.failed
        ));
    }
    Ok(report)
}
