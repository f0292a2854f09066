//! Ending a live SSH session for good, and only it: its connection and every process it
//! started, including commands run without a pty (which survive their sshd in a session
//! of their own) and daemons they forked (`setsid -f`).
//!
//! The session is named by the pidfd of its monitor, taken when its login was proven
//! ([`super::proof`]); nothing is ever signalled by a pid read from a log.
//!
//! - **Scope**: where systemd-logind made a session scope, the monitor's cgroup is
//!   `/user.slice/user-UID.slice/session-N.scope` with the session user's UID. It holds
//!   the whole session, daemonized children too. It is frozen (nothing in it runs or
//!   forks any more), killed whole (`cgroup.kill`, or each frozen member), and checked
//!   until it is empty. Any other cgroup (the listener's `ssh.service`, the agent's own,
//!   pid 1's) is never touched. Under the shipped unit this needs write access to
//!   `/sys/fs/cgroup/user.slice` (`ReadWritePaths=` there: see the unit).
//! - **No scope** (no logind): the process tree. The monitor through its pidfd, then
//!   its descendants and every process of the user in a session one of them leads, each
//!   held by its own pidfd (opened, then proven to be the process seen) before it is
//!   stopped and killed, round after round until nothing is left. Where `pam_loginuid`
//!   gave the login an audit session id of its own (the kernel's, inherited across
//!   `setsid` and double forks, changeable only with CAP_AUDIT_CONTROL), every process of
//!   the user with that id belongs too: what the session detached (`setsid -f`, a tmux
//!   server) is found and ended, and the ending is proven complete.
//! - **Neither** (no scope, no audit session id): what the session detached from its tree
//!   cannot be told from the user's other processes. The tree is ended, and the ending is
//!   reported as not proven complete ([`Ending::proven_complete`]), never as more.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::pidfd::PidFd;
use super::procs::{self, ProcStat};

/// What the host gives to find a whole session by, as far as can be told before any
/// login (the start-up warning; each ending still says what it found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionHandle {
    /// systemd-logind makes a scope per session.
    Scope,
    /// No logind, but `pam_loginuid` can give each login an audit session id (the
    /// image's PAM configuration must run it).
    AuditSession,
    /// Neither: a session's process tree is all that can be found.
    TreeOnly,
}

/// Decides the [`SessionHandle`] (pure). An audit session id needs the kernel's audit
/// support, and `pam_loginuid` allowed to set the login uid: always when it is unset
/// where sshd runs (a container started by a service, not from someone's login), else
/// only with CAP_AUDIT_CONTROL, which Docker drops.
pub fn session_handle(
    logind: bool,
    audit_supported: bool,
    login_uid_set: bool,
    cap_audit_control: bool,
) -> SessionHandle {
    if logind {
        SessionHandle::Scope
    } else if audit_supported && (!login_uid_set || cap_audit_control) {
        SessionHandle::AuditSession
    } else {
        SessionHandle::TreeOnly
    }
}

/// [`session_handle`] on this host: logind's runtime directory, the agent's own
/// `/proc/self/loginuid` (sshd's, in the usual case where both were started alike) and
/// its capability bounding set.
pub fn probe_session_handle() -> SessionHandle {
    let logind = Path::new("/run/systemd/sessions").is_dir();
    let login_uid = std::fs::read_to_string("/proc/self/loginuid").ok();
    let audit_supported = login_uid.is_some() && Path::new("/proc/self/sessionid").exists();
    let login_uid_set = login_uid
        .as_deref()
        .and_then(procs::parse_audit_session)
        .is_some();
    const CAP_AUDIT_CONTROL: u32 = 30;
    let cap_audit_control = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|bounding| bounding & (1 << CAP_AUDIT_CONTROL) != 0);
    session_handle(logind, audit_supported, login_uid_set, cap_audit_control)
}

/// Why a session was not ended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TerminateError {
    #[error("session {0}: its sshd process is gone already")]
    Gone(String),
    #[error("session {0}: no proven process to end (its login was never verified)")]
    NotHeld(String),
    #[error("session {0}: unknown user")]
    UnknownUser(String),
    #[error("session {session}: processes still running after {rounds} rounds: {left}")]
    Survivors {
        session: String,
        rounds: u32,
        left: String,
    },
}

