//! What pictor-agent's integration tests, benchmarks and the demo share, so each test is
//! about its own subject and a new one needs a few lines of setup. Everything here is
//! real: the agent binary as a child process, keys from `ssh-keygen`, local users, the
//! OpenSSH sshd and ssh, journald and rsyslog, mounts; the only stand-in is the control
//! plane, the project's reference implementation of the contract.
//!
//! - [`prereq`]: what a test needs from the machine (a loud skip, a failure under CI);
//! - [`wait`]: waiting for a condition with a deadline;
//! - [`tempdir`]: directories where a managed file may live (never under `/tmp`);
//! - [`keypair`]: key pairs from `ssh-keygen`;
//! - [`control_plane`]: the reference control plane on loopback, and what it recorded;
//! - [`agent_config`]: the agent's configuration file, typed (tests, benches, the demo);
//! - [`config`]: what a test varies in it ([`Setup`]);
//! - [`sandbox`]: one agent's directory, and the agent process;
//! - [`users`]: local test accounts;
//! - [`sshd`]: the one sshd driver, and the ssh client;
//! - [`journal`]: journald and rsyslog;
//! - [`mounts`]: test file systems;
//! - [`procs`]: `/proc` helpers;
//! - [`browser`]: headless Chromium for the account page;
//! - [`world`]: one builder for a test's whole world: control plane, sandbox, user,
//!   account keys, session source, sshd.
//!
//! `use testkit::*;` brings the everyday names.

pub mod agent_config;
pub mod browser;
pub mod config;
pub mod control_plane;
pub mod journal;
pub mod keypair;
pub mod mounts;
pub mod prereq;
pub mod procs;
pub mod sandbox;
pub mod sshd;
pub mod tempdir;
pub mod users;
pub mod wait;
pub mod world;

pub use agent_config::AgentConfig;
pub use config::Setup;
pub use control_plane::{active_for, events_for, test_run_started, Server, INSTANCE, TOKEN};
pub use journal::{journal_available, Rsyslog};
pub use keypair::{fingerprint, KeyPair};
pub use prereq::{in_ci, is_root, prerequisite};
pub use sandbox::{agent, Agent, Sandbox};
pub use sshd::{sshd_available, Sshd};
pub use tempdir::tempdir;
pub use users::{
    as_user, current_user, ensure_system_account, ensure_user, user_with_hand_added_key,
};
pub use wait::wait_until;
pub use world::World;
