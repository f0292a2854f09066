//! Local accounts for tests (root only): users with a home, system accounts, and running
//! a command as one.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::keypair::KeyPair;

/// The current user's name (the agent manages it when not root).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("current user has a name")
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

/// Runs `command` as the unprivileged local user `user`.
pub fn as_user(user: &str, command: &str) {
    let status = Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", command])
        .stdin(Stdio::null())
        .status()
        .expect("runuser");
    assert!(status.success(), "{command}");
}
