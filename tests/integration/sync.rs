//! Following the key list: add, delete, expire, long-poll, faults, restarts.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pictor_control_plane::Fault;

use testkit::*;

const SOON: Duration = Duration::from_secs(5);

fn contains(sandbox: &Sandbox, key: &KeyPair) -> bool {
    sandbox.keys_text().contains(&key.canonical())
}

#[test]
fn added_and_deleted_keys_follow_the_account_and_hand_added_lines_stay() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let hand = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAddedKeyWithoutTrailingNewline me@laptop";
    std::fs::write(&sandbox.keys_file, hand).expect("hand-added file");
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    let b = KeyPair::generate(sandbox.dir.path(), "b");
    server.cp.add_key(a.new_key("key_a"));

    let agent = sandbox.start_agent();
    wait_until(SOON, "key a written", || contains(&sandbox, &a));
    let text = sandbox.keys_text();
    assert!(
        text.ends_with(hand),
        "foreign bytes kept exactly, no newline added:\n{text}"
    );
    assert!(text.contains(" pictor-key-id=key_a\n"));

    let requests_before = server.cp.stats().key_list_requests;
    server.cp.add_key(b.new_key("key_b"));
    let took = wait_until(SOON, "key b written", || contains(&sandbox, &b));
    assert!(
        took < Duration::from_secs(4),
        "long-poll delivers at once, took {took:?}"
    );
    assert!(
        server.cp.stats().key_list_requests <= requests_before + 2,
        "a change is one long-poll answer, not polling"
    );

    server.cp.delete_key("key_a");
    wait_until(SOON, "key a removed", || !contains(&sandbox, &a));
    assert!(contains(&sandbox, &b));
    assert!(sandbox.keys_text().ends_with(hand));

    server.cp.delete_key("key_b");
    wait_until(SOON, "no managed keys left", || sandbox.keys_text() == hand);
    let status = agent.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn nothing_is_written_when_nothing_changed() {
    let (world, agent) = agent_with_key_a();
    let (server, sandbox, _a) = (&world.server, &world.sandbox, world.key("key_a"));
    let meta = std::fs::metadata(&sandbox.keys_file).expect("stat");
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    // A new version with the same keys (a rejected key added) must not rewrite the file.
    server.cp.add_key(pictor_control_plane::NewKey {
        id: Some("key_bad".into()),
        name: "bad".into(),
        public_key: "ssh-rsa AAAA".into(),
        ..Default::default()
    });
    wait_until(SOON, "rejection logged", || {
        sandbox.log().contains("key rejected")
    });
    std::thread::sleep(Duration::from_millis(200));
    let after = std::fs::metadata(&sandbox.keys_file).expect("stat");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&after),
        inode,
        "file not replaced"
    );
    assert_eq!(
        after.modified().expect("mtime"),
        meta.modified().expect("mtime")
    );
    drop(agent);
}

#[test]
fn a_bad_key_is_rejected_alone_and_reported_by_status() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    server.cp.add_key(a.new_key("key_a"));
    let mut injected = a.new_key("key_evil");
    injected.public_key = format!(
        "{}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil evil",
        a.public_line
    );
    server.cp.add_key(injected);
    let output = sandbox
        .command(&["sync", "--once"])
        .output()
        .expect("sync runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = sandbox.keys_text();
    assert!(contains(&sandbox, &a));
    assert!(
        !text.contains("Evil") && !text.contains("key_evil"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "begin, one key, end:\n{text}");

    let status = sandbox.command(&["status"]).output().expect("status runs");
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains("key_a"), "{report}");
    assert!(
        report.contains("rejected:")
            && report.contains("key_evil: public_key contains a line break"),
        "{report}"
    );
}

#[test]
fn expired_keys_go_at_expires_at_even_with_the_control_plane_failing() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    let b = KeyPair::generate(sandbox.dir.path(), "b");
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(6);
    let short = a.expiring_key("key_short", 6);
    server.cp.add_key(short);
    server.cp.add_key(b.new_key("key_b"));
    let _agent = sandbox.start_agent();
    wait_until(SOON, "both keys written", || {
        contains(&sandbox, &a) && contains(&sandbox, &b)
    });
    server
        .cp
        .set_fault(Fault::ServerError { status: 500 }, None);
    wait_until(Duration::from_secs(15), "short key expired", || {
        !contains(&sandbox, &a)
    });
    let late = time::OffsetDateTime::now_utc() - expires;
    assert!(
        late < time::Duration::seconds(3),
        "expired {late} after expires_at"
    );
    assert!(contains(&sandbox, &b), "the other key stays");
}

