//! The agent's configuration file, typed: the one place the tests, the benches and the
//! demo write it from. Every key is the agent's own (docs/operations.md,
//! "Configuration"); what is `None` is left to the agent's default.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One agent's `config.toml`.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub base_url: String,
    pub instance_id: String,
    pub token_file: PathBuf,
    pub long_poll_seconds: Option<u64>,
    pub poll_interval_seconds: Option<u64>,
    pub backoff_max_seconds: Option<u64>,
    pub request_timeout_seconds: Option<u64>,
    pub connect_timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
    /// More `[api]` lines, as TOML (what a test varies beyond the keys above).
    pub extra_api: String,
    pub users: Vec<ManagedUser>,
    pub sessions: Sessions,
    pub state_dir: Option<PathBuf>,
    pub command_group: Option<String>,
    pub host_keys: HostKeys,
    pub log_level: Option<String>,
    /// Whole sections appended at the end, as TOML.
    pub extra: String,
}

/// A `[[users]]` entry.
#[derive(Debug, Clone, Default)]
pub struct ManagedUser {
    pub name: String,
    /// `None`: `~name/.ssh/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
}

/// The `[sessions]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sessions {
    /// No section: the agent's default (`auto`).
    #[default]
    Default,
    /// `enabled = false`.
    Off,
    /// `log_source = "journal"`.
    Journal,
    /// `log_source = "file"` and this `log_file`.
    File(PathBuf),
}

/// The `[host_keys]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostKeys {
    /// No section: the host's own `/etc/ssh` keys.
    #[default]
    Default,
    /// `enabled = false`.
    Off,
    /// `files = [...]`, glob patterns.
    Files(Vec<String>),
}

impl AgentConfig {
    /// The three keys the agent requires; everything else at the agent's default.
    pub fn new(base_url: &str, instance_id: &str, token_file: &Path) -> AgentConfig {
        AgentConfig {
            base_url: base_url.to_owned(),
            instance_id: instance_id.to_owned(),
            token_file: token_file.to_owned(),
            ..AgentConfig::default()
        }
    }

    /// Adds a managed user (its file at `authorized_keys`, or the default place).
    pub fn user(mut self, name: &str, authorized_keys: Option<&Path>) -> AgentConfig {
        self.users.push(ManagedUser {
            name: name.to_owned(),
            authorized_keys: authorized_keys.map(Path::to_owned),
        });
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let path = |p: &Path| format!("{:?}", p.display().to_string());
        let mut out = String::from("[api]\n");
        let _ = writeln!(out, "base_url = {:?}", self.base_url);
        let _ = writeln!(out, "instance_id = {:?}", self.instance_id);
        let _ = writeln!(out, "token_file = {}", path(&self.token_file));
        for (key, value) in [
            ("long_poll_seconds", self.long_poll_seconds),
            ("poll_interval_seconds", self.poll_interval_seconds),
            ("backoff_max_seconds", self.backoff_max_seconds),
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("connect_timeout_seconds", self.connect_timeout_seconds),
            ("heartbeat_seconds", self.heartbeat_seconds),
        ] {
            if let Some(value) = value {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        out.push_str(&self.extra_api);
        for user in &self.users {
            let _ = write!(out, "\n[[users]]\nname = {:?}\n", user.name);
            if let Some(file) = &user.authorized_keys {
                let _ = writeln!(out, "authorized_keys = {}", path(file));
            }
        }
        match &self.sessions {
            Sessions::Default => {}
            Sessions::Off => out.push_str("\n[sessions]\nenabled = false\n"),
            Sessions::Journal => out.push_str("\n[sessions]\nlog_source = \"journal\"\n"),
            Sessions::File(file) => {
                let _ = write!(
                    out,
                    "\n[sessions]\nlog_source = \"file\"\nlog_file = {}\n",
                    path(file)
                );
            }
        }
        if self.state_dir.is_some() || self.command_group.is_some() {
            out.push_str("\n[state]\n");
            if let Some(dir) = &self.state_dir {
                let _ = writeln!(out, "dir = {}", path(dir));
            }
            if let Some(group) = &self.command_group {
                let _ = writeln!(out, "authorized_keys_command_group = {group:?}");
            }
        }
        match &self.host_keys {
            HostKeys::Default => {}
            HostKeys::Off => out.push_str("\n[host_keys]\nenabled = false\n"),
            HostKeys::Files(files) => {
                let list: Vec<String> = files.iter().map(|f| format!("{f:?}")).collect();
                let _ = write!(out, "\n[host_keys]\nfiles = [{}]\n", list.join(", "));
            }
        }
        if let Some(level) = &self.log_level {
            let _ = write!(out, "\n[log]\nlevel = {level:?}\n");
        }
        if !self.extra.is_empty() {
            out.push('\n');
            out.push_str(&self.extra);
        }
        out
    }

    /// Writes the file at `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_toml()).expect("the agent's configuration");
    }
}
