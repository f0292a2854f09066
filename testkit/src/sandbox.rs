//! A sandbox for one agent: its configuration, token and state in a directory of its
//! own, and the real agent binary run as a child process.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_config::AgentConfig;
use crate::config::Setup;
use crate::control_plane::{INSTANCE, TOKEN};
use crate::tempdir::tempdir;
use crate::users::current_user;
use crate::wait::wait_until;

/// The agent binary under test: `PICTOR_AGENT_BIN` when set (scripts/aarch64-tests.sh
/// points it at the aarch64 build, run through qemu-user; scripts/bench.sh at the
/// shipped build), else the `pictor-agent` cargo built beside the running test or bench
/// (`target/PROFILE/pictor-agent`, beside `target/PROFILE/deps/` where tests and benches
/// run from, and `examples/`: cargo builds the package's binaries for its tests and
/// benches; the demo asks for `cargo build` first).
pub fn agent() -> &'static str {
    static AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        if let Some(path) = std::env::var_os("PICTOR_AGENT_BIN") {
            return path.to_string_lossy().into_owned();
        }
        let exe = std::env::current_exe().expect("the test's own path");
        let dir = exe.parent().expect("the test's directory");
        let profile = if dir.ends_with("deps") || dir.ends_with("examples") {
            dir.parent().expect("the build directory")
        } else {
            dir
        };
        profile.join("pictor-agent").to_string_lossy().into_owned()
    });
    &AGENT
}

/// A sandbox: config, token and state for one agent.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub keys_file: PathBuf,
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

    /// Writes the configuration `setup` asks for, with a test's quick timings: poll and
    /// back off every second, give up on a request after 2 s, log at debug.
    pub fn write_config(&self, setup: &Setup) {
        let config = AgentConfig {
            long_poll_seconds: Some(setup.long_poll_seconds),
            poll_interval_seconds: Some(1),
            backoff_max_seconds: Some(1),
            request_timeout_seconds: Some(2),
            connect_timeout_seconds: Some(2),
            extra_api: setup.extra_api.clone(),
            state_dir: Some(self.state_dir.clone()),
            log_level: Some("debug".to_owned()),
            extra: format!("{}\n{}", setup.extra, setup.host_keys),
            ..AgentConfig::new(&setup.base_url, INSTANCE, &self.dir.path().join("token"))
        }
        .user(&setup.user, setup.authorized_keys.as_deref());
        config.write(&self.config);
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
