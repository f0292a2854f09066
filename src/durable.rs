//! The one atomic, durable file replace: a temporary file created exclusively in the same
//! directory, written, fsynced, renamed over the target, and the directory fsynced.
//! A crash at any instant leaves the old file or the new one, never a torn one.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{fchown, fsync, unlinkat, Gid, Pid, Uid, UnlinkatFlags};

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

/// Who the new file belongs to and its permission bits.
#[derive(Debug, Clone, Copy)]
pub struct FileMode {
    pub owner: Option<(Uid, Gid)>,
    pub mode: Mode,
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
pub fn replace_at(
    dir: &OwnedFd,
    name: &OsStr,
    content: &[u8],
    mode: FileMode,
    still_current: impl FnOnce() -> bool,
) -> Result<(), ReplaceError> {
    let mut temp = temp_prefix(name);
    temp.push(format!("{}.{:016x}", std::process::id(), fastrand::u64(..)));
    let fd = openat(
        dir.as_fd(),
        temp.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .map_err(ReplaceError::CreateTemp)?;
    let result = (|| {
        // Mode first, owner second: changing the mode of a file one no longer owns
        // would need CAP_FOWNER, which the service does not have.
        fchmod(fd.as_fd(), mode.mode).map_err(ReplaceError::Owner)?;
        if let Some((uid, gid)) = mode.owner {
            fchown(fd.as_fd(), Some(uid), Some(gid)).map_err(ReplaceError::Owner)?;
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(content).map_err(ReplaceError::Write)?;
        // fdatasync: the data and size are what must survive; the mode was set at
        // creation and an owner lost in a crash leaves a root-owned file sshd accepts.
        file.sync_data().map_err(ReplaceError::Write)?;
        drop(file);
        if !still_current() {
            return Err(ReplaceError::Superseded);
        }
        renameat(dir.as_fd(), temp.as_os_str(), dir.as_fd(), name).map_err(ReplaceError::Rename)
    })();
    if let Err(error) = result {
        let _ = unlinkat(dir.as_fd(), temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        return Err(error);
    }
    fsync(dir.as_fd()).map_err(ReplaceError::SyncDir)
}

/// A [`replace_at`] running on a thread of its own, so the caller can prepare other
/// writes meanwhile; [`PendingReplace::wait`] returns once the new file is durably in
/// place. Dropped without a wait, it still finishes (the drop waits for it).
#[derive(Debug)]
pub struct PendingReplace {
    done: Option<std::thread::JoinHandle<Result<(), ReplaceError>>>,
}

/// Starts replacing `dir/name` with `content` (no concurrent-edit check: for files only
/// the agent writes); once it is in place, dead writers' temporary files are removed,
/// still on that thread.
pub fn begin_replace(
    dir: OwnedFd,
    name: OsString,
    content: Vec<u8>,
    mode: FileMode,
) -> Result<PendingReplace, ReplaceError> {
    let done = std::thread::Builder::new()
        .name("durable-write".into())
        .spawn(move || {
            replace_at(&dir, &name, &content, mode, || true)?;
            remove_stale_temps(&dir, &name);
            Ok(())
        })
        .map_err(ReplaceError::Write)?;
    Ok(PendingReplace { done: Some(done) })
}

impl PendingReplace {
    /// Waits until the new file is durably in place (or the replace failed).
    pub fn wait(mut self) -> Result<(), ReplaceError> {
        match self.done.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) | None => Err(ReplaceError::Write(std::io::Error::other(
                "the writing thread failed",
            ))),
        }
    }
}

impl Drop for PendingReplace {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.join();
        }
    }
}

/// Removes temporary files for `name` left by an agent that was killed mid-write
/// (their process is gone). Best effort: the directory is small and this runs only
/// after a write.
pub fn remove_stale_temps(dir: &OwnedFd, name: &OsStr) {
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
        .filter(|entry| !writer_alive(&entry.as_bytes()[prefix.len()..]))
        .collect();
    for entry in stale {
        let _ = unlinkat(dir.as_fd(), entry.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// True when the pid embedded in a temp name (`PID.RANDOM`) is a live process.
fn writer_alive(suffix: &[u8]) -> bool {
    let pid = std::str::from_utf8(suffix)
        .ok()
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.parse::<i32>().ok());
    match pid {
        Some(pid) if pid > 0 => {
            nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
                && pid != std::process::id() as i32
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("dir")
    }

    const PRIVATE: FileMode = FileMode {
        owner: None,
        mode: Mode::S_IRUSR.union(Mode::S_IWUSR),
    };

    #[test]
    fn replaces_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"old").expect("write");
        let fd = open_dir(dir.path());
        replace_at(&fd, OsStr::new("f"), b"new", PRIVATE, || true).expect("replace");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn superseded_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"old").expect("write");
        let fd = open_dir(dir.path());
        let err =
            replace_at(&fd, OsStr::new("f"), b"new", PRIVATE, || false).expect_err("superseded");
        assert!(matches!(err, ReplaceError::Superseded));
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_pending_replace_is_in_place_once_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"old").expect("write");
        let pending = begin_replace(open_dir(dir.path()), "f".into(), b"new".to_vec(), PRIVATE)
            .expect("begin");
        pending.wait().expect("replaced");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_pending_replace_that_fails_says_why_and_leaves_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The target's name is taken by a non-empty directory: the rename fails.
        std::fs::create_dir(dir.path().join("f")).expect("mkdir");
        std::fs::write(dir.path().join("f").join("x"), b"").expect("write");
        let pending = begin_replace(open_dir(dir.path()), "f".into(), b"new".to_vec(), PRIVATE)
            .expect("begin");
        assert!(matches!(pending.wait(), Err(ReplaceError::Rename(_))));
        assert!(dir.path().join("f").join("x").exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // pid 0x7fff_fff0 is beyond pid_max, so certainly not running.
        let stale = dir.path().join(".f.pictor-tmp.2147483632.00000000000000aa");
        std::fs::write(&stale, b"half").expect("write");
        let unrelated = dir.path().join(".f.other");
        std::fs::write(&unrelated, b"keep").expect("write");
        remove_stale_temps(&open_dir(dir.path()), OsStr::new("f"));
        assert!(!stale.exists());
        assert!(unrelated.exists());
    }
}
