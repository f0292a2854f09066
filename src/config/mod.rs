//! The configuration file: one TOML file, parsed strictly (unknown keys are errors, so a
//! typo never silently falls back to a default) and validated before anything runs.
//! Every option is documented in docs/operations.md ("Configuration"). A container can
//! give the few settings it needs in the environment instead ([`env`](mod@env)).

pub mod env;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

pub use crate::sessions::source::SourceChoice;

/// Where the daemon looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/pictor-agent/config.toml";
/// The state directory unless `[state] dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pictor-agent";
/// The group that may read the AuthorizedKeysCommand file unless `[state]
/// authorized_keys_command_group` says otherwise: the packages' `pictor-keys` account,
/// sshd's `AuthorizedKeysCommandUser` in the shipped drop-in.
pub const DEFAULT_COMMAND_GROUP: &str = "pictor-keys";

/// A configuration that is wrong, with the offending key named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration key {key}: {problem}")]
    Invalid { key: String, problem: String },
    /// No `[[users]]`, and the image's default login user cannot be told.
    #[error("no [[users]] entry, and the image's default login user cannot be found: {0}; add a [[users]] entry naming the local account whose keys are managed")]
    LoginUser(#[from] crate::login_user::LoginUserError),
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub api: ApiConfig,
    /// Empty as parsed when the file has no `[[users]]`: then
    /// [`crate::login_user::distro_files::fill_in`] puts the image's default login user
    /// here, and in `login_user`, before anything runs.
    pub users: Vec<UserConfig>,
    /// The image's default login user, managed for want of `[[users]]`, with why.
    pub login_user: Option<crate::login_user::LoginUser>,
    pub sessions: SessionsConfig,
    pub state_dir: PathBuf,
    /// The group given read access to `STATE_DIR/authorized-keys.json`.
    pub command_group: String,
    pub log_level: String,
    pub host_keys: HostKeysConfig,
}

/// `[host_keys]`: which host key files are published in the status.
#[derive(Debug, Clone, PartialEq)]
pub struct HostKeysConfig {
    pub enabled: bool,
    /// Absolute glob patterns whose directory part is literal (it is watched).
    pub files: Vec<String>,
}

impl HostKeysConfig {
    /// The patterns, parsed (validation made sure they parse).
    pub fn patterns(&self) -> Vec<crate::host_keys::scan::Pattern> {
        self.files
            .iter()
            .filter_map(|f| crate::host_keys::scan::Pattern::parse(f))
            .collect()
    }
}

/// Most `[host_keys] files` patterns.
pub const MAX_HOST_KEY_PATTERNS: usize = 32;

/// `[api]`: how to reach the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub base_url: Url,
    pub instance_id: String,
    pub token: crate::api::token::TokenSource,
    /// 0 means plain polling.
    pub long_poll: Duration,
    pub poll_interval: Duration,
    pub ca_file: Option<PathBuf>,
    pub max_response_bytes: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub backoff_max: Duration,
    pub heartbeat: Duration,
}

/// `[sessions]`: reporting who logged in with which key.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionsConfig {
    pub enabled: bool,
    pub log_source: SourceChoice,
    /// `None`: `/var/log/auth.log`, or `/var/log/secure` where that exists.
    pub log_file: Option<PathBuf>,
    /// The syslog socket the agent binds when it is the source (`/dev/log`).
    pub syslog_socket: PathBuf,
    pub outbox_max_events: usize,
    /// End the live sessions of a key when it leaves the set in force.
    pub terminate_on_revoke: bool,
}

