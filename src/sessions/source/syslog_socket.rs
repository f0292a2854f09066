//! The syslog socket as the source, where nothing else listens on it (a container with
//! no journald and no rsyslog): the agent binds `/dev/log` itself, as a datagram socket
//! with `SO_PASSCRED`, so the kernel attaches the sender's pid, uid and gid to every
//! message. A line counts as sshd's only when that pid is, in `/proc`, root's `sshd` or
//! `sshd-session` (the journal's `_UID`/`_COMM`/`_EXE` rule, [`proof::trusted_sender`]);
//! the tag `sshd[4242]` a line carries proves nothing.
//!
//! sshd must never wait on the agent: glibc's `syslog()` blocks while the socket's
//! queue is full. So one thread does nothing but drain the socket ([`Drain`]): sshd's
//! records go to the sessions task with `try_send` (dropped and counted when its queue
//! is full), and every message, sshd's too, to a second thread that writes it to the
//! agent's stderr (so `docker logs` shows the container's log), each uid rate-limited
//! ([`super::sender_limit`]) and dropped and counted past its share.
//!
//! The socket is bound only when nothing owns the path: a live socket (or a symlink to
//! one, as journald's `/dev/log`) is never replaced; a stale one (nobody listening: an
//! agent killed with SIGKILL) or a symlink to nothing is. If journald or rsyslog takes
//! the path later, the agent notices (inotify on its directory) and says so in the log
//! and the status; if the path is removed, it binds it again.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials,
};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::sender_limit::SenderLimits;
use super::syslog_frame::{self, Frame};
use super::{LogItem, OwnedRecord};
use crate::sessions::boot_clock;
use crate::sessions::proof::{self, Origin};

/// The largest message kept whole (glibc sends at most a little over 2 KiB by default;
/// longer ones are cut here, never split into two).
const MAX_DATAGRAM: usize = 8192;
/// The kernel's receive buffer asked for: room for bursts while the thread is busy.
const RECEIVE_BUFFER: usize = 1 << 20;
/// Lines waiting for stderr before more are dropped.
const FORWARD_QUEUE: usize = 1024;
/// How often dropped lines are counted in the log at most.
const DROP_REPORT: Duration = Duration::from_secs(10);

/// Why the socket cannot be the agent's.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{path} is a live socket: another program (journald, rsyslog) receives syslog there, so the agent does not replace it; read sshd's messages from it instead ([sessions] log_source = \"journal\" or \"file\")")]
    Owned { path: String },
    #[error("{path} is a {kind}, not a socket: it is left alone")]
    NotASocket { path: String, kind: &'static str },
    #[error("the directory of {path} may be changed by others than root (owner uid {owner}, mode {mode:04o}): the agent binds no socket there")]
    UnsafeDirectory { path: String, owner: u32, mode: u32 },
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
}

/// What is at the socket's path now, as far as claiming it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// A socket (or a symlink to one) someone receives on.
    Live,
    /// A socket nobody receives on, or a symlink to nothing.
    Stale,
    /// Anything else: a file, a directory, a device.
    Other(&'static str),
}

/// What to do about it (pure).
pub fn claim_action(found: Found) -> Result<bool, Found> {
    match found {
        Found::Nothing => Ok(false),
        Found::Stale => Ok(true),
        Found::Live | Found::Other(_) => Err(found),
    }
}

/// The bound socket, and which file it is (to tell when another program replaced it).
pub struct SyslogSocket {
    socket: UnixDatagram,
    path: PathBuf,
    identity: (u64, u64),
}

