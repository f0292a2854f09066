//! Revocation that bites: live sessions of a deleted or expired key end, with every
//! process they started; the AuthorizedKeysCommand mode refuses a deleted key at once.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pictor_control_plane::Fault;
use serde_json::Value;

use testkit::procs::sleepers;
use testkit::*;

fn events(server: &Server, user: &str, kind: &str) -> Vec<Value> {
    events_for(server, user)
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

/// A user with a hand-added key (`hand`) and two key pairs not yet in the account (`a`,
/// `b`), sshd logging to the journal (with `sshd_extra` first), and the agent reporting
/// sessions from it. `None` (a loud skip; a failure under CI) without root, sshd or
/// journald.
fn setup(user: &str) -> Option<World> {
    setup_with(user, "")
}

fn setup_with(user: &str, sshd_extra: &str) -> Option<World> {
    if !journal_available() {
        return None;
    }
    Some(
        World::builder()
            .user(user)
            .hand_added_key()
            .spare_keys(&["a", "b"])
            .sessions_from_journal()
            .sshd_with(sshd_extra)
            .build(),
    )
}

fn spawn(r: &World, key: &Path, args: &[&str], pty: bool) -> Child {
    let options: &[&str] = if pty { &["-tt"] } else { &[] };
    r.sshd()
        .ssh_with(r.user(), key, options, args)
        .spawn()
        .expect("ssh")
}

fn exited(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_some()
}

#[test]
fn deleting_a_key_ends_its_pty_and_no_pty_sessions_and_nothing_else() {
    let Some(r) = setup("pictor-r1") else { return };
    r.server.cp.add_key(r.key("a").new_key("key_a"));
    r.server.cp.add_key(r.key("b").new_key("key_b"));
    let _agent = r.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "keys written", || {
        let text = r.sandbox.keys_text();
        text.contains(&r.key("a").canonical()) && text.contains(&r.key("b").canonical())
    });

    // ssh -tt puts the command on a pty; the others run without one, and the second
    // leaves a background child in the command's own session.
    let mut a_pty = spawn(&r, &r.key("a").private, &["sleep", "1001"], true);
    let mut a_notty = spawn(
        &r,
        &r.key("a").private,
        &["sleep 1002 & exec sleep 1003"],
        false,
    );
    let mut b_session = spawn(&r, &r.key("b").private, &["sleep", "1004"], false);
    let mut hand_session = spawn(&r, &r.key("hand").private, &["sleep", "1005"], false);
    wait_until(Duration::from_secs(15), "four sessions open", || {
        events(&r.server, r.user(), "session_opened").len() == 4
    });
    wait_until(Duration::from_secs(5), "all commands running", || {
        ["1001", "1002", "1003", "1004", "1005"]
            .iter()
            .all(|s| sleepers(s).len() == 1)
    });

    let deleted = Instant::now();
    r.server.cp.delete_key("key_a");
    // "Within a second" is the product's promise; the benchmark measures it (10-20 ms
    // here). The test allows a loaded CI machine more and checks that it happens.
    let took = wait_until(Duration::from_secs(5), "key a's sessions ended", || {
        exited(&mut a_pty)
            && exited(&mut a_notty)
            && ["1001", "1002", "1003"]
                .iter()
                .all(|s| sleepers(s).is_empty())
    });
    eprintln!(
        "deletion -> both sessions and all their processes gone: {took:?} ({:?} since the deletion)",
        deleted.elapsed()
    );
    wait_until(Duration::from_secs(5), "terminations reported", || {
        events(&r.server, r.user(), "session_terminated").len() == 2
    });
    for event in events(&r.server, r.user(), "session_terminated") {
        assert_eq!(event["key_id"], "key_a");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !exited(&mut b_session),
        "the session of another key of the same user stays"
    );
    assert!(
        !exited(&mut hand_session),
        "the session of a hand-added key stays"
    );
    assert_eq!((sleepers("1004").len(), sleepers("1005").len()), (1, 1));
    for child in [&mut b_session, &mut hand_session] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn expiry_ends_the_session_at_expires_at_with_the_control_plane_down() {
    let Some(r) = setup("pictor-r2") else { return };
    r.server.cp.add_key(r.key("a").expiring_key("key_a", 8));
    let _agent = r.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        r.sandbox.keys_text().contains(&r.key("a").canonical())
    });
    let mut session = spawn(&r, &r.key("a").private, &["sleep", "1011"], false);
    wait_until(Duration::from_secs(10), "session open", || {
        sleepers("1011").len() == 1
    });
    r.server
        .cp
        .set_fault(Fault::ServerError { status: 503 }, None);
    let expires_at = r.server.cp.keys()[0].expires_at.clone().expect("expiry");
    let expires_at =
        time::OffsetDateTime::parse(&expires_at, &time::format_description::well_known::Rfc3339)
            .expect("time");
    wait_until(Duration::from_secs(15), "session ended", || {
        exited(&mut session) && sleepers("1011").is_empty()
    });
    let late = time::OffsetDateTime::now_utc() - expires_at;
    eprintln!("session ended {late} after expires_at");
    assert!(
        late < time::Duration::seconds(3),
        "ended {late} after expires_at"
    );
    assert!(
        late > time::Duration::milliseconds(-50),
        "not before expires_at ({late})"
    );
}

