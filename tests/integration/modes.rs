//! Every file and directory the agent creates has its own explicit mode, whatever the
//! umask it is started with: the state directory 0711, its files 0600, the
//! AuthorizedKeysCommand file 0640 with the configured group, `~/.ssh` 0700 and
//! `authorized_keys` 0600 (both the user's).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::stat::Mode;

use testkit::*;

/// The group that may read the AuthorizedKeysCommand file in these tests.
const COMMAND_ACCOUNT: &str = "pictor-modes-keys";

/// Starts the agent under `umask`, with a real login reported through the journal so
/// that every state file is made (the outbox and its ack, the session table), then
/// checks the mode of every file in the state directory and of the user's files.
fn every_file_has_its_mode_under_umask(user: &'static str, umask: u32) {
    if !journal_available() {
        return;
    }
    test_run_started();
    let account = ensure_system_account(COMMAND_ACCOUNT);
    let server = Server::start();
    let dir = tempdir();
    let hand = KeyPair::generate(dir.path(), "hand");
    let key = KeyPair::generate(dir.path(), "key");
    let keys_file = user_with_hand_added_key(user, &hand);
    // No ~/.ssh: the agent makes it, under the same umask.
    let ssh_dir = keys_file.parent().expect("~/.ssh").to_owned();
    std::fs::remove_dir_all(&ssh_dir).expect("rm ~/.ssh");
    let setup = Setup::new(&server.url, user, None).with_sessions("journal");
    let sandbox = Sandbox::with(dir, setup, keys_file.clone());
    sandbox.set_command_group(COMMAND_ACCOUNT);
    let sshd = Sshd::start_logging(sandbox.dir.path(), true);
    server.cp.add_key(key.new_key("key_m"));

    let mask = Mode::from_bits_truncate(umask);
    let agent = sandbox.start_agent_with(|command| {
        // SAFETY: umask(2) is async-signal-safe and touches no memory; the closure runs
        // in the child between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::sys::stat::umask(mask);
                Ok(())
            });
        }
    });
    wait_until(Duration::from_secs(5), "account key written", || {
        sandbox.keys_text().contains(&key.canonical())
    });
    assert!(sshd.login(user, &key.private), "the account key logs in");
    let state = &sandbox.state_dir;
    // The events went through the outbox and were acknowledged.
    wait_until(Duration::from_secs(15), "outbox acknowledged", || {
        state.join("outbox.ack").exists()
    });
    let expected = [
        "applied.json",
        "authorized-keys.json",
        "outbox.jsonl",
        "files.json",
        "outbox.ack",
        "sessions.json",
    ];
    wait_until(Duration::from_secs(5), "every state file made", || {
        expected.iter().all(|name| state.join(name).exists())
    });
    // Stopped, so that no write is half-way (its temporary file beside the target).
    assert!(agent.stop().success(), "a clean stop");

    let stat = |path: &Path| {
        let meta = std::fs::symlink_metadata(path).expect("stat");
        (meta.mode() & 0o7777, meta.uid(), meta.gid())
    };
    assert_eq!(stat(state).0, 0o711, "the state directory");
    let mut names: Vec<String> = std::fs::read_dir(state)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = state.join(name);
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.is_file(), "{name}: a regular file");
        let (mode, uid, gid) = stat(&path);
        if name == "authorized-keys.json" {
            assert_eq!(
                (mode, uid, gid),
                (0o640, 0, account.gid.as_raw()),
                "{name}: 0640, the agent's (root here), the command account's group"
            );
        } else {
            assert_eq!(mode, 0o600, "{name} under umask {umask:03o}");
            assert_eq!(uid, 0, "{name}: the agent's");
        }
    }
    for name in expected {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let unexpected: Vec<&String> = names
        .iter()
        .filter(|n| !expected.contains(&n.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "left behind: {unexpected:?}");

    let owner = nix::unistd::User::from_name(user)
        .expect("lookup")
        .expect("user");
    let (uid, gid) = (owner.uid.as_raw(), owner.gid.as_raw());
    assert_eq!(stat(&ssh_dir), (0o700, uid, gid), "~/.ssh");
    assert_eq!(stat(&keys_file), (0o600, uid, gid), "authorized_keys");
}

#[test]
fn under_umask_000_nothing_is_readable_or_writable_by_others() {
    every_file_has_its_mode_under_umask("pictor-m1", 0o000);
}

#[test]
fn under_umask_077_the_command_can_still_reach_its_file() {
    every_file_has_its_mode_under_umask("pictor-m2", 0o077);
}

#[test]
fn a_missing_group_keeps_the_file_private_says_so_once_and_status_shows_it() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    sandbox.set_command_group("pictor-no-such-group");
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    let b = KeyPair::generate(sandbox.dir.path(), "b");
    server.cp.add_key(a.new_key("key_a"));
    let _agent = sandbox.start_agent();
    let command_file = sandbox.state_dir.join("authorized-keys.json");
    let listed = |id: &str| {
        std::fs::read_to_string(&command_file)
            .unwrap_or_default()
            .contains(id)
    };
    wait_until(Duration::from_secs(5), "command file written", || {
        listed("key_a")
    });
    sandbox.wait_for_log("readable by the agent only");
    server.cp.add_key(b.new_key("key_b"));
    wait_until(Duration::from_secs(5), "command file rewritten", || {
        listed("key_b")
    });
    let meta = std::fs::metadata(&command_file).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o600, "never world-readable");
    let log = sandbox.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("readable by the agent only"))
        .collect();
    assert_eq!(errors.len(), 1, "said once: {errors:#?}");
    assert!(errors[0].contains("group pictor-no-such-group does not exist"));

    let status = sandbox.command(&["status"]).output().expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("AuthorizedKeysCommand file:")
            && text.contains("problem: group pictor-no-such-group does not exist"),
        "{text}"
    );
}
