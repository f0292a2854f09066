//! What the kernel says about processes: `/proc` read into plain facts, and the pure
//! checks that decide whether a process is the sshd connection monitor a log line says
//! logged a user in.
//!
//! A log line's pid is a claim; these facts are not. The checks that turn a claim into a
//! proven session live here as pure functions over [`ProcFacts`], so they are tested
//! without a running sshd.

use std::path::{Path, PathBuf};

use super::boot_clock::BootTicks;

/// One process as `/proc/PID/stat` and `/proc/PID/status` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// Session id (`setsid`).
    pub sid: u32,
    /// Start time on the boot clock (field 22 of `stat`).
    pub start: BootTicks,
    /// Real user id.
    pub uid: u32,
    /// Effective user id.
    pub euid: u32,
    pub zombie: bool,
}

/// Everything the login checks need about one process, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    pub stat: ProcStat,
    /// `/proc/PID/comm`: the executable's name as the kernel keeps it (15 bytes at most).
    pub comm: String,
    /// `/proc/PID/cmdline` with its NULs as spaces: sshd rewrites it to its title.
    pub title: String,
}

/// Why a log line's login was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the record was not sent by root's sshd (uid {uid:?}, comm {comm:?}, exe {exe:?})")]
    NotRootSshd {
        uid: Option<u32>,
        comm: Option<String>,
        exe: Option<String>,
    },
    #[error("no process {0} (gone, or never there)")]
    NoProcess(u32),
    #[error("process {0} is exiting")]
    Exiting(u32),
    #[error("process {pid} is not a root sshd process (comm {comm:?}, uid {uid}, euid {euid})")]
    NotSshd {
        pid: u32,
        comm: String,
        uid: u32,
        euid: u32,
    },
    #[error("process {pid} is not a per-connection monitor of {user:?} (its title is {title:?})")]
    NotTheUsersMonitor {
        pid: u32,
        user: String,
        title: String,
    },
    #[error("process {pid} started after the line was written: its pid was reused")]
    StartedAfter { pid: u32 },
    #[error("process {0} ended while it was being checked")]
    EndedDuringCheck(u32),
    #[error("cannot hold process {pid}: {error}")]
    Pidfd { pid: u32, error: String },
}

/// True for the names sshd's per-connection processes run under (`sshd`, and from
/// OpenSSH 9.8 on `sshd-session`).
pub fn is_sshd_name(name: &str) -> bool {
    name == "sshd" || name == "sshd-session"
}

/// True when `title` is that of the process that logs `user`'s login: the
/// per-connection monitor, `sshd: USER [priv]` (`sshd-session: USER [priv]` from OpenSSH
/// 9.8 on). Before 9.8, sshd forks no separate child for root: the monitor itself
/// becomes root's session process and renames itself `sshd: root` and then
/// `sshd: root@pts/0` (or `@notty`, `@internal-sftp`) right after the login, so for root
/// those titles count too. The listener, the pre-authentication child
/// (`sshd: USER [net]`) and another user's processes never do.
pub fn monitor_title_names(title: &str, user: &str) -> bool {
    if monitor_title_user(title) == Some(user) {
        return true;
    }
    user == "root"
        && title.strip_prefix("sshd: root").is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix('@')
                    .is_some_and(|tty| !tty.is_empty() && !tty.contains(' '))
        })
}

/// The user a per-connection monitor's title names: `sshd: USER [priv]` or
/// `sshd-session: USER [priv]` (`sshd-session: USER [postauth]` once authenticated, from
/// OpenSSH 10.5). The listener (`sshd: /usr/sbin/sshd -D [listener] ...`),
/// the pre-authentication child (`sshd: USER [net]`) and the user's own child
/// (`sshd: USER@pts/0`, `USER@notty`) are not monitors.
pub fn monitor_title_user(title: &str) -> Option<&str> {
    let rest = title
        .strip_prefix("sshd: ")
        .or_else(|| title.strip_prefix("sshd-session: "))?;
    let rest = rest.trim_end();
    let user = rest
        .strip_suffix(" [priv]")
        .or_else(|| rest.strip_suffix(" [postauth]"))?;
    (!user.is_empty() && !user.contains(' ')).then_some(user)
}

/// The pure check of a login claim: process `facts` is root's sshd monitor of `user`,
/// alive, and started no later than `written_by` (the moment on the boot clock the line
/// had certainly been written), give or take one tick of the kernel's rounding.
pub fn check_monitor(facts: &ProcFacts, user: &str, written_by: BootTicks) -> Result<(), Refusal> {
    let stat = &facts.stat;
    if stat.zombie {
        return Err(Refusal::NoProcess(stat.pid));
    }
    if stat.uid != 0 || stat.euid != 0 || !is_sshd_name(&facts.comm) {
        return Err(Refusal::NotSshd {
            pid: stat.pid,
            comm: facts.comm.clone(),
            uid: stat.uid,
            euid: stat.euid,
        });
    }
    if facts.title.is_empty() {
        // An exiting process has no memory left, so no command line.
        return Err(Refusal::Exiting(stat.pid));
    }
    if !monitor_title_names(&facts.title, user) {
        return Err(Refusal::NotTheUsersMonitor {
            pid: stat.pid,
            user: user.to_owned(),
            title: facts.title.clone(),
        });
    }
    if stat.start > written_by.plus_ticks(1) {
        return Err(Refusal::StartedAfter { pid: stat.pid });
    }
    Ok(())
}

