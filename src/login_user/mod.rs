//! The image's default login user, managed when the configuration has no `[[users]]`
//! (pure; the files come from [`distro_files`], the I/O edge).
//!
//! Cloud images differ: `ubuntu` on Ubuntu, `ec2-user` on Amazon Linux, `cloud-user` on
//! RHEL, `rocky`, `almalinux`, `debian`, `admin` on Debian's AWS images. The user is,
//! in this order:
//!
//! 1. cloud-init's `system_info: default_user: name:` from `/etc/cloud/cloud.cfg`, then
//!    `/etc/cloud/cloud.cfg.d/*.cfg` in lexical order, a later file overriding an
//!    earlier one as cloud-init merges them ([`cloud_cfg`] reads each file). A name
//!    that is not a valid user name, or no string at all, is ignored (and said); a
//!    file written in a form the reader does not follow is an error, never a guess.
//! 2. Else a table by os-release's `ID` ([`os_release`], [`by_os_id`]), only for an
//!    account that exists: the table is a guess about the image, cloud-init's setting a
//!    declaration (it creates that account at first boot, before the agent starts).
//! 3. Else a configuration error naming what was looked at.

pub mod cloud_cfg;
pub mod distro_files;
pub mod os_release;

use std::fmt;

use crate::config::{is_valid_user_name, Config, UserConfig};
use cloud_cfg::DefaultUserName;
use os_release::OsId;

/// cloud-init's main configuration file.
pub const CLOUD_CFG: &str = "/etc/cloud/cloud.cfg";
/// cloud-init's drop-in directory (`*.cfg`, lexical order, later wins).
pub const CLOUD_CFG_D: &str = "/etc/cloud/cloud.cfg.d";
/// os-release(5), and where it lives when `/etc/os-release` does not.
pub const OS_RELEASE: &str = "/etc/os-release";
pub const OS_RELEASE_FALLBACK: &str = "/usr/lib/os-release";

/// A file's text, with the path messages name it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFile {
    pub path: String,
    pub text: String,
}

/// What the choice is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistroFiles {
    /// cloud-init's configuration in merge order: `cloud.cfg` when present, then the
    /// `cloud.cfg.d/*.cfg` files in lexical order. Empty: cloud-init is not installed.
    pub cloud_cfg: Vec<TextFile>,
    pub os_release: Option<TextFile>,
}

/// The account managed for want of `[[users]]`, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUser {
    pub name: String,
    pub reason: Reason,
    /// Settings passed over on the way (an invalid name in a later file), to be logged.
    pub ignored: Vec<String>,
}

/// Where the login user's name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// cloud-init's `system_info: default_user: name:`, from this file.
    CloudInit { path: String },
    /// The table entry of os-release's `ID`.
    OsRelease { id: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CloudInit { path } => write!(f, "cloud-init default_user in {path}"),
            Reason::OsRelease { id } => write!(f, "os-release ID={id}"),
        }
    }
}

impl fmt::Display for LoginUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.reason)
    }
}

/// Why no login user could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum LoginUserError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path} holds more than {limit} .cfg files")]
    TooManyFiles { path: String, limit: usize },
    #[error("{path} cannot be read for cloud-init's default_user: {problem}")]
    Unsupported {
        path: String,
        #[source]
        problem: cloud_cfg::Unsupported,
    },
    #[error("looked at {}", looked_at.join("; "))]
    NotFound { looked_at: Vec<String> },
}

/// The default login user by os-release `ID`, as cloud-init's own `cloud.cfg` names it
/// for that distribution (`config/cloud.cfg.tmpl`: the `usernames` table, else the
/// distribution's name). `ID_LIKE` is not used: a derivative names its own user (Oracle
/// Linux `opc`, EuroLinux `eurolinux`, Virtuozzo `virtuozzo`, and an Ubuntu derivative
/// none at all), so borrowing its parent's would manage the wrong account.
pub fn by_os_id(id: &str) -> Option<&'static str> {
    Some(match id {
        "ubuntu" => "ubuntu",
        "debian" => "debian",
        "rhel" | "centos" => "cloud-user",
        "rocky" => "rocky",
        "almalinux" => "almalinux",
        "amzn" => "ec2-user",
        _ => return None,
    })
}

/// Chooses the login user from `files`; `account_exists` is asked only about the
/// os-release table's guess.
pub fn choose(
    files: &DistroFiles,
    account_exists: &dyn Fn(&str) -> bool,
) -> Result<LoginUser, LoginUserError> {
    let mut ignored = Vec::new();
    for file in files.cloud_cfg.iter().rev() {
        let read = cloud_cfg::default_user_name(&file.text).map_err(|problem| {
            LoginUserError::Unsupported {
                path: file.path.clone(),
                problem,
            }
        })?;
        match read {
            DefaultUserName::Absent => {}
            DefaultUserName::Text(name) if is_valid_user_name(&name) => {
                return Ok(LoginUser {
                    name,
                    reason: Reason::CloudInit {
                        path: file.path.clone(),
                    },
                    ignored,
                })
            }
            DefaultUserName::Text(name) => ignored.push(format!(
                "{}: default_user name {name:?} is not a valid user name, ignored",
                file.path
            )),
            DefaultUserName::NotText(value) => ignored.push(format!(
                "{}: default_user name `{value}` is not a string, ignored",
                file.path
            )),
        }
    }

    let mut looked_at = Vec::new();
    if files.cloud_cfg.is_empty() {
        looked_at.push(format!(
            "{CLOUD_CFG} and {CLOUD_CFG_D}/*.cfg: none present (no cloud-init)"
        ));
    } else {
        let paths: Vec<&str> = files.cloud_cfg.iter().map(|f| f.path.as_str()).collect();
        looked_at.push(format!("no default_user name in {}", paths.join(", ")));
        looked_at.extend(ignored.iter().cloned());
    }
    match &files.os_release {
        None => looked_at.push(format!(
            "{OS_RELEASE} and {OS_RELEASE_FALLBACK}: not present"
        )),
        Some(file) => match os_release::id(&file.text) {
            OsId::Missing => looked_at.push(format!("{}: no ID", file.path)),
            OsId::Invalid(value) => looked_at.push(format!(
                "{}: ID={value} is not a valid os-release ID",
                file.path
            )),
            OsId::Id(id) => match by_os_id(&id) {
                None => looked_at.push(format!(
                    "{}: ID={id}, for which no default login user is known",
                    file.path
                )),
                Some(name) if account_exists(name) => {
                    return Ok(LoginUser {
                        name: name.to_owned(),
                        reason: Reason::OsRelease { id },
                        ignored,
                    })
                }
                Some(name) => looked_at.push(format!(
                    "{}: ID={id} would mean {name}, but there is no such local account",
                    file.path
                )),
            },
        },
    }
    Err(LoginUserError::NotFound { looked_at })
}

/// `config` managing `user`: its only `[[users]]` entry, with every default.
pub fn apply(mut config: Config, user: LoginUser) -> Config {
    config.users = vec![UserConfig {
        name: user.name.clone(),
        authorized_keys: None,
        write_authorized_keys: true,
    }];
    config.login_user = Some(user);
    config
}

#[cfg(test)]
mod tests;
