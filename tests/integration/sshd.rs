//! End to end with the real OpenSSH sshd on 127.0.0.1 and the real ssh client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

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

/// A fresh test account whose `~/.ssh/authorized_keys` holds one hand-added key.
pub fn user_with_hand_added_key(name: &str, key: &KeyPair) -> PathBuf {
    let user = ensure_user(name);
    let ssh = user.dir.join(".ssh");
    let _ = std::fs::remove_dir_all(&ssh);
    std::fs::create_dir(&ssh).expect("mkdir");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let file = ssh.join("authorized_keys");
    std::fs::write(&file, format!("{}\n", key.public_line)).expect("hand-added key");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for path in [&ssh, &file] {
        std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .expect("chown");
    }
    file
}

#[test]
fn account_key_logs_in_deleted_key_is_refused_and_hand_added_key_always_works() {
    if !sshd_available() {
        return;
    }
    let server = Server::start();
    let dir = tempdir();
    let hand = KeyPair::generate(dir.path(), "hand");
    let account = KeyPair::generate(dir.path(), "account");
    let user = "pictor-e2e";
    let keys_file = user_with_hand_added_key(user, &hand);
    let setup = Setup::new(&server.url, user, None);
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let sshd = Sshd::start(sandbox.dir.path());
    assert!(
        sshd.login(user, &hand.private),
        "hand-added key works before the agent"
    );
    assert!(
        !sshd.login(user, &account.private),
        "account key not yet known"
    );

    let _agent = sandbox.start_agent();
    server.cp.add_key(account.new_key("key_account"));
    wait_until(Duration::from_secs(5), "account key written", || {
        sandbox.keys_text().contains(&account.canonical())
    });
    assert!(sshd.login(user, &account.private), "account key logs in");
    assert!(
        sshd.login(user, &hand.private),
        "hand-added key still works"
    );

    server.cp.delete_key("key_account");
    wait_until(Duration::from_secs(5), "account key removed", || {
        !sandbox.keys_text().contains(&account.canonical())
    });
    assert!(
        !sshd.login(user, &account.private),
        "deleted key is refused"
    );
    assert!(
        sshd.login(user, &hand.private),
        "hand-added key still works after the deletion"
    );
    assert_eq!(
        sandbox.keys_text(),
        format!("{}\n", hand.public_line),
        "file back to the hand-added line only"
    );
}
