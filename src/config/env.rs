//! The configuration from the environment, for container images that receive everything
//! at start (the RunPod/Vast kind): `PICTOR_API_URL`, `PICTOR_INSTANCE_ID`,
//! `PICTOR_TOKEN_FILE` or `PICTOR_TOKEN`, and optionally `PICTOR_USERS`. With
//! `PICTOR_API_URL` set, `pictor-agent run` reads no configuration file unless
//! `--config` names one. Everything else takes the file's defaults, and goes through
//! the same validation; an error names the variable. Pure: the variables and the
//! account database come in as arguments.

use std::path::PathBuf;

use super::{
    validate, Config, ConfigError, RawApi, RawConfig, RawHostKeys, RawLog, RawSessions, RawState,
    RawUser,
};
use crate::api::token::TokenSource;

pub const API_URL: &str = "PICTOR_API_URL";
pub const INSTANCE_ID: &str = "PICTOR_INSTANCE_ID";
pub const TOKEN_FILE: &str = "PICTOR_TOKEN_FILE";
pub const TOKEN: &str = "PICTOR_TOKEN";
pub const USERS: &str = "PICTOR_USERS";

/// A configuration built from the environment, with what to warn about at start.
#[derive(Debug)]
pub struct FromEnv {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The configuration the environment gives, or `None` when `PICTOR_API_URL` is unset
/// (the configuration file is then read as always). `accounts`: the local accounts a
/// person logs in to (see [`login_accounts`]), for `PICTOR_USERS`'s default.
pub fn from_env(
    get: &dyn Fn(&str) -> Option<String>,
    accounts: &dyn Fn() -> Vec<String>,
) -> Result<Option<FromEnv>, ConfigError> {
    let Some(base_url) = get(API_URL) else {
        return Ok(None);
    };
    let missing = |name: &str, what: &str| ConfigError::Invalid {
        key: name.to_owned(),
        problem: format!("must be set when {API_URL} is ({what})"),
    };
    let instance_id = get(INSTANCE_ID).ok_or_else(|| missing(INSTANCE_ID, "the instance's id"))?;
    let mut warnings = Vec::new();
    let token = match (get(TOKEN_FILE), get(TOKEN)) {
        (Some(file), other) => {
            if other.is_some() {
                warnings.push(format!(
                    "both {TOKEN_FILE} and {TOKEN} are set: the file is used, {TOKEN} ignored"
                ));
            }
            TokenSource::File(PathBuf::from(file))
        }
        (None, Some(token)) => {
            warnings.push(format!(
                "the token comes from {TOKEN}: it is never logged, but every process that \
                 inherited it (PID 1, sshd, this agent) shows it in /proc/PID/environ to \
                 its own uid; prefer {TOKEN_FILE} naming a file of mode 0600"
            ));
            TokenSource::Environment(token)
        }
        (None, None) => return Err(missing(TOKEN_FILE, "or PICTOR_TOKEN: the instance's token")),
    };
    let users: Vec<String> = match get(USERS) {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
        None => default_users(&accounts()),
    };
    if users.is_empty() {
        return Err(ConfigError::Invalid {
            key: USERS.to_owned(),
            problem: "names no user (comma-separated local account names)".into(),
        });
    }
    let raw = RawConfig {
        api: RawApi {
            base_url,
            instance_id,
            // Checked to be absolute below; the environment's token is carried apart.
            token_file: match &token {
                TokenSource::File(path) => path.clone(),
                TokenSource::Environment(_) => PathBuf::from("/"),
            },
            long_poll_seconds: super::default_long_poll(),
            poll_interval_seconds: super::default_poll_interval(),
            ca_file: None,
            max_response_bytes: super::default_max_response_bytes(),
            connect_timeout_seconds: super::default_connect_timeout(),
            request_timeout_seconds: super::default_request_timeout(),
            backoff_max_seconds: super::default_backoff_max(),
            heartbeat_seconds: super::default_heartbeat(),
        },
        users: users
            .into_iter()
            .map(|name| RawUser {
                name,
                authorized_keys: None,
                write_authorized_keys: true,
            })
            .collect(),
        // The container case: the agent binds the syslog socket (nothing else listens
        // there in such images: no journald, no rsyslog).
        sessions: RawSessions {
            log_source: super::SourceChoice::SyslogSocket,
            ..RawSessions::default()
        },
        // No AuthorizedKeysCommand in such images (the packages' sshd drop-in is not
        // there), and no `pictor-keys` group: the command file stays root's.
        state: RawState {
            authorized_keys_command_group: "root".to_owned(),
            ..RawState::default()
        },
        log: RawLog::default(),
        host_keys: RawHostKeys::default(),
    };
    let mut config = validate(raw).map_err(named_by_variable)?;
    config.api.token = token;
    Ok(Some(FromEnv { config, warnings }))
}

/// `root`, and the image's one login account when there is exactly one.
fn default_users(accounts: &[String]) -> Vec<String> {
    let mut users = vec!["root".to_owned()];
    if let [only] = accounts {
        if only != "root" {
            users.push(only.clone());
        }
    }
    users
}

/// The accounts of `/etc/passwd` a person logs in to: a uid from 1000 to 59999 (the
/// `login.defs` defaults every distribution ships) and a shell that is not `nologin` or
/// `false`.
pub fn login_accounts(passwd: &str) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, uid, _, _, _, shell] = fields.as_slice() else {
                return None;
            };
            let uid: u32 = uid.parse().ok()?;
            let shell = shell.rsplit('/').next().unwrap_or_default();
            ((1000..60000).contains(&uid) && !matches!(shell, "nologin" | "false" | ""))
                .then(|| (*name).to_owned())
        })
        .collect()
}

