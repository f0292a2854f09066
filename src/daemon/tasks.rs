//! The daemon's background tasks: the fetch task, the senders (heartbeat, delivery) and
//! the sessions task, each group started and stopped together (on reload or stop).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info};

use crate::api::shared::SharedClient;
use crate::config::Config;
use crate::heartbeat::KeysReport;
use crate::keys::KeySet;
use crate::outbox::Outbox;
use crate::sessions::{self, ActiveSession};
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
}

/// Everything that talks to the control plane or reads sshd's log.
pub struct Background {
    client: Arc<SharedClient>,
    follower: Tasks,
    senders: Tasks,
    sessions: Tasks,
    outbox: Option<(Arc<Mutex<Outbox>>, Arc<Notify>)>,
}

impl Background {
    /// Starts the fetch task, the sessions task (when enabled) and the senders.
    pub fn start(config: &Config, channels: &Channels) -> Background {
        let mut background = Background {
            client: SharedClient::new(config.api.clone()),
            follower: Tasks::default(),
            senders: Tasks::default(),
            sessions: Tasks::default(),
            outbox: None,
        };
        background.start_follower(channels);
        background.start_sessions(config, channels);
        background.start_senders(channels);
        background
    }

    fn start_follower(&mut self, channels: &Channels) {
        self.follower
            .spawn(sync::follow(self.client.clone(), channels.sync.clone()));
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
            channels.report.clone(),
            channels.active.clone(),
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
            Ok(outbox) => Arc::new(Mutex::new(outbox)),
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
            ),
            state_dir: config.state_dir.clone(),
            boot_id: channels.boot_id.clone(),
            keys: channels.keys.clone(),
            terminate_on_revoke: sessions_config.terminate_on_revoke,
            outbox: outbox.clone(),
            delivery: wake.clone(),
            active: channels.active_tx.clone(),
        };
        self.sessions.spawn(task.run());
        self.outbox = Some((outbox, wake));
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
    pub fn restart_sessions(&mut self, config: &Config, channels: &Channels) {
        self.sessions.abort_all();
        self.senders.abort_all();
        // The aborted task's outbox handle goes with it; the file is opened anew.
        self.start_sessions(config, channels);
        self.start_senders(channels);
    }

    pub fn stop(&mut self) {
        self.follower.abort_all();
        self.senders.abort_all();
        self.sessions.abort_all();
    }
}
