//! Opening the directory of a managed file from `/`, one component at a time, never
//! following a link a user could have planted, and judging every directory on the way
//! as sshd's `StrictModes` judges the path to `authorized_keys`.
//!
//! The rules ([`judge_dir`], [`may_follow`], pure):
//!
//! - every directory on the way is owned by root or by the file's user, and is not
//!   writable by group or others (so `/tmp`, mode 1777, is refused, as sshd refuses it);
//! - a symbolic link is followed only when it is owned by root and every directory above
//!   it is owned by root and writable by root alone (`/home -> /var/home` works; a link a
//!   user made anywhere in a directory they can write is refused, with the reason);
//! - at most [`MAX_LINKS`] links are followed (a loop is refused, not walked forever).
//!
//! Each component is opened with `openat(O_NOFOLLOW)` relative to the directory already
//! held, so no rename or symlink swap between a check and a use can move the walk.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};

/// Links followed on one walk before it is refused as a loop (Linux's own limit).
pub const MAX_LINKS: usize = 40;

/// Why a directory on the way was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirFault {
    /// Owned by neither root nor the user.
    Owner(u32),
    /// Writable by group or others.
    Loose,
}

/// A directory on the way, as sshd's `StrictModes` judges it (pure).
pub fn judge_dir(owner: u32, mode: u32, user: u32) -> Result<(), DirFault> {
    if owner != 0 && owner != user {
        return Err(DirFault::Owner(owner));
    }
    if mode & 0o022 != 0 {
        return Err(DirFault::Loose);
    }
    Ok(())
}

/// Owned by root and writable by root alone: nobody else can change what is in it.
pub fn root_only(owner: u32, mode: u32) -> bool {
    owner == 0 && mode & 0o022 == 0
}

/// A link may be followed when root made it in a directory only root controls, all the
/// way up (pure): nobody but root could have planted or swapped it.
pub fn may_follow(link_owner: u32, above_root_only: bool) -> bool {
    link_owner == 0 && above_root_only
}

/// Why a walk stopped. Every variant names the path as the agent shows it.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{} is a symbolic link; refusing to follow it: {why}", .path.display())]
    Symlink { path: PathBuf, why: &'static str },
    #[error("{} is owned by uid {owner}, not by the user or root; refusing to write", .path.display())]
    WrongOwner { path: PathBuf, owner: u32 },
    #[error("{} is writable by group or others; refusing to write", .path.display())]
    LooseDirectory { path: PathBuf },
    #[error("{} is not a directory; refusing to write", .path.display())]
    NotDirectory { path: PathBuf },
    #[error("{} leads through more than {MAX_LINKS} symbolic links; refusing to follow them", .path.display())]
    TooManyLinks { path: PathBuf },
    #[error("{}: {action}: {errno}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        errno: Errno,
    },
}

/// One directory held on the way down.
struct Held {
    fd: OwnedFd,
    /// The path as shown (the real one, not the service's bind view).
    shown: PathBuf,
    /// This directory and every one above it are root's alone.
    root_only: bool,
}

/// Opens directory `path` for `user`, checked all the way from `/` (`None`: a component
/// does not exist). `path` is the real path; under the packaged unit it is opened through
/// the service's view of `/home` and `/root` ([`crate::home_binds`]), and the real path
/// is what errors name.
pub fn open_dir(path: &Path, user: u32) -> Result<Option<OwnedFd>, WalkError> {
    let view = crate::home_binds::view(path);
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, &view);
    let mut stack = vec![open_root()?];
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let Some(top) = stack.last() else {
            break;
        };
        let shown = crate::home_binds::unview(&top.shown.join(&name)).into_owned();
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(top.fd.as_fd(), name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => {
                let held = judge_held(fd, shown, top.root_only, user)?;
                stack.push(held);
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let target = follow(top, &name, &shown)?;
                links += 1;
                if links > MAX_LINKS {
                    return Err(WalkError::TooManyLinks { path: shown });
                }
                if target.is_absolute() {
                    // Absolute: from `/` again, in this process's view.
                    stack.truncate(1);
                    push_front(&mut pending, &crate::home_binds::view(&target));
                } else {
                    push_front(&mut pending, &target);
                }
            }
            Err(errno) => {
                return Err(WalkError::Io {
                    path: shown,
                    action: "cannot open",
                    errno,
                })
            }
        }
    }
    Ok(stack.pop().map(|held| held.fd))
}

