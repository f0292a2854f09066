//! Ending a live SSH session for good: its connection and every process it started,
//! including commands run without a pty (which survive their sshd in a session of their
//! own) and daemons they forked.
//!
//! Where systemd-logind made a session scope, the scope's cgroup holds all of it and is
//! killed whole (`cgroup.kill`, or every pid in `cgroup.procs`). Otherwise the process
//! tree is used: the monitor, all its descendants, and every process of the user in a
//! session whose leader is one of those descendants. Everything is stopped first (so
//! nothing forks away during the kill), then killed, and the caller checks until nothing
//! is left.
//!
//! Guards against killing the wrong process: the monitor must still be the same sshd
//! process (name and start time as recorded at login); apart from it, only processes of
//! the session's user are signalled; pid 1 and the agent itself never are.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::procs;
use super::Session;

/// Why a session was left alone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TerminateError {
    #[error("session {0}: its sshd process is gone already")]
    Gone(String),
    #[error("session {session}: pid {pid} is no longer its sshd process (reused); not touched")]
    NotTheSession { session: String, pid: u32 },
    #[error("session {0}: unknown user")]
    UnknownUser(String),
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub sid: u32,
    pub start: u64,
    pub uid: u32,
    pub zombie: bool,
}

/// Every process on the machine, from `/proc`.
pub fn snapshot() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(read_proc)
        .collect()
}

fn read_proc(pid: u32) -> Option<Proc> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let uid = std::fs::metadata(&dir).ok()?.uid();
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some(Proc {
        pid,
        zombie: fields.first() == Some(&"Z"),
        ppid: fields.get(1)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        uid,
    })
}

/// The processes that belong to a session (pure: works on a snapshot): the descendants
/// of `roots` (the monitor, and on later rounds what was already signalled, whose
/// children were reparented), and the user's processes in `sessions` or in a session
/// one of those leads. `uid` is the session user's.
pub fn session_processes(
    procs: &[Proc],
    roots: &[u32],
    sessions: &HashSet<u32>,
    uid: u32,
) -> Vec<Proc> {
    let me = std::process::id();
    let mut members: Vec<Proc> = Vec::new();
    let mut seen: HashSet<u32> = roots.iter().copied().collect();
    let mut frontier = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            if seen.insert(p.pid) {
                frontier.push(p.pid);
                members.push(p.clone());
            }
        }
    }
    // Sessions the user's processes lead (a no-pty command's own session, say): every
    // process of the user in them belongs too, even one that left the tree.
    let mut sessions = sessions.clone();
    sessions.extend(
        members
            .iter()
            .filter(|p| p.pid == p.sid && p.uid == uid)
            .map(|p| p.sid),
    );
    for p in procs
        .iter()
        .filter(|p| sessions.contains(&p.sid) && p.uid == uid)
    {
        if seen.insert(p.pid) {
            members.push(p.clone());
        }
    }
    // Below the monitor, only the user's own processes (and sshd's child, which runs as
    // the user too after privilege separation) are ever signalled.
    members.retain(|p| p.uid == uid && p.pid != 1 && p.pid != me && !p.zombie);
    members
}

