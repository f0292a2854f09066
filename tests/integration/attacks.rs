//! Symlink and ownership attacks on `~/.ssh` and the file: refused, nothing outside touched.
//! These need root (the agent writes as root into a user's home) and real accounts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::*;

/// A sandbox managing `user`'s default `~/.ssh/authorized_keys`, with one account key.
fn setup(user: &str) -> Option<(World, PathBuf)> {
    if !prerequisite(
        is_root(),
        "root, to create test users and write as root into their homes",
    ) {
        return None;
    }
    let world = World::builder().user(user).account_keys(&["key_a"]).build();
    let home = ensure_user(user).dir;
    Some((world, home))
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
    let Some((world, home)) = setup("pictor-atk0") else {
        return;
    };
    let (_server, sandbox, key) = (&world.server, &world.sandbox, world.key("key_a"));
    let (ok, err) = sync_once(sandbox);
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
    let Some((world, home)) = setup("pictor-atk1") else {
        return;
    };
    let (_server, sandbox, _key) = (&world.server, &world.sandbox, world.key("key_a"));
    let target = tempdir();
    std::os::unix::fs::symlink(target.path(), home.join(".ssh")).expect("symlink");
    let (ok, err) = sync_once(sandbox);
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
    let Some((world, home)) = setup("pictor-atk2") else {
        return;
    };
    let (_server, sandbox, _key) = (&world.server, &world.sandbox, world.key("key_a"));
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
    let (ok, err) = sync_once(sandbox);
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
    let Some((world, home)) = setup("pictor-atk3") else {
        return;
    };
    let (_server, sandbox, _key) = (&world.server, &world.sandbox, world.key("key_a"));
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
    let (ok, err) = sync_once(sandbox);
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
    let Some((world, home)) = setup("pictor-atk4") else {
        return;
    };
    let (_server, sandbox, _key) = (&world.server, &world.sandbox, world.key("key_a"));
    let other = ensure_user("pictor-atk5");
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    chown(&ssh, other.uid.as_raw(), other.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (ok, err) = sync_once(sandbox);
    assert!(!ok);
    assert!(
        err.contains(&format!("owned by uid {}", other.uid)),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&ssh).expect("ls").count(), 0);
}

