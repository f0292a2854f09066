//! The one sshd driver: a private OpenSSH sshd on a free loopback port, and the real ssh
//! client to log in to it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::prereq::{is_root, prerequisite};
use crate::wait::wait_until;

pub const SSHD: &str = "/usr/sbin/sshd";

/// A private sshd on a free loopback port, stopped when dropped.
pub struct Sshd {
    pub port: u16,
    child: Child,
}

impl Sshd {
    /// sshd logging to its standard error (into `DIR/sshd.log`).
    pub fn start(dir: &Path) -> Sshd {
        Sshd::start_logging(dir, false)
    }

    /// sshd logging through syslog(3) (`/dev/log`, the journal here) when `syslog`.
    pub fn start_logging(dir: &Path, syslog: bool) -> Sshd {
        Sshd::start_full(dir, syslog, "")
    }

    /// sshd (logging to stderr) with extra configuration lines, which come first (sshd
    /// takes the first value it reads of a keyword, so they override the defaults).
    pub fn start_with_extra(dir: &Path, extra: &str) -> Sshd {
        Sshd::start_full(dir, false, extra)
    }

    /// sshd logging through syslog(3) when `syslog`, with extra configuration lines first.
    pub fn start_full(dir: &Path, syslog: bool, extra: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("privsep dir");
        let host_key = dir.join("host_key");
        // Host keys of the test's own (`HostKey` lines in `extra`) replace the default.
        let own_host_keys = extra.lines().any(|l| l.starts_with("HostKey "));
        if !host_key.exists() && !own_host_keys {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key)
                .status()
                .expect("ssh-keygen");
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "{extra}ListenAddress 127.0.0.1\nPort {port}\n{}PidFile {}\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes yes\nLogLevel VERBOSE\n",
                if own_host_keys {
                    String::new()
                } else {
                    format!("HostKey {}\n", host_key.display())
                },
                dir.join("sshd.pid").display()
            ),
        )
        .expect("sshd_config");
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("sshd -t");
        assert!(
            check.status.success(),
            "sshd -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.join("sshd.log")).expect("log");
        let child = Command::new(SSHD)
            .args(if syslog {
                ["-D", "-f"].as_slice()
            } else {
                ["-D", "-e", "-f"].as_slice()
            })
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        wait_until(Duration::from_secs(5), "sshd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sshd { port, child }
    }

    /// Runs `ssh user@127.0.0.1 true` with only this key; true when the login worked.
    pub fn login(&self, user: &str, key: &Path) -> bool {
        self.ssh(user, key, &["true"])
            .output()
            .expect("ssh runs")
            .status
            .success()
    }

    /// An ssh command for `user@127.0.0.1 ARGS...` with only this key.
    pub fn ssh(&self, user: &str, key: &Path, args: &[&str]) -> Command {
        self.ssh_with(user, key, &[], args)
    }

    /// Like [`Sshd::ssh`], with extra client options (`-tt`, say) before the destination.
    pub fn ssh_with(&self, user: &str, key: &Path, options: &[&str], args: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command.args(options);
        command
            .args(["-p", &self.port.to_string(), "-i"])
            .arg(key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }
}

impl Sshd {
    /// The listening sshd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when this machine can run the sshd tests; under CI a missing part fails.
pub fn sshd_available() -> bool {
    prerequisite(is_root(), "root, to run sshd and create test users")
        && prerequisite(Path::new(SSHD).exists(), "openssh-server (/usr/sbin/sshd)")
        && prerequisite(
            Command::new("ssh").arg("-V").output().is_ok(),
            "openssh-client (ssh)",
        )
}
