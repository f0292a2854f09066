//! Where sshd's lines go: a journald started here when none runs (no systemd as PID 1 in
//! a test machine), and rsyslog writing them to a classic syslog file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::prereq::prerequisite;
use crate::sshd::sshd_available;
use crate::wait::wait_until;

pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// True when something listens on journald's socket (a stale socket file is not enough).
pub fn journald_listening() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|socket| socket.connect(JOURNAL_SOCKET))
        .is_ok()
}

/// Makes sure a journald runs and `/dev/log` reaches it (no systemd as PID 1 here).
/// It is left running for the rest of the test run, like the system's would be.
pub fn ensure_journald() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        if !journald_listening() {
            let _ = std::fs::create_dir_all("/run/systemd/journal");
            let spawned = Command::new("/lib/systemd/systemd-journald")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if spawned.is_err() {
                return false;
            }
            let start = Instant::now();
            while !journald_listening() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if std::fs::symlink_metadata("/dev/log").is_err() {
            let _ = std::os::unix::fs::symlink("/run/systemd/journal/dev-log", "/dev/log");
        }
        journald_listening() && Path::new("/dev/log").exists()
    })
}

pub fn journal_available() -> bool {
    sshd_available()
        && prerequisite(
            ensure_journald(),
            "systemd-journald (package systemd) to receive sshd's syslog",
        )
        && prerequisite(
            Command::new("journalctl").arg("--version").output().is_ok(),
            "journalctl",
        )
}

/// rsyslog reading the journal and writing sshd's lines to a file, as on RHEL.
pub struct Rsyslog {
    child: Child,
    pid_file: PathBuf,
}

impl Rsyslog {
    /// RFC 3339 stamps (rsyslog's high-precision file format).
    pub fn start(dir: &Path, log: &Path) -> Option<Rsyslog> {
        Rsyslog::start_with(dir, log, "iso", None)
    }

    /// RHEL's traditional format (`Nov 29 10:00:00 host sshd[1]: ...`: local time, no
    /// year), with rsyslog's local time in the zone `tz` names.
    pub fn start_traditional(dir: &Path, log: &Path, tz: &str) -> Option<Rsyslog> {
        Rsyslog::start_with(dir, log, "RSYSLOG_TraditionalFileFormat", Some(tz))
    }

    pub fn start_with(dir: &Path, log: &Path, template: &str, tz: Option<&str>) -> Option<Rsyslog> {
        if !prerequisite(
            Path::new("/usr/sbin/rsyslogd").exists(),
            "rsyslog (/usr/sbin/rsyslogd)",
        ) {
            return None;
        }
        let work = dir.join("rsyslog");
        std::fs::create_dir_all(&work).expect("mkdir");
        let config = work.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{w}\")\n\
                 module(load=\"imjournal\" StateFile=\"{w}/imjournal.state\" IgnorePreviousMessages=\"on\")\n\
                 template(name=\"iso\" type=\"string\" string=\"%timegenerated:::date-rfc3339% %HOSTNAME% %syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\\n\")\n\
                 if $programname == 'sshd' or $programname == 'sshd-session' then action(type=\"omfile\" file=\"{log}\" template=\"{template}\")\n",
                w = work.display(),
                log = log.display()
            ),
        )
        .expect("rsyslog.conf");
        let pid_file = work.join("rsyslogd.pid");
        let mut command = Command::new("/usr/sbin/rsyslogd");
        if let Some(tz) = tz {
            command.env("TZ", tz);
        }
        let child = command
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd starts");
        wait_until(Duration::from_secs(5), "rsyslogd running", || {
            pid_file.exists()
        });
        Some(Rsyslog { child, pid_file })
    }

    /// What logrotate's postrotate does: make rsyslog reopen its files.
    pub fn reopen(&self) {
        let _ = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status();
        let _ = &self.pid_file;
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