/// A validation error names the variable that set the key.
fn named_by_variable(error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid { key, problem } => {
            let variable = match key.as_str() {
                "api.base_url" => API_URL,
                "api.instance_id" => INSTANCE_ID,
                "api.token_file" => TOKEN_FILE,
                k if k.starts_with("users[") => USERS,
                _ => return ConfigError::Invalid { key, problem },
            };
            ConfigError::Invalid {
                key: variable.to_owned(),
                problem,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn none() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn without_the_api_url_the_file_is_read() {
        let found = from_env(&env(&[(INSTANCE_ID, "i")]), &none).expect("no error");
        assert!(found.is_none());
    }

    #[test]
    fn the_variables_make_a_whole_configuration_with_the_files_defaults() {
        let vars = env(&[
            (API_URL, "https://api.pictor.example"),
            (INSTANCE_ID, "pod-7"),
            (TOKEN_FILE, "/run/secrets/pictor-token"),
        ]);
        let found = from_env(&vars, &|| vec!["ubuntu".to_owned()])
            .expect("valid")
            .expect("set");
        let config = found.config;
        assert!(found.warnings.is_empty());
        assert_eq!(config.api.instance_id, "pod-7");
        assert_eq!(
            config.api.token,
            TokenSource::File("/run/secrets/pictor-token".into())
        );
        let names: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "ubuntu"], "root and the one login account");
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/pictor-agent"));
        assert_eq!(config.command_group, "root");
        assert_eq!(
            config.sessions.log_source,
            super::super::SourceChoice::SyslogSocket
        );
        assert_eq!(config.sessions.syslog_socket, PathBuf::from("/dev/log"));
    }

    #[test]
    fn two_login_accounts_leave_root_alone_and_users_can_be_named() {
        let vars = [
            (API_URL, "http://127.0.0.1:8080"),
            (INSTANCE_ID, "i"),
            (TOKEN, "t0ken"),
        ];
        let two = || vec!["alice".to_owned(), "bob".to_owned()];
        let found = from_env(&env(&vars), &two).expect("valid").expect("set");
        let names: Vec<String> = found.config.users.iter().map(|u| u.name.clone()).collect();
        assert_eq!(names, ["root"]);
        assert_eq!(
            found.config.api.token,
            TokenSource::Environment("t0ken".into())
        );
        assert!(
            found.warnings[0].contains("/proc/PID/environ"),
            "the environment's token is said to be exposed"
        );
        let mut named = vars.to_vec();
        named.push((USERS, " alice, bob ,"));
        let found = from_env(&env(&named), &two).expect("valid").expect("set");
        let names: Vec<String> = found.config.users.iter().map(|u| u.name.clone()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn errors_name_the_variable_and_never_the_token() {
        let base = [(API_URL, "https://a.example"), (INSTANCE_ID, "i")];
        let error = |extra: &[(&str, &str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            from_env(&env(&vars), &none)
                .expect_err("invalid")
                .to_string()
        };
        assert!(error(&[]).contains(TOKEN_FILE));
        assert!(error(&[(TOKEN_FILE, "relative/token")]).contains(TOKEN_FILE));
        assert!(error(&[(TOKEN, "x"), (USERS, "Bad;Name")]).contains(USERS));
        assert!(error(&[(TOKEN, "x"), (USERS, ",")]).contains(USERS));
        let url = from_env(
            &env(&[
                (API_URL, "http://api.example"),
                (INSTANCE_ID, "i"),
                (TOKEN, "s3cret"),
            ]),
            &none,
        )
        .expect_err("plain http")
        .to_string();
        assert!(url.contains(API_URL) && !url.contains("s3cret"), "{url}");
        let id = from_env(
            &env(&[
                (API_URL, "https://a.example"),
                (INSTANCE_ID, "a b"),
                (TOKEN, "x"),
            ]),
            &none,
        )
        .expect_err("bad id")
        .to_string();
        assert!(id.contains(INSTANCE_ID), "{id}");
        let both = from_env(
            &env(&[
                (API_URL, "https://a.example"),
                (INSTANCE_ID, "i"),
                (TOKEN, "x"),
                (TOKEN_FILE, "/t"),
            ]),
            &none,
        )
        .expect("valid")
        .expect("set");
        assert_eq!(both.config.api.token, TokenSource::File("/t".into()));
        assert!(both.warnings[0].contains("ignored"));
    }

    #[test]
    fn login_accounts_are_people_not_services() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                      sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n\
                      ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n\
                      svc:x:1001:1001::/srv:/bin/false\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      broken line\n";
        assert_eq!(login_accounts(passwd), ["ubuntu"]);
    }
}
