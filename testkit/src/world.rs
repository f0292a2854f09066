//! One world builder: the reference control plane, one agent's sandbox, the managed
//! user, the account's keys, where sshd's lines go, and an sshd, as a test asks for
//! them. A test states what its world holds in a few lines and reads the rest from it:
//!
//! ```no_run
//! use testkit::World;
//! let w = World::builder()
//!     .user("pictor-s1")
//!     .hand_added_key()
//!     .account_keys(&["key_a"])
//!     .sessions_from_journal()
//!     .sshd()
//!     .build();
//! let _agent = w.start_agent();
//! assert!(w.sshd().login(w.user(), &w.key("key_a").private));
//! ```
//!
//! When the world goes, so do the processes its users left (`pkill -KILL -u`), so a
//! failed test leaves no session behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::config::Setup;
use crate::control_plane::Server;
use crate::keypair::KeyPair;
use crate::sandbox::{Agent, Sandbox};
use crate::sshd::Sshd;
use crate::tempdir::tempdir;
use crate::users::{ensure_user, user_with_hand_added_key};
use crate::wait::wait_until;

/// Where the agent reads sshd's lines.
enum Source {
    Journal,
    /// A syslog file, by its name in the sandbox directory.
    File(String),
}

/// A change to the configuration beyond what the builder names, given the sandbox
/// directory.
type Adjust = Box<dyn FnOnce(&mut Setup, &Path)>;

/// What a test's world holds; see [`World::builder`].
#[derive(Default)]
pub struct Builder {
    user: Option<String>,
    hand_added: bool,
    managed_file: Option<PathBuf>,
    account: Vec<String>,
    spare: Vec<String>,
    others: Vec<(String, bool)>,
    sessions: Option<Source>,
    sshd: Option<String>,
    adjust: Option<Adjust>,
}

/// A test's world, built by [`Builder::build`].
pub struct World {
    pub server: Server,
    pub sandbox: Sandbox,
    user: String,
    /// Key pairs by id: the account's (added at build), spare ones, hand-added ones
    /// (`hand`, and `hand:USER` for the other users').
    keys: Vec<(String, KeyPair)>,
    sshd: Option<Sshd>,
    /// Real local accounts whose processes are killed when the world goes.
    accounts: Vec<String>,
    /// Sessions a test started and left to the world to end.
    pub sessions: Vec<Child>,
}

impl World {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The managed user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The key pair made under `id` (an account key, a spare one, or `hand`).
    pub fn key(&self, id: &str) -> &KeyPair {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, pair)| pair)
            .unwrap_or_else(|| panic!("no key {id:?} in this world"))
    }

    /// The world's sshd (asked for with [`Builder::sshd`]).
    pub fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("this world has no sshd")
    }

    /// Starts the agent.
    pub fn start_agent(&self) -> Agent {
        self.sandbox.start_agent()
    }

    /// Starts the agent and waits until every account key is in the managed file.
    pub fn start_agent_and_sync(&self) -> Agent {
        let agent = self.sandbox.start_agent();
        wait_until(Duration::from_secs(10), "account keys written", || {
            let text = self.sandbox.keys_text();
            self.keys
                .iter()
                .filter(|(id, _)| self.server.cp.keys().iter().any(|k| &k.id == id))
                .all(|(_, pair)| text.contains(&pair.canonical()))
        });
        agent
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for child in &mut self.sessions {
            let _ = child.kill();
            let _ = child.wait();
        }
        for account in &self.accounts {
            let _ = Command::new("pkill")
                .args(["-KILL", "-u", account])
                .status();
        }
    }
}

impl Builder {
    /// A real local account (root only) as the managed user, its file
    /// `~/.ssh/authorized_keys`. Without one: the current user, its file in the sandbox.
    pub fn user(mut self, name: &str) -> Builder {
        self.user = Some(name.to_owned());
        self
    }

    /// The managed user's file starts with one hand-added key (`key("hand")`); without
    /// it, the user's `~/.ssh` is removed first.
    pub fn hand_added_key(mut self) -> Builder {
        self.hand_added = true;
        self
    }

    /// The managed file at `path` instead of the default.
    pub fn managed_file(mut self, path: &Path) -> Builder {
        self.managed_file = Some(path.to_owned());
        self
    }