#[test]
fn expiry_set_in_the_account_removes_the_key() {
    let (world, _agent) = agent_with_key_a();
    let (server, sandbox, a) = (&world.server, &world.sandbox, world.key("key_a"));
    server.cp.expire_key("key_a", "2020-01-01T00:00:00Z");
    wait_until(SOON, "expired key removed", || !contains(sandbox, a));
}

/// Every fault switch: the keys in force stay as they were while it lasts, and the agent
/// recovers by itself once it is cleared.
#[test]
fn faults_keep_the_keys_in_force_and_the_agent_recovers() {
    let faults = [
        Fault::Slow { ms: 4000 },
        Fault::ServerError { status: 500 },
        Fault::ServerError { status: 503 },
        Fault::TooManyRequests { retry_after: 1 },
        Fault::Garbage,
        Fault::Oversized {
            bytes: 2 * 1024 * 1024,
            chunked: false,
        },
        Fault::Oversized {
            bytes: 2 * 1024 * 1024,
            chunked: true,
        },
        Fault::Drop,
    ];
    for fault in faults {
        let server = Server::start();
        let sandbox = Sandbox::new(&server.url);
        let mut setup_api = String::from("max_response_bytes = 65536");
        setup_api.push('\n');
        sandbox.write_config(&Setup {
            base_url: server.url.clone(),
            user: current_user(),
            authorized_keys: Some(sandbox.keys_file.clone()),
            long_poll_seconds: 30,
            extra_api: setup_api,
            extra: "[sessions]\nenabled = false\n".into(),
            host_keys: "[host_keys]\nenabled = false\n".into(),
        });
        let old = KeyPair::generate(sandbox.dir.path(), "old");
        let new = KeyPair::generate(sandbox.dir.path(), "new");
        server.cp.add_key(old.new_key("key_old"));
        let once = sandbox.command(&["sync", "--once"]).output().expect("sync");
        assert!(once.status.success());
        let before = sandbox.keys_text();

        server.cp.delete_key("key_old");
        server.cp.add_key(new.new_key("key_new"));
        server.cp.set_fault(fault.clone(), None);
        // sync --once against the fault fails and changes nothing.
        let failed = sandbox.command(&["sync", "--once"]).output().expect("sync");
        assert!(!failed.status.success(), "{fault:?}: sync --once must fail");
        assert_eq!(sandbox.keys_text(), before, "{fault:?}: file unchanged");

        let agent = sandbox.start_agent();
        let requests = server.cp.stats().key_list_requests;
        wait_until(Duration::from_secs(15), "agent retries", || {
            server.cp.stats().key_list_requests >= requests + 2
        });
        assert_eq!(
            sandbox.keys_text(),
            before,
            "{fault:?}: keys in force unchanged during the fault"
        );
        server.cp.clear_fault();
        wait_until(Duration::from_secs(15), "recovered", || {
            contains(&sandbox, &new) && !contains(&sandbox, &old)
        });
        drop(agent);
    }
}

#[test]
fn retry_after_is_honoured() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    server.cp.add_key(a.new_key("key_a"));
    server
        .cp
        .set_fault(Fault::TooManyRequests { retry_after: 3 }, None);
    let _agent = sandbox.start_agent();
    wait_until(SOON, "first request", || {
        server.cp.stats().key_list_requests >= 1
    });
    // backoff_max_seconds is 1 in the test config: without Retry-After it would retry sooner.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        server.cp.stats().key_list_requests,
        1,
        "no retry before Retry-After"
    );
    server.cp.clear_fault();
    wait_until(SOON, "key written after the wait", || {
        contains(&sandbox, &a)
    });
}

