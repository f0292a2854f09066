//! Watches the directories of managed files (inotify, through notify) and says which
//! user's file may have drifted. Reads (sshd opening the file at each login) are not
//! reported; creation, modification, renames and deletion are.

use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A set of directory watches, each tied to the index of a managed user.
pub struct DriftWatch {
    watcher: RecommendedWatcher,
    /// (directory watched, file in it, as opened; the file as reported).
    dirs: std::sync::Arc<std::sync::Mutex<Vec<(PathBuf, PathBuf, PathBuf)>>>,
    /// The directories watched now, with the (device, inode) they had then.
    watched: std::collections::HashMap<PathBuf, (u64, u64)>,
}

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    pub path: PathBuf,
    pub source: notify::Error,
}

impl DriftWatch {
    /// Starts the watcher thread; the paths of touched managed files (or of the
    /// `authorized_keys2` beside them) are sent on `tx`.
    pub fn new(tx: mpsc::UnboundedSender<PathBuf>) -> Result<DriftWatch, WatchError> {
        let dirs: std::sync::Arc<std::sync::Mutex<Vec<(PathBuf, PathBuf, PathBuf)>>> =
            Default::default();
        let watched = dirs.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let dirs = watched.lock().unwrap_or_else(|p| p.into_inner());
            for path in &event.paths {
                for (dir, file, reported) in dirs.iter() {
                    // The file sshd reads beside the managed one too: its report
                    // follows it (see `authorized_keys::write::SSHD_SECOND_NAME`).
                    let second = path.parent() == Some(dir.as_path())
                        && path.file_name()
                            == Some(std::ffi::OsStr::new(
                                crate::authorized_keys::write::SSHD_SECOND_NAME,
                            ));
                    if path == file || path == dir || second {
                        let _ = tx.send(reported.clone());
                    }
                }
            }
        })
        .map_err(|source| WatchError {
            path: PathBuf::new(),
            source,
        })?;
        Ok(DriftWatch {
            watcher,
            dirs,
            watched: std::collections::HashMap::new(),
        })
    }

    /// Watches the directory of `file`, unless the same directory (device and inode) is
    /// watched already: calling it again costs a `stat` and never opens a gap in which an
    /// edit goes unseen. A replaced directory is watched anew. True when a new watch was
    /// set up (the caller checks the file once more: it may have changed before). A
    /// missing directory is not an error: there is nothing to protect until the agent
    /// creates it.
    pub fn watch(&mut self, file: &Path) -> Result<bool, WatchError> {
        use std::os::unix::fs::MetadataExt;
        let opened = crate::home_binds::view(file).into_owned();
        let Some(dir) = opened.parent().map(Path::to_path_buf) else {
            return Ok(false);
        };
        {
            let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            if !dirs.iter().any(|(_, _, f)| f == file) {
                dirs.push((dir.clone(), opened.clone(), file.to_path_buf()));
            }
        }
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            self.watched.remove(&dir);
            return Ok(false);
        };
        let identity = (meta.dev(), meta.ino());
        if self.watched.get(&dir) == Some(&identity) {
            return Ok(false);
        }
        let _ = self.watcher.unwatch(&dir);
        match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir, identity);
                Ok(true)
            }
            Err(e) if matches!(&e.kind, notify::ErrorKind::PathNotFound) => Ok(false),
            Err(e) if matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {
                Ok(false)
            }
            Err(source) => Err(WatchError { path: dir, source }),
        }
    }

    /// Stops watching `file`'s directory.
    pub fn unwatch(&mut self, file: &Path) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.retain(|(_, _, f)| f != file);
        let opened = crate::home_binds::view(file);
        if let Some(dir) = opened.parent() {
            if !dirs.iter().any(|(d, _, _)| d == dir) {
                let _ = self.watcher.unwatch(dir);
                self.watched.remove(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_watched_once_and_again_only_when_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("ssh");
        std::fs::create_dir(&dir).expect("mkdir");
        let file = dir.join("authorized_keys");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watch = DriftWatch::new(tx).expect("watcher");
        assert!(watch.watch(&file).expect("watch"), "a new watch");
        assert!(
            !watch.watch(&file).expect("watch"),
            "the same directory: no gap"
        );
        std::fs::write(&file, "edit\n").expect("edit");
        let seen = rx.blocking_recv().expect("an event");
        assert_eq!(seen, file);
        // The directory replaced by another: watched anew.
        std::fs::rename(&dir, root.path().join("old")).expect("move away");
        std::fs::create_dir(&dir).expect("mkdir again");
        assert!(watch.watch(&file).expect("watch"), "a replaced directory");
        // Gone: nothing to watch, not an error.
        std::fs::remove_dir(&dir).expect("rmdir");
        assert!(!watch.watch(&file).expect("missing is fine"));
    }
}