    /// Key pairs made and added to the account, under these ids.
    pub fn account_keys(mut self, ids: &[&str]) -> Builder {
        self.account.extend(ids.iter().map(|id| (*id).to_owned()));
        self
    }

    /// Key pairs made but not added, for the test to add (or to log in with).
    pub fn spare_keys(mut self, ids: &[&str]) -> Builder {
        self.spare.extend(ids.iter().map(|id| (*id).to_owned()));
        self
    }

    /// Another local account, not managed, with a hand-added key of its own
    /// (`key("hand:NAME")`).
    pub fn other_user(mut self, name: &str) -> Builder {
        self.others.push((name.to_owned(), true));
        self
    }

    /// The agent reports sessions from the journal.
    pub fn sessions_from_journal(mut self) -> Builder {
        self.sessions = Some(Source::Journal);
        self
    }

    /// The agent reports sessions from the syslog file `name` in the sandbox directory.
    pub fn sessions_from_file(mut self, name: &str) -> Builder {
        self.sessions = Some(Source::File(name.to_owned()));
        self
    }

    /// An sshd logging through syslog (the journal).
    pub fn sshd(self) -> Builder {
        self.sshd_with("")
    }

    /// An sshd logging through syslog, with these sshd_config lines first.
    pub fn sshd_with(mut self, extra: &str) -> Builder {
        self.sshd = Some(extra.to_owned());
        self
    }

    /// Anything else the configuration needs (`Setup`'s raw parts), given the sandbox
    /// directory.
    pub fn setup(mut self, adjust: impl FnOnce(&mut Setup, &Path) + 'static) -> Builder {
        self.adjust = Some(Box::new(adjust));
        self
    }

    pub fn build(self) -> World {
        crate::control_plane::test_run_started();
        let server = Server::start();
        let dir = tempdir();
        let mut keys = Vec::new();
        let mut accounts = Vec::new();
        let (user, keys_file, default_file) = match &self.user {
            Some(name) => {
                let account = ensure_user(name);
                accounts.push(name.clone());
                let file = if self.hand_added {
                    let hand = KeyPair::generate(dir.path(), "hand");
                    let file = user_with_hand_added_key(name, &hand);
                    keys.push(("hand".to_owned(), hand));
                    file
                } else {
                    let _ = std::fs::remove_dir_all(account.dir.join(".ssh"));
                    account.dir.join(".ssh/authorized_keys")
                };
                (name.clone(), file, true)
            }
            None => {
                let home = dir.path().join("home");
                std::fs::create_dir(&home).expect("mkdir");
                let mode = std::os::unix::fs::PermissionsExt::from_mode(0o700);
                std::fs::set_permissions(&home, mode).expect("chmod");
                (
                    crate::users::current_user(),
                    home.join("authorized_keys"),
                    false,
                )
            }
        };
        for (name, hand_added) in &self.others {
            accounts.push(name.clone());
            if *hand_added {
                let hand = KeyPair::generate(dir.path(), &format!("hand-{name}"));
                user_with_hand_added_key(name, &hand);
                keys.push((format!("hand:{name}"), hand));
            }
        }
        let keys_file = self.managed_file.clone().unwrap_or(keys_file);
        let override_path =
            (self.managed_file.is_some() || !default_file).then(|| keys_file.clone());
        let mut setup = Setup::new(&server.url, &user, override_path);
        setup = match &self.sessions {
            Some(Source::Journal) => setup.with_sessions("journal"),
            Some(Source::File(name)) => {
                setup.with_sessions(&dir.path().join(name).display().to_string())
            }
            None => setup,
        };
        if let Some(adjust) = self.adjust {
            adjust(&mut setup, dir.path());
        }
        let sandbox = Sandbox::with(dir, setup, keys_file);
        let sshd = self
            .sshd
            .as_deref()
            .map(|extra| Sshd::start_full(sandbox.dir.path(), true, extra));
        for id in &self.account {
            let pair = KeyPair::generate(sandbox.dir.path(), id);
            server.cp.add_key(pair.new_key(id));
            keys.push((id.clone(), pair));
        }
        for id in &self.spare {
            keys.push((id.clone(), KeyPair::generate(sandbox.dir.path(), id)));
        }
        World {
            server,
            sandbox,
            user,
            keys,
            sshd,
            accounts,
            sessions: Vec::new(),
        }
    }
}