impl SyslogSocket {
    /// Binds `path` when nothing owns it (see the module's documentation).
    pub fn claim(path: &Path) -> Result<SyslogSocket, ClaimError> {
        let shown = crate::escape::path(path);
        if let Some(dir) = path.parent() {
            let meta = std::fs::metadata(dir).map_err(|source| ClaimError::Bind {
                path: shown.clone(),
                source,
            })?;
            let me = nix::unistd::Uid::effective().as_raw();
            if (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
                return Err(ClaimError::UnsafeDirectory {
                    path: shown,
                    owner: meta.uid(),
                    mode: meta.mode() & 0o7777,
                });
            }
        }
        let found = inspect(path);
        let replace = claim_action(found).map_err(|found| match found {
            Found::Other(kind) => ClaimError::NotASocket {
                path: shown.clone(),
                kind,
            },
            _ => ClaimError::Owned {
                path: shown.clone(),
            },
        })?;
        let bind_error = |source| ClaimError::Bind {
            path: shown.clone(),
            source,
        };
        if replace {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(bind_error(e)),
            }
        }
        let socket = UnixDatagram::bind(path).map_err(bind_error)?;
        // Every process may log; only root may change the directory (checked above).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(bind_error)?;
        setsockopt(&socket, sockopt::PassCred, &true)
            .map_err(|e| bind_error(std::io::Error::from(e)))?;
        // Best effort: a smaller buffer only means fewer lines held in a burst.
        let _ = setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
        let meta = std::fs::symlink_metadata(path).map_err(bind_error)?;
        Ok(SyslogSocket {
            socket,
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// True while the path is still this socket's file.
    fn still_ours(&self) -> Option<bool> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => Some((meta.dev(), meta.ino()) == self.identity),
            Err(_) => None,
        }
    }
}

impl Drop for SyslogSocket {
    /// Removes the socket's file when it is still this socket's (a program's `syslog()`
    /// then finds no socket, rather than one nobody reads).
    fn drop(&mut self) {
        if self.still_ours() == Some(true) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What is at `path`: a socket is probed with a connect (refused: nobody receives).
fn inspect(path: &Path) -> Found {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Found::Nothing;
    };
    let kind = meta.file_type();
    if !(kind.is_socket() || kind.is_symlink()) {
        return Found::Other(if kind.is_dir() {
            "directory"
        } else if kind.is_file() {
            "regular file"
        } else {
            "special file"
        });
    }
    if kind.is_symlink() && std::fs::metadata(path).is_ok_and(|m| !m.file_type().is_socket()) {
        return Found::Other("symlink to something that is not a socket");
    }
    let Ok(probe) = UnixDatagram::unbound() else {
        return Found::Live;
    };
    match probe.connect(path) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ECONNREFUSED) | Some(libc::ENOENT)
            ) =>
        {
            Found::Stale
        }
        // Connected, or a stream socket (EPROTOTYPE): someone is there.
        _ => Found::Live,
    }
}

/// A message on its way to stderr.
struct Forward {
    facility: u8,
    severity: u8,
    tag: Option<String>,
    pid: u32,
    uid: u32,
    message: String,
}

