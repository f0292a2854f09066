//! Where sshd's messages come from: the systemd journal (through `journalctl --follow
//! --output=json --grep=...`, resumed from a saved cursor), a classic syslog file
//! (`auth.log`, `secure`) followed with inotify through rotation, truncation and
//! copytruncate, resumed from a saved inode and offset, or the syslog socket itself,
//! bound by the agent where nothing else listens (a container): `journal.rs`, `file.rs`
//! and `syslog_socket.rs` (its datagrams read by `syslog_frame.rs`, its senders held to
//! their share by `sender_limit.rs`). What they hand over, and which one a machine uses
//! ([`decide`], pure), are here.

mod file;
mod journal;
pub mod sender_limit;
pub mod syslog_frame;
pub mod syslog_socket;

/// The syslog socket every program logs to.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

pub use file::follow_file;
pub use journal::{
    follow_journal, parse_journal_entry, parse_journal_json, JOURNAL_GREP, TRUSTED_SENDER_MATCHES,
};
pub use syslog_socket::follow_socket;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::boot_clock::BootTicks;
use super::parse;
use super::procs;
use super::proof::{self, Origin};

/// Where reading resumes after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Position {
    Journal { cursor: String },
    File { dev: u64, ino: u64, offset: u64 },
}

/// An sshd record, owned, with what is known of who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Journal: `_PID` (the kernel's); file: the line's tag (a claim).
    pub pid: u32,
    pub at: Option<OffsetDateTime>,
    pub message: String,
    pub origin: Origin,
}

impl OwnedRecord {
    /// A syslog file's line, read at `read_at`.
    pub fn from_line(record: &parse::Record<'_>, read_at: BootTicks) -> OwnedRecord {
        OwnedRecord {
            pid: record.pid,
            at: record.at,
            message: record.message.to_owned(),
            origin: Origin::File { read_at },
        }
    }
}

/// What a source hands over: a record (or only progress, for lines that were not
/// sshd's) and the position just after it (none for the socket: nothing to resume).
#[derive(Debug, Clone)]
pub struct LogItem {
    pub record: Option<OwnedRecord>,
    pub position: Option<Position>,
}

/// Which source to read; `auto` picks the journal when journald runs, else the file.
/// `syslog_socket` (the container case, and what `PICTOR_API_URL` gives) binds the
/// syslog socket when nothing else listens on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceChoice {
    Auto,
    Journal,
    File,
    SyslogSocket,
}

/// The source actually used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Journal,
    File(PathBuf),
    /// The syslog socket at this path, bound by the agent.
    Socket(PathBuf),
}

/// The syslog files sshd's messages go to on Debian/Ubuntu and on RHEL-like systems.
pub const DEFAULT_LOG_FILES: [&str; 2] = ["/var/log/auth.log", "/var/log/secure"];

/// Resolves the configured choice on this machine.
pub fn choose(choice: SourceChoice, log_file: Option<&Path>, syslog_socket: &Path) -> Source {
    match choice {
        SourceChoice::SyslogSocket => Source::Socket(syslog_socket.to_owned()),
        _ => decide(choice, log_file, &|path| path.exists()),
    }
}

/// The choice, given which paths `exists` says are there. `auto` takes the journal
/// wherever journald runs, even where sshd also logs to a file through rsyslog (EL 9
/// and 10 fill both the journal and `/var/log/secure`): only the journal's trusted
/// fields prove who sent a line. Without journald (containers), the configured file,
/// else the first of [`DEFAULT_LOG_FILES`] that exists, else `auth.log` (waited for).
pub fn decide(
    choice: SourceChoice,
    log_file: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
) -> Source {
    let file = || {
        log_file.map(Path::to_path_buf).unwrap_or_else(|| {
            DEFAULT_LOG_FILES
                .iter()
                .map(PathBuf::from)
                .find(|p| exists(p))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_FILES[0]))
        })
    };
    match choice {
        SourceChoice::Journal => Source::Journal,
        SourceChoice::File => Source::File(file()),
        SourceChoice::SyslogSocket => Source::Socket(PathBuf::from(DEFAULT_SYSLOG_SOCKET)),
        SourceChoice::Auto if exists(Path::new("/run/systemd/journal/socket")) => Source::Journal,
        SourceChoice::Auto => Source::File(file()),
    }
}

