//! Writing a user's managed block to disk, safely.
//!
//! The agent runs as root and writes into directories its users control, the classic
//! place for symlink and hard-link tricks. So every step is openat-style and no-follow:
//! the directory is opened once and checked (owner is the user or root, not writable by
//! group or others, not a symlink), the file is opened relative to it with `O_NOFOLLOW`
//! and checked (a regular file, one link, owned by the user or root) before a byte of it
//! is read, and the new content replaces it atomically and durably ([`crate::durable`]).
//! A user's edit that lands while the agent writes is detected just before the rename,
//! and the merge is done again on the new content.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fsync, Uid};

use super::{merge, path_walk};
use crate::durable::{self, FileMode, ReplaceError};
use crate::selinux::Labels;
use crate::users::{Location, ManagedUser};

/// How often a write is tried in one go when the file keeps changing under it (each
/// try writes the whole file); after that the caller tries again later, at the pace of
/// drift repairs.
const MAX_ATTEMPTS: usize = 2;
/// Largest authorized_keys file the agent will read or rewrite: room for 10,000 of the
/// largest keys the agent accepts in practice (RSA 8192, about 1.4 kB a line), far beyond
/// any real file. A larger one is refused (reported `behind`), so a user's runaway file
/// cannot make every repair cost tens of megabytes of writing.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a user's file was left alone. Every variant names the user and the path.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("user {user}: {path} is a symbolic link; refusing to follow it")]
    Symlink { user: String, path: PathBuf },
    #[error(
        "user {user}: {path} is owned by uid {owner}, not by the user or root; refusing to write"
    )]
    WrongOwner {
        user: String,
        path: PathBuf,
        owner: u32,
    },
    #[error("user {user}: {path} is writable by group or others; refusing to write")]
    LooseDirectory { user: String, path: PathBuf },
    #[error("user {user}: {path} is not a {expected}; refusing to write")]
    WrongType {
        user: String,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("user {user}: {path} has {links} hard links and is not the user's own file; refusing to read or replace it")]
    HardLinked {
        user: String,
        path: PathBuf,
        links: u64,
    },
    #[error("user {user}: {path} is larger than {MAX_FILE_BYTES} bytes, far more than any real authorized_keys; refusing to read or rewrite it: shrink it (keys added by hand go outside the managed block)")]
    TooLarge { user: String, path: PathBuf },
    #[error("user {user}: {source}")]
    Path {
        user: String,
        source: path_walk::WalkError,
    },
    #[error("user {user}: {path} does not exist")]
    Missing { user: String, path: PathBuf },
    #[error("user {user}: {path}: {action}: {source}")]
    Io {
        user: String,
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("user {user}: {path}: {source}")]
    Replace {
        user: String,
        path: PathBuf,
        source: ReplaceError,
    },
    #[error("user {user}: {path} kept changing while being rewritten ({MAX_ATTEMPTS} attempts); will try again")]
    KeepsChanging { user: String, path: PathBuf },
}