/// `[[users]]`: a local account whose keys are managed.
#[derive(Debug, Clone, PartialEq)]
pub struct UserConfig {
    pub name: String,
    /// Absolute path override; `None` means `~name/.ssh/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
    /// False: keys reach sshd only through `AuthorizedKeysCommand`; no file is written
    /// (a managed block left from before is removed once).
    pub write_authorized_keys: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: RawApi,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    host_keys: RawHostKeys,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostKeys {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_host_key_files")]
    files: Vec<String>,
}

impl Default for RawHostKeys {
    fn default() -> Self {
        RawHostKeys {
            enabled: true,
            files: default_host_key_files(),
        }
    }
}

fn default_host_key_files() -> Vec<String> {
    vec!["/etc/ssh/ssh_host_*_key.pub".to_owned()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: String,
    instance_id: String,
    token_file: PathBuf,
    #[serde(default = "default_long_poll")]
    long_poll_seconds: u64,
    #[serde(default = "default_poll_interval")]
    poll_interval_seconds: u64,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: u64,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_seconds: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_seconds: u64,
    #[serde(default = "default_backoff_max")]
    backoff_max_seconds: u64,
    #[serde(default = "default_heartbeat")]
    heartbeat_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_source")]
    log_source: SourceChoice,
    log_file: Option<PathBuf>,
    #[serde(default = "default_syslog_socket")]
    syslog_socket: PathBuf,
    #[serde(default = "default_outbox_max")]
    outbox_max_events: u64,
    #[serde(default = "default_true")]
    terminate_on_revoke: bool,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            enabled: true,
            log_source: SourceChoice::Auto,
            log_file: None,
            syslog_socket: default_syslog_socket(),
            outbox_max_events: default_outbox_max(),
            terminate_on_revoke: true,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_source() -> SourceChoice {
    SourceChoice::Auto
}
fn default_syslog_socket() -> PathBuf {
    PathBuf::from(crate::sessions::source::DEFAULT_SYSLOG_SOCKET)
}
fn default_outbox_max() -> u64 {
    100_000
}
fn default_heartbeat() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    authorized_keys: Option<PathBuf>,
    #[serde(default = "default_true")]
    write_authorized_keys: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default = "default_state_dir")]
    dir: PathBuf,
    #[serde(default = "default_command_group")]
    authorized_keys_command_group: String,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            dir: default_state_dir(),
            authorized_keys_command_group: default_command_group(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_log_level(),
        }
    }
}

fn default_long_poll() -> u64 {
    60
}
fn default_poll_interval() -> u64 {
    30
}
fn default_max_response_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    30
}
fn default_backoff_max() -> u64 {
    300
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_command_group() -> String {
    DEFAULT_COMMAND_GROUP.to_owned()
}
fn default_log_level() -> String {
    "info".to_owned()
}

/// Where the running configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The TOML file (`--config`, else [`DEFAULT_PATH`]).
    File(PathBuf),
    /// The `PICTOR_*` variables ([`env`](mod@env)): `PICTOR_API_URL` set and no `--config`.
    Environment,
}

impl ConfigSource {
    /// The environment's when `PICTOR_API_URL` is set and no file was named, else the file.
    pub fn choose(path: &Path, path_given: bool) -> ConfigSource {
        if !path_given && std::env::var_os(env::API_URL).is_some() {
            ConfigSource::Environment
        } else {
            ConfigSource::File(path.to_owned())
        }
    }

    /// How it is named in messages.
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Environment => "the PICTOR_* environment variables".to_owned(),
        }
    }

    /// Loads and validates the configuration, with the warnings it comes with (the
    /// environment's); the managed users are not filled in yet.
    pub fn load(&self) -> Result<(Config, Vec<String>), ConfigError> {
        match self {
            ConfigSource::File(path) => load(path).map(|c| (c, Vec::new())),
            ConfigSource::Environment => {
                let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let accounts = || {
                    std::fs::read_to_string("/etc/passwd")
                        .map(|text| env::login_accounts(&text))
                        .unwrap_or_default()
                };
                let found =
                    env::from_env(&get, &accounts)?.ok_or_else(|| ConfigError::Invalid {
                        key: env::API_URL.to_owned(),
                        problem: "is no longer set".into(),
                    })?;
                Ok((found.config, found.warnings))
            }
        }
    }
}

/// Reads and validates the configuration file at `path`. Without `[[users]]`, `users`
/// is empty: the commands that manage users run
/// [`crate::login_user::distro_files::fill_in`] on it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Syntax { message, .. } => ConfigError::Syntax {
            path: path.to_owned(),
            message,
        },
        other => other,
    })
}

/// Parses and validates configuration text (pure: touches no file).
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: PathBuf::new(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    validate(raw)
}

/// True when `url` points at this machine, where plain HTTP is allowed.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Local account names as `useradd` accepts them.
pub fn is_valid_user_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes.iter().enumerate().all(|(i, &b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'_'
                || b == b'-'
                || b == b'.'
                || (b == b'$' && i == bytes.len() - 1)
        })
}

