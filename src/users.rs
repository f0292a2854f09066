//! Local accounts whose keys are managed, and where their managed file lives.

use std::ffi::OsString;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User};

use crate::config::UserConfig;

/// Where a user's managed file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `HOME/.ssh/NAME`: `.ssh` is created (0700, owned by the user) when missing and
    /// must never be a symlink.
    SshDirUnderHome { home: PathBuf },
    /// A configured path: its directory must exist and must not be a symlink.
    Directory { dir: PathBuf },
}

/// A local account and its managed `authorized_keys` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub location: Location,
    pub file_name: OsString,
    /// False: the file only ever loses its managed block; keys go through the command.
    pub write_file: bool,
}

impl ManagedUser {
    /// The directory holding the managed file.
    pub fn dir(&self) -> PathBuf {
        match &self.location {
            Location::SshDirUnderHome { home } => home.join(".ssh"),
            Location::Directory { dir } => dir.clone(),
        }
    }

    /// The managed file's full path.
    pub fn path(&self) -> PathBuf {
        self.dir().join(&self.file_name)
    }
}

/// A configured user that cannot be managed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0}: no such local account")]
    Unknown(String),
    #[error("user {user}: cannot look the account up: {source}")]
    Lookup { user: String, source: nix::Error },
}

/// True when `name` is an account of the account database (NSS); a lookup that fails
/// is logged and counts as no account.
pub fn account_exists(name: &str) -> bool {
    match User::from_name(name) {
        Ok(found) => found.is_some(),
        Err(e) => {
            tracing::warn!(user = %name, "cannot look the account up: {e}");
            false
        }
    }
}

/// Looks a configured user up in the account database.
pub fn resolve(config: &UserConfig) -> Result<ManagedUser, UserError> {
    let account = User::from_name(&config.name)
        .map_err(|source| UserError::Lookup {
            user: config.name.clone(),
            source,
        })?
        .ok_or_else(|| UserError::Unknown(config.name.clone()))?;
    let (location, file_name) = match &config.authorized_keys {
        Some(path) => (
            Location::Directory {
                dir: path
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/")),
            },
            path.file_name().map(OsString::from).unwrap_or_default(),
        ),
        None => (
            Location::SshDirUnderHome { home: account.dir },
            OsString::from("authorized_keys"),
        ),
    };
    Ok(ManagedUser {
        name: config.name.clone(),
        uid: account.uid,
        gid: account.gid,
        location,
        file_name,
        write_file: config.write_authorized_keys,
    })
}