/// The scope directory of a session, from the monitor's cgroup path (pure): exactly
/// `/user.slice/user-UID.slice/session-N.scope` for the session user's `uid`, and not
/// the cgroup the agent itself runs in.
pub fn session_scope(cgroup: &str, uid: u32, own_cgroup: Option<&str>) -> Option<String> {
    let rest = cgroup.strip_prefix("/user.slice/")?;
    let (slice, scope) = rest.split_once('/')?;
    if slice != format!("user-{uid}.slice") {
        return None;
    }
    let id = scope.strip_prefix("session-")?.strip_suffix(".scope")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    (own_cgroup != Some(cgroup)).then(|| cgroup.to_owned())
}

/// The processes that belong to a session without a scope (pure: works on a snapshot):
/// the descendants of `roots` (the monitor, and on later rounds what was already
/// signalled, whose children were reparented), and the user's processes in `sessions`
/// or in a session one of those leads. Only processes of `uid`, never pid 1 or `me`.
/// `audit_members`: processes whose audit session id is the session's own (empty when it
/// has none).
pub fn session_processes(
    procs: &[ProcStat],
    roots: &[u32],
    sessions: &HashSet<u32>,
    audit_members: &HashSet<u32>,
    uid: u32,
    me: u32,
) -> Vec<ProcStat> {
    let mut members: Vec<ProcStat> = Vec::new();
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
        .filter(|p| (sessions.contains(&p.sid) || audit_members.contains(&p.pid)) && p.uid == uid)
    {
        if seen.insert(p.pid) {
            members.push(p.clone());
        }
    }
    members.retain(|p| p.uid == uid && p.euid == uid && p.pid != 1 && p.pid != me && !p.zombie);
    members
}

/// The session's own audit session id (pure): its user child's, when set, when the
/// monitor's parent is still a listening sshd (`listener`: its id; `None` when the
/// monitor was re-parented, after a listener restart, and nothing says whose id it
/// inherited), and when no other sshd process carries the same id (`others`): an sshd
/// started from a login, without `pam_loginuid`, passes that login's id to every one of
/// its sessions, and then the id names none of them.
pub fn own_audit_session(
    child: Option<u32>,
    listener: Option<Option<u32>>,
    others: &[Option<u32>],
) -> Option<u32> {
    let listener = listener?;
    child.filter(|&id| Some(id) != listener && !others.contains(&Some(id)))
}

/// True when the monitor has a child running as `uid`: sshd forks the user's child only
/// after authentication succeeded (and after it logged the login).
pub fn has_user_child(procs: &[ProcStat], monitor: u32, uid: u32) -> bool {
    procs
        .iter()
        .any(|p| p.ppid == monitor && p.uid == uid && !p.zombie)
}

/// One session being ended, round by round.
pub struct Ending<'a> {
    session_id: String,
    monitor: &'a PidFd,
    uid: u32,
    scope: Option<PathBuf>,
    /// Without a scope: what was signalled so far, still held.
    held: Vec<PidFd>,
    sids: HashSet<u32>,
    /// The session's own audit session id, when it has one.
    audit: Option<u32>,
    pub rounds: u32,
}

impl<'a> Ending<'a> {
    /// Starts ending the session of `monitor` (of user `uid`): finds its scope, proven to
    /// be the monitor's while the monitor was alive.
    pub fn start(session_id: &str, monitor: &'a PidFd, uid: u32) -> Result<Self, TerminateError> {
        if monitor.exited() {
            return Err(TerminateError::Gone(session_id.to_owned()));
        }
        let cgroup = procs::cgroup(monitor.pid());
        let own = procs::cgroup(std::process::id());
        // Read while the monitor was alive: the pid was still its own.
        let scope = if monitor.exited() {
            None
        } else {
            cgroup
                .and_then(|c| session_scope(&c, uid, own.as_deref()))
                .zip(procs::cgroup2_mount())
                .map(|(c, root)| root.join(c.trim_start_matches('/')))
                .filter(|dir| dir.join("cgroup.procs").exists())
        };
        let audit = if scope.is_some() {
            None
        } else {
            session_audit_id(monitor, uid)
        };
        Ok(Ending {
            session_id: session_id.to_owned(),
            monitor,
            uid,
            scope,
            held: Vec::new(),
            sids: HashSet::new(),
            audit,
            rounds: 0,
        })
    }