impl WriteError {
    /// The kernel refused the write for lack of permission (EPERM, EACCES: a sticky
    /// directory, an immutable file): trying again changes nothing until the file or its
    /// directory does.
    pub fn is_permission(&self) -> bool {
        match self {
            WriteError::Replace {
                source:
                    ReplaceError::CreateTemp(errno)
                    | ReplaceError::Rename(errno)
                    | ReplaceError::Owner(errno),
                ..
            } => matches!(errno, Errno::EPERM | Errno::EACCES),
            WriteError::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            }
            _ => false,
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file already had exactly this block: nothing was written.
    Unchanged,
    /// The file was replaced; `previous` is what it held before (`None`: it did not
    /// exist), for [`merge::describe_drift`] when the caller wants to say what changed.
    Written { previous: Option<Vec<u8>> },
}

/// The other name sshd reads by default for a user (`AuthorizedKeysFile
/// .ssh/authorized_keys .ssh/authorized_keys2`): a copy or a second hard link of the
/// managed file there keeps deleted keys working, so it is read (never written) and
/// reported.
pub const SSHD_SECOND_NAME: &str = "authorized_keys2";

/// Puts `block` (from [`merge::render_block`]) into the user's file, keeping every
/// foreign byte. Writes nothing when the file already says it.
pub fn apply(user: &ManagedUser, block: &[u8]) -> Result<Outcome, WriteError> {
    apply_labelled(user, block, Labels::system())
}

/// [`apply`] with the given SELinux labelling instead of this host's.
pub fn apply_labelled(
    user: &ManagedUser,
    block: &[u8],
    labels: &Labels,
) -> Result<Outcome, WriteError> {
    apply_racing(user, block, labels, |_| {}).map(|(outcome, _)| outcome)
}

/// [`apply`], with `before_rename` run once just before the new file is renamed into
/// place (not at all when nothing is written): the caller's last chance to make
/// durable what must be on disk before sshd sees the file.
pub fn apply_then(
    user: &ManagedUser,
    block: &[u8],
    before_rename: impl FnOnce(),
) -> Result<Outcome, WriteError> {
    apply_stamped(user, block, before_rename).map(|(outcome, _)| outcome)
}

/// [`apply_then`], also returning, when the file already held the block, the stamp it
/// had when it was read: while [`stamp`] still says the same, the file still holds it.
pub fn apply_stamped(
    user: &ManagedUser,
    block: &[u8],
    before_rename: impl FnOnce(),
) -> Result<(Outcome, Option<FileStamp>), WriteError> {
    let mut before_rename = Some(before_rename);
    apply_racing(user, block, Labels::system(), |_| {
        if let Some(hook) = before_rename.take() {
            hook();
        }
    })
}

/// The file's stamp now, without opening it (`None`: it cannot be seen). A drift check
/// compares it with the stamp of the last verified read and skips the read when equal.
pub fn stamp(user: &ManagedUser) -> Option<FileStamp> {
    nix::sys::stat::lstat(&*crate::home_binds::view(&user.path()))
        .ok()
        .map(|s| FileStamp::from(&s))
}

/// The stamp of the managed file's directory now (`None`: it cannot be seen): its mode,
/// owner or entries changing is a reason to try a refused write again.
pub fn dir_stamp(user: &ManagedUser) -> Option<FileStamp> {
    nix::sys::stat::lstat(&*crate::home_binds::view(&user.dir()))
        .ok()
        .map(|s| FileStamp::from(&s))
}

/// [`apply`], with `before_rename(attempt)` run in the window where a concurrent edit is
/// detected: the seam tests use to land an edit mid-write.
fn apply_racing(
    user: &ManagedUser,
    block: &[u8],
    labels: &Labels,
    mut before_rename: impl FnMut(usize),
) -> Result<(Outcome, Option<FileStamp>), WriteError> {
    let owner = owner_for(user)?;
    let Some(dir) = open_dir(user, !block.is_empty(), owner, labels)? else {
        return Ok((Outcome::Unchanged, None));
    };
    for attempt in 0..MAX_ATTEMPTS {
        let existing = read_existing(user, &dir, labels)?;
        let before = existing.as_ref().map(|e| e.bytes.as_slice());
        let merged = merge::merge(before.unwrap_or_default(), block);
        if before == Some(merged.as_slice()) || (before.is_none() && merged.is_empty()) {
            return Ok((Outcome::Unchanged, existing.map(|e| e.stamp)));
        }
        // A file of root's stays root's (its group and read bits kept, never write bits
        // for others): an administrator's choice, and its bytes (perhaps root's own,
        // moved here by the user) are never handed to the user.
        let (owner, file_mode) = match &existing {
            Some(e) if e.owner.0 == 0 && !user.uid.is_root() => (
                (!Uid::effective().is_root())
                    .then(|| (Uid::from_raw(0), nix::unistd::Gid::from_raw(e.owner.1))),
                Mode::from_bits_truncate(e.mode & 0o640) | Mode::S_IRUSR | Mode::S_IWUSR,
            ),
            _ => (owner, Mode::S_IRUSR | Mode::S_IWUSR),
        };
        let (previous, identity, old_label) = match existing {
            Some(Existing {
                bytes,
                stamp,
                label,
                ..
            }) => (Some(bytes), Some(stamp), label),
            None => (None, None, None),
        };
        let label = labels.for_replacement(old_label, &user.path(), libc::S_IFREG);
        let mode = FileMode {
            owner,
            mode: file_mode,
            label: label.as_deref(),
        };
        let still_current = || {
            before_rename(attempt);
            identity_of(&dir, &user.file_name) == identity
        };
        match durable::replace_at(&dir, &user.file_name, &merged, mode, still_current) {
            Ok(()) => {
                durable::remove_stale_temps(&dir, &user.file_name);
                return Ok((Outcome::Written { previous }, None));
            }
            Err(ReplaceError::Superseded) => continue,
            Err(source) => {
                return Err(WriteError::Replace {
                    user: user.name.clone(),
                    path: user.path(),
                    source,
                })
            }
        }
    }
    Err(WriteError::KeepsChanging {
        user: user.name.clone(),
        path: user.path(),
    })
}

/// The file sshd reads beside the managed one ([`SSHD_SECOND_NAME`]), through the same
/// checks as the managed file, with its stamp (`None`: it does not exist, or is the
/// managed file itself). Never written.
pub fn read_second_name(user: &ManagedUser) -> Result<Option<Vec<u8>>, WriteError> {
    if user.file_name == SSHD_SECOND_NAME {
        return Ok(None);
    }
    let Some(dir) = open_dir(user, false, None, &Labels::Off)? else {
        return Ok(None);
    };
    let name = OsStr::new(SSHD_SECOND_NAME);
    Ok(read_named(user, &dir, name, &Labels::Off)?.map(|e| e.bytes))
}

/// The stamp of [`SSHD_SECOND_NAME`] beside the managed file now (`None`: not there).
pub fn second_name_stamp(user: &ManagedUser) -> Option<FileStamp> {
    let path = user.dir().join(SSHD_SECOND_NAME);
    nix::sys::stat::lstat(&*crate::home_binds::view(&path))
        .ok()
        .map(|s| FileStamp::from(&s))
}

/// Reads the user's file through the same checks as a write (`None`: it does not exist).
pub fn read(user: &ManagedUser) -> Result<Option<Vec<u8>>, WriteError> {
    let Some(dir) = open_dir(user, false, None, &Labels::Off)? else {
        return Ok(None);
    };
    Ok(read_existing(user, &dir, &Labels::Off)?.map(|e| e.bytes))
}

/// The owner new files get: the user, unless the agent runs as that user already. The
/// chown needs root or CAP_CHOWN (the packaged service has the capability, not root).
fn owner_for(user: &ManagedUser) -> Result<Option<(Uid, nix::unistd::Gid)>, WriteError> {
    if Uid::effective() == user.uid {
        Ok(None)
    } else {
        Ok(Some((user.uid, user.gid)))
    }
}

fn io_error(user: &ManagedUser, path: PathBuf, action: &'static str, errno: Errno) -> WriteError {
    WriteError::Io {
        user: user.name.clone(),
        path,
        action,
        source: errno.into(),
    }
}

/// Opens the directory of the managed file, checked; creates `~/.ssh` when `create`.
/// `None`: it does not exist and was not to be created.
fn open_dir(
    user: &ManagedUser,
    create: bool,
    owner: Option<(Uid, nix::unistd::Gid)>,
    labels: &Labels,
) -> Result<Option<OwnedFd>, WriteError> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    match &user.location {
        Location::Directory { dir } => match walk(user, dir)? {
            Some(fd) => Ok(Some(fd)),
            None if create => Err(WriteError::Missing {
                user: user.name.clone(),
                path: dir.clone(),
            }),
            None => Ok(None),
        },
        Location::SshDirUnderHome { home } => {
            let home_fd = match walk(user, home)? {
                Some(fd) => fd,
                None if create => {
                    return Err(WriteError::Missing {
                        user: user.name.clone(),
                        path: home.clone(),
                    })
                }
                None => return Ok(None),
            };
            let ssh_path = home.join(".ssh");
            match openat(
                home_fd.as_fd(),
                ".ssh",
                dir_flags | OFlag::O_NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    check_dir(user, &fd, ssh_path)?;
                    Ok(Some(fd))
                }
                Err(Errno::ENOENT) if create => {
                    mkdirat(home_fd.as_fd(), ".ssh", Mode::S_IRWXU).map_err(|e| {
                        io_error(user, ssh_path.clone(), "cannot create directory", e)
                    })?;
                    let fd = openat(
                        home_fd.as_fd(),
                        ".ssh",
                        dir_flags | OFlag::O_NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| classify_open_error(user, ssh_path.clone(), e, "directory"))?;
                    // Mode before owner: no CAP_FOWNER needed.
                    fchmod(fd.as_fd(), Mode::S_IRWXU).map_err(|e| {
                        io_error(user, ssh_path.clone(), "cannot chmod directory", e)
                    })?;
                    if let Some((uid, gid)) = owner {
                        fchown(fd.as_fd(), Some(uid), Some(gid)).map_err(|e| {
                            io_error(user, ssh_path.clone(), "cannot chown directory", e)
                        })?;
                    }
                    if let Some(label) = labels.for_new(&ssh_path, libc::S_IFDIR) {
                        // Logged, never a reason to hold the keys back.
                        if let Err(e) = crate::selinux::set_label(fd.as_fd(), &label) {
                            tracing::warn!(user = %user.name, "cannot set the SELinux label of {}: {e}; it keeps the label the kernel gave it", ssh_path.display());
                        }
                    }
                    fsync(home_fd.as_fd())
                        .map_err(|e| io_error(user, home.clone(), "cannot fsync", e))?;
                    check_dir(user, &fd, ssh_path)?;
                    Ok(Some(fd))
                }
                Err(Errno::ENOENT) => Ok(None),
                Err(errno) => Err(classify_open_error(user, ssh_path, errno, "directory")),
            }
        }
    }
}