#[test]
fn group_writable_ssh_dir_and_fifo_file_are_refused_without_hanging() {
    let Some((world, home)) = setup("pictor-atk6") else {
        return;
    };
    let (_server, sandbox, _key) = (&world.server, &world.sandbox, world.key("key_a"));
    let user = nix::unistd::User::from_name("pictor-atk6")
        .expect("lookup")
        .expect("user");
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    chown(&ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let (ok, err) = sync_once(sandbox);
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
    let (ok, err) = sync_once(sandbox);
    assert!(!ok);
    assert!(err.contains("is not a regular file"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// The capabilities the shipped unit gives the agent, as `setpriv` names them
/// (`+chown,+dac_override,...`), read from `systemd/pictor-agent.service` itself.
fn unit_capabilities() -> String {
    let unit = include_str!("../../systemd/pictor-agent.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit names its ambient capabilities");
    line.split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts `sandbox`'s agent as an unprivileged system account holding only the unit's
/// capabilities, as the packaged service runs.
fn start_agent_as_the_unit(sandbox: &Sandbox) -> Agent {
    start_agent_with_capabilities(sandbox, &unit_capabilities())
}

/// Starts `sandbox`'s agent as an unprivileged system account holding only `caps`.
fn start_agent_with_capabilities(sandbox: &Sandbox, caps: &str) -> Agent {
    let account = ensure_system_account("pictor-agent-t");
    sandbox.start_agent_with(|command| {
        let program = command.get_program().to_owned();
        let args: Vec<std::ffi::OsString> = command.get_args().map(|a| a.to_owned()).collect();
        let mut wrapped = std::process::Command::new("setpriv");
        wrapped
            .arg(format!("--reuid={}", account.uid))
            .arg(format!("--regid={}", account.gid))
            .arg("--clear-groups")
            .arg(format!("--inh-caps=-all,{caps}"))
            .arg(format!("--ambient-caps=-all,{caps}"))
            .arg(format!("--bounding-set=-all,{caps}"))
            .arg("--")
            .arg(program)
            .args(args);
        *command = wrapped;
    })
}

fn temps_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".pictor-tmp."))
        .collect()
}

/// Issue 17, finding 1: a user makes `~/.ssh` sticky, grows the file to 15 MB and keeps
/// appending to it. The agent, with only the unit's capabilities, still replaces it (the
/// deleted key is gone), never holds more than one temporary file, and leaves none.
#[test]
fn a_sticky_ssh_dir_and_a_growing_file_neither_fill_the_disk_nor_keep_a_deleted_key() {
    let Some((world, home)) = setup("pictor-atk7") else {
        return;
    };
    let (server, sandbox, key_a) = (&world.server, &world.sandbox, world.key("key_a"));
    let user = ensure_user("pictor-atk7");
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    chown(&ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o1700)).expect("chmod");
    let file = ssh.join("authorized_keys");
    let comment = format!("# {}\n", "x".repeat(1000));
    std::fs::write(&file, comment.repeat(15 * 1024)).expect("15 MB file");
    chown(&file, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let _agent = start_agent_as_the_unit(sandbox);
    wait_until(Duration::from_secs(20), "the account key written", || {
        sandbox.keys_text().contains(&key_a.canonical())
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&file) {
                    let _ = std::io::Write::write_all(&mut f, b"# one more line\n");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let key_b = KeyPair::generate(sandbox.dir.path(), "b");
    server.cp.add_key(key_b.new_key("key_b"));
    assert!(server.cp.delete_key("key_a"));
    let mut most_temps = 0;
    wait_until(
        Duration::from_secs(30),
        "key_a deleted from the file",
        || {
            most_temps = most_temps.max(temps_in(&ssh).len());
            let text = sandbox.keys_text();
            !text.contains(&key_a.canonical()) && text.contains(&key_b.canonical())
        },
    );
    for _ in 0..40 {
        most_temps = most_temps.max(temps_in(&ssh).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.join().expect("appender");
    assert!(most_temps <= 1, "{most_temps} temporary files at once");
    wait_until(Duration::from_secs(5), "no temporary file left", || {
        temps_in(&ssh).is_empty()
    });
    let meta = std::fs::symlink_metadata(&file).expect("stat");
    assert_eq!(meta.uid(), user.uid.as_raw(), "still the user's file");
    assert!(
        !sandbox.log().contains("Operation not permitted"),
        "{}",
        sandbox.log()
    );
}

/// Issue 17, finding 1, on a host where the unit's CAP_FOWNER is dropped: the rename
/// into a sticky `~/.ssh` is refused, and the refused write leaves no temporary file
/// behind and is not written again while nothing changes.
#[test]
fn a_refused_rename_leaves_no_temporary_file_and_is_not_rewritten_in_a_loop() {
    let Some((world, home)) = setup("pictor-atk10") else {
        return;
    };
    let (_server, sandbox, _key_a) = (&world.server, &world.sandbox, world.key("key_a"));
    let user = ensure_user("pictor-atk10");
    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    chown(&ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o1700)).expect("chmod");
    let file = ssh.join("authorized_keys");
    std::fs::write(&file, format!("# {}\n", "x".repeat(1000)).repeat(1024)).expect("write");
    chown(&file, user.uid.as_raw(), user.gid.as_raw());
    let caps = unit_capabilities()
        .replace(",+fowner", "")
        .replace("+fowner,", "");
    assert!(!caps.contains("fowner"));
    let _agent = start_agent_with_capabilities(sandbox, &caps);
    sandbox.wait_for_log("cannot rename the temporary file over it");
    let mut most_temps = 0;
    for _ in 0..100 {
        most_temps = most_temps.max(temps_in(&ssh).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(most_temps <= 1, "{most_temps} temporary files at once");
    assert!(temps_in(&ssh).is_empty(), "{:?}", temps_in(&ssh));
    // Five seconds of retries: the write itself was tried once, since nothing changed
    // (every try writes the file's full size; a retry answered from memory writes none).
    let written = std::fs::read_to_string(format!("/proc/{}/io", _agent.pid()))
        .expect("io")
        .lines()
        .find_map(|l| {
            l.strip_prefix("wchar: ")
                .map(|v| v.parse::<u64>().expect("n"))
        })
        .expect("wchar");
    assert!(written < 3 * 1024 * 1024, "{written} bytes written");
}

/// Issue 17, finding 2: a directory of a configured path is swapped by the user for a
/// symlink to a root-owned tree. Refused with the reason; the root file untouched.
#[test]
fn a_configured_path_through_a_users_symlink_never_reaches_a_root_file() {
    if !prerequisite(is_root(), "root, to create test users") {
        return;
    }
    let user = ensure_user("pictor-atk8");
    let server = Server::start();
    let dir = tempdir();
    // Root's tree: its file must never be written or given away.
    let root_tree = dir.path().join("roots");
    std::fs::create_dir_all(root_tree.join(".ssh")).expect("mkdir");
    let root_file = root_tree.join(".ssh/authorized_keys");
    std::fs::write(&root_file, "ssh-ed25519 AAAAroot root's own\n").expect("write");
    std::fs::set_permissions(&root_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The user's cfg directory, replaced by a link of theirs to root's tree.
    let cfg = user.dir.join("cfg");
    let _ = std::fs::remove_dir_all(&cfg);
    let _ = std::fs::remove_file(&cfg);
    std::os::unix::fs::symlink(&root_tree, &cfg).expect("symlink");
    chown(&cfg, user.uid.as_raw(), user.gid.as_raw());
    let keys_file = cfg.join(".ssh/authorized_keys");
    let setup = Setup::new(&server.url, "pictor-atk8", Some(keys_file.clone()));
    let sandbox = Sandbox::with(dir, setup, keys_file);
    let key = KeyPair::generate(sandbox.dir.path(), "a");
    server.cp.add_key(key.new_key("key_a"));
    let (ok, err) = sync_once(&sandbox);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{} is a symbolic link; refusing to follow it: it is not owned by root",
            cfg.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&root_file).expect("read"),
        "ssh-ed25519 AAAAroot root's own\n"
    );
    assert_eq!(std::fs::metadata(&root_file).expect("stat").uid(), 0);

    // A link root made in root's directories is followed (`/home -> /var/home`), and a
    // managed file outside any home (`/data/alice/.ssh/...`) works.
    let data = sandbox.dir.path().join("data");
    let alice_ssh = data.join("alice/.ssh");
    std::fs::create_dir_all(&alice_ssh).expect("mkdir");
    chown(&data.join("alice"), user.uid.as_raw(), user.gid.as_raw());
    chown(&alice_ssh, user.uid.as_raw(), user.gid.as_raw());
    std::fs::set_permissions(&alice_ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let link = sandbox.dir.path().join("data-link");
    std::os::unix::fs::symlink(&data, &link).expect("root's symlink");
    let through_link = link.join("alice/.ssh/authorized_keys");
    let mut setup = Setup::new(&server.url, "pictor-atk8", Some(through_link));
    setup.long_poll_seconds = 1;
    sandbox.write_config(&setup);
    let (ok, err) = sync_once(&sandbox);
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(alice_ssh.join("authorized_keys")).expect("written");
    assert!(written.contains(&key.canonical()));

    // The same link in a directory others can write is refused.
    std::fs::set_permissions(sandbox.dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let (ok, err) = sync_once(&sandbox);
    std::fs::set_permissions(sandbox.dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    assert!(!ok);
    assert!(err.contains("is writable by group or others"), "{err}");
    let _ = std::fs::remove_file(&cfg);
}

/// Issue 17, finding 9: the user hard-links their own `authorized_keys` as
/// `authorized_keys2`. A deleted key stops working through the managed file, and the
/// other name, which still holds it, is reported behind with the key.
#[test]
fn a_second_hard_link_no_longer_keeps_a_deleted_key_and_is_reported() {
    if !sshd_available() {
        return;
    }
    let Some((world, home)) = setup("pictor-atk9") else {
        return;
    };
    let (server, sandbox, key_a) = (&world.server, &world.sandbox, world.key("key_a"));
    let _agent = sandbox.start_agent();
    let file = home.join(".ssh/authorized_keys");
    wait_until(Duration::from_secs(10), "key_a written", || {
        sandbox.keys_text().contains(&key_a.canonical())
    });
    let second = home.join(".ssh/authorized_keys2");
    std::fs::hard_link(&file, &second).expect("link");
    let sshd = Sshd::start(sandbox.dir.path());
    assert!(sshd.login("pictor-atk9", &key_a.private));
    assert!(server.cp.delete_key("key_a"));
    wait_until(
        Duration::from_secs(5),
        "key_a gone from the managed file",
        || !sandbox.keys_text().contains(&key_a.canonical()),
    );
    assert!(
        !sshd.login("pictor-atk9", &key_a.private),
        "the deleted key no longer logs in through the managed file"
    );
    assert!(std::fs::read_to_string(&second)
        .expect("read")
        .contains(&key_a.canonical()));
    let second_shown = second.display().to_string();
    let reported = || {
        server.cp.status(INSTANCE).is_some_and(|status| {
            status["files"].as_array().is_some_and(|files| {
                files.iter().any(|f| {
                    f["path"] == second_shown.as_str()
                        && f["state"] == "behind"
                        && f["keys_not_removed"] == serde_json::json!(["key_a"])
                })
            })
        })
    };
    wait_until(
        Duration::from_secs(10),
        "the second name reported",
        reported,
    );
    // Still reported by an agent started afresh (it reads the file, it does not
    // remember the link), and no longer once the user removes it.
    let said = || {
        sandbox
            .log()
            .matches("through this file sshd reads beside the managed one")
            .count()
    };
    assert_eq!(said(), 1, "{}", sandbox.log());
    drop(_agent);
    let _agent = sandbox.start_agent();
    wait_until(
        Duration::from_secs(10),
        "said again after a restart",
        || said() == 2,
    );
    wait_until(
        Duration::from_secs(10),
        "reported after a restart",
        reported,
    );
    std::fs::remove_file(&second).expect("rm");
    wait_until(
        Duration::from_secs(10),
        "no longer reported once removed",
        || {
            server.cp.status(INSTANCE).is_some_and(|status| {
                status["files"]
                    .as_array()
                    .is_some_and(|files| files.iter().all(|f| f["path"] != second_shown.as_str()))
            })
        },
    );
}