/// A root-owned copy of the agent binary: sshd refuses a command in a directory that
/// others can write (the build directory may be under /tmp).
fn root_owned_agent() -> PathBuf {
    let dir = PathBuf::from("/usr/local/libexec/pictor-agent-test");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = dir.join(format!("pictor-agent-{}", std::process::id()));
    std::fs::copy(agent(), &target).expect("copy");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    target
}

#[test]
fn authorized_keys_command_lets_keys_in_force_in_and_refuses_a_deleted_key_at_once() {
    if !sshd_available() {
        return;
    }
    let user = "pictor-akc";
    // sshd runs the command as a dedicated account, like the packages' pictor-keys,
    // whose group alone may read the command's file.
    let command_account = ensure_system_account("pictor-akc-keys");
    let server = Server::start();
    // The state directory must be reachable by the command's account.
    let dir = tempfile::Builder::new()
        .prefix("pictor-akc-")
        .tempdir_in("/var/lib")
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let hand = KeyPair::generate(dir.path(), "hand");
    let a = KeyPair::generate(dir.path(), "a");
    let keys_file = user_with_hand_added_key(user, &hand);
    let hand_only = std::fs::read_to_string(&keys_file).expect("read");
    let mut setup = Setup::new(&server.url, user, None);
    setup.extra = "[sessions]\nenabled = false\n".into();
    let sandbox = Sandbox::with(dir, setup, keys_file.clone());
    let config = std::fs::read_to_string(&sandbox.config).expect("config");
    std::fs::write(
        &sandbox.config,
        config.replace(
            "name = \"pictor-akc\"\n",
            "name = \"pictor-akc\"\nwrite_authorized_keys = false\n",
        ),
    )
    .expect("config");
    sandbox.set_command_group("pictor-akc-keys");
    let agent_copy = root_owned_agent();
    let state_dir = sandbox.state_dir.display().to_string();
    let sshd = Sshd::start_with_extra(
        sandbox.dir.path(),
        &format!(
            "AuthorizedKeysCommand {} authorized-keys --state-dir {state_dir} %u %f\nAuthorizedKeysCommandUser pictor-akc-keys\n",
            agent_copy.display()
        ),
    );

    server.cp.add_key(a.new_key("key_a"));
    let _agent = sandbox.start_agent();
    let command_file = sandbox.state_dir.join("authorized-keys.json");
    wait_until(Duration::from_secs(5), "command file written", || {
        command_file.exists()
    });
    let meta = std::fs::metadata(&command_file).expect("stat");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o640, 0, command_account.gid.as_raw()),
        "0640, the agent's (root here), the command account's group"
    );
    // What sshd does, by hand: the command as the dedicated account prints the key; as
    // nobody (any other unprivileged account) neither the command nor cat reads the file.
    let run_as = |account: &nix::unistd::User, program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .uid(account.uid.as_raw())
            .gid(account.gid.as_raw())
            .stdin(Stdio::null())
            .output()
            .expect("runs")
    };
    let command_args = ["authorized-keys", "--state-dir", state_dir.as_str(), user];
    let out = run_as(&command_account, &agent_copy, &command_args);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&a.canonical()),
        "the command account reads it: {out:?}"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("nobody exists");
    let out = run_as(&nobody, &agent_copy, &command_args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    let out = run_as(
        &nobody,
        Path::new("cat"),
        &[&command_file.display().to_string()],
    );
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(
        sshd.login(user, &a.private),
        "a key in force logs in through the command"
    );
    assert!(
        sshd.login(user, &hand.private),
        "the hand-added file still works"
    );
    assert_eq!(
        std::fs::read_to_string(&keys_file).expect("read"),
        hand_only,
        "no file written for this user"
    );

    server.cp.delete_key("key_a");
    wait_until(Duration::from_secs(5), "command file updated", || {
        !std::fs::read_to_string(sandbox.state_dir.join("authorized-keys.json"))
            .unwrap_or_default()
            .contains("key_a")
    });
    assert!(
        !sshd.login(user, &a.private),
        "the deleted key is refused at once"
    );
    assert!(sshd.login(user, &hand.private));
    let _ = std::fs::remove_file(agent_copy);
}