/// Opens directory `dir` from `/` ([`path_walk`]), every step checked for `user`.
fn walk(user: &ManagedUser, dir: &std::path::Path) -> Result<Option<OwnedFd>, WriteError> {
    path_walk::open_dir(dir, user.uid.as_raw()).map_err(|source| WriteError::Path {
        user: user.name.clone(),
        source,
    })
}

/// Turns a failed no-follow open into the error a person needs.
fn classify_open_error(
    user: &ManagedUser,
    path: PathBuf,
    errno: Errno,
    expected: &'static str,
) -> WriteError {
    match errno {
        Errno::ELOOP => WriteError::Symlink {
            user: user.name.clone(),
            path,
        },
        Errno::ENOTDIR => {
            // O_NOFOLLOW|O_DIRECTORY on a symlink can also answer ENOTDIR.
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => WriteError::Symlink {
                    user: user.name.clone(),
                    path,
                },
                _ => WriteError::WrongType {
                    user: user.name.clone(),
                    path,
                    expected,
                },
            }
        }
        other => io_error(user, path, "cannot open", other),
    }
}

fn fstat_of(user: &ManagedUser, fd: &OwnedFd, path: PathBuf) -> Result<FileStat, WriteError> {
    fstat(fd.as_fd()).map_err(|e| io_error(user, path, "cannot stat", e))
}