/// The drain thread and the stderr writer, stopped (and the socket's file removed) when
/// this is dropped.
pub struct Drain {
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Drain {
    fn drop(&mut self) {
        // Closing the pipe's write end wakes the thread's poll.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts of what was dropped since the last report.
#[derive(Default)]
struct Dropped {
    sessions: u64,
    forwarded: u64,
    last_report: Option<Instant>,
}

impl Drain {
    /// Starts draining `socket`: sshd's records to `records`, problems (the path taken by
    /// another program, sshd's lines dropped) to `problem`.
    pub fn start(
        socket: SyslogSocket,
        records: mpsc::Sender<LogItem>,
        problem: watch::Sender<Option<String>>,
    ) -> std::io::Result<Drain> {
        let (stop_read, stop_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let (forward_tx, forward_rx) = sync_channel::<Forward>(FORWARD_QUEUE);
        // Watched before anything else can happen to it.
        let watch = watch_directory(&socket.path);
        if watch.is_none() {
            warn!(
                path = %crate::escape::path(&socket.path),
                "cannot watch the syslog socket's directory: if another program takes the \
                 socket, the agent will not notice"
            );
        }
        std::thread::Builder::new()
            .name("syslog-out".into())
            .spawn(move || write_forwarded(&forward_rx))?;
        let thread = std::thread::Builder::new()
            .name("syslog".into())
            .spawn(move || drain(socket, watch, &stop_read, &records, &forward_tx, &problem))?;
        Ok(Drain {
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }
}

/// An inotify watch on the directory of `path`, for its entries coming and going.
fn watch_directory(path: &Path) -> Option<Inotify> {
    let dir = path.parent()?;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_MOVED_TO,
        )
        .ok()?;
    Some(inotify)
}

/// The stderr writer: one log line per message, its sender as the kernel told it.
fn write_forwarded(rx: &Receiver<Forward>) {
    while let Ok(line) = rx.recv() {
        info!(
            target: "syslog",
            facility = syslog_frame::facility_name(line.facility),
            severity = syslog_frame::severity_name(line.severity),
            tag = line.tag.as_deref().unwrap_or("-"),
            pid = line.pid,
            uid = line.uid,
            "{}",
            line.message
        );
    }
}

/// The drain loop: returns when the stop pipe closes.
fn drain(
    mut socket: SyslogSocket,
    watch: Option<Inotify>,
    stop: &OwnedFd,
    records: &mpsc::Sender<LogItem>,
    forward: &SyncSender<Forward>,
    problem: &watch::Sender<Option<String>>,
) {
    let started = Instant::now();
    let mut limits = SenderLimits::default();
    let mut dropped = Dropped::default();
    let mut taken = false;
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut control = nix::cmsg_space!(UnixCredentials);
    loop {
        let (socket_ready, stop_ready, watch_ready) = {
            let mut fds = vec![
                PollFd::new(socket.socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(inotify) = &watch {
                fds.push(PollFd::new(inotify.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    error!(
                        "cannot wait on the syslog socket: {e}; sshd's messages are no longer read"
                    );
                    return;
                }
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (
                ready(&fds[0]),
                ready(&fds[1]),
                fds.get(2).is_some_and(ready),
            )
        };
        if watch_ready {
            if let Some(inotify) = &watch {
                let _ = inotify.read_events();
            }
            match socket.still_ours() {
                Some(true) => {}
                Some(false) if !taken => {
                    taken = true;
                    let what = format!(
                        "another program (journald or rsyslog?) took {}: programs now log \
                         there, not to the agent, so sshd's logins are no longer seen; set \
                         [sessions] log_source to \"journal\" or \"file\" and restart the agent",
                        crate::escape::path(&socket.path)
                    );
                    error!("{what}");
                    problem.send_replace(Some(what));
                }
                Some(false) => {}
                None => match SyslogSocket::claim(&socket.path) {
                    Ok(again) => {
                        warn!(path = %crate::escape::path(&socket.path), "the syslog socket was removed; bound it again");
                        socket = again;
                        taken = false;
                    }
                    Err(e) => {
                        error!("the syslog socket was removed and cannot be bound again: {e}");
                    }
                },
            }
        }
        // Everything queued (also when stopping: what was sent before is judged), then
        // back to poll.
        if socket_ready {
            let mut lanes = Lanes {
                records,
                forward,
                limits: &mut limits,
                dropped: &mut dropped,
            };
            receive_queued(&socket, &mut buffer, &mut control, &mut lanes, started);
        }
        report_drops(&mut dropped, &mut limits, problem);
        if stop_ready {
            return;
        }
    }
}

/// Where received messages go, with the counts kept on the way.
struct Lanes<'a> {
    records: &'a mpsc::Sender<LogItem>,
    forward: &'a SyncSender<Forward>,
    limits: &'a mut SenderLimits,
    dropped: &'a mut Dropped,
}

/// Receives every datagram queued on the socket (never waits).
fn receive_queued(
    socket: &SyslogSocket,
    buffer: &mut [u8],
    control: &mut [u8],
    lanes: &mut Lanes<'_>,
    started: Instant,
) {
    loop {
        let mut iov = [IoSliceMut::new(buffer)];
        let received = recvmsg::<UnixAddr>(
            socket.socket.as_raw_fd(),
            &mut iov,
            Some(&mut *control),
            MsgFlags::MSG_DONTWAIT,
        );
        let (bytes, credentials) = match received {
            Ok(message) => {
                let credentials = message.cmsgs().ok().and_then(|mut cmsgs| {
                    cmsgs.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(c) => Some(c),
                        _ => None,
                    })
                });
                (message.bytes, credentials)
            }
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                warn!("cannot read the syslog socket: {e}");
                return;
            }
        };
        // No credentials: the kernel always attaches them with SO_PASSCRED; a message
        // without them is nobody's.
        let Some(credentials) = credentials else {
            continue;
        };
        let text = String::from_utf8_lossy(&buffer[..bytes.min(MAX_DATAGRAM)]);
        let frame = syslog_frame::parse_frame(&text);
        let pid = u32::try_from(credentials.pid()).unwrap_or(0);
        let uid = credentials.uid();
        let sender = Sender {
            pid,
            uid,
            trusted: root_sshd(pid, uid),
        };
        handle(&frame, sender, lanes, started.elapsed());
    }
}

/// Who sent a message, as the kernel and `/proc` tell it.
struct Sender {
    pid: u32,
    uid: u32,
    /// Root's sshd (the journal's rule): its record's origin.
    trusted: Option<Origin>,
}

/// The origin of a record sent by `pid` as `uid`, when that is root's sshd.
fn root_sshd(pid: u32, uid: u32) -> Option<Origin> {
    if uid != 0 || pid == 0 {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    proof::trusted_sender(Some(uid), comm.as_deref(), exe.as_deref()).ok()?;
    Some(Origin::Socket {
        uid,
        comm,
        exe,
        received_at: boot_clock::now(),
    })
}

/// One message: to the sessions task when root's sshd sent it, to stderr within the
/// sender's share.
fn handle(frame: &Frame<'_>, sender: Sender, lanes: &mut Lanes<'_>, now: Duration) {
    let Lanes {
        records,
        forward,
        limits,
        dropped,
    } = lanes;
    let Sender { pid, uid, trusted } = sender;
    if let Some(origin) = trusted {
        // The pid is the kernel's, never the one in the tag.
        let record = OwnedRecord {
            pid,
            at: Some(crate::timefmt::now()),
            message: frame.message.to_owned(),
            origin,
        };
        let item = LogItem {
            record: Some(record),
            position: None,
        };
        if records.try_send(item).is_err() {
            dropped.sessions += 1;
        }
    }
    if !limits.admit(uid, now) {
        return;
    }
    let line = Forward {
        facility: frame.facility,
        severity: frame.severity,
        tag: frame.tag.map(str::to_owned),
        pid,
        uid,
        message: frame.message.to_owned(),
    };
    if let Err(TrySendError::Full(_)) = forward.try_send(line) {
        dropped.forwarded += 1;
    }
}

/// Says what was dropped, at most every [`DROP_REPORT`].
fn report_drops(
    dropped: &mut Dropped,
    limits: &mut SenderLimits,
    problem: &watch::Sender<Option<String>>,
) {
    if dropped
        .last_report
        .is_some_and(|at| at.elapsed() < DROP_REPORT)
    {
        return;
    }
    let by_uid = limits.take_dropped();
    if dropped.sessions == 0 && dropped.forwarded == 0 && by_uid.is_empty() {
        return;
    }
    dropped.last_report = Some(Instant::now());
    if dropped.sessions > 0 {
        let what = format!(
            "{} of sshd's messages were dropped: the sessions task fell behind; logins among \
             them are not reported",
            dropped.sessions
        );
        error!("{what}");
        problem.send_replace(Some(what));
    }
    for (uid, count) in by_uid {
        warn!(
            uid,
            dropped = count,
            "syslog lines of uid {uid} dropped: more than its share ({} a second)",
            super::sender_limit::RATE
        );
    }
    if dropped.forwarded > 0 {
        warn!(
            dropped = dropped.forwarded,
            "syslog lines dropped: stderr is not keeping up"
        );
    }
    dropped.sessions = 0;
    dropped.forwarded = 0;
}

/// Follows the syslog socket at `path` until `records` closes: binds it (again and
/// again, with backoff, while another program owns it), then drains it on its threads.
pub async fn follow_socket(
    path: PathBuf,
    records: mpsc::Sender<LogItem>,
    problem: watch::Sender<Option<String>>,
) {
    let mut failures = 0;
    let socket = loop {
        match SyslogSocket::claim(&path) {
            Ok(socket) => break socket,
            Err(e) => {
                failures += 1;
                let what = format!("sshd's messages cannot be read: {e}");
                if failures == 1 {
                    error!("{what}");
                }
                problem.send_replace(Some(what));
            }
        }
        let delay = crate::schedule::backoff_delay(
            failures,
            Duration::from_secs(60),
            None,
            fastrand::f64(),
        );
        tokio::time::sleep(delay.max(Duration::from_secs(1))).await;
        if records.is_closed() {
            return;
        }
    };
    if failures > 0 {
        problem.send_replace(None);
    }
    info!(
        path = %crate::escape::path(&path),
        "reading sshd's messages from the syslog socket the agent bound (SO_PASSCRED: only \
         what root's sshd sent counts; every message is copied to stderr)"
    );
    let _drain = match Drain::start(socket, records.clone(), problem) {
        Ok(drain) => drain,
        Err(e) => {
            error!("cannot start the syslog socket's threads: {e}");
            return;
        }
    };
    records.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_nobody_holds_is_taken() {
        assert_eq!(claim_action(Found::Nothing), Ok(false));
        assert_eq!(claim_action(Found::Stale), Ok(true));
        assert_eq!(claim_action(Found::Live), Err(Found::Live));
        assert_eq!(
            claim_action(Found::Other("regular file")),
            Err(Found::Other("regular file"))
        );
    }

    #[test]
    fn a_live_socket_is_never_replaced_and_a_stale_one_is() {
        let dir = crate::testing::tempdir();
        let path = dir.path().join("log");
        let live = UnixDatagram::bind(&path).expect("bind");
        assert_eq!(inspect(&path), Found::Live);
        assert!(matches!(
            SyslogSocket::claim(&path),
            Err(ClaimError::Owned { .. })
        ));
        drop(live);
        assert_eq!(inspect(&path), Found::Stale);
        let ours = SyslogSocket::claim(&path).expect("a stale socket is taken");
        assert_eq!(inspect(&path), Found::Live);
        drop(ours);
        assert_eq!(inspect(&path), Found::Nothing, "removed when dropped");
        // A symlink to nothing (nspawn's /dev/log before journald) is taken too.
        std::os::unix::fs::symlink(dir.path().join("missing"), &path).expect("symlink");
        assert_eq!(inspect(&path), Found::Stale);
        drop(SyslogSocket::claim(&path).expect("a dangling symlink is replaced"));
        std::fs::write(&path, "x").expect("file");
        assert!(matches!(
            SyslogSocket::claim(&path),
            Err(ClaimError::NotASocket { .. })
        ));
    }

    #[test]
    fn a_directory_others_may_change_is_refused() {
        let dir = crate::testing::tempdir();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(matches!(
            SyslogSocket::claim(&open.join("log")),
            Err(ClaimError::UnsafeDirectory { .. })
        ));
    }

    #[test]
    fn the_kernels_sender_decides_and_the_tag_proves_nothing() {
        let dir = crate::testing::tempdir();
        let path = dir.path().join("log");
        let socket = SyslogSocket::claim(&path).expect("bound");
        let (tx, mut rx) = mpsc::channel(16);
        let (problem, _) = watch::channel(None);
        let drain = Drain::start(socket, tx, problem).expect("started");
        // This test process is not root's sshd, whatever its tag says.
        let client = UnixDatagram::unbound().expect("socket");
        client
            .send_to(
                b"<38>Dec  7 05:31:02 sshd[1]: Accepted publickey for root from 10.0.0.1 port 1 ssh2: ED25519 SHA256:x",
                &path,
            )
            .expect("send");
        // Stopping drains what was queued first, so the line has been judged.
        drop(drain);
        assert!(rx.try_recv().is_err(), "a forged sshd line is no record");
        assert_eq!(inspect(&path), Found::Nothing, "stopped and removed");
    }

    #[test]
    fn another_program_taking_the_path_is_said_and_a_removed_socket_is_bound_again() {
        let dir = crate::testing::tempdir();
        let path = dir.path().join("log");
        let socket = SyslogSocket::claim(&path).expect("bound");
        let (tx, _rx) = mpsc::channel(16);
        let (problem, mut problems) = watch::channel(None);
        let drain = Drain::start(socket, tx, problem).expect("started");
        let wait_until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !done() {
                assert!(Instant::now() < deadline, "timed out: {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // Removed (someone cleaning /dev): bound again, and it receives.
        std::fs::remove_file(&path).expect("rm");
        wait_until("bound again", &|| inspect(&path) == Found::Live);
        assert!(problems.borrow_and_update().is_none());
        // rsyslog starting later: its own socket renamed over the path.
        let theirs = dir.path().join("rsyslog.sock");
        let _rsyslog = UnixDatagram::bind(&theirs).expect("bind");
        std::fs::rename(&theirs, &path).expect("rename");
        wait_until("said", &|| problems.borrow().is_some());
        let said = problems.borrow().clone().unwrap_or_default();
        assert!(said.contains("another program"), "{said}");
        drop(drain);
        assert_eq!(
            inspect(&path),
            Found::Live,
            "the other program's socket is left alone"
        );
    }

    #[test]
    fn a_record_carries_the_kernels_pid_and_a_full_queue_is_counted() {
        let (tx, mut rx) = mpsc::channel(1);
        let (forward, forwarded) = sync_channel(1);
        let mut limits = SenderLimits::default();
        let mut dropped = Dropped::default();
        let frame = syslog_frame::parse_frame("<38>sshd[4242]: Accepted publickey for root");
        let trusted = || Sender {
            pid: 77,
            uid: 0,
            trusted: Some(Origin::Socket {
                uid: 0,
                comm: Some("sshd".into()),
                exe: Some("/usr/sbin/sshd".into()),
                received_at: boot_clock::BootTicks::new(1),
            }),
        };
        let now = Duration::from_secs(1);
        {
            let mut lanes = Lanes {
                records: &tx,
                forward: &forward,
                limits: &mut limits,
                dropped: &mut dropped,
            };
            handle(&frame, trusted(), &mut lanes, now);
            let record = rx.try_recv().expect("a record").record.expect("sshd's");
            assert_eq!(record.pid, 77, "the kernel's pid, not the tag's 4242");
            assert_eq!(record.message, "Accepted publickey for root");
            assert_eq!(forwarded.try_recv().expect("copied to stderr").pid, 77);
            // The sessions queue full: dropped and counted, never waited for.
            handle(&frame, trusted(), &mut lanes, now);
            handle(&frame, trusted(), &mut lanes, now);
        }
        assert_eq!(dropped.sessions, 1);
        assert_eq!(dropped.forwarded, 1, "stderr's queue too");
        // Anyone else: copied to stderr only.
        let (tx, mut rx) = mpsc::channel(1);
        let _ = forwarded.try_recv();
        let user = Sender {
            pid: 5,
            uid: 1000,
            trusted: None,
        };
        let mut lanes = Lanes {
            records: &tx,
            forward: &forward,
            limits: &mut limits,
            dropped: &mut dropped,
        };
        handle(&frame, user, &mut lanes, now);
        assert!(rx.try_recv().is_err());
        assert_eq!(forwarded.try_recv().expect("forwarded").uid, 1000);
    }
}