/// `/`, judged like the rest (a root directory not root's alone is refused too).
fn open_root() -> Result<Held, WalkError> {
    let root = PathBuf::from("/");
    let fd = open(
        &root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| WalkError::Io {
        path: root.clone(),
        action: "cannot open",
        errno,
    })?;
    judge_held(fd, root, true, 0)
}

fn judge_held(
    fd: OwnedFd,
    shown: PathBuf,
    above_root_only: bool,
    user: u32,
) -> Result<Held, WalkError> {
    let stat = fstat(fd.as_fd()).map_err(|errno| WalkError::Io {
        path: shown.clone(),
        action: "cannot stat",
        errno,
    })?;
    match judge_dir(stat.st_uid, stat.st_mode, user) {
        Ok(()) => Ok(Held {
            fd,
            root_only: above_root_only && root_only(stat.st_uid, stat.st_mode),
            shown,
        }),
        Err(DirFault::Owner(owner)) => Err(WalkError::WrongOwner { path: shown, owner }),
        Err(DirFault::Loose) => Err(WalkError::LooseDirectory { path: shown }),
    }
}

/// The target of the link `name` in `dir`, when it may be followed.
fn follow(dir: &Held, name: &OsStr, shown: &Path) -> Result<PathBuf, WalkError> {
    let io = |action, errno| WalkError::Io {
        path: shown.to_owned(),
        action,
        errno,
    };
    let stat = fstatat(dir.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| io("cannot stat", e))?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFLNK {
        return Err(WalkError::NotDirectory {
            path: shown.to_owned(),
        });
    }
    if !may_follow(stat.st_uid, dir.root_only) {
        let why = if stat.st_uid != 0 {
            "it is not owned by root"
        } else {
            "a directory above it is writable by someone other than root"
        };
        return Err(WalkError::Symlink {
            path: shown.to_owned(),
            why,
        });
    }
    readlinkat(dir.fd.as_fd(), name)
        .map(PathBuf::from)
        .map_err(|e| io("cannot read the link", e))
}

/// Puts `path`'s components (names and `..`) before what is still to walk.
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for name in names.into_iter().rev() {
        pending.push_front(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_judged_as_strict_modes_judges_them() {
        let user = 1000;
        assert_eq!(judge_dir(0, 0o40755, user), Ok(()));
        assert_eq!(judge_dir(user, 0o40700, user), Ok(()));
        assert_eq!(
            judge_dir(user, 0o41700, user),
            Ok(()),
            "a sticky bit alone is fine"
        );
        assert_eq!(judge_dir(1001, 0o40700, user), Err(DirFault::Owner(1001)));
        assert_eq!(judge_dir(0, 0o41777, user), Err(DirFault::Loose), "/tmp");
        assert_eq!(judge_dir(user, 0o40770, user), Err(DirFault::Loose));
        assert_eq!(judge_dir(0, 0o40757, user), Err(DirFault::Loose));
    }

    #[test]
    fn only_roots_links_in_roots_directories_are_followed() {
        assert!(may_follow(0, true));
        assert!(
            !may_follow(0, false),
            "in or under a directory a user can write"
        );
        assert!(!may_follow(1000, true), "a user's link");
        assert!(root_only(0, 0o40755));
        assert!(!root_only(1000, 0o40755));
        assert!(!root_only(0, 0o41777));
    }

    #[test]
    fn components_keep_parent_steps_in_order() {
        let mut pending = VecDeque::from([OsString::from("rest")]);
        push_front(&mut pending, Path::new("../a/./b"));
        assert_eq!(pending, ["..", "a", "b", "rest"]);
    }
}