fn check_owner(user: &ManagedUser, stat: &FileStat, path: PathBuf) -> Result<(), WriteError> {
    if stat.st_uid == user.uid.as_raw() || stat.st_uid == 0 {
        Ok(())
    } else {
        Err(WriteError::WrongOwner {
            user: user.name.clone(),
            path,
            owner: stat.st_uid,
        })
    }
}

fn check_dir(user: &ManagedUser, fd: &OwnedFd, path: PathBuf) -> Result<(), WriteError> {
    let stat = fstat_of(user, fd, path.clone())?;
    check_owner(user, &stat, path.clone())?;
    if stat.st_mode & 0o022 != 0 {
        return Err(WriteError::LooseDirectory {
            user: user.name.clone(),
            path,
        });
    }
    Ok(())
}

/// What `stat` says of a file: equal stamps, same content (as far as a drift check
/// needs to know; anything that rewrites or replaces the file changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl From<&FileStat> for FileStamp {
    fn from(s: &FileStat) -> Self {
        FileStamp {
            dev: s.st_dev,
            ino: s.st_ino,
            size: s.st_size,
            mtime: (s.st_mtime, s.st_mtime_nsec),
            ctime: (s.st_ctime, s.st_ctime_nsec),
        }
    }
}

fn identity_of(dir: &OwnedFd, name: &OsStr) -> Option<FileStamp> {
    fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|s| FileStamp::from(&s))
}