    /// The scope being killed, if any.
    pub fn scope(&self) -> Option<&Path> {
        self.scope.as_deref()
    }

    /// One round: signal what is left. Call [`Ending::done`] after a short pause.
    pub fn round(&mut self) {
        self.rounds += 1;
        if let Some(scope) = self.scope.clone() {
            if kill_scope(&scope, self.monitor) {
                return;
            }
            // The scope could not be killed (no write access): the tree instead.
            tracing::warn!(
                scope = %scope.display(),
                "cannot kill the session's scope; ending its process tree instead"
            );
            self.scope = None;
            self.audit = session_audit_id(self.monitor, self.uid);
        }
        let me = std::process::id();
        let all = procs::snapshot();
        // Only a process still alive after the snapshot is a root: a pid that ended may
        // have been reused by then, and a stranger's children are not the session's.
        let roots: Vec<u32> = self
            .held
            .iter()
            .chain([self.monitor])
            .filter(|h| !h.exited())
            .map(PidFd::pid)
            .collect();
        let audit_members = self.audit_members(&all);
        let targets = session_processes(&all, &roots, &self.sids, &audit_members, self.uid, me);
        // Everything stopped first (nothing forks away), then killed.
        let _ = self.monitor.stop();
        for p in targets {
            if self
                .held
                .iter()
                .any(|h| h.pid() == p.pid && h.start() == p.start)
            {
                continue;
            }
            // Held first, then proven to be the process seen in the snapshot.
            if let Some(held) = PidFd::open_same(p.pid, p.start) {
                let _ = held.stop();
                self.sids.insert(p.sid);
                self.held.push(held);
            }
        }
        let _ = self.monitor.kill();
        for held in &self.held {
            let _ = held.kill();
        }
    }

    /// True when nothing of the session runs any more.
    pub fn done(&self) -> bool {
        match &self.scope {
            Some(scope) => scope_empty(scope) && self.monitor.exited(),
            None => {
                if !(self.monitor.exited() && self.held.iter().all(PidFd::exited)) {
                    return false;
                }
                // Nothing forked meanwhile into the sessions of what was killed.
                let all = procs::snapshot();
                let me = std::process::id();
                let audit_members = self.audit_members(&all);
                session_processes(&all, &[], &self.sids, &audit_members, self.uid, me).is_empty()
            }
        }
    }

    /// True when the ending covers every process of the session, as the kernel tells
    /// them: its logind scope, or its audit session id. Without either, processes it
    /// detached from its tree (`setsid -f`, a tmux server, a double fork) cannot be
    /// found, and may live on.
    pub fn proven_complete(&self) -> bool {
        self.scope.is_some() || self.audit.is_some()
    }

    /// The user's processes whose audit session id is the session's.
    fn audit_members(&self, all: &[ProcStat]) -> HashSet<u32> {
        let Some(audit) = self.audit else {
            return HashSet::new();
        };
        all.iter()
            .filter(|p| p.uid == self.uid && !p.zombie)
            .filter(|p| procs::audit_session(p.pid) == Some(audit))
            .map(|p| p.pid)
            .collect()
    }

    /// How many processes were signalled (tree) or whether the scope was used.
    pub fn signalled(&self) -> usize {
        self.held.len() + 1
    }

