//! The distribution's files the login user is chosen from, read (the I/O edge of
//! [`crate::login_user`]): cloud-init's `/etc/cloud/cloud.cfg` and
//! `/etc/cloud/cloud.cfg.d/*.cfg`, and `/etc/os-release` (else `/usr/lib/os-release`).
//! Also where a configuration without `[[users]]` gets its user ([`fill_in`]).

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use super::{
    apply, choose, DistroFiles, LoginUserError, TextFile, CLOUD_CFG, CLOUD_CFG_D, OS_RELEASE,
    OS_RELEASE_FALLBACK,
};
use crate::config::{Config, ConfigError};

/// The largest file read (cloud-init's own `cloud.cfg` is about 10 KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The most `.cfg` files read from `cloud.cfg.d`.
pub const MAX_CFG_FILES: usize = 1000;

/// `config` as the agent runs it: unchanged with `[[users]]`; else managing the image's
/// default login user, chosen from the files under `/`.
pub fn fill_in(config: Config) -> Result<Config, ConfigError> {
    fill_in_at(config, Path::new("/"))
}

/// [`fill_in`] with the files under `root` (`root/etc/cloud/cloud.cfg`, ...).
pub fn fill_in_at(config: Config, root: &Path) -> Result<Config, ConfigError> {
    if !config.users.is_empty() {
        return Ok(config);
    }
    let files = read(root)?;
    let user = choose(&files, &crate::users::account_exists)?;
    Ok(apply(config, user))
}

/// Reads the files under `root`, named in messages by their path under `/`. A missing
/// file or directory is no error; an unreadable one is (cloud-init reads them, so a
/// setting the agent cannot see could name another user).
pub fn read(root: &Path) -> Result<DistroFiles, LoginUserError> {
    let mut cloud_cfg = Vec::new();
    if let Some(file) = read_text(root, CLOUD_CFG)? {
        cloud_cfg.push(file);
    }
    for name in cfg_names(root)? {
        let shown = format!("{CLOUD_CFG_D}/{}", name.to_string_lossy());
        let path = under(root, CLOUD_CFG_D).join(&name);
        // As cloud-init: only what is a regular file once symlinks are followed.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            if let Some(file) = read_text(root, &shown)? {
                cloud_cfg.push(file);
            }
        }
    }
    let os_release = match read_text(root, OS_RELEASE)? {
        Some(file) => Some(file),
        None => read_text(root, OS_RELEASE_FALLBACK)?,
    };
    Ok(DistroFiles {
        cloud_cfg,
        os_release,
    })
}

fn under(root: &Path, shown: &str) -> std::path::PathBuf {
    root.join(shown.trim_start_matches('/'))
}

/// The `*.cfg` names in `cloud.cfg.d`, in cloud-init's order (sorted, dot files too).
fn cfg_names(root: &Path) -> Result<Vec<OsString>, LoginUserError> {
    let dir = under(root, CLOUD_CFG_D);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(Vec::new()),
        Err(source) => {
            return Err(LoginUserError::Read {
                path: CLOUD_CFG_D.to_owned(),
                source,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| LoginUserError::Read {
            path: CLOUD_CFG_D.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        if name.as_encoded_bytes().ends_with(b".cfg") {
            if names.len() == MAX_CFG_FILES {
                return Err(LoginUserError::TooManyFiles {
                    path: CLOUD_CFG_D.to_owned(),
                    limit: MAX_CFG_FILES,
                });
            }
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names)
}

fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// The text of `root` + `shown`; `None` when there is no such file.
fn read_text(root: &Path, shown: &str) -> Result<Option<TextFile>, LoginUserError> {
    let read_error = |source| LoginUserError::Read {
        path: shown.to_owned(),
        source,
    };
    let file = match std::fs::File::open(under(root, shown)) {
        Ok(file) => file,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoginUserError::TooLarge {
            path: shown.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    Ok(Some(TextFile {
        path: shown.to_owned(),
        text,
    }))
}
