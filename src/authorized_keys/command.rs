//! The AuthorizedKeysCommand mode: `pictor-agent authorized-keys USER [FINGERPRINT]`,
//! called by sshd at each login attempt, prints the keys in force for USER from a file
//! the daemon keeps in its state directory. No network, no configuration file: it must
//! be fast, and it must never hang sshd or print an expired key.
//!
//! The file (`authorized-keys.json`, mode 0644 in a state directory of mode 0711) holds
//! public keys only: per managed user, each key's line, id, fingerprint and expiry.
//! Expiry is checked at every call, so a key stops being printed at its `expires_at`
//! even if the daemon is not running.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::durable::{self, FileMode};
use crate::keys::KeySet;

/// The file's name in the state directory.
pub const COMMAND_FILE: &str = "authorized-keys.json";
/// The most a call may take before it gives up (sshd waits on it).
pub const DEADLINE: Duration = Duration::from_secs(2);
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One key as the command prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandKey {
    pub id: String,
    pub fingerprint: String,
    /// `type base64 pictor-key-id=ID`, as in the managed block.
    pub line: String,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandFile {
    pub format: u32,
    pub version: String,
    pub users: BTreeMap<String, Vec<CommandKey>>,
}

/// The file's content for these managed users (pure).
pub fn build(set: &KeySet, users: &[String]) -> CommandFile {
    let users = users
        .iter()
        .map(|user| {
            // Every copy of a key is kept: one that expires may stand beside one that
            // does not, and only `select`, at the time of the call, can tell.
            let keys = set
                .keys
                .iter()
                .filter(|k| k.is_for(user))
                .map(|k| CommandKey {
                    id: k.id.clone(),
                    fingerprint: k.fingerprint.clone(),
                    line: format!("{} {}{}", k.public_key, super::merge::KEY_ID_TAG, k.id),
                    expires_at: k.expires_at,
                })
                .collect();
            (user.clone(), keys)
        })
        .collect();
    CommandFile {
        format: 1,
        version: set.version.clone(),
        users,
    }
}

/// The lines to print for `user` (and only the key with `fingerprint`, when given) at
/// `now`: never an expired key, each key once (pure).
pub fn select<'a>(
    file: &'a CommandFile,
    user: &str,
    fingerprint: Option<&str>,
    now: OffsetDateTime,
) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    file.users
        .get(user)
        .map(|keys| {
            keys.iter()
                .filter(|k| k.expires_at.is_none_or(|at| at > now))
                .filter(|k| fingerprint.is_none_or(|fp| fp == k.fingerprint))
                .filter(|k| seen.insert(k.fingerprint.as_str()))
                .map(|k| k.line.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the file (atomically, mode 0644) when its content changed.
pub fn write(state_dir: &Path, file: &CommandFile) -> Result<(), String> {
    let bytes = serde_json::to_vec(file).map_err(|e| e.to_string())?;
    let path = state_dir.join(COMMAND_FILE);
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = open(
        state_dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let mode = FileMode {
        owner: None,
        mode: Mode::from_bits_truncate(0o644),
    };
    durable::replace_at(&dir, OsStr::new(COMMAND_FILE), &bytes, mode, || true)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Why a call printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is damaged: {message}")]
    Damaged { path: String, message: String },
}

/// Reads the file without following a symlink or blocking on a FIFO.
pub fn read(state_dir: &Path) -> Result<CommandFile, CommandError> {
    let path = state_dir.join(COMMAND_FILE);
    let shown = path.display().to_string();
    let read_error = |message: String| CommandError::Read {
        path: shown.clone(),
        message,
    };
    let fd = open(
        &path,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read_error(e.to_string()))?;
    let stat = fstat(fd.as_fd()).map_err(|e| read_error(e.to_string()))?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(read_error("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(e.to_string()))?;
    let file: CommandFile = serde_json::from_slice(&bytes).map_err(|e| CommandError::Damaged {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    if file.format != 1 {
        return Err(CommandError::Damaged {
            path: shown,
            message: format!("unknown format {}", file.format),
        });
    }
    Ok(file)
}

/// The command: prints the lines, exit 0 (also when there are none); on any problem
/// prints nothing, says why on stderr and exits 1. A watchdog ends it after
/// [`DEADLINE`] whatever it is stuck on.
pub fn run(state_dir: &Path, user: &str, fingerprint: Option<&str>) -> std::process::ExitCode {
    std::thread::spawn(|| {
        std::thread::sleep(DEADLINE);
        let _ = writeln!(
            std::io::stderr(),
            "pictor-agent authorized-keys: gave up after {DEADLINE:?}"
        );
        std::process::exit(1);
    });
    let file = match read(state_dir) {
        Ok(file) => file,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pictor-agent authorized-keys: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let lines = select(&file, user, fingerprint, OffsetDateTime::now_utc());
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{KeyList, WireKey};

    fn set() -> KeySet {
        let lines: Vec<String> = include_str!("../../tests/fixtures/public_keys.txt")
            .lines()
            .map(str::to_owned)
            .collect();
        let wire =
            |id: &str, line: &str, expires: Option<&str>, users: Option<Vec<&str>>| WireKey {
                id: id.into(),
                name: id.into(),
                public_key: line.into(),
                fingerprint: None,
                created_at: None,
                expires_at: expires.map(str::to_owned),
                users: users.map(|u| u.into_iter().map(str::to_owned).collect()),
            };
        KeySet::from_list(&KeyList {
            version: "v7".into(),
            keys: vec![
                wire("k_all", &lines[1], None, None),
                wire("k_alice", &lines[2], None, Some(vec!["alice"])),
                wire(
                    "k_old",
                    &lines[2],
                    Some("2026-01-01T00:00:00Z"),
                    Some(vec!["bob"]),
                ),
            ],
        })
        .expect("valid")
    }

    #[test]
    fn a_key_also_listed_with_an_expiry_stays_after_that_copy_expires() {
        let lines: Vec<String> = include_str!("../../tests/fixtures/public_keys.txt")
            .lines()
            .map(str::to_owned)
            .collect();
        let wire = |id: &str, expires: Option<&str>| WireKey {
            id: id.into(),
            name: id.into(),
            public_key: lines[1].clone(),
            fingerprint: None,
            created_at: None,
            expires_at: expires.map(str::to_owned),
            users: None,
        };
        let set = KeySet::from_list(&KeyList {
            version: "v1".into(),
            keys: vec![
                wire("k_temp", Some("2026-06-01T00:00:00Z")),
                wire("k_kept", None),
            ],
        })
        .expect("valid");
        let file = build(&set, &["alice".into()]);
        let before = crate::timefmt::parse("2026-05-01T00:00:00Z").expect("time");
        let after = crate::timefmt::parse("2026-07-01T00:00:00Z").expect("time");
        assert_eq!(select(&file, "alice", None, before).len(), 1, "once");
        let lines_after = select(&file, "alice", None, after);
        assert_eq!(lines_after.len(), 1, "still granted by k_kept");
        assert!(lines_after[0].ends_with(" pictor-key-id=k_kept"));
    }

    #[test]
    fn prints_only_keys_in_force_for_that_user() {
        let file = build(&set(), &["alice".into(), "bob".into()]);
        let now = crate::timefmt::parse("2026-11-25T00:00:00Z").expect("time");
        let alice = select(&file, "alice", None, now);
        assert_eq!(alice.len(), 2);
        assert!(alice[0].ends_with(" pictor-key-id=k_all"));
        let bob = select(&file, "bob", None, now);
        assert_eq!(bob.len(), 1, "k_old expired: {bob:?}");
        assert!(
            select(&file, "root", None, now).is_empty(),
            "not a managed user"
        );
        let fp = set().keys[0].fingerprint.clone();
        assert_eq!(select(&file, "alice", Some(&fp), now).len(), 1);
        assert!(select(&file, "alice", Some("SHA256:nope"), now).is_empty());
        let before = crate::timefmt::parse("2025-12-31T00:00:00Z").expect("time");
        assert_eq!(
            select(&file, "bob", None, before).len(),
            2,
            "not yet expired then"
        );
    }

    #[test]
    fn missing_damaged_and_symlinked_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(read(dir.path()), Err(CommandError::Read { .. })));
        std::fs::write(dir.path().join(COMMAND_FILE), b"{\"format\":1,").expect("write");
        assert!(matches!(
            read(dir.path()),
            Err(CommandError::Damaged { .. })
        ));
        std::fs::remove_file(dir.path().join(COMMAND_FILE)).expect("rm");
        let elsewhere = dir.path().join("elsewhere.json");
        write(dir.path(), &build(&set(), &["alice".into()])).expect("write");
        std::fs::rename(dir.path().join(COMMAND_FILE), &elsewhere).expect("mv");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(COMMAND_FILE)).expect("symlink");
        assert!(matches!(read(dir.path()), Err(CommandError::Read { .. })));
    }
}
