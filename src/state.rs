//! The state directory: every file the agent keeps there goes through this one layer,
//! with one error type, a format version in every file, and an explicit mode (0600), each
//! written atomically and durably ([`crate::durable`]):
//!
//! - `applied.json` ([`APPLIED`]): the last key set applied, so a restart without network
//!   keeps the keys in force and still honours expiry.
//! - `sessions.json` ([`SESSIONS`]): the open sessions and the log position.
//! - `files.json` ([`FILES`]): the daemon's last report of its managed files, for
//!   `pictor-agent status`.
//!
//! Two files have needs of their own and their own modules: the AuthorizedKeysCommand's
//! `authorized-keys.json` (0640 to a group, read by sshd's command with trust checks:
//! [`crate::authorized_keys::command`]) and the outbox (an append-only log:
//! [`crate::outbox`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::model::FileReport;
use crate::durable::{self, FileMode};
use crate::keys::KeySet;
use crate::latest_writer::LatestWriter;

/// A kind of file in the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    /// The format version written; a file of another version is not trusted.
    pub format: u32,
    /// A file written before formats were versioned (no `format`) is read as this one.
    pub unversioned_ok: bool,
    pub mode: Mode,
}

/// The last applied key set ([`Applied`]).
pub const APPLIED: Kind = Kind {
    name: "applied.json",
    format: 1,
    unversioned_ok: false,
    mode: durable::PRIVATE,
};
/// The sessions task's table and log position.
pub const SESSIONS: Kind = Kind {
    name: "sessions.json",
    format: 1,
    unversioned_ok: true,
    mode: durable::PRIVATE,
};
/// The daemon's files report ([`FilesReport`]).
pub const FILES: Kind = Kind {
    name: "files.json",
    format: 1,
    unversioned_ok: false,
    mode: durable::PRIVATE,
};

/// File name of the applied key set inside the state directory.
pub const APPLIED_FILE: &str = APPLIED.name;

/// What is in force, as last applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub key_set: KeySet,
    #[serde(with = "time::serde::rfc3339")]
    pub applied_at: OffsetDateTime,
    /// The key list's ETag, for `If-None-Match`.
    pub etag: Option<String>,
}

/// The daemon's last report of its managed files, for `pictor-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesReport {
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
    pub files: Vec<FileReport>,
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
    #[error("{path} is damaged ({message}); it is ignored until it is written again")]
    Damaged { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: durable::ReplaceError,
    },
}

#[derive(Deserialize)]
struct Header {
    format: Option<u32>,
}

