//! What an integration test varies in its agent's configuration; the sandbox turns it
//! into the file through [`crate::AgentConfig`].

use std::path::PathBuf;

/// Settings of one test agent.
pub struct Setup {
    pub base_url: String,
    pub user: String,
    /// `None`: the user's default `~/.ssh/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
    pub long_poll_seconds: u64,
    pub extra_api: String,
    /// TOML appended to the file (whole sections); by default session reporting is off.
    pub extra: String,
    /// The `[host_keys]` section; by default off (the host's own `/etc/ssh` keys are
    /// not what most tests are about).
    pub host_keys: String,
}

impl Setup {
    /// Long-poll mode, no extra `[api]` options.
    pub fn new(base_url: &str, user: &str, authorized_keys: Option<PathBuf>) -> Setup {
        Setup {
            base_url: base_url.to_owned(),
            user: user.to_owned(),
            authorized_keys,
            long_poll_seconds: 30,
            extra_api: String::new(),
            extra: "[sessions]\nenabled = false\n".into(),
            host_keys: "[host_keys]\nenabled = false\n".into(),
        }
    }

    /// Session reporting on, from `source` (`journal`, or a syslog file path).
    pub fn with_sessions(mut self, source: &str) -> Setup {
        self.extra = if source == "journal" {
            "[sessions]\nlog_source = \"journal\"\n".into()
        } else {
            format!("[sessions]\nlog_source = \"file\"\nlog_file = {source:?}\n")
        };
        self.extra_api.push_str("heartbeat_seconds = 5\n");
        self
    }
}