#[test]
fn authorized_keys_command_prints_nothing_and_fails_on_missing_damaged_or_fifo_state() {
    let dir = tempdir();
    let run = |args: &[&str]| {
        let start = Instant::now();
        let out = Command::new(agent())
            .args(["authorized-keys", "--state-dir"])
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        (out, start.elapsed())
    };
    let (out, _) = run(&["ubuntu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("authorized-keys.json"));

    std::fs::write(
        dir.path().join("authorized-keys.json"),
        "{\"format\":1,\"users\":",
    )
    .expect("damage");
    // Not writable by others whatever the umask: the command refuses such a file.
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(dir.path().join("authorized-keys.json"), private.clone())
        .expect("chmod");
    let (out, _) = run(&["ubuntu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));

    std::fs::remove_file(dir.path().join("authorized-keys.json")).expect("rm");
    nix::unistd::mkfifo(
        &dir.path().join("authorized-keys.json"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .expect("mkfifo");
    let (out, took) = run(&["ubuntu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(took < Duration::from_secs(3), "bounded: {took:?}");

    std::fs::remove_file(dir.path().join("authorized-keys.json")).expect("rm");
    std::fs::write(
        dir.path().join("authorized-keys.json"),
        r#"{"format":1,"version":"v1","users":{"ubuntu":[]}}"#,
    )
    .expect("write");
    std::fs::set_permissions(dir.path().join("authorized-keys.json"), private).expect("chmod");
    let (out, _) = run(&["ubuntu"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing in force: exit 0, no output"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_session_read_from_the_log_after_its_key_was_deleted_still_ends() {
    let Some(r) = setup("pictor-r3") else { return };
    r.server.cp.add_key(r.key("a").new_key("key_a"));
    let _agent = r.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        r.sandbox.keys_text().contains(&r.key("a").canonical())
    });
    let mut session = spawn(&r, &r.key("a").private, &["sleep", "1021"], false);
    // Delete as soon as the command runs: journald hands the login line to readers up to
    // ~250 ms late, so the agent often learns of the session after the key is gone.
    wait_until(Duration::from_secs(10), "command running", || {
        sleepers("1021").len() == 1
    });
    r.server.cp.delete_key("key_a");
    wait_until(Duration::from_secs(10), "session ended", || {
        exited(&mut session) && sleepers("1021").is_empty()
    });
    wait_until(Duration::from_secs(5), "reported", || {
        events(&r.server, r.user(), "session_terminated").len() == 1
    });
}

#[test]
fn a_session_is_tied_only_to_an_account_key_granted_to_its_user() {
    let Some(r) = setup("pictor-r4") else { return };
    // The user's own hand-added key is also an account key, but granted to another
    // user only: for this user it is not the agent's key, and never ended by it.
    r.server.cp.add_key(pictor_control_plane::NewKey {
        users: Some(vec!["pictor-r-other".into()]),
        ..r.key("hand").new_key("key_hand_elsewhere")
    });
    r.server.cp.add_key(r.key("a").new_key("key_a"));
    let _agent = r.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        r.sandbox.keys_text().contains(&r.key("a").canonical())
    });
    let mut hand_session = spawn(&r, &r.key("hand").private, &["sleep", "1031"], false);
    wait_until(Duration::from_secs(15), "session opened", || {
        events(&r.server, r.user(), "session_opened").len() == 1
    });
    let opened = events(&r.server, r.user(), "session_opened").remove(0);
    assert!(
        opened["key_id"].is_null(),
        "not tied to a key granted elsewhere: {opened}"
    );
    // A revocation round (another key deleted) does not touch it either.
    r.server.cp.delete_key("key_a");
    wait_until(Duration::from_secs(5), "key a removed", || {
        !r.sandbox.keys_text().contains(&r.key("a").canonical())
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !exited(&mut hand_session),
        "the hand-added key's session stays"
    );
    assert_eq!(sleepers("1031").len(), 1);
    assert!(events(&r.server, r.user(), "session_terminated").is_empty());
    let _ = hand_session.kill();
    let _ = hand_session.wait();
}

/// A session of key a that detaches three processes the way users do: `setsid -f`, a
/// tmux server, and a double fork with `setsid`; its own command is `sleep BASE`.
fn session_with_detached_processes(r: &World, base: u32) -> Child {
    let script = format!(
        "setsid -f sleep {}; tmux -L pictor-{base} new -d 'sleep {}'; \
         sh -c '(setsid sleep {} &) &'; exec sleep {base}",
        base + 1,
        base + 2,
        base + 3
    );
    spawn(r, &r.key("a").private, &[&script], false)
}

fn detached_sleepers(base: u32) -> Vec<usize> {
    (1..=3)
        .map(|n| sleepers(&(base + n).to_string()).len())
        .collect()
}

/// Issue 17, finding 3, on a host where the login gets no audit session id (sshd
/// without PAM) and there is no logind: what the session detached cannot be found, so
/// the agent never claims the session ended whole: it says so in its log and in
/// `last_error`.
#[test]
fn without_a_kernel_handle_on_the_session_the_ending_is_never_claimed_complete() {
    let Some(r) = setup("pictor-r5") else { return };
    r.server.cp.add_key(r.key("a").new_key("key_a"));
    let _agent = r.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        r.sandbox.keys_text().contains(&r.key("a").canonical())
    });
    let mut session = session_with_detached_processes(&r, 5000);
    wait_until(
        Duration::from_secs(15),
        "the session and what it detached run",
        || sleepers("5000").len() == 1 && detached_sleepers(5000) == [1, 1, 1],
    );
    r.server.cp.delete_key("key_a");
    wait_until(
        Duration::from_secs(5),
        "the session's connection ended",
        || exited(&mut session),
    );
    r.sandbox.wait_for_log("may still run");
    assert!(
        !r.sandbox
            .log()
            .contains("session terminated: its key is no longer in force"),
        "never claimed whole: {}",
        r.sandbox.log()
    );
    assert!(r.sandbox.log().contains("complete=false"));
    // The truth on this host: the detached processes live on, and the status says so.
    assert_eq!(detached_sleepers(5000), [1, 1, 1]);
    wait_until(Duration::from_secs(10), "last_error says so", || {
        r.server.cp.status(INSTANCE).is_some_and(|s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("may still run"))
        })
    });
}

/// Issue 17, finding 3, with `pam_loginuid` (sshd with PAM, as distributions ship it):
/// the login's audit session id, which the kernel keeps across `setsid` and double forks
/// and the user cannot change, finds what the session detached; all of it is ended and
/// the ending is proven whole.
#[test]
fn with_an_audit_session_id_what_the_session_detached_is_ended_too() {
    let Some(r) = setup_with("pictor-r6", "UsePAM yes\n") else {
        return;
    };
    r.server.cp.add_key(r.key("a").new_key("key_a"));
    let _agent = r.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        r.sandbox.keys_text().contains(&r.key("a").canonical())
    });
    let mut session = session_with_detached_processes(&r, 6000);
    wait_until(
        Duration::from_secs(15),
        "the session and what it detached run",
        || sleepers("6000").len() == 1 && detached_sleepers(6000) == [1, 1, 1],
    );
    let audit = std::fs::read_to_string(format!("/proc/{}/sessionid", sleepers("6001")[0]))
        .expect("sessionid");
    assert!(
        prerequisite(
            audit.trim() != "4294967295",
            "pam_loginuid giving logins an audit session id (CAP_AUDIT_CONTROL)"
        ),
        "no audit session id"
    );
    r.server.cp.delete_key("key_a");
    wait_until(
        Duration::from_secs(5),
        "the session and all it detached ended",
        || {
            exited(&mut session)
                && sleepers("6000").is_empty()
                && detached_sleepers(6000) == [0, 0, 0]
        },
    );
    r.sandbox
        .wait_for_log("session terminated: its key is no longer in force");
    assert!(r.sandbox.log().contains("complete=true"));
    assert!(!r.sandbox.log().contains("may still run"));
}
