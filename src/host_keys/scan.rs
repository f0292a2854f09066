//! Reading the host key files the configuration names (I/O; blocking, run off the
//! runtime).
//!
//! A pattern's directory is literal (the configuration checks it) and its last part a
//! glob. Each match is opened without following a symlink, must be a regular file of at
//! most [`super::MAX_FILE_BYTES`], and is judged by [`super::judge`]:
//! anything else is skipped with a reason. A file named `*-cert.pub` is a certificate,
//! never a key: it is read only beside the key it names (`KEY.pub` and `KEY-cert.pub`).
//!
//! **Whose files.** A host key published in the status ends up in `known_hosts`: a key
//! a local user could place there would let them pose as the instance. So a file is
//! read only when its directory (checked on the descriptor the file is opened through)
//! and the file itself (checked with `fstat` on the opened descriptor) are owned by
//! root or by the user the agent runs as (the demo's unprivileged sshd owns its keys),
//! and neither is writable by group or others ([`trusted`], pure). An operator's glob
//! into a directory users can write (`/tmp/*.pub`) publishes nothing from it, and says
//! so for every file it skips.
//!
//! **Bounded.** At most [`MAX_ENTRIES`] entries of a directory are examined per scan
//! (more is said, not silently ignored), so no directory costs more than that.
//! Everything printed of a path is escaped ([`crate::escape`]): file names are chosen by
//! whoever can create files.

use std::collections::BTreeSet;

use crate::api::model::HostKey;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::{judge, judge_certificate, HostKeysReport, MAX_FILE_BYTES};
use crate::escape;

/// Entries of one directory examined per scan at most (`/etc/ssh` holds a few dozen).
pub const MAX_ENTRIES: usize = 4096;

/// Whether a file or directory with this owner and mode may hold a published host key:
/// owned by root or by `agent_uid`, not writable by group or others. `what` names it in
/// the reason. Pure.
pub fn trusted(what: &str, uid: u32, mode: u32, agent_uid: u32) -> Result<(), String> {
    if uid != 0 && uid != agent_uid {
        return Err(format!(
            "{what} is owned by uid {uid}, not by root or the agent's user (uid {agent_uid}): not published"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} is writable by group or others (mode {:04o}): not published",
            mode & 0o7777
        ));
    }
    Ok(())
}

fn agent_uid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

/// A configured pattern split into its literal directory and its file-name glob.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub dir: PathBuf,
    pub name: glob::Pattern,
}

impl Pattern {
    /// `None` unless `text` is absolute, its directory has no wildcard, and its last
    /// part is a valid glob.
    pub fn parse(text: &str) -> Option<Pattern> {
        let path = Path::new(text);
        if !path.is_absolute() {
            return None;
        }
        let dir = path.parent()?;
        let name = path.file_name()?.to_str()?;
        if dir
            .to_str()
            .is_none_or(|d| d.contains(['*', '?', '[', ']']))
        {
            return None;
        }
        Some(Pattern {
            dir: dir.to_owned(),
            name: glob::Pattern::new(name).ok()?,
        })
    }
}

/// Every file the patterns match now, read and judged; keys in path order, each key
/// once.
pub fn scan(patterns: &[Pattern]) -> HostKeysReport {
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut report = HostKeysReport::default();
    for pattern in patterns {
        let Ok(entries) = std::fs::read_dir(&pattern.dir) else {
            // No directory yet (first boot): nothing to publish, nothing wrong.
            continue;
        };
        let mut examined = 0usize;
        for entry in entries.flatten() {
            examined += 1;
            if examined > MAX_ENTRIES {
                report.skipped.push(format!(
                    "{}: more than {MAX_ENTRIES} entries: the rest not examined",
                    escape::path(&pattern.dir)
                ));
                break;
            }
            let name = entry.file_name();
            let Some(text) = name.to_str() else { continue };
            if pattern.name.matches(text) && !text.ends_with("-cert.pub") {
                files.insert(pattern.dir.join(&name));
            }
        }
    }
    for path in &files {
        match read_key(path) {
            Ok(key) if report.keys.iter().any(|k| k.public_key == key.0.public_key) => {}
            Ok((key, certificate_problem)) => {
                if let Some(problem) = certificate_problem {
                    report.skipped.push(problem);
                }
                report.keys.push(key);
            }
            Err(reason) => report
                .skipped
                .push(format!("{}: {reason}", escape::path(path))),
        }
    }
    report
}

