//! Test harness: a reference control plane in-process, the real agent binary as a child
//! process, real keys from ssh-keygen, real users and files.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pictor_control_plane::{ControlPlane, NewKey};

pub use crate::safe_tempdir::tempdir;

/// The agent binary under test: `PICTOR_AGENT_BIN` when set (scripts/aarch64-tests.sh
/// points it at the aarch64 build, run through qemu-user), else this build's own.
pub fn agent() -> &'static str {
    static AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("PICTOR_AGENT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pictor-agent").to_owned())
    });
    &AGENT
}
pub const INSTANCE: &str = "inst_test";
pub const TOKEN: &str = "test-token-0123456789";

/// True when running under CI: a missing prerequisite is then a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Returns false (and says so loudly) when the test cannot run here; panics under CI.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(!in_ci(), "prerequisite missing under CI: {what}");
        eprintln!("SKIPPED: {what} (not under CI)");
    }
    ok
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Polls `check` every 5 ms until it holds or `timeout` passes; returns the time taken.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// A key pair made by the real ssh-keygen.
pub struct KeyPair {
    pub private: PathBuf,
    pub public_line: String,
}

impl KeyPair {
    pub fn generate(dir: &Path, name: &str) -> KeyPair {
        let private = dir.join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        let public_line =
            std::fs::read_to_string(private.with_extension("pub")).expect("public key");
        KeyPair {
            private,
            public_line: public_line.trim().to_owned(),
        }
    }

    /// `type base64`, as the agent writes it.
    pub fn canonical(&self) -> String {
        self.public_line
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An account key that expires `seconds` from now.
    pub fn expiring_key(&self, id: &str, seconds: i64) -> NewKey {
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        let mut key = self.new_key(id);
        key.expires_at = Some(
            at.format(&time::format_description::well_known::Rfc3339)
                .expect("format"),
        );
        key
    }

    pub fn new_key(&self, id: &str) -> NewKey {
        NewKey {
            id: Some(id.into()),
            name: id.into(),
            public_key: self.public_line.clone(),
            ..NewKey::default()
        }
    }
}

/// A running reference control plane on loopback, served by its own runtime thread.
pub struct Server {
    pub cp: ControlPlane,
    pub url: String,
    _serving: pictor_control_plane::LoopbackServer,
}

impl Server {
    pub fn start() -> Server {
        let cp = ControlPlane::new();
        cp.register_instance(INSTANCE, TOKEN);
        let serving = cp.serve_on_loopback().expect("serve");
        Server {
            cp,
            url: serving.url.clone(),
            _serving: serving,
        }
    }
}

/// Settings of one test agent.
pub struct Setup {
    pub base_url: String,
    pub user: String,
    /// `None`: the user's default `~/.ssh/authorized_keys`.
    pub authorized_keys: Option<PathBuf>,
    pub long_poll_seconds: u64,
    pub extra_api: String,
    /// TOML appended to the file (whole sections); by default session reporting is off.
    pub extra: String,
    /// The `[host_keys]` section; by default off (the host's own `/etc/ssh` keys are
    /// not what most tests are about).
    pub host_keys: String,
}

impl Setup {
    /// Long-poll mode, no extra `[api]` options.
    pub fn new(base_url: &str, user: &str, authorized_keys: Option<PathBuf>) -> Setup {
        Setup {
            base_url: base_url.to_owned(),
            user: user.to_owned(),
            authorized_keys,
            long_poll_seconds: 30,
            extra_api: String::new(),
            extra: "[sessions]\nenabled = false\n".into(),
            host_keys: "[host_keys]\nenabled = false\n".into(),
        }
    }

    /// Session reporting on, from `source` (`journal`, or a syslog file path).
    pub fn with_sessions(mut self, source: &str) -> Setup {
        self.extra = if source == "journal" {
            "[sessions]\nlog_source = \"journal\"\n".into()
        } else {
            format!("[sessions]\nlog_source = \"file\"\nlog_file = {source:?}\n")
        };
        self.extra_api.push_str("heartbeat_seconds = 5\n");
        self
    }
}

/// A sandbox: config, token and state for one agent.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub keys_file: PathBuf,
}

/// The current user's name (the agent manages it when not root).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("current user has a name")
}