#[test]
fn restart_without_network_keeps_keys_and_still_expires() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    let b = KeyPair::generate(sandbox.dir.path(), "b");
    let short = b.expiring_key("key_b", 8);
    server.cp.add_key(a.new_key("key_a"));
    server.cp.add_key(short);
    let agent = sandbox.start_agent();
    wait_until(SOON, "keys written", || {
        contains(&sandbox, &a) && contains(&sandbox, &b)
    });
    assert!(agent.stop().success());

    // The control plane is gone: point the agent at a port where nothing listens.
    sandbox.write_config(&Setup::new(
        &dead_url(),
        &current_user(),
        Some(sandbox.keys_file.clone()),
    ));
    let _agent = sandbox.start_agent();
    sandbox.wait_for_log("restored the last applied key set");
    sandbox.wait_for_log("fetching the key list failed");
    assert!(
        contains(&sandbox, &a) && contains(&sandbox, &b),
        "nothing wiped while offline"
    );
    wait_until(Duration::from_secs(15), "key b expired offline", || {
        !contains(&sandbox, &b)
    });
    assert!(contains(&sandbox, &a));
}

/// A URL where nothing listens: the control plane is gone.
fn dead_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", closed.local_addr().expect("addr"))
}

/// An agent running with one account key, written.
fn agent_with_key_a() -> (World, Agent) {
    let world = World::builder().account_keys(&["key_a"]).build();
    let agent = world.start_agent_and_sync();
    (world, agent)
}

/// An agent running with two account keys, both written.
fn agent_with_keys_a_and_b() -> (World, Agent) {
    let world = World::builder().account_keys(&["key_a", "key_b"]).build();
    let agent = world.start_agent_and_sync();
    (world, agent)
}

#[test]
fn a_state_that_cannot_be_saved_still_lets_a_revocation_bite() {
    let (world, _agent) = agent_with_keys_a_and_b();
    let (server, sandbox, a, b) = (
        &world.server,
        &world.sandbox,
        world.key("key_a"),
        world.key("key_b"),
    );
    // The saved state's name is taken by a non-empty directory: every save now fails
    // (root ignores permissions, a rename over a directory does not).
    let applied = sandbox.state_dir.join("applied.json");
    std::fs::remove_file(&applied).expect("rm applied.json");
    std::fs::create_dir(&applied).expect("mkdir");
    std::fs::write(applied.join("blocker"), "").expect("blocker");

    assert!(server.cp.delete_key("key_b"));
    wait_until(SOON, "key b revoked", || !contains(sandbox, b));
    assert!(contains(sandbox, a), "the remaining key kept");
    sandbox.wait_for_log("applied.json");
    let log = sandbox.log();
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("applied.json"))
        .unwrap_or_else(|| panic!("the failed save is an error in the log:\n{log}"));
    eprintln!("{line}");
}

#[test]
fn a_failed_write_of_the_command_file_is_retried_until_the_revoked_key_is_gone() {
    let (world, _agent) = agent_with_keys_a_and_b();
    let (server, sandbox, a, b) = (
        &world.server,
        &world.sandbox,
        world.key("key_a"),
        world.key("key_b"),
    );
    let command_file = sandbox.state_dir.join("authorized-keys.json");
    let listed = |id: &str| {
        std::fs::read_to_string(&command_file)
            .unwrap_or_default()
            .contains(id)
    };
    wait_until(SOON, "command file lists key b", || listed("key_b"));
    // Its name taken by a non-empty directory: the next write's rename fails.
    std::fs::remove_file(&command_file).expect("rm");
    std::fs::create_dir(&command_file).expect("mkdir");
    std::fs::write(command_file.join("blocker"), "").expect("blocker");

    assert!(server.cp.delete_key("key_b"));
    wait_until(SOON, "key b revoked in authorized_keys", || {
        !contains(sandbox, b)
    });
    sandbox.wait_for_log("retrying every");
    assert!(contains(sandbox, a));

    std::fs::remove_dir_all(&command_file).expect("unblock");
    wait_until(
        Duration::from_secs(15),
        "command file rewritten without b",
        || listed("key_a") && !listed("key_b"),
    );
    sandbox.wait_for_log("the AuthorizedKeysCommand file is up to date again");
}

#[test]
fn a_crash_between_saving_the_state_and_writing_the_file_is_finished_at_start_up() {
    let (world, agent) = agent_with_keys_a_and_b();
    let (server, sandbox, a, b) = (
        &world.server,
        &world.sandbox,
        world.key("key_a"),
        world.key("key_b"),
    );
    let before_revocation = sandbox.keys_text();
    assert!(server.cp.delete_key("key_b"));
    wait_until(SOON, "key b revoked", || !contains(sandbox, b));
    assert!(agent.stop().success());

    // What a crash right after the state was saved leaves: the new state (without b)
    // and the file sshd reads still the old one (with b).
    std::fs::write(&sandbox.keys_file, &before_revocation).expect("old file back");
    assert!(contains(sandbox, b));
    sandbox.write_config(&Setup::new(
        &dead_url(),
        &current_user(),
        Some(sandbox.keys_file.clone()),
    ));
    let started = Instant::now();
    let _agent = sandbox.start_agent();
    wait_until(
        SOON,
        "revocation finished from the saved state, offline",
        || !contains(sandbox, b),
    );
    eprintln!("finished {:?} after start", started.elapsed());
    assert!(contains(sandbox, a));
    sandbox.wait_for_log("restored the last applied key set");
}

