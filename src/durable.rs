//! The one atomic, durable file replace: a temporary file created exclusively in the same
//! directory, written, fsynced, renamed over the target, and the directory fsynced.
//! A crash at any instant leaves the old file or the new one, never a torn one.
//!
//! Also the other ways the agent creates files and directories, each with an explicit
//! mode that the umask cannot loosen or tighten: [`ensure_dir`] and [`open_append`].

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{fchown, fsync, mkdir, unlinkat, Gid, Pid, Uid, UnlinkatFlags};
use tracing::warn;

/// Read and write for the owner only: every private file of the state directory.
pub const PRIVATE: Mode = Mode::S_IRUSR.union(Mode::S_IWUSR);

/// Where the replace stopped, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error("cannot create a temporary file beside it: {0}")]
    CreateTemp(Errno),
    #[error("cannot set the owner or mode of the temporary file: {0}")]
    Owner(Errno),
    #[error("cannot write the temporary file: {0}")]
    Write(std::io::Error),
    #[error("cannot rename the temporary file over it: {0}")]
    Rename(Errno),
    #[error("cannot fsync the directory: {0}")]
    SyncDir(Errno),
    /// The caller's last check before the rename said no (the target changed under us).
    #[error("the file changed while it was being rewritten")]
    Superseded,
}

/// Who the new file belongs to, its permission bits and its SELinux label.
#[derive(Debug, Clone, Copy)]
pub struct FileMode<'a> {
    pub owner: Option<(Uid, Gid)>,
    pub mode: Mode,
    /// The `security.selinux` attribute to give it ([`crate::selinux`]), or `None` to
    /// leave the one the kernel gives. One that cannot be set is logged, and the file is
    /// replaced all the same.
    pub label: Option<&'a [u8]>,
}

/// Creates the directory `path`, and any missing parent, each with exactly `mode`: the
/// mode is set with `fchmod` after `mkdir`, so the umask changes nothing. A directory
/// that exists already is left as it is.
pub fn ensure_dir(path: &Path, mode: Mode) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent, mode)?;
    }
    match mkdir(path, mode) {
        Ok(()) => {}
        // Made meanwhile by someone else: theirs, as it is.
        Err(Errno::EEXIST) if path.is_dir() => return Ok(()),
        Err(errno) => return Err(errno.into()),
    }
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    fchmod(fd.as_fd(), mode)?;
    Ok(())
}

/// Opens `path` for appending (and reading, when `read`), creating it with mode 0600
/// whatever the umask; never through a symlink. An existing file with another mode (one
/// made by an older version under a loose umask) is set to 0600; if that fails (a file
/// some other account owns), it is said in the log and the file used as it is.
pub fn open_append(path: &Path, read: bool) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(read)
        .append(true)
        .create(true)
        .mode(PRIVATE.bits())
        .custom_flags(OFlag::O_NOFOLLOW.bits() | OFlag::O_CLOEXEC.bits())
        .open(path)?;
    let mode = file.metadata()?.mode() & 0o7777;
    if mode != PRIVATE.bits() {
        let wanted = std::fs::Permissions::from_mode(PRIVATE.bits());
        if let Err(e) = file.set_permissions(wanted) {
            warn!(
                "{} has mode {mode:04o} and cannot be set to 0600: {e}",
                path.display()
            );
        }
    }
    Ok(file)
}

/// Prefix of this agent's temporary files for `name`: `.NAME.pictor-tmp.`.
pub fn temp_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".pictor-tmp.");
    prefix
}

