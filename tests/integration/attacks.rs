//! Symlink and ownership attacks on `~/.ssh` and the file: refused, nothing outside touched.
//! These need root (the agent writes as root into a user's home) and real accounts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::*;

/// A sandbox managing `user`'s default `~/.ssh/authorized_keys`, with one account key.
fn setup(user: &str) -> Option<(Server, Sandbox, PathBuf, KeyPair)> {
    if !prerequisite(
        is_root(),
        "root, to create test users and write as root into their homes",
    ) {
        return None;
    }
    let account = ensure_user(user);
    let home = account.dir.clone();
    let _ = std::fs::remove_dir_all(home.join(".ssh"));
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup::new(&server.url, user, None);
    let keys_file = home.join(".ssh/authorized_keys");
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let key = KeyPair::generate(sandbox.dir.path(), "a");
    server.cp.add_key(key.new_key("key_a"));
    Some((server, sandbox, home, key))
}

fn sync_once(sandbox: &Sandbox) -> (bool, String) {
    let out = sandbox
        .command(&["sync", "--once"])
        .output()
        .expect("sync runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
}

#[test]
fn missing_ssh_dir_is_created_private_and_owned_by_the_user() {
    let Some((_server, sandbox, home, key)) = setup("pictor-atk0") else {
        return;
    };
    let (ok, err) = sync_once(&sandbox);
    assert!(ok, "{err}");
    let user = nix::unistd::User::from_name("pictor-atk0")
        .expect("lookup")
        .expect("user");
    let ssh = std::fs::metadata(home.join(".ssh")).expect("created");
    assert_eq!(
        (ssh.mode() & 0o7777, ssh.uid(), ssh.gid()),
        (0o700, user.uid.as_raw(), user.gid.as_raw())
    );
    let file = std::fs::metadata(home.join(".ssh/authorized_keys")).expect("written");
    assert_eq!(
        (file.mode() & 0o7777, file.uid(), file.gid()),
        (0o600, user.uid.as_raw(), user.gid.as_raw())
    );
    assert!(sandbox.keys_text().contains(&key.canonical()));
}

#[test]
fn symlinked_ssh_dir_is_refused_and_its_target_untouched() {
    let Some((_server, sandbox, home, _key)) = setup("pictor-atk1") else {
        return;
    };
    let target = tempfile::tempdir().expect("target");
    std::os::unix::fs::symlink(target.path(), home.join(".ssh")).expect("symlink");
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(
        err.contains(".ssh is a symbolic link; refusing to follow it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(target.path()).expect("ls").count(),
        0,
        "nothing written through the link"
    );
}

#[test]
fn symlinked_file_is_refused_and_its_target_untouched() {
    let Some((_server, sandbox, home, _key)) = setup("pictor-atk2") else {
        return;
    };
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    let user = nix::unistd::User::from_name("pictor-atk2")
        .expect("lookup")
        .expect("user");
    chown(&ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret = tempfile::NamedTempFile::new().expect("secret");
    std::fs::write(secret.path(), "root:secret-hash:19000:0:99999:7:::\n").expect("write");
    std::os::unix::fs::symlink(secret.path(), ssh.join("authorized_keys")).expect("symlink");
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(err.contains("authorized_keys is a symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_to_string(secret.path()).expect("read"),
        "root:secret-hash:19000:0:99999:7:::\n"
    );
    assert!(std::fs::symlink_metadata(ssh.join("authorized_keys"))
        .expect("still there")
        .file_type()
        .is_symlink());
}

#[test]
fn hard_link_to_a_foreign_file_is_refused_and_not_copied() {
    let Some((_server, sandbox, home, _key)) = setup("pictor-atk3") else {
        return;
    };
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    let user = nix::unistd::User::from_name("pictor-atk3")
        .expect("lookup")
        .expect("user");
    chown(&ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A root-owned secret on the same file system, hard-linked into the user's .ssh.
    let secret = home.join("root-secret");
    std::fs::write(&secret, "secret material\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::hard_link(&secret, ssh.join("authorized_keys")).expect("link");
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(err.contains("hard links"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&secret).expect("read"),
        "secret material\n"
    );
    assert_eq!(
        std::fs::metadata(&secret).expect("stat").nlink(),
        2,
        "link left as it was"
    );
    std::fs::remove_file(&secret).expect("cleanup");
}

#[test]
fn ssh_dir_owned_by_another_user_is_refused() {
    let Some((_server, sandbox, home, _key)) = setup("pictor-atk4") else {
        return;
    };
    let other = ensure_user("pictor-atk5");
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    chown(&ssh, other.uid.as_raw(), other.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(
        err.contains(&format!("owned by uid {}", other.uid)),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&ssh).expect("ls").count(), 0);
}

#[test]
fn group_writable_ssh_dir_and_fifo_file_are_refused_without_hanging() {
    let Some((_server, sandbox, home, _key)) = setup("pictor-atk6") else {
        return;
    };
    let user = nix::unistd::User::from_name("pictor-atk6")
        .expect("lookup")
        .expect("user");
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    chown(&ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(err.contains("writable by group or others"), "{err}");

    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    nix::unistd::mkfifo(&ssh.join("authorized_keys"), nix::sys::stat::Mode::S_IRWXU)
        .expect("mkfifo");
    chown(
        &ssh.join("authorized_keys"),
        user.uid.as_raw(),
        user.gid.as_raw(),
    );
    let start = std::time::Instant::now();
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(err.contains("is not a regular file"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}