#[test]
fn drift_is_repaired_and_logged() {
    let (world, _agent) = agent_with_key_a();
    let (_server, sandbox, a) = (&world.server, &world.sandbox, world.key("key_a"));
    let good = sandbox.keys_text();

    // Someone edits the managed block and adds a line of their own.
    let tampered = good.replace(
        &a.canonical(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITampered",
    ) + "mine\n";
    // Saved the way editors do (a new file renamed over it), so the agent never reads a
    // half-written file and the description of the drift is deterministic.
    let scratch = sandbox.keys_file.with_extension("swp");
    std::fs::write(&scratch, &tampered).expect("tamper");
    std::fs::rename(&scratch, &sandbox.keys_file).expect("rename");
    let took = wait_until(SOON, "block repaired", || {
        sandbox.keys_text() == format!("{good}mine\n")
    });
    assert!(took < Duration::from_secs(3), "repaired in {took:?}");
    sandbox.wait_for_log("drift repaired: managed block edited");

    // Someone deletes the file.
    std::fs::remove_file(&sandbox.keys_file).expect("rm");
    wait_until(SOON, "file recreated", || contains(sandbox, a));
    sandbox.wait_for_log("the file was deleted");
}

/// Issue 17 (found by a new user's run): after a burst of twenty account changes, a hand
/// removal of the managed block is repaired at once, not after the 5 s an edit loop earns:
/// only repairs of drift slow drift repairs down.
#[test]
fn a_burst_of_account_changes_does_not_slow_the_next_drift_repair() {
    let (world, _agent) = agent_with_key_a();
    let (server, sandbox, a) = (&world.server, &world.sandbox, world.key("key_a"));
    let burst: Vec<KeyPair> = (0..20)
        .map(|n| KeyPair::generate(sandbox.dir.path(), &format!("burst{n}")))
        .collect();
    for (n, key) in burst.iter().enumerate() {
        server.cp.add_key(key.new_key(&format!("key_burst{n}")));
        wait_until(SOON, "burst key written", || contains(sandbox, key));
    }
    for n in 0..20 {
        assert!(server.cp.delete_key(&format!("key_burst{n}")));
    }
    wait_until(SOON, "the burst deleted", || {
        burst.iter().all(|k| !contains(sandbox, k))
    });
    std::thread::sleep(Duration::from_millis(300));
    // The owner removes the managed block by hand (an editor's save: a rename).
    let owner_only = "# mine\n";
    let scratch = sandbox.keys_file.with_extension("swp");
    std::fs::write(&scratch, owner_only).expect("edit");
    std::fs::rename(&scratch, &sandbox.keys_file).expect("rename");
    let took = wait_until(SOON, "block back", || contains(sandbox, a));
    eprintln!("hand removal after a burst of 40 changes repaired in {took:?}");
    assert!(took < Duration::from_secs(1), "repaired in {took:?}");
}

/// Bytes the process has passed to write(2) and friends (`wchar` of /proc/PID/io).
fn bytes_written(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar")
}

#[test]
fn an_owner_editing_the_block_in_a_loop_costs_a_few_rewrites_and_keeps_every_owner_byte() {
    let (world, agent) = agent_with_key_a();
    let (_server, sandbox, a) = (&world.server, &world.sandbox, world.key("key_a"));
    // Half a megabyte of the owner's own lines after the block.
    let mut owner = String::new();
    let mut n = 0;
    while owner.len() < 512 * 1024 {
        owner.push_str(&format!("# the owner's line {n}, kept byte for byte\n"));
        n += 1;
    }
    let good = format!("{}{owner}", sandbox.keys_text());
    std::fs::write(&sandbox.keys_file, &good).expect("owner lines");
    wait_until(SOON, "settled", || sandbox.keys_text() == good);
    std::thread::sleep(Duration::from_millis(200));
    let size = good.len() as u64;
    let before = bytes_written(agent.pid());
    let repairs_before = sandbox.log().matches("drift repaired").count();

    // Ten seconds of edits inside the block, one every 20 ms.
    let start = Instant::now();
    let mut edits = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let tampered = good.replace(&a.canonical(), &format!("ssh-ed25519 AAAAEdit{edits}"));
        std::fs::write(&sandbox.keys_file, tampered).expect("edit");
        edits += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let last_edit = Instant::now();
    let restored = wait_until(
        Duration::from_secs(15),
        "block restored after the loop",
        || sandbox.keys_text() == good,
    );
    let written = bytes_written(agent.pid()) - before;
    let repairs = sandbox.log().matches("drift repaired").count() - repairs_before;
    eprintln!(
        "edit loop: {edits} edits in 10 s of a {size}-byte file; {repairs} repairs, {written} \
         bytes written by the agent; restored {restored:?} after the last edit"
    );
    // The old agent rewrote the file at every edit (hundreds of times).
    assert!(
        written < 20 * size,
        "{written} bytes written for {edits} edits of {size} bytes"
    );
    assert!(last_edit.elapsed() < Duration::from_secs(15));
    assert_eq!(
        sandbox.keys_text(),
        good,
        "every owner byte kept, the block back"
    );
}

#[test]
fn sighup_reloads_the_configuration_and_bad_config_is_kept_out() {
    let (world, agent) = agent_with_key_a();
    let (_server, sandbox, a) = (&world.server, &world.sandbox, world.key("key_a"));

    // A broken file on SIGHUP: logged, the running configuration kept.
    let good_config = std::fs::read_to_string(&sandbox.config).expect("config");
    std::fs::write(&sandbox.config, "[api\n").expect("break config");
    agent.signal(Signal::SIGHUP);
    wait_until(SOON, "reload refused", || {
        sandbox.log().contains("keeping the running configuration")
    });

    // A good file moving the managed file: the old one loses its block, the new one gets it.
    let moved = sandbox.dir.path().join("home").join("moved_keys");
    std::fs::write(
        &sandbox.config,
        good_config.replace("authorized_keys\"", "moved_keys\""),
    )
    .expect("config");
    agent.signal(Signal::SIGHUP);
    wait_until(SOON, "new file written", || {
        std::fs::read_to_string(&moved)
            .unwrap_or_default()
            .contains(&a.canonical())
    });
    wait_until(SOON, "old file released", || !contains(sandbox, a));
    sandbox.wait_for_log("no longer managed: its managed block is removed");
    let start = Instant::now();
    assert!(agent.stop().success());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn sighup_applies_sessions_and_the_log_level_and_names_what_needs_a_restart() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let quiet = std::fs::read_to_string(&sandbox.config)
        .expect("config")
        .replace("level = \"debug\"", "level = \"warn\"");
    std::fs::write(&sandbox.config, &quiet).expect("config");
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    server.cp.add_key(a.new_key("key_a"));
    let agent = sandbox.start_agent();
    wait_until(SOON, "key written", || contains(&sandbox, &a));
    assert!(
        !sandbox.log().contains("DEBUG"),
        "warn level: no debug lines"
    );
    assert!(!sandbox.log().contains("reading sshd's messages"));

    // Session reporting on (from a syslog file), debug level, another state directory.
    let auth_log = sandbox.dir.path().join("auth.log");
    std::fs::write(&auth_log, "").expect("auth.log");
    let moved_state = sandbox.dir.path().join("state2");
    let reloaded = quiet
        .replace("level = \"warn\"", "level = \"debug\"")
        .replace(
            "[sessions]\nenabled = false\n",
            &format!(
                "[sessions]\nlog_source = \"file\"\nlog_file = {:?}\n",
                auth_log.display().to_string()
            ),
        )
        .replace(
            &format!("dir = {:?}", sandbox.state_dir.display().to_string()),
            &format!("dir = {:?}", moved_state.display().to_string()),
        );
    assert_ne!(reloaded, quiet);
    std::fs::write(&sandbox.config, &reloaded).expect("config");
    agent.signal(Signal::SIGHUP);
    wait_until(SOON, "the reload line naming [state] dir", || {
        sandbox
            .log()
            .contains("configuration reloaded, except what needs a restart to apply: [state] dir")
    });
    wait_until(SOON, "the sessions task started", || {
        sandbox
            .log()
            .contains("reading sshd's messages from a syslog file")
    });
    let b = KeyPair::generate(sandbox.dir.path(), "b");
    server.cp.add_key(b.new_key("key_b"));
    wait_until(SOON, "key_b written", || contains(&sandbox, &b));
    wait_until(SOON, "debug lines after the reload", || {
        sandbox.log().contains("DEBUG")
    });
    assert!(
        !moved_state.exists(),
        "the state directory stays until a restart"
    );
    assert!(agent.stop().success());
}

#[test]
fn check_config_names_the_problem() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let ok = sandbox.command(&["check-config"]).output().expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = std::fs::read_to_string(&sandbox.config).expect("config");
    std::fs::write(
        &sandbox.config,
        text.replace(&server.url, "http://example.com"),
    )
    .expect("write");
    let bad = sandbox.command(&["check-config"]).output().expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("api.base_url: plain http://"));
}

