//! pictor-agent: keeps an instance's `authorized_keys` in step with the SSH key list of
//! the Pictor account that rents it.
//!
//! The map of the crate (data flows top to bottom):
//!
//! - [`config`]: the TOML configuration file, parsed and validated (pure, plus loading);
//!   [`config::env`](mod@config::env) the same from a container's `PICTOR_*` variables (pure).
//! - [`login_user`]: the image's default login user, managed when there is no
//!   `[[users]]`: chosen from cloud-init's `default_user` or os-release (pure), the
//!   files read by [`login_user::distro_files`].
//! - [`api`]: the control plane's HTTP API; [`api::model`] holds every wire type (keys in;
//!   events and the status out: the pure cores build them),
//!   [`api::token`] reads the token file, [`api::shared`] the client shared by the tasks.
//! - [`keys`]: validation of account keys, expiry, and the key set in force (pure).
//! - [`schedule`]: when to ask the control plane next: long-poll, polling, backoff (pure).
//! - [`authorized_keys`]: the managed block: [`authorized_keys::merge`] (pure),
//!   [`authorized_keys::write`] (no-follow opens, ownership checks, atomic durable
//!   replace) and [`authorized_keys::command`] (sshd's AuthorizedKeysCommand and its file).
//! - [`users`]: local accounts and where their managed files live; [`home_binds`]:
//!   where the packaged service sees `/home` and `/root`.
//! - [`state`]: the state directory's one layer (applied set, sessions, files report):
//!   versioned formats, explicit modes, atomic durable writes (the event loop's saves on
//!   tokio's blocking pool).
//! - [`durable`]: the one atomic, durable file replace everything else uses.
//! - [`selinux`]: the SELinux labels of the files sshd reads (kept on replace, the
//!   policy's on create; nothing at all without SELinux).
//! - [`drift_watch`]: inotify watches on managed files' directories, for drift repair.
//! - [`sessions`]: sshd's log parsed ([`sessions::parse`], its time stamps
//!   [`sessions::stamp`]) and correlated into sessions ([`sessions::track`]), read from
//!   the journal, a syslog file or the syslog socket the agent binds in a container
//!   ([`sessions::source`]; a datagram read by [`sessions::source::syslog_frame`], each
//!   sender's share by [`sessions::source::sender_limit`], both pure); a login believed
//!   only on the kernel's word ([`sessions::proof`], [`sessions::procs`],
//!   [`sessions::pidfd`]);
//!   every decision about ending a session, pure ([`sessions::revocation`], on the boot
//!   clock of [`sessions::boot_clock`]); revoked sessions ended
//!   ([`sessions::terminate`]); the whole as one task on a thread of its own
//!   ([`sessions::task`]), which does what the verdicts say.
//! - [`outbox`]: the durable queue of session events; [`delivery`] sends it in batches.
//! - [`host_keys`]: the instance's SSH host keys, judged (pure), read from the
//!   configured files and followed with inotify, for the status.
//! - [`heartbeat`]: the agent status sent after every change and every interval.
//! - [`sync`]: the fetch task that follows the key list and hands over validated sets.
//! - [`enforce`]: every managed file's wanted and verified state: [`enforce::files`] is
//!   the pure core (what to write, when to retry, what to report), [`enforce::worker`]
//!   the per-user I/O threads, [`enforce::command_file`] the AuthorizedKeysCommand
//!   file's writer beside its pure state [`enforce::command_file_state`] (when to write,
//!   when to retry), [`enforce::report`] the status's key side (pure), and
//!   [`enforce::Enforcer`] the shell around them.
//! - [`latest_writer`]: writes handed off the event loop to tokio's blocking pool,
//!   newest first (the command file, the files report).
//! - [`daemon`]: the thin main loop (signals, timers, readiness), with
//!   [`daemon::tasks`] (the background tasks), [`daemon::reload`] (what SIGHUP changes)
//!   and [`daemon::once`] (`sync --once`).
//! - [`logging`]: tracing to journald (structured, with MESSAGE_IDs) or to stderr.
//! - [`service`]: sd_notify: READY, STATUS and the watchdog.
//! - [`cli`]: the command-line interface behind the thin `main.rs`.
//! - [`unit_paths`]: the unit drop-in that makes managed directories outside /home and
//!   /root writable (for the packages' systemd generator).
//! - [`timefmt`]: RFC 3339 helpers shared by the modules above.
//! - [`escape`]: control characters escaped in every path and name printed or logged.

pub mod api;
pub mod authorized_keys;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod drift_watch;
pub mod durable;
pub mod enforce;
pub mod escape;
pub mod heartbeat;
pub mod home_binds;
pub mod host_keys;
pub mod keys;
pub mod latest_writer;
pub mod logging;
pub mod login_user;
pub mod outbox;
pub mod schedule;
pub mod selinux;
pub mod service;
pub mod sessions;
pub mod state;
pub mod sync;
pub mod timefmt;
pub mod unit_paths;
pub mod users;

/// The agent's version, as sent in `User-Agent` and the status report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers of the unit tests.

    /// A temporary directory on a path the agent accepts for a managed file: every
    /// directory above it owned by root or the current user and writable by them alone,
    /// as sshd's `StrictModes` demands (so not under `/tmp`, mode 1777).
    pub fn tempdir() -> tempfile::TempDir {
        let base = if nix::unistd::Uid::effective().is_root() {
            std::path::PathBuf::from("/run/pictor-agent-tests")
        } else {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-homes")
        };
        crate::durable::ensure_dir(&base, nix::sys::stat::Mode::from_bits_truncate(0o755))
            .expect("test base directory");
        tempfile::Builder::new()
            .prefix("unit-")
            .tempdir_in(&base)
            .expect("tempdir")
    }
}