/// Ids as the contract defines them: `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let api = raw.api;
    let base_url = Url::parse(&api.base_url)
        .map_err(|e| invalid("api.base_url", format!("not a URL ({e})")))?;
    match base_url.scheme() {
        "https" => {}
        "http" if is_loopback(&base_url) => {}
        "http" => {
            return Err(invalid(
                "api.base_url",
                "plain http:// is only allowed for loopback addresses (127.0.0.1, [::1], localhost); use https://",
            ))
        }
        other => {
            return Err(invalid(
                "api.base_url",
                format!("scheme {other}: is not supported; use https://"),
            ))
        }
    }
    if base_url.query().is_some() || base_url.fragment().is_some() {
        return Err(invalid(
            "api.base_url",
            "must not carry a query or fragment",
        ));
    }
    if !is_valid_id(&api.instance_id) {
        return Err(invalid(
            "api.instance_id",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ));
    }
    absolute("api.token_file", &api.token_file)?;
    if let Some(ca) = &api.ca_file {
        absolute("api.ca_file", ca)?;
    }
    if api.long_poll_seconds > 300 {
        return Err(invalid(
            "api.long_poll_seconds",
            "must be between 0 (plain polling) and 300, the contract's maximum wait",
        ));
    }
    if !(1..=86_400).contains(&api.poll_interval_seconds) {
        return Err(invalid(
            "api.poll_interval_seconds",
            "must be between 1 and 86400",
        ));
    }
    if !(1024..=256 * 1024 * 1024).contains(&api.max_response_bytes) {
        return Err(invalid(
            "api.max_response_bytes",
            "must be between 1024 and 268435456",
        ));
    }
    if !(1..=300).contains(&api.connect_timeout_seconds) {
        return Err(invalid(
            "api.connect_timeout_seconds",
            "must be between 1 and 300",
        ));
    }
    if !(1..=600).contains(&api.request_timeout_seconds) {
        return Err(invalid(
            "api.request_timeout_seconds",
            "must be between 1 and 600",
        ));
    }
    if !(1..=86_400).contains(&api.backoff_max_seconds) {
        return Err(invalid(
            "api.backoff_max_seconds",
            "must be between 1 and 86400",
        ));
    }

    if !(5..=3600).contains(&api.heartbeat_seconds) {
        return Err(invalid(
            "api.heartbeat_seconds",
            "must be between 5 and 3600",
        ));
    }
    if let Some(path) = &raw.sessions.log_file {
        absolute("sessions.log_file", path)?;
    }
    absolute("sessions.syslog_socket", &raw.sessions.syslog_socket)?;
    if raw.sessions.syslog_socket.file_name().is_none()
        || raw.sessions.syslog_socket.as_os_str().len() > 107
    {
        return Err(invalid(
            "sessions.syslog_socket",
            "must name a socket file, in at most 107 bytes (a socket address's limit)",
        ));
    }
    if !(100..=10_000_000).contains(&raw.sessions.outbox_max_events) {
        return Err(invalid(
            "sessions.outbox_max_events",
            "must be between 100 and 10000000",
        ));
    }

    let mut users: Vec<UserConfig> = Vec::with_capacity(raw.users.len());
    for (index, user) in raw.users.into_iter().enumerate() {
        let key = format!("users[{index}].name");
        if !is_valid_user_name(&user.name) {
            return Err(invalid(
                key,
                format!("{:?} is not a valid local user name", user.name),
            ));
        }
        if users.iter().any(|u| u.name == user.name) {
            return Err(invalid(key, format!("user {} is listed twice", user.name)));
        }
        if let Some(path) = &user.authorized_keys {
            let key = format!("users[{index}].authorized_keys");
            absolute(&key, path)?;
            if path.file_name().is_none() || path.parent().is_none() {
                return Err(invalid(key, "must name a file, not a directory"));
            }
            if users
                .iter()
                .any(|u| u.authorized_keys.as_ref() == Some(path))
            {
                return Err(invalid(
                    key,
                    format!("{} is used by two users", path.display()),
                ));
            }
        }
        users.push(UserConfig {
            name: user.name,
            authorized_keys: user.authorized_keys,
            write_authorized_keys: user.write_authorized_keys,
        });
    }
    absolute("state.dir", &raw.state.dir)?;
    // Group names follow the same rules as user names (useradd, groupadd, sysusers).
    if !is_valid_user_name(&raw.state.authorized_keys_command_group) {
        return Err(invalid(
            "state.authorized_keys_command_group",
            format!(
                "{:?} is not a valid group name",
                raw.state.authorized_keys_command_group
            ),
        ));
    }
    if !is_valid_log_filter(&raw.log.level) {
        return Err(invalid(
            "log.level",
            "must be a level (error, warn, info, debug, trace) or a filter such as \"pictor_agent=debug\"",
        ));
    }

    if raw.host_keys.files.len() > MAX_HOST_KEY_PATTERNS {
        return Err(invalid(
            "host_keys.files",
            format!("at most {MAX_HOST_KEY_PATTERNS} patterns"),
        ));
    }
    if let Some(bad) = raw
        .host_keys
        .files
        .iter()
        .find(|f| crate::host_keys::scan::Pattern::parse(f).is_none())
    {
        return Err(invalid(
            "host_keys.files",
            format!("{bad:?} must be an absolute path whose directory has no wildcard (it is watched) and whose file name is a glob pattern, like \"/etc/ssh/ssh_host_*_key.pub\""),
        ));
    }

    Ok(Config {
        api: ApiConfig {
            base_url,
            instance_id: api.instance_id,
            token: crate::api::token::TokenSource::File(api.token_file),
            long_poll: Duration::from_secs(api.long_poll_seconds),
            poll_interval: Duration::from_secs(api.poll_interval_seconds),
            ca_file: api.ca_file,
            max_response_bytes: api.max_response_bytes as usize,
            connect_timeout: Duration::from_secs(api.connect_timeout_seconds),
            request_timeout: Duration::from_secs(api.request_timeout_seconds),
            backoff_max: Duration::from_secs(api.backoff_max_seconds),
            heartbeat: Duration::from_secs(api.heartbeat_seconds),
        },
        sessions: SessionsConfig {
            enabled: raw.sessions.enabled,
            log_source: raw.sessions.log_source,
            log_file: raw.sessions.log_file,
            syslog_socket: raw.sessions.syslog_socket,
            outbox_max_events: raw.sessions.outbox_max_events as usize,
            terminate_on_revoke: raw.sessions.terminate_on_revoke,
        },
        users,
        login_user: None,
        state_dir: raw.state.dir,
        command_group: raw.state.authorized_keys_command_group,
        log_level: raw.log.level,
        host_keys: HostKeysConfig {
            enabled: raw.host_keys.enabled,
            files: raw.host_keys.files,
        },
    })
}