#[test]
fn a_token_readable_by_others_is_refused_and_never_logged() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let token = sandbox.dir.path().join("token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let out = sandbox.command(&["sync", "--once"]).output().expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("must not be readable by group or others"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
    assert!(!sandbox.keys_file.exists());
}

#[test]
fn wrong_token_is_an_error_that_changes_nothing() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    std::fs::write(sandbox.dir.path().join("token"), "wrong-token").expect("token");
    let out = sandbox.command(&["sync", "--once"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid or revoked"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-token"));
}

#[test]
fn the_heartbeat_keeps_its_interval_with_session_reporting_off() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let mut setup = Setup::new(
        &server.url,
        &current_user(),
        Some(sandbox.keys_file.clone()),
    );
    setup.extra_api = "heartbeat_seconds = 5\n".into();
    sandbox.write_config(&setup);
    let _agent = sandbox.start_agent();
    // Let the start-up reports (before and after the first key set) go out.
    wait_until(SOON, "a status with the first key set", || {
        server
            .cp
            .status(INSTANCE)
            .is_some_and(|s| !s["applied_version"].is_null())
    });
    // Start-up may send one more report on a change (the AKC file's mode
    // error, say) right after this; so the clock starts at a report that
    // has just been seen, and two more must take two intervals.
    let seen = server.cp.stats().status_puts;
    wait_until(Duration::from_secs(8), "one more status", || {
        server.cp.stats().status_puts > seen
    });
    let settled = server.cp.stats().status_puts;
    let start = Instant::now();
    wait_until(Duration::from_secs(15), "two more at the interval", || {
        server.cp.stats().status_puts >= settled + 2
    });
    assert!(
        start.elapsed() >= Duration::from_secs(8),
        "not faster than the interval: {:?}",
        start.elapsed()
    );
    let status = server.cp.status(INSTANCE).expect("status");
    assert_eq!(status["agent_version"], pictor_agent::VERSION);
    assert!(status["active_sessions"]
        .as_array()
        .is_some_and(|a| a.is_empty()));
}