impl Sandbox {
    /// A sandbox whose managed file is `DIR/home/authorized_keys`, for the current user.
    pub fn new(base_url: &str) -> Sandbox {
        let dir = tempdir();
        let keys_dir = dir.path().join("home");
        std::fs::create_dir(&keys_dir).expect("mkdir");
        std::fs::set_permissions(&keys_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let keys_file = keys_dir.join("authorized_keys");
        let setup = Setup::new(base_url, &current_user(), Some(keys_file.clone()));
        Sandbox::with(dir, setup, keys_file)
    }

    pub fn with(dir: tempfile::TempDir, setup: Setup, keys_file: PathBuf) -> Sandbox {
        let token = dir.path().join("token");
        std::fs::write(&token, TOKEN).expect("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let state_dir = dir.path().join("state");
        let config = dir.path().join("config.toml");
        let sandbox = Sandbox {
            config,
            state_dir,
            keys_file,
            dir,
        };
        sandbox.write_config(&setup);
        sandbox
    }

    pub fn write_config(&self, setup: &Setup) {
        let override_line = setup
            .authorized_keys
            .as_ref()
            .map(|p| format!("authorized_keys = {:?}\n", p.display().to_string()))
            .unwrap_or_default();
        let text = format!(
            "[api]\nbase_url = {:?}\ninstance_id = {INSTANCE:?}\ntoken_file = {:?}\nlong_poll_seconds = {}\n\
             poll_interval_seconds = 1\nbackoff_max_seconds = 1\nrequest_timeout_seconds = 2\nconnect_timeout_seconds = 2\n{}\n\
             [[users]]\nname = {:?}\n{override_line}\n[state]\ndir = {:?}\n\n[log]\nlevel = \"debug\"\n\n{}\n{}",
            setup.base_url,
            self.dir.path().join("token").display().to_string(),
            setup.long_poll_seconds,
            setup.extra_api,
            setup.user,
            self.state_dir.display().to_string(),
            setup.extra,
            setup.host_keys,
        );
        std::fs::write(&self.config, text).expect("config");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(agent());
        command.arg("--config").arg(&self.config).args(args);
        command
    }

    /// Starts `pictor-agent run`, its log in `DIR/agent.log`.
    pub fn start_agent(&self) -> Agent {
        self.start_agent_with(|_| {})
    }

    /// Like [`Sandbox::start_agent`], with the command adjusted first (its environment).
    pub fn start_agent_with(&self, adjust: impl FnOnce(&mut Command)) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log");
        let mut command = self.command(&["run"]);
        adjust(&mut command);
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent starts");
        Agent { child: Some(child) }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Waits until the agent's log contains `needle`. The agent logs after it acts, so a
    /// test that has seen the effect on disk must still wait for the line.
    pub fn wait_for_log(&self, needle: &str) {
        wait_until(
            Duration::from_secs(5),
            &format!("log line {needle:?}"),
            || self.log().contains(needle),
        );
    }

    pub fn keys_text(&self) -> String {
        std::fs::read_to_string(&self.keys_file).unwrap_or_default()
    }
}

/// A running agent; killed when dropped.
pub struct Agent {
    pub child: Option<Child>,
}

impl Agent {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().expect("child");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "agent did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

static USERADD: Mutex<()> = Mutex::new(());

/// Makes sure a local test account exists (root only): `useradd -m`, no password login.
pub fn ensure_user(name: &str) -> nix::unistd::User {
    let _guard = USERADD.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
        return user;
    }
    let status = Command::new("useradd")
        .args(["-m", "-s", "/bin/sh", "-p", "*", name])
        .status()
        .expect("useradd runs");
    assert!(status.success(), "useradd {name}");
    nix::unistd::User::from_name(name)
        .expect("lookup")
        .expect("user exists")
}

/// Makes sure a system account like the packages' `pictor-keys` exists (root only):
/// no home, no login shell, a group of its own name. sshd runs the AuthorizedKeysCommand
/// as such an account.
pub fn ensure_system_account(name: &str) -> nix::unistd::User {
    let _guard = USERADD.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
        return user;
    }
    let status = Command::new("useradd")
        .args(["--system", "--no-create-home", "--user-group"])
        .args([
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .status()
        .expect("useradd runs");
    assert!(status.success(), "useradd --system {name}");
    nix::unistd::User::from_name(name)
        .expect("lookup")
        .expect("account exists")
}

impl Sandbox {
    /// Sets `[state] authorized_keys_command_group` in the configuration file.
    pub fn set_command_group(&self, group: &str) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        assert!(text.contains("[state]\n"));
        let text = text.replacen(
            "[state]\n",
            &format!("[state]\nauthorized_keys_command_group = {group:?}\n"),
            1,
        );
        std::fs::write(&self.config, text).expect("config");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A failing test shows what the agent said.
        if std::thread::panicking() {
            let log = self.log();
            // One file per sandbox: tests failing together keep their own logs.
            let sandbox = self
                .dir
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let keep = std::env::temp_dir().join(format!(
                "pictor-agent-failed-{}-{sandbox}.log",
                std::process::id()
            ));
            if std::fs::write(&keep, &log).is_ok() {
                eprintln!("--- the agent's whole log: {}", keep.display());
            }
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the agent's log:");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