/// Reads a state file; `None` when there is none yet.
pub fn load<T: DeserializeOwned>(dir: &Path, kind: Kind) -> Result<Option<T>, StateError> {
    let path = dir.join(kind.name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let damaged = |message: String| StateError::Damaged {
        path: path.clone(),
        message,
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    match header.format {
        Some(format) if format == kind.format => {}
        None if kind.unversioned_ok => {}
        Some(format) => return Err(damaged(format!("unknown format {format}"))),
        None => return Err(damaged("no format version".into())),
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| damaged(e.to_string()))
}

/// The bytes of `value` with its kind's format version.
fn encode<T: Serialize>(kind: Kind, value: &T, path: &Path) -> Result<Vec<u8>, StateError> {
    let write_error = |e: serde_json::Error| StateError::Write {
        path: path.to_owned(),
        source: durable::ReplaceError::Write(e.into()),
    };
    let mut object = match serde_json::to_value(value).map_err(write_error)? {
        serde_json::Value::Object(object) => object,
        _ => {
            return Err(StateError::Write {
                path: path.to_owned(),
                source: durable::ReplaceError::Write(std::io::Error::other(
                    "a state file must be a JSON object",
                )),
            })
        }
    };
    object.insert("format".into(), kind.format.into());
    serde_json::to_vec(&object).map_err(write_error)
}

fn open_dir(dir: &Path) -> Result<std::os::fd::OwnedFd, StateError> {
    ensure_dir(dir)?;
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StateError::Dir {
        path: dir.to_owned(),
        source: e.into(),
    })
}

/// A state file ready to be written: encoded, its directory open.
struct Prepared {
    fd: std::os::fd::OwnedFd,
    kind: Kind,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Prepared {
    fn new<T: Serialize>(dir: &Path, kind: Kind, value: &T) -> Result<Prepared, StateError> {
        let path = dir.join(kind.name);
        let bytes = encode(kind, value, &path)?;
        let fd = open_dir(dir)?;
        Ok(Prepared {
            fd,
            kind,
            path,
            bytes,
        })
    }

    /// Replaces the file atomically and durably, then removes dead writers' temporaries.
    fn write(self) -> Result<(), StateError> {
        let mode = FileMode {
            owner: None,
            mode: self.kind.mode,
            label: None,
        };
        let name = OsStr::new(self.kind.name);
        durable::replace_at(&self.fd, name, &self.bytes, mode, || true).map_err(|source| {
            StateError::Write {
                path: self.path,
                source,
            }
        })?;
        durable::remove_stale_temps(&self.fd, name);
        Ok(())
    }
}

/// Replaces a state file (creating the directory, see [`ensure_dir`]).
pub fn save<T: Serialize>(dir: &Path, kind: Kind, value: &T) -> Result<(), StateError> {
    Prepared::new(dir, kind, value)?.write()
}

/// Reads the last applied set; `None` when there is none yet.
pub fn load_applied(dir: &Path) -> Result<Option<Applied>, StateError> {
    load(dir, APPLIED)
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

/// What a caller of [`Saver::save_then`] is told once its value, or a newer one, is in
/// place (or why the write failed). Runs on the writing thread.
pub type Then = Box<dyn FnOnce(Result<(), &StateError>) + Send>;

struct Pending {
    prepared: Prepared,
    then: Vec<Then>,
}

/// Saves of one state file off the event loop, in order: one write at a time, on tokio's
/// blocking pool, and a value handed over while another is written replaces any still
/// waiting. So the file on disk never goes back to an older value, however the writes
/// are scheduled, and each caller hears once a value at least as new as its own is
/// durable.
pub struct Saver {
    writer: LatestWriter<Pending>,
}

impl Default for Saver {
    fn default() -> Saver {
        Saver {
            writer: LatestWriter::merging(
                |pending: Pending| {
                    let result = pending.prepared.write();
                    for then in pending.then {
                        then(result.as_ref().map(|_| ()));
                    }
                },
                |mut older, newer| {
                    older.then.extend(newer.then);
                    Pending {
                        prepared: newer.prepared,
                        then: older.then,
                    }
                },
            ),
        }
    }
}

impl Saver {
    /// Hands `value` over for `dir`/`kind` (encoded before this returns) and goes on at
    /// once; `then` is told how it went. Call on the runtime.
    pub fn save_then<T: Serialize>(
        &self,
        dir: &Path,
        kind: Kind,
        value: &T,
        then: impl FnOnce(Result<(), &StateError>) + Send + 'static,
    ) -> Result<(), StateError> {
        let prepared = Prepared::new(dir, kind, value)?;
        self.writer.submit(Pending {
            prepared,
            then: vec![Box::new(then)],
        });
        Ok(())
    }
}

/// Saves files reports off the event loop, newest first: the main loop hands a report
/// over and goes on; reports that pile up while one is written collapse into the newest.
pub struct FilesWriter {
    writer: LatestWriter<FilesReport>,
}

impl FilesWriter {
    pub fn new(dir: PathBuf) -> FilesWriter {
        // Logged once per run of failures, not once per report.
        let failing = std::sync::atomic::AtomicBool::new(false);
        FilesWriter {
            writer: LatestWriter::new(move |report: FilesReport| {
                use std::sync::atomic::Ordering;
                match save(&dir, FILES, &report) {
                    Ok(()) => failing.store(false, Ordering::Relaxed),
                    Err(e) => {
                        if !failing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "{e}; `pictor-agent status` shows an older files report"
                            );
                        }
                    }
                }
            }),
        }
    }

    /// Call on the runtime.
    pub fn save(&self, files: Vec<FileReport>) {
        self.writer.submit(FilesReport {
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
        assert_eq!(load_applied(&dir).expect("load"), None);
        save(&dir, APPLIED, &sample()).expect("save");
        assert_eq!(load_applied(&dir).expect("load"), Some(sample()));
    }

    #[test]
    fn the_directory_and_the_file_get_their_modes_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("state");
        save(&dir, APPLIED, &sample()).expect("save");
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
        assert!(matches!(
            load_applied(dir.path()),
            Err(StateError::Damaged { .. })
        ));
    }

    #[test]
    fn every_file_carries_its_format_and_another_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        save(dir.path(), APPLIED, &sample()).expect("save");
        let text = std::fs::read_to_string(dir.path().join(APPLIED.name)).expect("read");
        assert!(text.contains("\"format\":1"), "{text}");
        std::fs::write(
            dir.path().join(APPLIED.name),
            text.replace("\"format\":1", "\"format\":2"),
        )
        .expect("write");
        let error = load_applied(dir.path()).expect_err("format 2");
        assert!(error.to_string().contains("unknown format 2"), "{error}");
        // A sessions file from before formats were versioned is still read.
        std::fs::write(dir.path().join(SESSIONS.name), b"{\"boot_id\":\"b\"}").expect("write");
        let old: Option<serde_json::Value> = load(dir.path(), SESSIONS).expect("legacy");
        assert_eq!(old.expect("some")["boot_id"], "b");
        // An applied set without one is not trusted.
        std::fs::write(dir.path().join(APPLIED.name), b"{}").expect("write");
        assert!(load_applied(dir.path()).is_err());
    }

    #[tokio::test]
    async fn a_save_off_the_loop_calls_back_once_in_place_or_with_why_not() {
        let saver = Saver::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_owned();
        saver
            .save_then(dir.path(), APPLIED, &sample(), move |result| {
                let on_disk = load_applied(&path).expect("readable");
                let _ = tx.send((result.is_ok(), on_disk));
            })
            .expect("started");
        let (ok, on_disk) = rx.recv().expect("called back");
        assert!(ok);
        assert_eq!(on_disk, Some(sample()), "in place when called back");
        // The name taken by a non-empty directory: the rename fails, and it says so.
        let other = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(other.path().join(APPLIED.name)).expect("mkdir");
        std::fs::write(other.path().join(APPLIED.name).join("x"), b"").expect("write");
        let (tx, rx) = std::sync::mpsc::channel();
        saver
            .save_then(other.path(), APPLIED, &sample(), move |result| {
                let _ = tx.send(result.map_err(|e| e.to_string()));
            })
            .expect("started");
        let error = rx.recv().expect("called back").expect_err("rename fails");
        assert!(error.contains("applied.json"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saves_in_a_burst_all_succeed_and_leave_the_newest_in_place() {
        // Each save used to run on a thread of its own: a burst raced, a finished save's
        // clean-up removed another's temporary file (same pid), and an older set could
        // land last.
        let saver = Saver::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = std::sync::mpsc::channel();
        let rounds = 200;
        for round in 0..rounds {
            let mut applied = sample();
            applied.key_set.version = format!("v{round}");
            let tx = tx.clone();
            saver
                .save_then(dir.path(), APPLIED, &applied, move |result| {
                    let _ = tx.send(result.map_err(|e| e.to_string()));
                })
                .expect("handed over");
        }
        drop(tx);
        let results: Vec<Result<(), String>> = rx.iter().collect();
        assert_eq!(results.len(), rounds, "every caller hears once");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let on_disk = load_applied(dir.path()).expect("readable").expect("saved");
        assert_eq!(on_disk.key_set.version, format!("v{}", rounds - 1));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(APPLIED.name)]);
    }
}
