//! A pidfd: a file descriptor that names one exact process. Signals sent through it
//! reach that process or nobody (never a later process that got the same pid), and it
//! becomes readable when the process ends, so a session's end is learnt from the kernel
//! rather than from a log line.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
// rustix only for what nix lacks: pidfd_open and pidfd_send_signal. Nothing of it shows
// outside this module.
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

use super::boot_clock::BootTicks;
use super::procs;

/// A held process, proven to be the one that started at `start`.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: u32,
    start: BootTicks,
}

impl PidFd {
    /// Holds `pid` and proves it is the process `check` approves of: the facts are read
    /// after the pidfd is open, and the process has not ended by the time they were read,
    /// so they are its own (a pid is not reused before its process ends).
    pub fn open_checked<T, E>(
        pid: u32,
        check: impl FnOnce() -> Result<(BootTicks, T), E>,
    ) -> Result<Result<(PidFd, T), E>, Errno> {
        let raw =
            Pid::from_raw(i32::try_from(pid).map_err(|_| Errno::ESRCH)?).ok_or(Errno::ESRCH)?;
        let fd = pidfd_open(raw, PidfdFlags::empty()).map_err(errno)?;
        let (start, value) = match check() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let held = PidFd { fd, pid, start };
        if held.exited() {
            return Err(Errno::ESRCH);
        }
        Ok(Ok((held, value)))
    }

    /// Holds `pid` if it is still the process that started at `start`.
    pub fn open_same(pid: u32, start: BootTicks) -> Option<PidFd> {
        let checked = PidFd::open_checked(pid, || match procs::stat(pid) {
            Some(s) if s.start == start && !s.zombie => Ok((start, ())),
            _ => Err(()),
        });
        match checked {
            Ok(Ok((held, ()))) => Some(held),
            _ => None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The held process's start time.
    pub fn start(&self) -> BootTicks {
        self.start
    }

    /// Stops exactly this process (SIGSTOP); an error once it has ended.
    pub fn stop(&self) -> Result<(), Errno> {
        pidfd_send_signal(&self.fd, Signal::STOP).map_err(errno)
    }

    /// Kills exactly this process (SIGKILL); an error once it has ended.
    pub fn kill(&self) -> Result<(), Errno> {
        pidfd_send_signal(&self.fd, Signal::KILL).map_err(errno)
    }

    /// True once the process has ended (it may still be a zombie).
    pub fn exited(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// A second descriptor for the same process (to wait on it elsewhere).
    pub fn try_clone(&self) -> std::io::Result<PidFd> {
        Ok(PidFd {
            fd: self.fd.try_clone()?,
            pid: self.pid,
            start: self.start,
        })
    }
}

/// rustix's error as the crate's one errno type.
fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_held_signalled_and_seen_to_end_and_its_pid_is_not_mistaken() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let pid = child.id();
        let start = procs::stat(pid).expect("stat").start;
        assert!(
            PidFd::open_same(pid, start.plus_ticks(1)).is_none(),
            "another start"
        );
        let held = PidFd::open_same(pid, start).expect("held");
        assert!(!held.exited());
        held.kill().expect("signalled");
        child.wait().expect("reaped");
        assert!(held.exited());
        assert!(held.kill().is_err(), "a dead process is not signalled");
        assert!(PidFd::open_same(pid, start).is_none());
    }
}
