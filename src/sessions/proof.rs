//! What makes a logged login believed. A log line is a claim: any local user can write
//! one (`logger`, `systemd-cat`) naming any pid and any key. A login is believed only
//! when the kernel vouches for it:
//!
//! - **Journal**: the record's trusted fields (set by journald from the sender's socket
//!   credentials and `/proc`, never from the sender's words) say root's `sshd` or
//!   `sshd-session` sent it: `_UID=0`, `_COMM`, `_EXE`. The journalctl query matches on
//!   them, so forged records are never even read. The pid is `_PID`, never `SYSLOG_PID`.
//! - **Both sources**: the pid is, in `/proc`, a live root-owned sshd per-connection
//!   monitor whose title names the logged user (not the listener, not another user's
//!   monitor), started before the line was written. It is then held by a pidfd, so it
//!   is ended, and seen to end, as exactly that process.
//!
//! In a syslog file there are no trusted fields: the line's text decides which monitor
//! and which key; [`Proof::LogText`] marks such sessions (see docs/security.md, "What file mode
//! guarantees").

use serde::{Deserialize, Serialize};

use super::boot_clock::{self, BootTicks};
use super::pidfd::PidFd;
use super::procs::{self, Refusal};

/// How a session's key came to be known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// journald's trusted fields: root's sshd logged this login.
    #[default]
    Kernel,
    /// A syslog file's text: the monitor is real, but which key it used is a claim any
    /// local user could have written.
    LogText,
}

/// Where a record came from, with what the kernel said about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A journal entry: its trusted fields, and when journald received it (from
    /// `__MONOTONIC_TIMESTAMP`).
    Journal {
        uid: Option<u32>,
        comm: Option<String>,
        exe: Option<String>,
        written_by: Option<BootTicks>,
    },
    /// A syslog file line: nothing but its text. It was written by the time it was read.
    File { read_at: BootTicks },
    /// A datagram on the syslog socket the agent bound: the sender's uid and pid are the
    /// kernel's (`SO_PASSCRED`), its `comm` and `exe` read from `/proc` on receipt (as
    /// journald reads them). It was written by the time it was received.
    Socket {
        uid: u32,
        comm: Option<String>,
        exe: Option<String>,
        received_at: BootTicks,
    },
}

impl Origin {
    /// The latest moment the line can have been written.
    pub fn written_by(&self) -> BootTicks {
        match self {
            Origin::Journal {
                written_by: Some(t),
                ..
            } => *t,
            Origin::Journal { .. } => boot_clock::now(),
            Origin::File { read_at } => *read_at,
            Origin::Socket { received_at, .. } => *received_at,
        }
    }

    pub fn proof(&self) -> Proof {
        match self {
            Origin::Journal { .. } | Origin::Socket { .. } => Proof::Kernel,
            Origin::File { .. } => Proof::LogText,
        }
    }
}

/// The executable names sshd's logging processes run as (the last part of `_EXE`).
fn sshd_executable(exe: &str) -> bool {
    exe.starts_with('/') && exe.rsplit('/').next().is_some_and(procs::is_sshd_name)
}

/// Pure: a journal record's trusted fields say root's sshd sent it.
pub fn trusted_sender(
    uid: Option<u32>,
    comm: Option<&str>,
    exe: Option<&str>,
) -> Result<(), Refusal> {
    let ok =
        uid == Some(0) && comm.is_some_and(procs::is_sshd_name) && exe.is_some_and(sshd_executable);
    if ok {
        Ok(())
    } else {
        Err(Refusal::NotRootSshd {
            uid,
            comm: comm.map(str::to_owned),
            exe: exe.map(str::to_owned),
        })
    }
}

/// Proves that `pid` is the monitor of `user`'s connection that logged a line written
/// by `written_by`, and holds it.
pub fn verify_monitor(pid: u32, user: &str, written_by: BootTicks) -> Result<PidFd, Refusal> {
    let held = PidFd::open_checked(pid, || {
        let facts = procs::facts(pid).ok_or(Refusal::NoProcess(pid))?;
        procs::check_monitor(&facts, user, written_by)?;
        Ok((facts.stat.start, ()))
    });
    match held {
        Ok(Ok((pidfd, ()))) => Ok(pidfd),
        Ok(Err(refusal)) => Err(refusal),
        // Gone, or a thread's id, which anyone can name in a forged line (pidfd_open
        // takes only a process's; its /proc entry is not a process's): no process to
        // hold. Not the host failing to hold processes, which is logged loudly.
        Err(nix::errno::Errno::ESRCH | nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {
            Err(Refusal::NoProcess(pid))
        }
        Err(e) => Err(Refusal::Pidfd {
            pid,
            error: e.to_string(),
        }),
    }
}

/// Proves a record's login: its sender (journal) and its monitor (both sources).
pub fn verify_login(pid: u32, user: &str, origin: &Origin) -> Result<PidFd, Refusal> {
    match origin {
        Origin::Journal { uid, comm, exe, .. } => {
            trusted_sender(*uid, comm.as_deref(), exe.as_deref())?;
        }
        Origin::Socket { uid, comm, exe, .. } => {
            trusted_sender(Some(*uid), comm.as_deref(), exe.as_deref())?;
        }
        Origin::File { .. } => {}
    }
    verify_monitor(pid, user, origin.written_by())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_roots_sshd_is_a_trusted_sender() {
        assert!(trusted_sender(Some(0), Some("sshd"), Some("/usr/sbin/sshd")).is_ok());
        assert!(trusted_sender(
            Some(0),
            Some("sshd-session"),
            Some("/usr/lib/openssh/sshd-session")
        )
        .is_ok());
        for (uid, comm, exe) in [
            (Some(1000), Some("sshd"), Some("/usr/sbin/sshd")),
            (Some(0), Some("logger"), Some("/usr/bin/logger")),
            (Some(0), Some("sshd"), Some("/usr/bin/sudo")),
            (
                Some(0),
                Some("sshd-auth"),
                Some("/usr/lib/openssh/sshd-auth"),
            ),
            (None, Some("sshd"), Some("/usr/sbin/sshd")),
            (Some(0), None, Some("/usr/sbin/sshd")),
            (Some(0), Some("sshd"), None),
            (Some(0), Some("sshd"), Some("sshd")),
        ] {
            assert!(
                trusted_sender(uid, comm, exe).is_err(),
                "{uid:?} {comm:?} {exe:?}"
            );
        }
    }

    #[test]
    fn a_user_process_is_never_a_verified_monitor() {
        // This test process: not root's sshd, whatever user is claimed.
        let me = std::process::id();
        assert!(verify_monitor(me, "root", BootTicks::MAX).is_err());
        assert_eq!(
            verify_monitor(u32::MAX, "root", BootTicks::MAX).err(),
            Some(Refusal::NoProcess(u32::MAX))
        );
    }

    #[test]
    fn a_thread_id_named_by_a_line_is_no_process_not_a_host_failure() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid takes no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            tx.send(tid as u32).expect("send");
            let _ = done_rx.recv();
        });
        let tid = rx.recv().expect("tid");
        assert_ne!(tid, std::process::id());
        assert_eq!(
            verify_monitor(tid, "root", BootTicks::MAX).err(),
            Some(Refusal::NoProcess(tid))
        );
        done_tx.send(()).expect("release");
        thread.join().expect("join");
    }
}
