//! Files that cannot be written: a full disk, a frozen file system, an immutable file, a
//! read-only mount. Each is reported (`files` in the status, `pictor-agent status`),
//! retried, and healed as soon as the cause is lifted, with no other change; another
//! user's file keeps following the account meanwhile. Real mounts: tmpfs, an ext4 image
//! on a loop device, `fsfreeze`, `chattr +i`, a read-only bind mount (root only).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use testkit::mounts::{run, TestMount};
use testkit::*;

/// The status entry of `user`'s file, once a status with one was sent.
fn file_entry(server: &Server, user: &str) -> Option<Value> {
    let status = server.cp.status(INSTANCE)?;
    status["files"]
        .as_array()?
        .iter()
        .find(|f| f["user"] == user)
        .cloned()
}

fn ids(entry: &Value, field: &str) -> Vec<String> {
    entry[field]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn in_sync(server: &Server, user: &str) -> bool {
    file_entry(server, user).is_some_and(|f| f["state"] == "in_sync")
        && server
            .cp
            .status(INSTANCE)
            .is_some_and(|s| s["last_error"].is_null())
}

/// An agent managing `user`'s file at `path` and root's file in the sandbox, two keys in
/// the account, both files verified.
/// A user whose managed file is at `path` (on a test mount), and the current user
/// managed too, with a file in the sandbox: the one that must keep following the account
/// while the other is stuck. Account keys `key_a` and `key_b`; a status every 5 s.
struct Files {
    world: World,
    path: PathBuf,
    other: PathBuf,
}

impl std::ops::Deref for Files {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

fn world(user: &nix::unistd::User, path: PathBuf) -> Files {
    let other = std::sync::Arc::new(std::sync::OnceLock::new());
    let other_path = other.clone();
    let world = World::builder()
        .user(&user.name)
        .managed_file(&path)
        .account_keys(&["key_a", "key_b"])
        .setup(move |setup, dir| {
            let home = dir.join("home");
            std::fs::create_dir(&home).expect("mkdir");
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            let other = home.join("authorized_keys");
            setup.extra_api = "heartbeat_seconds = 5\n".into();
            setup.extra = format!(
                "[sessions]\nenabled = false\n\n[[users]]\nname = {:?}\nauthorized_keys = {:?}\n",
                current_user(),
                other.display().to_string()
            );
            let _ = other_path.set(other);
        })
        .build();
    let other = other.get().expect("the other file").clone();
    Files { world, path, other }
}

impl Files {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }

    fn other_text(&self) -> String {
        std::fs::read_to_string(&self.other).unwrap_or_default()
    }

    fn wait_in_sync(&self) {
        wait_until(Duration::from_secs(15), "both files in sync", || {
            in_sync(&self.server, self.user()) && in_sync(&self.server, &current_user())
        });
    }

    fn status_command(&self) -> (bool, String) {
        let out = self.sandbox.command(&["status"]).output().expect("status");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn new_key(&self, id: &str) {
        let key = KeyPair::generate(self.sandbox.dir.path(), id);
        self.server.cp.add_key(key.new_key(id));
    }
}

fn root_with_mounts() -> bool {
    prerequisite(
        is_root(),
        "root, to mount tmpfs and ext4 images and create test users",
    )
}

#[test]
fn a_full_disk_keeps_a_deleted_key_reported_until_space_is_freed_then_it_goes() {
    if !root_with_mounts() {
        return;
    }
    let user = ensure_user("pictor-full");
    let scratch = tempdir();
    let mount = TestMount::tmpfs(&scratch.path().join("home"), "256k");
    let path = mount.ssh_dir_for(&user);
    let w = world(&user, path);
    let _agent = w.sandbox.start_agent();
    w.wait_in_sync();
    assert!(w.text().contains("key_b"));

    // The user fills the disk (dd stops at ENOSPC).
    let fill = mount.path().join("checkpoint");
    let _ = Command::new("runuser")
        .args(["-u", &user.name, "--", "dd", "if=/dev/zero", "bs=16k"])
        .arg(format!("of={}", fill.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("dd runs");
    assert!(fill.exists(), "the disk was filled");
    assert!(w.server.cp.delete_key("key_b"));

    wait_until(Duration::from_secs(10), "the file reported behind", || {
        file_entry(&w.server, w.user())
            .is_some_and(|f| f["state"] == "behind" && ids(&f, "keys_not_removed") == ["key_b"])
    });
    let entry = file_entry(&w.server, w.user()).expect("entry");
    let error = entry["error"].as_str().expect("an error");
    assert!(error.contains("No space left on device"), "{error}");
    assert!(entry["behind_since"].is_string());
    assert!(ids(&entry, "keys_not_added").is_empty());
    let status = w.server.cp.status(INSTANCE).expect("status");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("key_b")),
        "{status}"
    );
    assert!(w.text().contains("key_b"), "the truth: it is still there");
    // Retried on a full disk without leaving a temporary file behind.
    let leftovers: Vec<String> = std::fs::read_dir(mount.path().join(".ssh"))
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".pictor-tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The other user's file followed.
    assert!(!w.other_text().contains("key_b"));
    assert!(in_sync_file(&w.server, &current_user()));
    // The control plane lists it for the account page, the CLI says it loudly, and the
    // journal (here: the log) has its own MESSAGE_ID line.
    let pending = w.server.cp.revocations_pending();
    assert!(
        pending.iter().any(|p| p["key_id"] == "key_b"),
        "{pending:?}"
    );
    let (ok, text) = w.status_command();
    assert!(!ok, "status exits non-zero while a file is behind");
    assert!(
        text.contains("DELETED KEYS CAN STILL LOG IN") && text.contains("key_b"),
        "{text}"
    );
    w.sandbox
        .wait_for_log("keys deleted from the account can still log in");

    // Space freed, nothing else changes: the key goes on a retry.
    std::fs::remove_file(&fill).expect("free space");
    let freed = Instant::now();
    wait_until(
        Duration::from_secs(15),
        "key_b gone after the space was freed",
        || !w.text().contains("key_b"),
    );
    let gone = freed.elapsed();
    eprintln!("space freed -> key gone: {gone:?}");
    w.wait_in_sync();
    let entry = file_entry(&w.server, w.user()).expect("entry");
    assert!(entry["error"].is_null() && entry["behind_since"].is_null());
    assert!(ids(&entry, "keys_not_removed").is_empty());
    assert!(w.text().contains("key_a"));
    let (ok, text) = w.status_command();
    assert!(ok, "{text}");
    assert!(!text.contains("DELETED KEYS"), "{text}");
    assert!(w.server.cp.revocations_pending().is_empty());
}

fn in_sync_file(server: &Server, user: &str) -> bool {
    file_entry(server, user).is_some_and(|f| f["state"] == "in_sync")
}

#[test]
fn a_frozen_home_stalls_only_its_user_and_catches_up_after_the_thaw() {
    if !root_with_mounts() {
        return;
    }
    let user = ensure_user("pictor-frozen");
    let scratch = tempdir();
    let mount = TestMount::ext4(&scratch.path().join("img"), &scratch.path().join("home"));
    let path = mount.ssh_dir_for(&user);
    let w = world(&user, path);
    let agent = w.sandbox.start_agent();
    w.wait_in_sync();

    mount.freeze();
    w.new_key("key_c");
    let took = wait_until(
        Duration::from_secs(3),
        "the other user's file follows",
        || w.other_text().contains("key_c"),
    );
    eprintln!("other user's file followed a change during the freeze in {took:?}");
    let puts = w.server.cp.stats().status_puts;
    wait_until(
        Duration::from_secs(10),
        "the frozen file reported behind",
        || {
            file_entry(&w.server, w.user()).is_some_and(|f| {
                f["state"] == "behind"
                    && f["error"].as_str().is_some_and(|e| e.contains("hung"))
                    && ids(&f, "keys_not_added") == ["key_c"]
            })
        },
    );
    // Heartbeats go on (every 5 s here) while the home stays frozen.
    wait_until(
        Duration::from_secs(12),
        "heartbeats during the freeze",
        || w.server.cp.stats().status_puts >= puts + 2,
    );
    assert!(in_sync_file(&w.server, &current_user()));
    assert!(
        !w.sandbox.log().contains("watchdog"),
        "no restart: the main loop is healthy"
    );

    mount.thaw();
    let thawed = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the frozen user catches up",
        || w.text().contains("key_c"),
    );
    eprintln!("thaw -> file written: {:?}", thawed.elapsed());
    w.wait_in_sync();
    assert!(agent.stop().success());
    drop(mount);
}

#[test]
fn an_immutable_file_and_a_read_only_mount_are_reported_then_healed_when_lifted() {
    if !root_with_mounts() {
        return;
    }
    let user = ensure_user("pictor-immutable");
    let scratch = tempdir();
    let mut mount = TestMount::ext4(&scratch.path().join("img"), &scratch.path().join("home"));
    let path = mount.ssh_dir_for(&user);
    let w = world(&user, path.clone());
    let _agent = w.sandbox.start_agent();
    w.wait_in_sync();

    // chattr +i: the rename over the file fails.
    run("chattr", &["+i", &path.display().to_string()]);
    assert!(w.server.cp.delete_key("key_a"));
    wait_until(
        Duration::from_secs(10),
        "the immutable file reported",
        || {
            file_entry(&w.server, w.user())
                .is_some_and(|f| f["state"] == "behind" && ids(&f, "keys_not_removed") == ["key_a"])
        },
    );
    assert!(w.text().contains("key_a"));
    run("chattr", &["-i", &path.display().to_string()]);
    wait_until(Duration::from_secs(15), "healed after chattr -i", || {
        !w.text().contains("key_a")
    });
    w.wait_in_sync();

    // A read-only bind mount over .ssh: the temporary file cannot be made.
    let ssh = path.parent().expect("dir").to_owned();
    mount.read_only_bind(&ssh);
    w.new_key("key_d");
    wait_until(
        Duration::from_secs(10),
        "the read-only file reported",
        || {
            file_entry(&w.server, w.user()).is_some_and(|f| {
                f["state"] == "behind"
                    && ids(&f, "keys_not_added") == ["key_d"]
                    && f["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("Read-only file system"))
            })
        },
    );
    mount.lift_binds();
    wait_until(Duration::from_secs(15), "healed after the remount", || {
        w.text().contains("key_d")
    });
    w.wait_in_sync();
}
