//! The agent's memory on disk: the last key set applied, so a restart without network
//! keeps the keys in force and still honours expiry. Written atomically and durably.

use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::durable::{self, FileMode};
use crate::enforce::files::FileReport;
use crate::keys::KeySet;

/// File name of the applied key set inside the state directory.
pub const APPLIED_FILE: &str = "applied.json";
/// Format version of [`Applied`]; a file of another version is not trusted.
pub const FORMAT: u32 = 1;

/// What is in force, as last applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub format: u32,
    pub key_set: KeySet,
    #[serde(with = "time::serde::rfc3339")]
    pub applied_at: OffsetDateTime,
    /// The key list's ETag, for `If-None-Match`.
    pub etag: Option<String>,
}

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({message}); it is ignored until the next successful fetch")]
    Damaged { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: durable::ReplaceError,
    },
}

/// Reads the last applied set; `None` when there is none yet.
pub fn load(dir: &Path) -> Result<Option<Applied>, StateError> {
    let path = dir.join(APPLIED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let applied: Applied = serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if applied.format != FORMAT {
        return Err(StateError::Damaged {
            path,
            message: format!("unknown format {}", applied.format),
        });
    }
    Ok(Some(applied))
}

/// The state directory's mode when the agent creates it: 0711, so the `authorized-keys`
/// command (run by sshd as its own unprivileged account) can reach its file while no
/// other account can list the directory. Every file in it is 0600, except that file:
/// 0640, readable by that account's group (see [`crate::authorized_keys::command`]).
pub const DIR_MODE: Mode = Mode::S_IRWXU.union(Mode::S_IXGRP).union(Mode::S_IXOTH);

/// Creates the state directory (and missing parents) with mode [`DIR_MODE`] exactly,
/// whatever the umask, when it is missing. An existing one is left as it is (under
/// systemd, `StateDirectoryMode=` sets it).
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    durable::ensure_dir(dir, DIR_MODE).map_err(|source| StateError::Dir {
        path: dir.to_owned(),
        source,
    })
}

/// Replaces the last applied set on disk (creating the directory, see [`ensure_dir`]).
pub fn save(dir: &Path, applied: &Applied) -> Result<(), StateError> {
    begin_save(dir, applied)?.wait()
}

/// A save in progress on another thread.
#[derive(Debug)]
pub struct PendingSave {
    path: PathBuf,
    replace: durable::PendingReplace,
}

/// Starts [`save`]: the caller may prepare other writes meanwhile, and must
/// [`PendingSave::wait`] before anything that depends on the state being on disk.
pub fn begin_save(dir: &Path, applied: &Applied) -> Result<PendingSave, StateError> {
    let path = dir.join(APPLIED_FILE);
    ensure_dir(dir)?;
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StateError::Dir {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let bytes = serde_json::to_vec(applied).map_err(|e| StateError::Write {
        path: path.clone(),
        source: durable::ReplaceError::Write(e.into()),
    })?;
    let mode = FileMode {
        owner: None,
        mode: durable::PRIVATE,
    };
    match durable::begin_replace(fd, APPLIED_FILE.into(), bytes, mode) {
        Ok(replace) => Ok(PendingSave { path, replace }),
        Err(source) => Err(StateError::Write { path, source }),
    }
}

impl PendingSave {
    /// Returns once the new state is durably in place (or its write failed).
    pub fn wait(self) -> Result<(), StateError> {
        let path = self.path;
        self.replace
            .wait()
            .map_err(|source| StateError::Write { path, source })
    }
}

/// File name of the files report inside the state directory.
pub const FILES_FILE: &str = "files.json";
/// Format version of [`FilesReport`].
pub const FILES_FORMAT: u32 = 1;

/// The daemon's last report of its managed files, for `pictor-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesReport {
    pub format: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
    pub files: Vec<FileReport>,
}

/// Reads the daemon's last files report; `None` when there is none.
pub fn load_files(dir: &Path) -> Result<Option<FilesReport>, StateError> {
    let path = dir.join(FILES_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let report: FilesReport = serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if report.format != FILES_FORMAT {
        return Err(StateError::Damaged {
            path,
            message: format!("unknown format {}", report.format),
        });
    }
    Ok(Some(report))
}

/// Replaces the files report (atomically and durably, mode 0600).
pub fn save_files(dir: &Path, report: &FilesReport) -> Result<(), StateError> {
    let path = dir.join(FILES_FILE);
    ensure_dir(dir)?;
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StateError::Dir {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let bytes = serde_json::to_vec(report).map_err(|e| StateError::Write {
        path: path.clone(),
        source: durable::ReplaceError::Write(e.into()),
    })?;
    let mode = FileMode {
        owner: None,
        mode: durable::PRIVATE,
    };
    durable::replace_at(&fd, std::ffi::OsStr::new(FILES_FILE), &bytes, mode, || true)
        .map_err(|source| StateError::Write { path, source })
}

/// Saves files reports on a thread of its own, newest first: the main loop hands a
/// report over and goes on; reports that pile up while one is written collapse into
/// the newest.
pub struct FilesWriter {
    latest: std::sync::mpsc::Sender<FilesReport>,
}

impl FilesWriter {
    pub fn start(dir: PathBuf) -> std::io::Result<FilesWriter> {
        let (latest, queue) = std::sync::mpsc::channel::<FilesReport>();
        std::thread::Builder::new()
            .name("files-report".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut failed = false;
                while let Ok(mut report) = queue.recv() {
                    while let Ok(newer) = queue.try_recv() {
                        report = newer;
                    }
                    match save_files(&dir, &report) {
                        Ok(()) => failed = false,
                        Err(e) if !failed => {
                            tracing::warn!(
                                "{e}; `pictor-agent status` shows an older files report"
                            );
                            failed = true;
                        }
                        Err(_) => {}
                    }
                }
            })?;
        Ok(FilesWriter { latest })
    }

    pub fn save(&self, files: Vec<FileReport>) {
        let _ = self.latest.send(FilesReport {
            format: FILES_FORMAT,
            written_at: crate::timefmt::now(),
            files,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Applied {
        Applied {
            format: FORMAT,
            key_set: KeySet {
                version: "v1".into(),
                keys: vec![],
                rejected: vec![],
            },
            applied_at: crate::timefmt::parse("2026-11-25T07:00:00Z").expect("time"),
            etag: Some("\"v1\"".into()),
        }
    }

    #[test]
    fn round_trips_and_creates_the_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("state");
        assert_eq!(load(&dir).expect("load"), None);
        save(&dir, &sample()).expect("save");
        assert_eq!(load(&dir).expect("load"), Some(sample()));
    }

    #[test]
    fn the_directory_and_the_file_get_their_modes_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("state");
        save(&dir, &sample()).expect("save");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o711);
        assert_eq!(mode(&root.path().join("a")), 0o711, "a parent it made");
        assert_eq!(mode(&dir.join(APPLIED_FILE)), 0o600);
        // An existing directory is the operator's (or systemd's): left alone.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        ensure_dir(&dir).expect("exists");
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn damaged_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(APPLIED_FILE), b"{\"format\":1,").expect("write");
        assert!(matches!(load(dir.path()), Err(StateError::Damaged { .. })));
    }
}
