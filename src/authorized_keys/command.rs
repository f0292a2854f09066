//! The AuthorizedKeysCommand mode: `pictor-agent authorized-keys USER [FINGERPRINT]`,
//! called by sshd at each login attempt, prints the keys in force for USER from a file
//! the daemon keeps in its state directory. No network, no configuration file: it must
//! be fast, and it must never hang sshd or print an expired key.
//!
//! The file (`authorized-keys.json`) holds, per managed user, each key's line, id,
//! fingerprint and expiry: public keys, but also the whole account's key ids and
//! fingerprints, so it is not world-readable. It is mode 0640, owned by the agent's
//! account, its group the one sshd runs the command as (`[state]
//! authorized_keys_command_group`, `pictor-keys` in the packages), in a state directory
//! of mode 0711 that the command's account can pass through but not list. When that
//! group does not exist, the file is 0600: sshd's command cannot read it (logins fall
//! back to the authorized_keys files), and nobody else can either.
//!
//! The command trusts the file only when it is a regular file, owned by root or by the
//! state directory's owner, and writable by neither group nor others (nor the directory):
//! otherwise another account could add a key to anyone's login.
//! Expiry is checked at every call, so a key stops being printed at its `expires_at`
//! even if the daemon is not running.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use nix::unistd::{Gid, Group, Uid};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::durable::{self, FileMode, ReplaceError};
use crate::keys::KeySet;

/// The file's name in the state directory.
pub const COMMAND_FILE: &str = "authorized-keys.json";
/// The most a call may take before it gives up (sshd waits on it).
pub const DEADLINE: Duration = Duration::from_secs(2);
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The file's mode when the command's group can be given it.
pub const GROUP_MODE: Mode = Mode::S_IRUSR.union(Mode::S_IWUSR).union(Mode::S_IRGRP);

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

/// Who may read the file besides the agent's own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Mode 0640, this group: the group of sshd's `AuthorizedKeysCommandUser`.
    Group(Gid),
    /// Mode 0600: that group is missing (or cannot be given the file). sshd's command
    /// cannot read the file then, and neither can anyone else.
    OwnerOnly,
}

impl Readers {
    /// The owner, group and mode the file gets.
    pub fn file_mode(self) -> FileMode<'static> {
        match self {
            Readers::Group(gid) => FileMode {
                owner: Some((Uid::effective(), gid)),
                mode: GROUP_MODE,
                label: None,
            },
            Readers::OwnerOnly => FileMode {
                owner: None,
                mode: durable::PRIVATE,
                label: None,
            },
        }
    }
}

/// The group named `name` (`[state] authorized_keys_command_group`); `Err` says why not.
pub fn resolve_group(name: &str) -> Result<Gid, String> {
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => Err(format!("group {name} does not exist")),
        Err(e) => Err(format!("cannot look up group {name}: {e}")),
    }
}

/// Why the file was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The new file could not be given to the group (no `CAP_CHOWN`, say): nothing was
    /// written; the caller may write it for the owner only instead.
    #[error("{path}: cannot give it to group {gid}: {source}")]
    Group {
        path: String,
        gid: u32,
        source: Errno,
    },
    #[error("{path}: {message}")]
    Other { path: String, message: String },
}