/// Replaces `dir/name` with `content`. `still_current` runs after the data is durable
/// and just before the rename; when it returns false the temp file is removed and
/// [`ReplaceError::Superseded`] returned, so the caller can merge again.
///
/// No failure leaves the temporary file behind, whoever owns the directory: the file
/// stays the agent's own until just before the rename (so the agent can always remove
/// it, even from a sticky directory), is given back to the agent before it is removed
/// after a failed rename, and is emptied through the descriptor when its name was taken
/// away meanwhile. A name is never reused: each write makes a new one exclusively. And a
/// file that would not fit in the free space is not written at all.
pub fn replace_at(
    dir: &OwnedFd,
    name: &OsStr,
    content: &[u8],
    mode: FileMode<'_>,
    still_current: impl FnOnce() -> bool,
) -> Result<(), ReplaceError> {
    check_space(dir, content.len())?;
    let mut temp = temp_prefix(name);
    temp.push(format!("{}.{:016x}", std::process::id(), fastrand::u64(..)));
    // Listed as ours until it is renamed or removed: another write of the same name in
    // this process must not take it for a dead writer's.
    let _in_flight = InFlight::enter(&temp);
    let fd = openat(
        dir.as_fd(),
        temp.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(ReplaceError::CreateTemp)?;
    let mut file = std::fs::File::from(fd);
    let mut given_away = false;
    let result = (|| {
        fchmod(file.as_fd(), mode.mode).map_err(ReplaceError::Owner)?;
        if let Some(label) = mode.label {
            // Never a reason to keep the old file (and a deleted key in it): the new
            // one keeps the label the kernel gave it, which is the directory's.
            if let Err(e) = crate::selinux::set_label(file.as_fd(), label) {
                warn!("cannot set the SELinux label of the new file beside {:?}: {e}; it keeps the label of its directory", name.to_string_lossy());
            }
        }
        file.write_all(content).map_err(ReplaceError::Write)?;
        // fdatasync: the data and size are what must survive; the mode was set at
        // creation, and a crash before the rename leaves only this temporary file
        // (removed by the next write), never a file in place with the wrong owner.
        file.sync_data().map_err(ReplaceError::Write)?;
        if !still_current() {
            return Err(ReplaceError::Superseded);
        }
        // The owner last: until here the file is the agent's, removable anywhere.
        if let Some((uid, gid)) = mode.owner {
            fchown(file.as_fd(), Some(uid), Some(gid)).map_err(ReplaceError::Owner)?;
            given_away = true;
        }
        renameat(dir.as_fd(), temp.as_os_str(), dir.as_fd(), name).map_err(ReplaceError::Rename)?;
        // The name may have been swapped between the write and the rename by whoever
        // can write the directory: what is in place now must be what was written.
        if same_inode(dir, name, &file) {
            Ok(())
        } else {
            Err(ReplaceError::Superseded)
        }
    })();
    if let Err(error) = result {
        discard_temp(dir, &temp, &file, given_away);
        return Err(error);
    }
    fsync(dir.as_fd()).map_err(ReplaceError::SyncDir)
}

/// Removes the temporary file `temp` (held open as `file`) after a failed replace.
fn discard_temp(dir: &OwnedFd, temp: &OsStr, file: &File, given_away: bool) {
    if given_away {
        // Back to the agent, so a sticky directory lets it go (CAP_CHOWN is enough).
        let _ = fchown(file.as_fd(), Some(Uid::effective()), Some(Gid::effective()));
    }
    let ours = same_inode(dir, temp, file);
    if ours && unlinkat(dir.as_fd(), temp, UnlinkatFlags::NoRemoveDir).is_ok() {
        return;
    }
    // Its name was taken away, or it cannot be removed: at least it holds no space.
    let _ = file.set_len(0);
    warn!(
        "the temporary file {:?} could not be removed ({}); it was emptied",
        temp.to_string_lossy(),
        if ours {
            "unlink refused"
        } else {
            "its name no longer leads to it"
        }
    );
}

/// True when `dir/name` (not followed) is the inode open as `file`.
fn same_inode(dir: &OwnedFd, name: &OsStr, file: &File) -> bool {
    let Ok(held) = file.metadata() else {
        return false;
    };
    nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|at| at.st_dev == held.dev() && at.st_ino == held.ino())
}

/// Refuses, before a byte is written, a file that cannot fit in the space left to the
/// agent: a full disk is retried without writing (and failing) again each time.
fn check_space(dir: &OwnedFd, len: usize) -> Result<(), ReplaceError> {
    let Ok(stat) = nix::sys::statvfs::fstatvfs(dir.as_fd()) else {
        return Ok(());
    };
    if stat.blocks() == 0 {
        // A file system that keeps no count (ramfs, some FUSE ones): the write will say.
        return Ok(());
    }
    let free = if Uid::effective().is_root() {
        stat.blocks_free()
    } else {
        stat.blocks_available()
    };
    #[allow(clippy::unnecessary_cast)] // the libc types differ between architectures
    let free = (free as u64).saturating_mul(stat.fragment_size() as u64);
    if (len as u64).saturating_add(4096) > free {
        return Err(ReplaceError::Write(std::io::Error::from_raw_os_error(
            libc::ENOSPC,
        )));
    }
    Ok(())
}