/// One key file and the certificate beside it (a problem with the certificate is
/// returned beside the key: the key is still published).
fn read_key(path: &Path) -> Result<(HostKey, Option<String>), String> {
    let dir = path.parent().ok_or("no directory")?;
    let name = path.file_name().ok_or("no file name")?;
    let dir_fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open its directory: {e}"))?;
    let dir_stat = fstat(dir_fd.as_fd()).map_err(|e| format!("cannot stat its directory: {e}"))?;
    trusted(
        &format!("its directory {}", escape::path(dir)),
        dir_stat.st_uid,
        dir_stat.st_mode,
        agent_uid(),
    )?;
    let content = read_file(&dir_fd, name)?.ok_or("gone")?;
    let (key_type, public_key, fingerprint) = judge(&content)?;
    let mut certificate = None;
    let mut problem = None;
    let stem = name
        .as_bytes()
        .strip_suffix(b".pub")
        .unwrap_or(name.as_bytes());
    let cert_name = [stem, b"-cert.pub"].concat();
    let cert_name = OsStr::from_bytes(&cert_name);
    match read_file(&dir_fd, cert_name) {
        Ok(None) => {}
        Ok(Some(content)) => match judge_certificate(&content, &public_key) {
            Ok(line) => certificate = Some(line),
            Err(reason) => {
                problem = Some(format!("{}: {reason}", escape::path(&dir.join(cert_name))))
            }
        },
        Err(reason) => problem = Some(format!("{}: {reason}", escape::path(&dir.join(cert_name)))),
    }
    Ok((
        HostKey {
            key_type,
            public_key,
            fingerprint,
            certificate,
        },
        problem,
    ))
}

/// The bytes of `dir/name` (`None`: it does not exist), read only when it is a regular
/// file reached without a symlink, [`trusted`] by its `fstat`, and not larger than
/// [`MAX_FILE_BYTES`].
fn read_file(dir: &OwnedFd, name: &OsStr) -> Result<Option<Vec<u8>>, String> {
    let fd = match openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => return Err("a symbolic link: not followed".into()),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let stat = fstat(fd.as_fd()).map_err(|e| format!("cannot stat: {e}"))?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err("not a regular file".into());
    }
    trusted("the file", stat.st_uid, stat.st_mode, agent_uid())?;
    if stat.st_size as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut bytes = Vec::with_capacity(stat.st_size as usize);
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_or_the_agents_user_and_only_when_nobody_else_can_write() {
        assert!(trusted("the file", 0, 0o100644, 990).is_ok());
        assert!(trusted("the file", 990, 0o100600, 990).is_ok());
        assert!(trusted("its directory /etc/ssh", 0, 0o40755, 990).is_ok());
        let other = trusted("the file", 1001, 0o100644, 990).expect_err("a user's file");
        assert!(
            other.contains("uid 1001") && other.contains("not published"),
            "{other}"
        );
        // /tmp: root's, but anyone can create files in it (sticky or not).
        let tmp = trusted("its directory /tmp", 0, 0o41777, 0).expect_err("/tmp");
        assert!(tmp.contains("mode 1777"), "{tmp}");
        assert!(trusted("its directory /k", 0, 0o40775, 0).is_err());
        assert!(trusted("the file", 0, 0o100666, 0).is_err());
    }

    #[test]
    fn a_directory_with_too_many_entries_is_examined_only_so_far() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in 0..MAX_ENTRIES + 10 {
            std::fs::write(dir.path().join(format!("{n}.txt")), b"").expect("write");
        }
        let pattern = Pattern::parse(&format!("{}/*.pub", dir.path().display())).expect("pattern");
        let report = scan(&[pattern]);
        assert!(report.keys.is_empty());
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
        assert!(report.skipped[0].contains("more than 4096 entries"));
    }

    #[test]
    fn patterns_need_a_literal_absolute_directory() {
        let ok = Pattern::parse("/etc/ssh/ssh_host_*_key.pub").expect("default");
        assert_eq!(ok.dir, PathBuf::from("/etc/ssh"));
        assert!(ok.name.matches("ssh_host_ed25519_key.pub"));
        assert!(!ok.name.matches("ssh_host_ed25519_key"));
        for bad in ["etc/ssh/*.pub", "/etc/*/key.pub", "/", "/etc/ssh/[.pub"] {
            assert!(Pattern::parse(bad).is_none(), "{bad}");
        }
    }
}
