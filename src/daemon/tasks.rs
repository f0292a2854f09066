//! The daemon's background tasks: the fetch task, the senders (heartbeat, delivery) and
//! the sessions task, each group started and stopped together (on reload or stop).
//!
//! The sessions task does blocking work by nature (`/proc` reads to prove a login,
//! pidfds, the outbox's fsyncs), so it runs on a thread and runtime of its own
//! ([`SessionsThread`]): however long that work takes, key sync, heartbeats and the
//! watchdog on the main runtime go on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{error, info};

use crate::api::model::{ActiveSession, KeysReport};
use crate::api::shared::SharedClient;
use crate::config::Config;
use crate::host_keys::HostKeysReport;
use crate::keys::KeySet;
use crate::outbox::Outbox;
use crate::sessions::{self};
use crate::state;
use crate::sync::{self, SyncEvent};

/// Tasks aborted together.
#[derive(Default)]
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(task));
    }

    pub fn abort_all(&mut self) {
        for task in self.0.drain(..) {
            task.abort();
        }
    }
}

/// The channels the main loop publishes on and the tasks read.
pub struct Channels {
    pub boot_id: String,
    pub keys: watch::Receiver<Option<Arc<KeySet>>>,
    pub report: watch::Receiver<KeysReport>,
    pub active_tx: watch::Sender<Vec<ActiveSession>>,
    pub active: watch::Receiver<Vec<ActiveSession>>,
    pub sync: mpsc::Sender<SyncEvent>,
    pub host_keys_tx: watch::Sender<HostKeysReport>,
    pub host_keys: watch::Receiver<HostKeysReport>,
    /// The sessions task's last problem (an ending not proven complete: no logind scope,
    /// no audit session; sshd's messages that cannot be read or were dropped).
    pub sessions_problem_tx: watch::Sender<Option<String>>,
    pub sessions_problem: watch::Receiver<Option<String>>,
    /// Session events dropped from a full outbox, for the status's `last_error`.
    pub outbox_drops_tx: watch::Sender<crate::outbox::Drops>,
    pub outbox_drops: watch::Receiver<crate::outbox::Drops>,
}

/// Everything that talks to the control plane or reads sshd's log.
pub struct Background {
    client: Arc<SharedClient>,
    follower: Tasks,
    senders: Tasks,
    host_keys: Tasks,
    sessions: Option<SessionsThread>,
    outbox: Option<(Arc<Mutex<Outbox>>, Arc<Notify>)>,
}

/// How long a stop waits for the sessions thread to finish what it is doing.
const SESSIONS_STOP_WAIT: Duration = Duration::from_secs(5);

/// The sessions task on its own thread, with its own current-thread runtime.
pub struct SessionsThread {
    stop: Option<oneshot::Sender<()>>,
    stopped: std::sync::mpsc::Receiver<()>,
}

impl SessionsThread {
    fn start(task: sessions::task::SessionsTask) -> std::io::Result<SessionsThread> {
        let runtime = super::runtime()?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sessions".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        () = task.run() => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime ends the log reader (its journalctl is killed).
                drop(runtime);
                let _ = stopped_tx.send(());
            })?;
        Ok(SessionsThread {
            stop: Some(stop),
            stopped,
        })
    }

    /// Asks the thread to stop and waits (off the runtime) until it has, up to
    /// [`SESSIONS_STOP_WAIT`]; false when it did not stop in time.
    async fn stop(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = self.stopped;
        tokio::task::spawn_blocking(move || stopped.recv_timeout(SESSIONS_STOP_WAIT).is_ok())
            .await
            .unwrap_or(false)
    }
}

impl Background {
    /// Starts the fetch task, the sessions task (when enabled) and the senders.
    pub fn start(config: &Config, channels: &Channels) -> Background {
        let mut background = Background {
            client: SharedClient::new(config.api.clone()),
            follower: Tasks::default(),
            senders: Tasks::default(),
            host_keys: Tasks::default(),
            sessions: None,
            outbox: None,
        };
        background.start_follower(channels);
        background.start_host_keys(config, channels);
        background.start_sessions(config, channels);
        background.start_senders(channels);
        background
    }

    fn start_follower(&mut self, channels: &Channels) {
        self.follower
            .spawn(sync::follow(self.client.clone(), channels.sync.clone()));
    }