/// Writes the file (atomically; owner, group and mode from `readers`) unless it already
/// holds exactly this content with that owner, group and mode.
pub fn write(state_dir: &Path, file: &CommandFile, readers: Readers) -> Result<(), WriteError> {
    let path = state_dir.join(COMMAND_FILE).display().to_string();
    let other = |message: String| WriteError::Other {
        path: path.clone(),
        message,
    };
    let bytes = serde_json::to_vec(file).map_err(|e| other(e.to_string()))?;
    let dir = open(
        state_dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| WriteError::Other {
        path: state_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mode = readers.file_mode();
    if already_written(&dir, &bytes, mode) {
        return Ok(());
    }
    durable::replace_at(&dir, OsStr::new(COMMAND_FILE), &bytes, mode, || true).map_err(|e| {
        match (e, readers) {
            (ReplaceError::Owner(source), Readers::Group(gid)) => WriteError::Group {
                path: path.clone(),
                gid: gid.as_raw(),
                source,
            },
            (e, _) => other(e.to_string()),
        }
    })
}

/// True when the file in `dir` holds `bytes` and has the owner, group and mode wanted.
fn already_written(dir: &std::os::fd::OwnedFd, bytes: &[u8], mode: FileMode) -> bool {
    let Ok(fd) = openat(
        dir.as_fd(),
        COMMAND_FILE,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(stat) = fstat(fd.as_fd()) else {
        return false;
    };
    let owner = mode
        .owner
        .unwrap_or((Uid::effective(), Gid::from_raw(stat.st_gid)));
    if !is_regular(&stat)
        || stat.st_mode & 0o7777 != mode.mode.bits()
        || (stat.st_uid, stat.st_gid) != (owner.0.as_raw(), owner.1.as_raw())
        || stat.st_size as u64 != bytes.len() as u64
    {
        return false;
    }
    let mut old = Vec::with_capacity(bytes.len());
    std::fs::File::from(fd)
        .take(bytes.len() as u64 + 1)
        .read_to_end(&mut old)
        .is_ok_and(|_| old == bytes)
}

fn is_regular(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG
}

/// Why a call printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is damaged: {message}")]
    Damaged { path: String, message: String },
    /// The file (or its directory) could have been written by another account.
    #[error("{path} is not trusted: {message}")]
    Untrusted { path: String, message: String },
}

/// Reads the file without following a symlink or blocking on a FIFO, and only when no
/// account but root and the state directory's owner can have written it.
pub fn read(state_dir: &Path) -> Result<CommandFile, CommandError> {
    let path = state_dir.join(COMMAND_FILE);
    let shown = path.display().to_string();
    let read_error = |message: String| CommandError::Read {
        path: shown.clone(),
        message,
    };
    let untrusted = |message: String| CommandError::Untrusted {
        path: shown.clone(),
        message,
    };
    // O_PATH: the command's account may pass through the directory (0711), not read it.
    let dir = open(
        state_dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read_error(format!("{}: {e}", state_dir.display())))?;
    let dir_stat = fstat(dir.as_fd()).map_err(|e| read_error(e.to_string()))?;
    if dir_stat.st_mode & 0o022 != 0 {
        return Err(untrusted(format!(
            "its directory has mode {:04o}: writable by group or others",
            dir_stat.st_mode & 0o7777
        )));
    }
    let fd = openat(
        dir.as_fd(),
        COMMAND_FILE,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::EACCES => read_error(format!(
            "{e}: only the agent and the group of [state] authorized_keys_command_group \
             (pictor-keys by default) may read it; is sshd's AuthorizedKeysCommandUser \
             that account?"
        )),
        e => read_error(e.to_string()),
    })?;
    let stat = fstat(fd.as_fd()).map_err(|e| read_error(e.to_string()))?;
    if !is_regular(&stat) {
        return Err(read_error("not a regular file".into()));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(untrusted(format!(
            "mode {:04o}: writable by group or others",
            stat.st_mode & 0o7777
        )));
    }
    if stat.st_uid != 0 && stat.st_uid != dir_stat.st_uid {
        return Err(untrusted(format!(
            "owned by uid {}, neither root nor the owner of its directory",
            stat.st_uid
        )));
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

/// What `pictor-agent status` says about the file: its path, mode and group, and the
/// problem that keeps sshd's command (run as a member of `group`, the configured group
/// name) from reading it, if any.
pub fn inspect(state_dir: &Path, group: &str) -> (String, Option<String>) {
    use std::os::unix::fs::MetadataExt;
    let path = state_dir.join(COMMAND_FILE);
    let gid = resolve_group(group);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (format!("{} (not written yet)", path.display()), None)
        }
        Err(e) => return (path.display().to_string(), Some(e.to_string())),
    };
    let group_name = |id: u32| {
        Group::from_gid(Gid::from_raw(id))
            .ok()
            .flatten()
            .map_or_else(|| id.to_string(), |g| g.name)
    };
    let text = format!(
        "{} (mode {:04o}, group {})",
        path.display(),
        meta.mode() & 0o7777,
        group_name(meta.gid())
    );
    let problem = match gid {
        Err(why) => Some(format!(
            "{why} ([state] authorized_keys_command_group): the file is kept 0600 and \
             sshd's AuthorizedKeysCommand cannot read it"
        )),
        Ok(gid) if meta.gid() != gid.as_raw() || meta.mode() & 0o7777 != 0o640 => Some(format!(
            "not mode 0640 with group {group}: sshd's AuthorizedKeysCommand cannot read it \
             (see the agent's log)"
        )),
        Ok(gid) => std::fs::metadata(state_dir).ok().and_then(|dir| {
            let mode = dir.mode() & 0o7777;
            let passes = mode & 0o001 != 0 || (mode & 0o010 != 0 && dir.gid() == gid.as_raw());
            (!passes).then(|| {
                format!(
                    "the state directory {} has mode {mode:04o}: sshd's AuthorizedKeysCommand \
                     cannot reach the file (0711 lets it)",
                    state_dir.display()
                )
            })
        }),
    };
    (text, problem)
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
        write(
            dir.path(),
            &build(&set(), &["alice".into()]),
            Readers::OwnerOnly,
        )
        .expect("write");
        std::fs::rename(dir.path().join(COMMAND_FILE), &elsewhere).expect("mv");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(COMMAND_FILE)).expect("symlink");
        assert!(matches!(read(dir.path()), Err(CommandError::Read { .. })));
    }

    fn mode_of(path: &Path) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).expect("stat");
        (meta.mode() & 0o7777, meta.gid())
    }

    #[test]
    fn written_0640_for_its_group_or_0600_for_the_owner_only_never_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(COMMAND_FILE);
        let file = build(&set(), &["alice".into()]);
        let gid = Gid::effective();
        write(dir.path(), &file, Readers::Group(gid)).expect("write");
        assert_eq!(mode_of(&path), (0o640, gid.as_raw()));
        // Same content, other readers: rewritten all the same.
        write(dir.path(), &file, Readers::OwnerOnly).expect("write");
        assert_eq!(mode_of(&path).0, 0o600);
        // A file an older version left world-readable is rewritten, not kept.
        write(dir.path(), &file, Readers::Group(gid)).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write(dir.path(), &file, Readers::Group(gid)).expect("write");
        assert_eq!(mode_of(&path), (0o640, gid.as_raw()));
        assert_eq!(read(dir.path()).expect("read"), file);
        let entries = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(entries, 1, "no temporary file left");
    }

    #[test]
    fn a_group_the_agent_cannot_give_the_file_to_is_a_group_error() {
        if Uid::effective().is_root() {
            return; // root may give a file to any group
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let foreign = Gid::from_raw(0);
        let result = write(dir.path(), &build(&set(), &[]), Readers::Group(foreign));
        assert!(
            matches!(result, Err(WriteError::Group { .. })),
            "{result:?}"
        );
        assert!(!dir.path().join(COMMAND_FILE).exists());
    }

    #[test]
    fn a_file_or_directory_writable_by_others_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(COMMAND_FILE);
        write(
            dir.path(),
            &build(&set(), &["alice".into()]),
            Readers::OwnerOnly,
        )
        .expect("write");
        let chmod = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        for mode in [0o646, 0o660, 0o622] {
            chmod(&path, mode);
            let result = read(dir.path());
            assert!(
                matches!(result, Err(CommandError::Untrusted { .. })),
                "{mode:o}: {result:?}"
            );
        }
        chmod(&path, 0o644);
        assert!(
            read(dir.path()).is_ok(),
            "readable by others is not a forgery"
        );
        chmod(dir.path(), 0o777);
        assert!(matches!(
            read(dir.path()),
            Err(CommandError::Untrusted { .. })
        ));
        chmod(dir.path(), 0o711);
        assert!(read(dir.path()).is_ok());
        if Uid::effective().is_root() {
            // Another account's file, even read-only, could say anything.
            nix::unistd::chown(&path, Some(Uid::from_raw(54321)), None).expect("chown");
            let result = read(dir.path());
            assert!(
                matches!(result, Err(CommandError::Untrusted { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn status_names_a_missing_group_and_a_wrong_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (text, problem) = inspect(dir.path(), "root");
        assert!(text.contains("not written yet") && problem.is_none());
        let file = build(&set(), &["alice".into()]);
        write(dir.path(), &file, Readers::OwnerOnly).expect("write");
        let (_, problem) = inspect(dir.path(), "pictor-no-such-group");
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("does not exist")),
            "{problem:?}"
        );
        let (_, problem) = inspect(dir.path(), "root");
        assert!(
            problem.as_deref().is_some_and(|p| p.contains("0640")),
            "{problem:?}"
        );
        if let Ok(gid) = resolve_group("root") {
            if write(dir.path(), &file, Readers::Group(gid)).is_ok() {
                let (text, problem) = inspect(dir.path(), "root");
                assert!(text.contains("mode 0640, group root"), "{text}");
                assert_eq!(problem, None);
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                    .expect("chmod");
                let (_, problem) = inspect(dir.path(), "root");
                // The command's account could not reach it.
                assert!(
                    problem.as_deref().is_some_and(|p| p.contains("0700")),
                    "{problem:?}"
                );
            }
        }
    }
}