/// Removes temporary files for `name` left by an agent that was killed mid-write
/// (their process is gone). Only the first call for a directory and name in this
/// process's life lists the directory: a live agent removes its own temporary files on
/// every failure, so later calls would find nothing new (and each listing costs a 32 kB
/// buffer). Best effort.
pub fn remove_stale_temps(dir: &OwnedFd, name: &OsStr) {
    static CLEANED: std::sync::Mutex<Cleaned> = std::sync::Mutex::new(Cleaned::new());
    let Ok(at) = nix::sys::stat::fstat(dir.as_fd()) else {
        return;
    };
    #[allow(clippy::unnecessary_cast)] // the libc types differ between architectures
    let key = (at.st_dev as u64, at.st_ino as u64, name.to_owned());
    let first = CLEANED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .first_time(key, CLEANED_MAX);
    if !first {
        return;
    }
    let prefix = temp_prefix(name);
    let Ok(dup) = dir.try_clone() else { return };
    let Ok(mut listing) = nix::dir::Dir::from_fd(dup) else {
        return;
    };
    let stale: Vec<OsString> = listing
        .iter()
        .filter_map(Result::ok)
        .map(|entry| OsStr::from_bytes(entry.file_name().to_bytes()).to_owned())
        .filter(|entry| entry.as_bytes().starts_with(prefix.as_bytes()))
        .filter(|entry| !writer_alive(entry, prefix.len()))
        .collect();
    for entry in stale {
        let _ = unlinkat(dir.as_fd(), entry.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// How many directories and names [`remove_stale_temps`] remembers having looked at.
const CLEANED_MAX: usize = 1024;

/// The directories (device, inode) and names already looked at for dead writers'
/// files, oldest first and at most a given number: a user who replaces their `.ssh`
/// before every write makes a new directory each time, and must not make this grow
/// without bound. One forgotten is only looked at again. A directory made later with a
/// reused inode is taken as looked at: its dead writers' files wait for the next start.
struct Cleaned {
    seen: std::collections::VecDeque<(u64, u64, OsString)>,
}

impl Cleaned {
    const fn new() -> Cleaned {
        Cleaned {
            seen: std::collections::VecDeque::new(),
        }
    }

    /// True the first time `key` is seen (since it was last forgotten).
    fn first_time(&mut self, key: (u64, u64, OsString), max: usize) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.seen.len() >= max {
            self.seen.pop_front();
        }
        self.seen.push_back(key);
        true
    }
}

/// The temporary files this process is writing (their names: a pid and 64 random bits
/// make them unique across directories).
static IN_FLIGHT: std::sync::Mutex<Vec<OsString>> = std::sync::Mutex::new(Vec::new());

/// A temporary name listed in [`IN_FLIGHT`] while this lives.
struct InFlight(OsString);

impl InFlight {
    fn enter(temp: &OsStr) -> InFlight {
        in_flight().push(temp.to_owned());
        InFlight(temp.to_owned())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().retain(|name| *name != self.0);
    }
}

fn in_flight() -> std::sync::MutexGuard<'static, Vec<OsString>> {
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// True when the temp file `name` (`PREFIX` `PID.RANDOM`) may still be written: its pid
/// is a live process other than this one, or it is one of this process's own writes in
/// flight. This process's pid on a file it is not writing means an earlier agent with
/// the same pid (a restart in a container often gets it again) left it behind.
fn writer_alive(name: &OsStr, prefix_len: usize) -> bool {
    let suffix = &name.as_bytes()[prefix_len..];
    let pid = std::str::from_utf8(suffix)
        .ok()
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.parse::<i32>().ok());
    match pid {
        Some(pid) if pid == std::process::id() as i32 => in_flight().iter().any(|n| n == name),
        Some(pid) if pid > 0 => nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("dir")
    }

    const OWNER_ONLY: FileMode = FileMode {
        owner: None,
        mode: Mode::S_IRUSR.union(Mode::S_IWUSR),
        label: None,
    };

    #[test]
    fn replaces_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"old").expect("write");
        let fd = open_dir(dir.path());
        replace_at(&fd, OsStr::new("f"), b"new", OWNER_ONLY, || true).expect("replace");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn superseded_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"old").expect("write");
        let fd = open_dir(dir.path());
        let err =
            replace_at(&fd, OsStr::new("f"), b"new", OWNER_ONLY, || false).expect_err("superseded");
        assert!(matches!(err, ReplaceError::Superseded));
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_failed_rename_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A non-empty directory at the name: the rename fails after the write.
        std::fs::create_dir(dir.path().join("f")).expect("mkdir");
        std::fs::write(dir.path().join("f/inside"), b"x").expect("write");
        let fd = open_dir(dir.path());
        let err =
            replace_at(&fd, OsStr::new("f"), b"new", OWNER_ONLY, || true).expect_err("rename");
        assert!(matches!(err, ReplaceError::Rename(_)), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_write_in_flight_is_not_taken_for_a_dead_writers_by_another_of_the_same_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fd = open_dir(dir.path());
        let name = OsStr::new("inflight");
        // A second write of the same name finishes (and cleans up) while the first one
        // is between its fsync and its rename.
        replace_at(&fd, name, b"first", OWNER_ONLY, || {
            replace_at(&fd, name, b"second", OWNER_ONLY, || true).expect("second write");
            remove_stale_temps(&fd, name);
            true
        })
        .expect("the first write's temporary file was left alone");
        assert_eq!(
            std::fs::read(dir.path().join("inflight")).expect("read"),
            b"first"
        );
        // A file with this process's pid that no write holds is a dead agent's.
        let other = tempfile::tempdir().expect("tempdir");
        let left = other.path().join(format!(
            ".inflight.pictor-tmp.{}.00000000000000aa",
            std::process::id()
        ));
        std::fs::write(&left, b"half").expect("write");
        remove_stale_temps(&open_dir(other.path()), name);
        assert!(
            !left.exists(),
            "an earlier agent's temp with the same pid is removed"
        );
    }

    #[test]
    fn the_directories_remembered_as_looked_at_are_bounded() {
        let mut cleaned = Cleaned::new();
        let key = |ino: u64| (1, ino, OsString::from("authorized_keys"));
        assert!(cleaned.first_time(key(1), 2));
        assert!(!cleaned.first_time(key(1), 2));
        assert!(cleaned.first_time(key(2), 2));
        // A third directory (a `.ssh` swapped again): the oldest is forgotten.
        assert!(cleaned.first_time(key(3), 2));
        assert_eq!(cleaned.seen.len(), 2);
        assert!(
            cleaned.first_time(key(1), 2),
            "forgotten, so looked at again"
        );
        assert!(!cleaned.first_time(key(3), 2));
    }

    #[test]
    fn a_directory_is_listed_for_dead_writers_once_per_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fd = open_dir(dir.path());
        let first = dir.path().join(".g.pictor-tmp.2147483632.00000000000000aa");
        std::fs::write(&first, b"half").expect("write");
        remove_stale_temps(&fd, OsStr::new("g"));
        assert!(!first.exists());
        // Left later (by another process): not looked for again, even through another
        // descriptor of the same directory.
        let later = dir.path().join(".g.pictor-tmp.2147483632.00000000000000bb");
        std::fs::write(&later, b"half").expect("write");
        remove_stale_temps(&open_dir(dir.path()), OsStr::new("g"));
        assert!(later.exists());
        // Another name in the same directory has its own first time.
        let other = dir.path().join(".h.pictor-tmp.2147483632.00000000000000cc");
        std::fs::write(&other, b"half").expect("write");
        remove_stale_temps(&fd, OsStr::new("h"));
        assert!(!other.exists());
    }

    // The tests that call remove_stale_temps use a name each: a temporary directory of
    // another test may get the same inode, and (directory, name) is listed once.
    #[test]
    fn stale_temps_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // pid 0x7fff_fff0 is beyond pid_max, so certainly not running.
        let stale = dir
            .path()
            .join(".stale.pictor-tmp.2147483632.00000000000000aa");
        std::fs::write(&stale, b"half").expect("write");
        let unrelated = dir.path().join(".stale.other");
        std::fs::write(&unrelated, b"keep").expect("write");
        remove_stale_temps(&open_dir(dir.path()), OsStr::new("stale"));
        assert!(!stale.exists());
        assert!(unrelated.exists());
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn the_mode_asked_for_is_the_mode_given_whatever_the_umask() {
        // The umask (022 or 077 in a test run) would strip these bits from a plain
        // create; the explicit fchmod keeps them.
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a").join("b");
        ensure_dir(&nested, Mode::from_bits_truncate(0o777)).expect("mkdir");
        assert_eq!(mode(&nested), 0o777);
        assert_eq!(mode(&dir.path().join("a")), 0o777, "the parent it made too");
        ensure_dir(&nested, Mode::from_bits_truncate(0o700)).expect("exists");
        assert_eq!(mode(&nested), 0o777, "an existing directory is left alone");
        let fd = open_dir(dir.path());
        let loose = FileMode {
            owner: None,
            mode: Mode::from_bits_truncate(0o666),
            label: None,
        };
        replace_at(&fd, OsStr::new("f"), b"x", loose, || true).expect("replace");
        assert_eq!(mode(&dir.path().join("f")), 0o666);
    }

    #[test]
    fn appended_files_are_created_0600_and_made_0600_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        drop(open_append(&path, false).expect("create"));
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(open_append(&path, true).expect("open"));
        assert_eq!(mode(&path), 0o600, "an older file is made private");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(open_append(&link, false).is_err());
    }
}