    /// Follows the host key files (`[host_keys]`), or publishes none when disabled.
    fn start_host_keys(&mut self, config: &Config, channels: &Channels) {
        if config.host_keys.enabled {
            self.host_keys.spawn(crate::host_keys::watch::run(
                config.host_keys.patterns(),
                channels.host_keys_tx.clone(),
            ));
        } else {
            channels
                .host_keys_tx
                .send_replace(HostKeysReport::default());
        }
    }

    /// A reloaded `[host_keys]`.
    pub fn restart_host_keys(&mut self, config: &Config, channels: &Channels) {
        self.host_keys.abort_all();
        self.start_host_keys(config, channels);
    }

    fn start_senders(&mut self, channels: &Channels) {
        if let Some((outbox, wake)) = &self.outbox {
            self.senders.spawn(crate::delivery::deliver(
                self.client.clone(),
                outbox.clone(),
                wake.clone(),
            ));
        }
        self.senders.spawn(crate::heartbeat::run(
            self.client.clone(),
            channels.boot_id.clone(),
            self.client.config().heartbeat,
            crate::heartbeat::Sources {
                keys: channels.report.clone(),
                sessions: channels.active.clone(),
                host_keys: channels.host_keys.clone(),
                sessions_problem: channels.sessions_problem.clone(),
                drops: channels.outbox_drops.clone(),
            },
        ));
    }

    /// Starts the sessions task when enabled, with its outbox and delivery wake-up.
    fn start_sessions(&mut self, config: &Config, channels: &Channels) {
        self.outbox = None;
        let sessions_config = &config.sessions;
        if !sessions_config.enabled {
            info!("session reporting is disabled ([sessions] enabled = false)");
            channels.active_tx.send_replace(Vec::new());
            return;
        }
        if let Err(e) = state::ensure_dir(&config.state_dir) {
            error!("{e}; session reporting is off");
            return;
        }
        let outbox = match Outbox::open(&config.state_dir, sessions_config.outbox_max_events) {
            Ok(mut outbox) => {
                outbox.report_drops_to(channels.outbox_drops_tx.clone());
                Arc::new(Mutex::new(outbox))
            }
            Err(e) => {
                error!("{e}; session reporting is off");
                return;
            }
        };
        let wake = Arc::new(Notify::new());
        let task = sessions::task::SessionsTask {
            source: sessions::source::choose(
                sessions_config.log_source,
                sessions_config.log_file.as_deref(),
                &sessions_config.syslog_socket,
            ),
            state_dir: config.state_dir.clone(),
            boot_id: channels.boot_id.clone(),
            keys: channels.keys.clone(),
            terminate_on_revoke: sessions_config.terminate_on_revoke,
            outbox: outbox.clone(),
            delivery: wake.clone(),
            active: channels.active_tx.clone(),
            sessions_problem: channels.sessions_problem_tx.clone(),
        };
        match SessionsThread::start(task) {
            Ok(thread) => {
                self.sessions = Some(thread);
                self.outbox = Some((outbox, wake));
            }
            Err(e) => error!("cannot start the sessions thread: {e}; session reporting is off"),
        }
    }

    /// A reloaded `[api]`: a new client for the fetch task and the senders.
    pub fn restart_api(&mut self, config: &Config, channels: &Channels) {
        self.client = SharedClient::new(config.api.clone());
        self.follower.abort_all();
        self.start_follower(channels);
        self.senders.abort_all();
        self.start_senders(channels);
    }

    /// A reloaded `[sessions]`: the sessions task and delivery start again (the outbox
    /// and the sessions state are on disk, so nothing is lost in between).
    pub async fn restart_sessions(&mut self, config: &Config, channels: &Channels) {
        self.senders.abort_all();
        if let Some(thread) = self.sessions.take() {
            if !thread.stop().await {
                // Never two readers of one log and outbox: better none until a restart.
                error!("the sessions task did not stop within {} s; session reporting resumes after a restart", SESSIONS_STOP_WAIT.as_secs());
                self.outbox = None;
                self.start_senders(channels);
                return;
            }
        }
        self.start_sessions(config, channels);
        self.start_senders(channels);
    }

    pub async fn stop(&mut self) {
        self.follower.abort_all();
        self.host_keys.abort_all();
        self.senders.abort_all();
        if let Some(thread) = self.sessions.take() {
            thread.stop().await;
        }
    }
}