    /// Gives up: a frozen scope is thawed (never leave a session frozen by mistake), and
    /// what is left is described.
    pub fn give_up(self) -> TerminateError {
        let left = match &self.scope {
            Some(scope) => {
                let _ = write_existing(&scope.join("cgroup.freeze"), "0");
                std::fs::read_to_string(scope.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            None => self
                .held
                .iter()
                .filter(|h| !h.exited())
                .map(|h| h.pid().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        };
        TerminateError::Survivors {
            session: self.session_id,
            rounds: self.rounds,
            left,
        }
    }
}

/// The audit session id of the session of `monitor` (read while it lives): its user
/// child's, when the login got one of its own.
fn session_audit_id(monitor: &PidFd, uid: u32) -> Option<u32> {
    let all = procs::snapshot();
    let child = all
        .iter()
        .find(|p| p.ppid == monitor.pid() && p.uid == uid && !p.zombie)?;
    let parent = procs::stat(monitor.pid()).map(|m| m.ppid)?;
    // The parent must be an sshd, not pid 1 or a subreaper that took an orphan in.
    let listener = (parent > 1
        && procs::facts(parent).is_some_and(|f| procs::is_sshd_name(&f.comm)))
    .then(|| procs::audit_session(parent));
    let others: Vec<Option<u32>> = procs::sshd_session_monitors()
        .into_iter()
        .filter(|&pid| pid != monitor.pid())
        .map(procs::audit_session)
        .collect();
    let id = own_audit_session(procs::audit_session(child.pid), listener, &others);
    // Read while the monitor was alive: the pids were still the session's.
    (!monitor.exited()).then_some(id).flatten()
}

/// Freezes the scope and kills everything in it; false when the scope cannot be written.
fn kill_scope(scope: &Path, monitor: &PidFd) -> bool {
    // Frozen first: nothing in it forks or runs while it is killed. (Kernels before 5.2
    // have no freezer file; cgroup.kill alone is still atomic against forks.)
    let froze = write_existing(&scope.join("cgroup.freeze"), "1").is_ok();
    if write_existing(&scope.join("cgroup.kill"), "1").is_ok() {
        return true;
    }
    // Kernels before 5.14: each member, while frozen (a frozen process cannot exit on its
    // own, so its pid cannot be reused before the signal lands).
    if !froze {
        return false;
    }
    let Ok(pids) = std::fs::read_to_string(scope.join("cgroup.procs")) else {
        return false;
    };
    let me = std::process::id();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|&p| p > 1 && p != me)
    {
        if let Some(start) = procs::stat(pid).map(|s| s.start) {
            if let Some(held) = PidFd::open_same(pid, start) {
                let _ = held.kill();
            }
        }
    }
    let _ = monitor.kill();
    true
}

/// Writes a cgroup control file that must already exist (never creates one).
fn write_existing(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// True when the scope has no process left (or is gone).
fn scope_empty(scope: &Path) -> bool {
    match std::fs::read_to_string(scope.join("cgroup.events")) {
        Ok(events) => events.lines().any(|l| l.trim() == "populated 0"),
        Err(_) => !scope.exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, sid: u32, uid: u32) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            sid,
            start: crate::sessions::boot_clock::BootTicks::new(u64::from(pid)),
            uid,
            euid: uid,
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
            p(400, 1, 400, 1000),   // the same user's cron job, elsewhere
            p(500, 202, 202, 0),    // a setuid helper the user started: not the user's to kill
            p(600, 202, 202, 2000), // another user's process
        ];
        let mut pids: Vec<u32> =
            session_processes(&procs, &[200], &HashSet::new(), &HashSet::new(), 1000, 9)
                .iter()
                .map(|p| p.pid)
                .collect();
        pids.sort();
        assert_eq!(pids, [201, 202, 203, 204]);
        // A later round: 202 was killed, a child it forked meanwhile (205) was reparented.
        let later = [p(1, 0, 1, 0), p(205, 1, 202, 1000), p(400, 1, 400, 1000)];
        let known: HashSet<u32> = [202].into();
        let found: Vec<u32> = session_processes(
            &later,
            &[201, 202, 203, 204],
            &known,
            &HashSet::new(),
            1000,
            9,
        )
        .iter()
        .map(|p| p.pid)
        .collect();
        assert_eq!(found, [205]);
        // The agent itself is never among them.
        assert!(
            session_processes(&procs, &[200], &HashSet::new(), &HashSet::new(), 1000, 203)
                .iter()
                .all(|p| p.pid != 203)
        );
        assert!(has_user_child(&procs, 200, 1000));
        assert!(!has_user_child(&procs, 200, 2000));
        assert!(!has_user_child(&procs, 100, 1000));
    }

    #[test]
    fn what_a_session_detached_belongs_by_its_audit_session_id_and_only_then() {
        let procs = [
            p(1, 0, 1, 0),
            p(100, 1, 100, 0),      // the listening sshd
            p(200, 100, 100, 0),    // monitor
            p(201, 200, 100, 1000), // sshd's user child
            p(202, 201, 202, 1000), // the shell
            p(700, 1, 700, 1000),   // `setsid -f sleep`: reparented, a session of its own
            p(701, 1, 701, 1000),   // a tmux server, double-forked
            p(702, 701, 702, 1000), // ... and its pane
            p(800, 1, 800, 1000),   // the same user's other login, detached too
        ];
        let tree: Vec<u32> =
            session_processes(&procs, &[200], &HashSet::new(), &HashSet::new(), 1000, 9)
                .iter()
                .map(|p| p.pid)
                .collect();
        assert_eq!(tree, [201, 202], "the tree alone misses what was detached");
        // The kernel's audit session id says which detached processes are this login's.
        let audit: HashSet<u32> = [201, 202, 700, 701, 702].into();
        let mut all: Vec<u32> = session_processes(&procs, &[200], &HashSet::new(), &audit, 1000, 9)
            .iter()
            .map(|p| p.pid)
            .collect();
        all.sort();
        assert_eq!(all, [201, 202, 700, 701, 702], "never 800, another login's");
        assert_eq!(own_audit_session(Some(7), Some(None), &[]), Some(7));
        assert_eq!(
            own_audit_session(Some(7), Some(Some(3)), &[Some(3), None, Some(8)]),
            Some(7)
        );
        assert_eq!(
            own_audit_session(Some(3), Some(Some(3)), &[]),
            None,
            "inherited from the listener"
        );
        assert_eq!(
            own_audit_session(Some(7), None, &[]),
            None,
            "re-parented: whose id it is cannot be told"
        );
        assert_eq!(
            own_audit_session(Some(7), Some(None), &[Some(7)]),
            None,
            "another connection's sshd carries it too"
        );
        assert_eq!(own_audit_session(None, Some(None), &[]), None);
        assert_eq!(procs::parse_audit_session("4294967295\n"), None, "unset");
        assert_eq!(procs::parse_audit_session("12"), Some(12));
    }

    #[test]
    fn what_finds_a_whole_session_is_told_from_the_host() {
        use SessionHandle::*;
        assert_eq!(session_handle(true, false, true, false), Scope);
        // A container started by a service: the login uid is unset, pam_loginuid may
        // set it without CAP_AUDIT_CONTROL.
        assert_eq!(session_handle(false, true, false, false), AuditSession);
        // Started from someone's login, Docker's default capabilities.
        assert_eq!(session_handle(false, true, true, false), TreeOnly);
        assert_eq!(session_handle(false, true, true, true), AuditSession);
        assert_eq!(session_handle(false, false, false, true), TreeOnly);
    }

    #[test]
    fn only_the_session_users_own_session_scope_is_killed() {
        let scope = "/user.slice/user-1000.slice/session-7.scope";
        assert_eq!(session_scope(scope, 1000, None).as_deref(), Some(scope));
        assert_eq!(
            session_scope("/user.slice/user-1000.slice/session-c2.scope", 1000, None).as_deref(),
            Some("/user.slice/user-1000.slice/session-c2.scope")
        );
        for (cgroup, uid) in [
            (scope, 1001),                        // another user's
            ("/system.slice/ssh.service", 1000),  // the listener's (Debian, Ubuntu)
            ("/system.slice/sshd.service", 1000), // the listener's (EL family)
            (
                "/system.slice/system-sshd.slice/sshd@1-10.0.0.1:22-10.0.0.2:5.service",
                1000,
            ), // per-connection socket units
            ("/init.scope", 1000),                // pid 1's
            ("/user.slice/user-1000.slice/user@1000.service", 1000), // the user manager
            ("/user.slice/user-1000.slice", 1000), // the whole slice
            ("/user.slice/user-1000.slice/session-7.scope/x", 1000), // below it
            ("/user.slice/user-1000.slice/session-.scope", 1000),
            ("/user.slice/user-1000.slice/session-../../x.scope", 1000),
            ("/", 1000),
        ] {
            assert_eq!(session_scope(cgroup, uid, None), None, "{cgroup}");
        }
        assert_eq!(
            session_scope(scope, 1000, Some(scope)),
            None,
            "the agent's own"
        );
    }
}
