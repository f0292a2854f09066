//! Reading the host key files the configuration names (I/O; blocking, run off the
//! runtime).
//!
//! A pattern's directory is literal (the configuration checks it) and its last part a
//! glob. Each match is opened without following a symlink, must be a regular file of at
//! most [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES), and is judged by [`super::judge`]:
//! anything else is skipped with a reason. A file named `*-cert.pub` is a certificate,
//! never a key: it is read only beside the key it names (`KEY.pub` and `KEY-cert.pub`).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::{judge, judge_certificate, HostKey, HostKeysReport, MAX_FILE_BYTES};

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
        for entry in entries.flatten() {
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
            Err(reason) => report.skipped.push(format!("{}: {reason}", path.display())),
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
            Err(reason) => problem = Some(format!("{}: {reason}", dir.join(cert_name).display())),
        },
        Err(reason) => problem = Some(format!("{}: {reason}", dir.join(cert_name).display())),
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
/// file reached without a symlink and not larger than [`MAX_FILE_BYTES`].
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