/// The managed file as read.
struct Existing {
    bytes: Vec<u8>,
    stamp: FileStamp,
    /// Its SELinux label, when SELinux is on and it has one.
    label: Option<Vec<u8>>,
    /// Its owner and group, and its permission bits.
    owner: (u32, u32),
    mode: u32,
}

/// Opens and reads the current file after checking it; `None` when it does not exist.
fn read_existing(
    user: &ManagedUser,
    dir: &OwnedFd,
    labels: &Labels,
) -> Result<Option<Existing>, WriteError> {
    read_named(user, dir, &user.file_name, labels)
}

/// [`read_existing`] for the file `name` in the managed file's directory.
fn read_named(
    user: &ManagedUser,
    dir: &OwnedFd,
    name: &OsStr,
    labels: &Labels,
) -> Result<Option<Existing>, WriteError> {
    let path = user.dir().join(name);
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY;
    let fd = match openat(dir.as_fd(), name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(errno) => return Err(classify_open_error(user, path, errno, "regular file")),
    };
    let stat = fstat_of(user, &fd, path.clone())?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(WriteError::WrongType {
            user: user.name.clone(),
            path,
            expected: "regular file",
        });
    }
    check_owner(user, &stat, path.clone())?;
    // More than one name: safe to read and to replace by rename when the file is the
    // user's own (its other names keep the old bytes, reported by the caller); never a
    // file of root's linked into a user's directory, which could be a secret.
    #[allow(clippy::useless_conversion)] // u32 on aarch64, u64 on x86_64
    let links = u64::from(stat.st_nlink);
    if links != 1 && stat.st_uid != user.uid.as_raw() {
        return Err(WriteError::HardLinked {
            user: user.name.clone(),
            path,
            links,
        });
    }
    if stat.st_size as u64 > MAX_FILE_BYTES {
        return Err(WriteError::TooLarge {
            user: user.name.clone(),
            path,
        });
    }
    let label = labels.read(fd.as_fd());
    let mut bytes = Vec::with_capacity(stat.st_size as usize);
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| WriteError::Io {
            user: user.name.clone(),
            path,
            action: "cannot read",
            source,
        })?;
    Ok(Some(Existing {
        bytes,
        stamp: FileStamp::from(&stat),
        label,
        owner: (stat.st_uid, stat.st_gid),
        mode: stat.st_mode & 0o7777,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorized_keys::merge::{render_block, ManagedLine};
    use std::os::unix::fs::PermissionsExt;

    /// A temporary directory on a path sshd's `StrictModes` accepts (never under
    /// `/tmp`, which others can write).
    fn tempdir() -> tempfile::TempDir {
        crate::testing::tempdir()
    }

    fn sandbox_user(dir: &std::path::Path) -> ManagedUser {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        ManagedUser {
            name: "owner".into(),
            uid: Uid::effective(),
            gid: nix::unistd::Gid::effective(),
            location: Location::Directory {
                dir: dir.to_owned(),
            },
            file_name: "authorized_keys".into(),
            write_file: true,
        }
    }

    fn block() -> Vec<u8> {
        render_block(&[ManagedLine {
            public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA",
            key_id: "k1",
        }])
    }

    #[test]
    fn the_hook_runs_once_before_the_new_file_is_visible_and_not_when_unchanged() {
        let dir = tempdir();
        let user = sandbox_user(dir.path());
        std::fs::write(user.path(), "first\n").expect("seed");
        let mut seen = Vec::new();
        apply_then(&user, &block(), || {
            seen.push(std::fs::read_to_string(user.path()).expect("read"));
        })
        .expect("apply");
        assert_eq!(seen, ["first\n"], "once, with the old file still in place");
        assert!(std::fs::read_to_string(user.path())
            .expect("read")
            .contains("k1"));
        let mut calls = 0;
        let outcome = apply_then(&user, &block(), || calls += 1).expect("apply");
        assert!(matches!(outcome, Outcome::Unchanged));
        assert_eq!(calls, 0);
    }

    #[test]
    fn an_edit_landing_during_the_write_is_merged_not_lost() {
        let dir = tempdir();
        let user = sandbox_user(dir.path());
        std::fs::write(user.path(), "first\n").expect("seed");
        let mut attempts = Vec::new();
        let outcome = apply_racing(&user, &block(), &Labels::Off, |attempt| {
            attempts.push(attempt);
            if attempt == 0 {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(user.path())
                    .expect("open");
                std::io::Write::write_all(&mut file, b"owner edit\n").expect("append");
            }
        })
        .expect("applied");
        assert!(matches!(outcome.0, Outcome::Written { .. }));
        assert_eq!(
            attempts,
            [0, 1],
            "the first attempt was abandoned and merged again"
        );
        let text = std::fs::read(user.path()).expect("read");
        assert_eq!(text, [block(), b"first\nowner edit\n".to_vec()].concat());
    }

    #[test]
    fn same_content_is_not_written_again() {
        let dir = tempdir();
        let user = sandbox_user(dir.path());
        assert!(matches!(
            apply(&user, &block()).expect("first"),
            Outcome::Written { .. }
        ));
        assert_eq!(apply(&user, &block()).expect("second"), Outcome::Unchanged);
        let Outcome::Written { previous, .. } = apply(&user, &[]).expect("remove") else {
            panic!("the block must be removed")
        };
        assert_eq!(previous, Some(block()));
        assert_eq!(std::fs::read(user.path()).expect("read"), b"");
    }

    #[test]
    fn a_users_own_hard_linked_file_is_replaced_and_its_other_name_read() {
        let dir = tempdir();
        let user = sandbox_user(dir.path());
        assert_eq!(read_second_name(&user).expect("read"), None);
        apply(&user, &block()).expect("first");
        std::fs::hard_link(user.path(), dir.path().join("authorized_keys2")).expect("link");
        assert!(matches!(
            apply(&user, &[]).expect("replaced"),
            Outcome::Written { .. }
        ));
        assert_eq!(std::fs::read(user.path()).expect("read"), b"");
        let kept = read_second_name(&user).expect("read").expect("there");
        assert_eq!(kept, block(), "the other name keeps the old bytes");
        let stamp = second_name_stamp(&user);
        assert!(stamp.is_some());
        std::fs::remove_file(dir.path().join("authorized_keys2")).expect("rm");
        assert_eq!(second_name_stamp(&user), None);
    }

    #[test]
    fn a_file_of_roots_in_a_users_directory_stays_roots() {
        if !Uid::effective().is_root() {
            return; // the agent's own files are all it can make as anyone else
        }
        let dir = tempdir();
        let mut user = sandbox_user(dir.path());
        user.uid = Uid::from_raw(4242);
        user.gid = nix::unistd::Gid::from_raw(4242);
        std::os::unix::fs::chown(dir.path(), Some(4242), Some(4242)).expect("chown");
        std::fs::write(user.path(), "root's secret line\n").expect("write");
        std::fs::set_permissions(user.path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        apply(&user, &block()).expect("written");
        let meta = std::fs::metadata(user.path()).expect("stat");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (0, 0o600),
            "still root's"
        );
        std::fs::write(user.path(), "").expect("write");
        std::os::unix::fs::chown(user.path(), Some(4242), Some(4242)).expect("chown");
        apply(&user, &[]).expect("written");
        apply(&user, &block()).expect("written");
        assert_eq!(
            std::fs::metadata(user.path()).expect("stat").uid(),
            4242,
            "the user's"
        );
    }

    #[test]
    fn a_temp_dir_under_tmp_is_refused_as_sshd_refuses_it() {
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        let user = sandbox_user(dir.path());
        let err = apply(&user, &block()).expect_err("/tmp is writable by others");
        assert!(
            err.to_string()
                .contains("/tmp is writable by group or others"),
            "{err}"
        );
    }

    #[test]
    fn no_keys_and_no_file_creates_nothing() {
        let dir = tempdir();
        let user = sandbox_user(dir.path());
        assert_eq!(apply(&user, &[]).expect("apply"), Outcome::Unchanged);
        assert!(!user.path().exists());
    }
}