/// Issue 17, finding 11: right after a change the files report still speaks of the
/// previous set; `status` must not print it as `in sync` under the new one.
#[test]
fn status_does_not_vouch_for_a_new_key_set_with_a_files_report_older_than_it() {
    let server = Server::start();
    let sandbox = Sandbox::new(&server.url);
    let a = KeyPair::generate(sandbox.dir.path(), "a");
    let b = KeyPair::generate(sandbox.dir.path(), "b");
    server.cp.add_key(a.new_key("key_a"));
    let agent = sandbox.start_agent();
    let status = || {
        let out = sandbox.command(&["status"]).output().expect("status runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(SOON, "key a written and reported in sync", || {
        contains(&sandbox, &a) && status().contains("  file: in sync\n")
    });
    assert!(agent.stop().success());
    // A new set applied (by `sync --once`, which writes no files report): the report
    // on disk is now older than the set in force.
    server.cp.add_key(b.new_key("key_b"));
    let once = sandbox.command(&["sync", "--once"]).output().expect("sync");
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let report = status();
    assert!(report.contains("key_b"), "{report}");
    assert!(!report.contains("  file: in sync\n"), "{report}");
    assert!(
        report.contains(
            "  file: in sync as of the previous key set; not yet confirmed for the set applied at "
        ),
        "{report}"
    );
}