/// The sshd connection monitors among `procs` (for recovering the sessions open before
/// the agent started): root's `sshd`/`sshd-session` processes whose title is a monitor's.
pub fn monitors(procs: &[ProcFacts]) -> Vec<u32> {
    procs
        .iter()
        .filter(|p| {
            p.stat.uid == 0
                && p.stat.euid == 0
                && !p.stat.zombie
                && is_sshd_name(&p.comm)
                && monitor_title_user(&p.title).is_some()
        })
        .map(|p| p.stat.pid)
        .collect()
}

// ---- I/O: reading /proc -------------------------------------------------------------

/// `/proc/PID/stat` and the uids of `/proc/PID/status`.
pub fn stat(pid: u32) -> Option<ProcStat> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    parse_stat(pid, &stat, &status)
}

/// The pure reading of `stat` and `status` texts.
pub fn parse_stat(pid: u32, stat: &str, status: &str) -> Option<ProcStat> {
    let mut uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .map(|u| u.parse::<u32>().ok());
    let (uid, euid) = (uids.next()??, uids.next()??);
    parse_stat_line(pid, stat, uid, euid)
}

/// The pure reading of a `stat` text, with the uids known otherwise.
fn parse_stat_line(pid: u32, stat: &str, uid: u32, euid: u32) -> Option<ProcStat> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some(ProcStat {
        pid,
        zombie: matches!(fields.first(), Some(&"Z") | Some(&"X")),
        ppid: fields.get(1)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start: BootTicks::new(fields.get(19)?.parse().ok()?),
        uid,
        euid,
    })
}

/// The facts the login checks need about `pid`.
pub fn facts(pid: u32) -> Option<ProcFacts> {
    let stat = stat(pid)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(ProcFacts {
        stat,
        comm: comm.trim_end_matches('\n').to_owned(),
        title: title_of(&cmdline),
    })
}

/// A command line as one string: NUL separators as spaces, trailing NULs dropped.
pub fn title_of(cmdline: &[u8]) -> String {
    String::from_utf8_lossy(cmdline)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

/// Every process on the machine. The uid is the owner of the directory `/proc/PID`,
/// one `stat` instead of reading `status`: a snapshot is taken in every round of ending
/// a session.
///
/// That owner is the process's effective uid, dumpable or not. proc(5) says the files
/// under `/proc/PID` belong to root when the dumpable attribute is not 1 (since Linux
/// 4.11, the root of the process's user namespace), but the kernel exempts the
/// world-readable directory itself (`task_dump_owner` in fs/proc/base.c: a mode of
/// exactly `S_IFDIR|0555` keeps the effective ids, for the tools that stat `/proc/PID`
/// to learn a process's user). So a non-dumpable process of a user (sshd's privilege
/// separated child, anything after `setuid`) is still seen as that user's here, and
/// `stat` of a file inside, such as `/proc/PID/stat`, would have said root: the
/// directory, not a file in it, is what is read. Kernel threads alone are root's.
pub fn snapshot() -> Vec<ProcStat> {
    use std::os::unix::fs::MetadataExt;
    pids()
        .into_iter()
        .filter_map(|pid| {
            let dir = Path::new("/proc").join(pid.to_string());
            let uid = std::fs::metadata(&dir).ok()?.uid();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            parse_stat_line(pid, &stat, uid, uid)
        })
        .collect()
}

/// The pids in `/proc` now.
fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .collect()
}

/// The pids of the sshd connection monitors alive now.
pub fn sshd_session_monitors() -> Vec<u32> {
    let all: Vec<ProcFacts> = pids()
        .into_iter()
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| is_sshd_name(c.trim_end()))
        })
        .filter_map(facts)
        .collect();
    monitors(&all)
}