/// The session scope systemd-logind made for the monitor, when there is one (cgroup v2).
pub fn session_scope(monitor: u32) -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string(format!("/proc/{monitor}/cgroup")).ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let name = Path::new(path).file_name()?.to_str()?;
    if !(name.starts_with("session-")
        && name.ends_with(".scope")
        && path.starts_with("/user.slice/"))
    {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if own
        .lines()
        .any(|l| l.strip_prefix("0::").map(str::trim) == Some(path))
    {
        return None;
    }
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Signals everything of the session once (stop, then kill) and returns what it
/// signalled. Call again with everything signalled so far as `known` until [`all_gone`]
/// says so, to catch anything forked meanwhile.
pub fn end_session(
    session: &Session,
    uid: u32,
    known: &[Proc],
) -> Result<Vec<Proc>, TerminateError> {
    let monitor = session.monitor_pid;
    let monitor_proc = read_proc(monitor);
    let monitor_ok = match &monitor_proc {
        None => false,
        Some(p) if p.zombie => false,
        // Ours from an earlier round, now reused by someone else: leave it be.
        Some(_) if !known.is_empty() => false,
        Some(p) => {
            if session.process_start.is_some_and(|s| s != p.start) || !procs::session_alive(session)
            {
                return Err(TerminateError::NotTheSession {
                    session: session.session_id.clone(),
                    pid: monitor,
                });
            }
            true
        }
    };
    let all = snapshot();
    let mut roots: Vec<u32> = known.iter().map(|p| p.pid).collect();
    if known.is_empty() {
        roots.push(monitor);
    }
    let sessions: HashSet<u32> = known
        .iter()
        .filter(|p| p.uid == uid)
        .map(|p| p.sid)
        .collect();
    let mut targets = session_processes(&all, &roots, &sessions, uid);
    if let (true, Some(p)) = (monitor_ok, monitor_proc) {
        targets.push(p);
    }
    if targets.is_empty() && known.is_empty() {
        return Err(TerminateError::Gone(session.session_id.clone()));
    }
    if let Some(scope) = monitor_ok.then(|| session_scope(monitor)).flatten() {
        kill_scope(&scope);
    }
    for p in &targets {
        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGSTOP);
    }
    for p in &targets {
        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
    }
    Ok(targets)
}

fn kill_scope(scope: &Path) {
    if std::fs::write(scope.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(pids) = std::fs::read_to_string(scope.join("cgroup.procs")) {
        for pid in pids
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .filter(|&p| p > 1)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// True when none of `procs` is running any more (gone, a zombie, or the pid reused).
pub fn all_gone(procs: &[Proc]) -> bool {
    procs.iter().all(|p| match read_proc(p.pid) {
        None => true,
        Some(now) => now.zombie || now.start != p.start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, sid: u32, uid: u32) -> Proc {
        Proc {
            pid,
            ppid,
            sid,
            start: pid as u64,
            uid,
            zombie: false,
        }
    }

    #[test]
    fn the_tree_and_the_users_own_sessions_belong_and_nothing_else() {
        let procs = [
            p(1, 0, 1, 0),
            p(100, 1, 100, 0),      // the listening sshd
            p(200, 100, 100, 0),    // monitor of our connection (root)
            p(201, 200, 100, 1000), // sshd's user child
            p(202, 201, 202, 1000), // the command, in a session of its own
            p(203, 202, 202, 1000), // its background child
            p(204, 1, 202, 1000),   // a daemon that double-forked and was reparented to init
            p(300, 100, 100, 0),    // another connection's monitor
            p(301, 300, 100, 1000), // ... of the same user
            p(302, 301, 302, 1000),
            p(400, 1, 400, 1000), // the same user's cron job, elsewhere
            p(500, 202, 202, 0),  // a setuid helper the user started: not the user's to kill
        ];
        let mut pids: Vec<u32> = session_processes(&procs, &[200], &HashSet::new(), 1000)
            .iter()
            .map(|p| p.pid)
            .collect();
        pids.sort();
        assert_eq!(pids, [201, 202, 203, 204]);
        // A later round: 202 was killed, a child it forked meanwhile (205) was reparented.
        let later = [p(1, 0, 1, 0), p(205, 1, 202, 1000), p(400, 1, 400, 1000)];
        let known: HashSet<u32> = [202].into();
        let found: Vec<u32> = session_processes(&later, &[201, 202, 203, 204], &known, 1000)
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(found, [205]);
    }

    #[test]
    fn our_own_process_is_read() {
        let me = read_proc(std::process::id()).expect("self");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.zombie);
        assert!(!all_gone(&[me]));
        assert!(all_gone(&[Proc {
            pid: u32::MAX,
            ppid: 0,
            sid: 0,
            start: 0,
            uid: 0,
            zombie: false
        }]));
    }
}