/// A level, or comma-separated `target=level` directives (`info,pictor_agent=debug`).
fn is_valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    !filter.is_empty()
        && filter.split(',').all(|directive| {
            let level = match directive.split_once('=') {
                Some((target, level)) => {
                    if target.is_empty()
                        || !target
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    {
                        return false;
                    }
                    level
                }
                None => directive,
            };
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        })
        // What the logger will parse it with, so a valid file never logs at a default.
        && filter.parse::<tracing_subscriber::filter::Targets>().is_ok()
}

fn absolute(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{} must be an absolute path", path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[api]
base_url = "https://api.pictor.example"
instance_id = "inst_01"
token_file = "/etc/pictor-agent/token"

[[users]]
name = "ubuntu"
"#;

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.api.long_poll, Duration::from_secs(60));
        assert_eq!(config.api.poll_interval, Duration::from_secs(30));
        assert_eq!(config.api.max_response_bytes, 4 * 1024 * 1024);
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/pictor-agent"));
        assert_eq!(config.command_group, "pictor-keys");
        assert_eq!(config.users[0].authorized_keys, None);
        assert_eq!(config.log_level, "info");
        assert_eq!(config.api.heartbeat, Duration::from_secs(60));
        assert_eq!(config.sessions.log_source, SourceChoice::Auto);
        assert!(config.sessions.enabled);
    }

    #[test]
    fn sessions_options_are_checked() {
        let bad = format!("{MINIMAL}\n[sessions]\nlog_source = \"syslog\"\n");
        assert!(error_of(&bad).contains("log_source"));
        let relative = format!("{MINIMAL}\n[sessions]\nlog_file = \"auth.log\"\n");
        assert!(error_of(&relative).contains("sessions.log_file"));
        let good = format!(
            "{MINIMAL}\n[sessions]\nlog_source = \"file\"\nlog_file = \"/var/log/secure\"\n"
        );
        assert_eq!(
            parse(&good).expect("valid").sessions.log_source,
            SourceChoice::File
        );
    }

    fn error_of(text: &str) -> String {
        parse(text).expect_err("must be rejected").to_string()
    }

    #[test]
    fn plain_http_is_refused_except_on_loopback() {
        let remote = MINIMAL.replace("https://api.pictor.example", "http://api.pictor.example");
        assert!(error_of(&remote).contains("api.base_url"));
        for url in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:9",
        ] {
            let local = MINIMAL.replace("https://api.pictor.example", url);
            assert!(parse(&local).is_ok(), "{url} should be allowed");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_problem() {
        let cases = [
            (MINIMAL.replace("inst_01", "inst 01"), "api.instance_id"),
            (
                MINIMAL.replace("/etc/pictor-agent/token", "token"),
                "api.token_file",
            ),
            (
                MINIMAL.replace("name = \"ubuntu\"", "name = \"Ubuntu;rm\""),
                "users[0].name",
            ),
        ];
        for (text, key) in &cases {
            assert!(error_of(text).contains(key), "{key}: {}", error_of(text));
        }
        let long = MINIMAL.replace("[[users]]", "long_poll_seconds = 301\n[[users]]");
        assert!(error_of(&long).contains("api.long_poll_seconds"));
    }

    #[test]
    fn unknown_keys_are_errors_not_silent_defaults() {
        let typo = MINIMAL.replace("[[users]]", "long_pol_seconds = 5\n[[users]]");
        assert!(error_of(&typo).contains("long_pol_seconds"));
    }

    #[test]
    fn users_are_optional_unique_and_paths_absolute() {
        let none = MINIMAL.replace("[[users]]\nname = \"ubuntu\"\n", "");
        let parsed = parse(&none).expect("no [[users]] is valid");
        assert!(parsed.users.is_empty());
        assert_eq!(parsed.login_user, None, "parsing reads no other file");
        let empty = format!("users = []\n{none}");
        assert!(parse(&empty).expect("valid").users.is_empty());
        let twice = format!("{MINIMAL}[[users]]\nname = \"ubuntu\"\n");
        assert!(error_of(&twice).contains("listed twice"));
        let relative = format!("{MINIMAL}authorized_keys = \"keys\"\n");
        assert!(error_of(&relative).contains("users[0].authorized_keys"));
    }

    #[test]
    fn the_packaged_file_is_valid_and_leaves_the_users_to_the_image() {
        let shipped = include_str!("../../packaging/config.toml");
        let config = parse(shipped).expect("packaging/config.toml is valid");
        assert!(
            config.users.is_empty(),
            "no [[users]]: the image's default login user is managed"
        );
        // Its commented example, uncommented, is valid too.
        let example = shipped
            .replace(
                "#[[users]]\n#name = \"ubuntu\"",
                "[[users]]\nname = \"ubuntu\"",
            )
            .replace("#authorized_keys = ", "authorized_keys = ");
        let users = parse(&example).expect("the example is valid").users;
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].name, "ubuntu");
        assert!(users[0].authorized_keys.is_some());
    }

    #[test]
    fn the_command_group_is_configurable_and_checked() {
        let set = format!("{MINIMAL}\n[state]\nauthorized_keys_command_group = \"sshkeys\"\n");
        assert_eq!(parse(&set).expect("valid").command_group, "sshkeys");
        for bad in [
            "",
            "Keys",
            "a b",
            "-x",
            "0123456789012345678901234567890123",
        ] {
            let text = format!("{MINIMAL}\n[state]\nauthorized_keys_command_group = {bad:?}\n");
            assert!(
                error_of(&text).contains("state.authorized_keys_command_group"),
                "{bad:?}: {}",
                error_of(&text)
            );
        }
    }

    #[test]
    fn zero_long_poll_means_plain_polling() {
        let text = MINIMAL.replace(
            "[[users]]",
            "long_poll_seconds = 0\npoll_interval_seconds = 5\n[[users]]",
        );
        let config = parse(&text).expect("valid");
        assert_eq!(config.api.long_poll, Duration::ZERO);
        assert_eq!(config.api.poll_interval, Duration::from_secs(5));
    }

    #[test]
    fn bad_log_level_is_named() {
        for bad in ["loud", "pictor_agent=", "a b=info"] {
            let text = format!("{MINIMAL}\n[log]\nlevel = \"{bad}\"\n");
            assert!(error_of(&text).contains("log.level"), "{bad}");
        }
        let good = format!("{MINIMAL}\n[log]\nlevel = \"warn,pictor_agent=debug\"\n");
        assert!(parse(&good).is_ok());
    }
}