/// The cgroup (v2) a process is in, as `/proc/PID/cgroup` names it (`/user.slice/...`).
pub fn cgroup(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_owned())
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` (unified, every current
/// distribution), or `/sys/fs/cgroup/unified` (systemd's hybrid mode on cgroup v1 hosts).
pub fn cgroup2_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|root| root.join("cgroup.procs").exists() && !root.join("tasks").exists())
}

/// This boot's id, as the kernel gives it (32 hex digits, dashes removed).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_else(|_| "unknown-boot".to_owned())
}

/// The audit session id of `pid` (`/proc/PID/sessionid`): set by the kernel when
/// `pam_loginuid` gives a login its loginuid, inherited across fork and `setsid`, and
/// changeable only with CAP_AUDIT_CONTROL. `None` when unset (`4294967295`) or unreadable.
pub fn audit_session(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/sessionid")).ok()?;
    parse_audit_session(&text)
}

/// `/proc/PID/sessionid`'s text (pure); `None` for the unset value.
pub fn parse_audit_session(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(pid: u32, title: &str) -> ProcFacts {
        ProcFacts {
            stat: ProcStat {
                pid,
                ppid: 100,
                sid: 100,
                start: BootTicks::new(5000),
                uid: 0,
                euid: 0,
                zombie: false,
            },
            comm: "sshd".to_owned(),
            title: title.to_owned(),
        }
    }

    #[test]
    fn only_a_monitor_title_names_a_user() {
        assert_eq!(monitor_title_user("sshd: alice [priv]"), Some("alice"));
        assert_eq!(
            monitor_title_user("sshd-session: alice [postauth]"),
            Some("alice")
        );
        assert_eq!(
            monitor_title_user("sshd-session: bob.smith [priv]"),
            Some("bob.smith")
        );
        for title in [
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
            "sshd: alice [net]",
            "sshd: alice@pts/0",
            "sshd: alice@notty",
            "sshd: alice bob [priv]",
            "sshd:  [priv]",
            "/usr/sbin/sshd -D",
            "sshd-auth: alice [priv]",
        ] {
            assert_eq!(monitor_title_user(title), None, "{title}");
        }
    }

    #[test]
    fn roots_own_session_process_before_openssh_9_8_counts_for_root_only() {
        for title in [
            "sshd: root",
            "sshd: root@pts/3",
            "sshd: root@notty",
            "sshd: root [priv]",
        ] {
            assert!(monitor_title_names(title, "root"), "{title}");
            assert!(!monitor_title_names(title, "alice"), "{title}");
        }
        for title in [
            "sshd: rootx",
            "sshd: root@",
            "sshd: root@pts/0 x",
            "sshd: alice@pts/0",
            "sshd: root [net]",
        ] {
            assert!(!monitor_title_names(title, "root"), "{title}");
        }
        assert!(monitor_title_names("sshd-session: alice [priv]", "alice"));
        assert!(!monitor_title_names("sshd-session: alice@notty", "alice"));
    }

    #[test]
    fn a_login_is_believed_only_from_the_users_own_root_monitor_started_in_time() {
        let ok = monitor(200, "sshd: alice [priv]");
        assert_eq!(check_monitor(&ok, "alice", BootTicks::new(5000)), Ok(()));
        assert_eq!(
            check_monitor(&ok, "alice", BootTicks::new(4999)),
            Ok(()),
            "one tick of rounding"
        );
        assert_eq!(
            check_monitor(&ok, "alice", BootTicks::new(4998)),
            Err(Refusal::StartedAfter { pid: 200 })
        );
        // Another user's monitor.
        assert!(matches!(
            check_monitor(&ok, "mallory", BootTicks::new(6000)),
            Err(Refusal::NotTheUsersMonitor { .. })
        ));
        // The listener.
        let listener = monitor(
            100,
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
        );
        assert!(matches!(
            check_monitor(&listener, "alice", BootTicks::new(6000)),
            Err(Refusal::NotTheUsersMonitor { .. })
        ));
        // The user's own process calling itself sshd.
        let mut fake = ok.clone();
        fake.stat.uid = 1000;
        fake.stat.euid = 1000;
        assert!(matches!(
            check_monitor(&fake, "alice", BootTicks::new(6000)),
            Err(Refusal::NotSshd { .. })
        ));
        let mut named = ok.clone();
        named.comm = "bash".to_owned();
        assert!(matches!(
            check_monitor(&named, "alice", BootTicks::new(6000)),
            Err(Refusal::NotSshd { .. })
        ));
        let mut exiting = ok.clone();
        exiting.title = String::new();
        assert_eq!(
            check_monitor(&exiting, "alice", BootTicks::new(6000)),
            Err(Refusal::Exiting(200))
        );
        let mut zombie = ok.clone();
        zombie.stat.zombie = true;
        assert_eq!(
            check_monitor(&zombie, "alice", BootTicks::new(6000)),
            Err(Refusal::NoProcess(200))
        );
        let all = [ok, listener, fake, named];
        assert_eq!(monitors(&all), [200]);
    }

    #[test]
    fn stat_and_status_are_read_with_hostile_command_names() {
        let stat =
            "4242 (a) b) (c) S 100 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        let parsed = parse_stat(4242, stat, status).expect("parsed");
        assert_eq!(
            parsed,
            ProcStat {
                pid: 4242,
                ppid: 100,
                sid: 4242,
                start: BootTicks::new(98765),
                uid: 1000,
                euid: 0,
                zombie: false
            }
        );
        assert_eq!(parse_stat(1, "1 (x) Z 0", status), None);
        assert_eq!(title_of(b"sshd: alice [priv]\0\0"), "sshd: alice [priv]");
        assert_eq!(title_of(b"/usr/sbin/sshd\0-D\0"), "/usr/sbin/sshd -D");
    }

    #[test]
    fn our_own_process_is_read_and_started_before_now() {
        let me = stat(std::process::id()).expect("self");
        assert!(!me.zombie);
        assert!(me.start <= super::super::boot_clock::now());
        assert_eq!(stat(u32::MAX), None);
        assert_eq!(boot_id().len(), 32);
    }
}