/// Of the logged lines of the pids alive now (in log order), those of each pid's
/// current process: from that pid's last `Accepted` line on. Pids are reused (pid_max
/// is often 32,768), so the log also holds the lines of earlier processes that had the
/// same pid; replaying them would report sessions that ended long ago.
pub fn current_processes_lines(records: Vec<OwnedRecord>) -> Vec<OwnedRecord> {
    let mut last_accepted = std::collections::HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if let Some(parse::SshdMessage::Accepted { .. }) = parse::parse_message(&record.message) {
            last_accepted.insert(record.pid, index);
        }
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(index, record)| last_accepted.get(&record.pid).is_some_and(|a| index >= a))
        .map(|(_, record)| record)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_current_process_of_a_reused_pid_is_replayed() {
        let record = |pid: u32, message: &str| super::OwnedRecord {
            pid,
            at: None,
            message: message.to_owned(),
            origin: Origin::File {
                read_at: BootTicks::default(),
            },
        };
        let old_login =
            "Accepted publickey for alice from 10.0.0.1 port 1000 ssh2: ED25519 SHA256:ooooooooooooooooooooooooooooooooooooooooooA";
        let new_login =
            "Accepted publickey for bob from 10.0.0.2 port 2000 ssh2: ED25519 SHA256:nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnA";
        let records = vec![
            record(700, old_login),
            record(700, "User child is on pid 701"),
            record(800, "pam_unix(sshd:session): session closed for user carol"),
            record(700, "Disconnected from user alice 10.0.0.1 port 1000"),
            record(700, new_login),
            record(700, "User child is on pid 702"),
        ];
        let kept: Vec<String> = super::current_processes_lines(records)
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(kept, [new_login, "User child is on pid 702"]);
    }

    use super::*;

    /// The paths each kind of image has, as `decide` sees them.
    fn image(paths: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |path| paths.iter().any(|p| Path::new(p) == path)
    }

    #[test]
    fn auto_takes_the_journal_wherever_journald_runs() {
        const JOURNAL: &str = "/run/systemd/journal/socket";
        // EL 9 and 10: journald, and rsyslog writing /var/log/secure beside it.
        let el9 = image(&[JOURNAL, "/var/log/secure"]);
        assert_eq!(decide(SourceChoice::Auto, None, &el9), Source::Journal);
        // Debian 12 and 13, Ubuntu 24.04 cloud images: journald; auth.log only with rsyslog.
        let debian = image(&[JOURNAL, "/var/log/auth.log"]);
        assert_eq!(decide(SourceChoice::Auto, None, &debian), Source::Journal);
        // A container without systemd: the file that exists, Ubuntu's or the EL family's.
        let ubuntu_container = image(&["/var/log/auth.log"]);
        assert_eq!(
            decide(SourceChoice::Auto, None, &ubuntu_container),
            Source::File(PathBuf::from("/var/log/auth.log"))
        );
        let el_container = image(&["/var/log/secure"]);
        assert_eq!(
            decide(SourceChoice::Auto, None, &el_container),
            Source::File(PathBuf::from("/var/log/secure"))
        );
        // Neither yet (rsyslog not started): auth.log, waited for.
        assert_eq!(
            decide(SourceChoice::Auto, None, &image(&[])),
            Source::File(PathBuf::from("/var/log/auth.log"))
        );
        // `file` on EL 9 reads /var/log/secure although the journal is there.
        assert_eq!(
            decide(SourceChoice::File, None, &el9),
            Source::File(PathBuf::from("/var/log/secure"))
        );
    }

    #[test]
    fn auto_prefers_an_explicit_file_when_there_is_no_journal() {
        let socket = Path::new("/run/log");
        let chosen = choose(SourceChoice::File, Some(Path::new("/tmp/x.log")), socket);
        assert_eq!(chosen, Source::File(PathBuf::from("/tmp/x.log")));
        assert_eq!(choose(SourceChoice::Journal, None, socket), Source::Journal);
        assert_eq!(
            choose(SourceChoice::SyslogSocket, None, socket),
            Source::Socket(socket.to_owned())
        );
    }
}
