//! Session reporting end to end: the real sshd logging to a journald started here (and,
//! through rsyslog, to a classic syslog file), the real ssh client, the reference control
//! plane counting events and duplicates.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pictor_control_plane::Fault;
use serde_json::Value;

use testkit::*;

fn count(events: &[Value], kind: &str) -> usize {
    count_where(events, |e| e["type"] == kind)
}

fn count_where(events: &[Value], check: impl Fn(&Value) -> bool) -> usize {
    events.iter().filter(|e| check(e)).count()
}

/// A user with a hand-added key and an account key in force (`key_account`), sshd
/// logging to syslog, and the agent reporting sessions from `source` (`journal` or a
/// file's name in the sandbox).
fn world(user: &str, source: &str) -> World {
    world_with(user, source, "")
}

/// [`world`] with extra sshd configuration lines.
fn world_with(user: &str, source: &str, sshd_extra: &str) -> World {
    let builder = World::builder()
        .user(user)
        .hand_added_key()
        .account_keys(&["key_account"])
        .sshd_with(sshd_extra);
    match source {
        "journal" => builder.sessions_from_journal(),
        file => builder.sessions_from_file(file),
    }
    .build()
}

#[test]
fn journal_login_and_logout_are_reported_with_key_user_and_source() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s1", "journal");
    let _agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });

    let mut session = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "8"])
        .spawn()
        .expect("ssh");
    wait_until(Duration::from_secs(20), "session_opened accepted", || {
        count(&events_for(&w.server, w.user()), "session_opened") == 1
    });
    let accepted_at = time::OffsetDateTime::now_utc();
    let opened = events_for(&w.server, w.user()).remove(0);
    let logged_at = time::OffsetDateTime::parse(
        opened["at"].as_str().expect("at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    eprintln!(
        "sshd logged the login -> event accepted by the control plane: {} ms",
        (accepted_at - logged_at).whole_milliseconds()
    );
    assert_eq!(opened["key_id"], "key_account");
    assert_eq!(opened["auth_method"], "publickey");
    assert_eq!(opened["source_ip"], "127.0.0.1");
    assert!(opened["source_port"].as_u64().is_some_and(|p| p > 0));
    assert!(opened["fingerprint"]
        .as_str()
        .is_some_and(|f| f.starts_with("SHA256:")));

    wait_until(
        Duration::from_secs(5),
        "heartbeat shows the session",
        || active_for(&w.server, w.user()).len() == 1,
    );
    let active = active_for(&w.server, w.user()).remove(0);
    assert_eq!(active["key_id"], "key_account");
    assert_eq!(active["session_id"], opened["session_id"]);

    assert!(session.wait().expect("ssh ends").success());
    wait_until(Duration::from_secs(10), "session_closed accepted", || {
        count(&events_for(&w.server, w.user()), "session_closed") == 1
    });
    wait_until(
        Duration::from_secs(5),
        "heartbeat no longer shows it",
        || active_for(&w.server, w.user()).is_empty(),
    );
    let closed = events_for(&w.server, w.user())
        .into_iter()
        .find(|e| e["type"] == "session_closed")
        .expect("closed");
    assert_eq!(closed["session_id"], opened["session_id"]);
    assert_ne!(closed["id"], opened["id"]);
    assert_eq!(w.server.cp.stats().duplicate_events, 0);

    let status = w.sandbox.command(&["status"]).output().expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("active sessions:") && !text.contains("pictor-s1 from"),
        "{text}"
    );
}

#[test]
fn a_journalctl_that_cannot_grep_still_reports_sessions_and_says_so() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s6", "journal");
    // The real journalctl behind a wrapper that refuses --grep, as one built without
    // PCRE2 (or older than systemd 237) does.
    let bin = w.sandbox.dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v journalctl"])
            .output()
            .expect("sh")
            .stdout,
    )
    .expect("utf8");
    let wrapper = bin.join("journalctl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --grep=*) echo 'Compiled without pattern matching support' >&2; exit 1;; esac; done\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _agent = w.sandbox.start_agent_with(|c| {
        c.env("PATH", &path);
    });
    w.sandbox
        .wait_for_log("journalctl cannot filter sshd's messages itself (Compiled without");
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    // Long enough to be alive when the reader starts, should it start after the login.
    let status = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "2"])
        .status()
        .expect("ssh");
    assert!(status.success());
    wait_until(Duration::from_secs(20), "session opened and closed", || {
        let events = events_for(&w.server, w.user());
        count(&events, "session_opened") == 1 && count(&events, "session_closed") == 1
    });
}

#[test]
fn sessions_open_across_an_agent_restart_are_known_again() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s2", "journal");
    let agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    let mut session = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "12"])
        .spawn()
        .expect("ssh");
    wait_until(Duration::from_secs(10), "session open", || {
        active_for(&w.server, w.user()).len() == 1
    });
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    drop(agent);
    // After the restart the session is known from the state the agent kept, checked
    // against the live sshd process: the status command and the next heartbeat show it.
    let _agent = w.sandbox.start_agent();
    let report = w.sandbox.command(&["status"]).output().expect("status");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("key_account: pictor-s2 from 127.0.0.1"),
        "{text}"
    );
    let puts = w.server.cp.stats().status_puts;
    wait_until(
        Duration::from_secs(5),
        "a heartbeat after the restart",
        || w.server.cp.stats().status_puts > puts,
    );
    assert_eq!(
        active_for(&w.server, w.user()).len(),
        1,
        "still active after the restart"
    );
    assert!(session.wait().expect("ssh").success());
    wait_until(Duration::from_secs(10), "closed after the restart", || {
        count(&events_for(&w.server, w.user()), "session_closed") == 1
    });
    wait_until(Duration::from_secs(5), "inactive", || {
        active_for(&w.server, w.user()).is_empty()
    });
    assert_eq!(count(&events_for(&w.server, w.user()), "session_opened"), 1);
}

#[test]
fn syslog_file_rotation_and_copytruncate_miss_nothing_and_read_nothing_twice() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s3", "auth.log");
    let log = w.sandbox.dir.path().join("auth.log");
    let Some(rsyslog) = Rsyslog::start(w.sandbox.dir.path(), &log) else {
        return;
    };
    let _agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });

    let mut first = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "4"])
        .spawn()
        .expect("ssh");
    wait_until(Duration::from_secs(10), "first opened", || {
        count(&events_for(&w.server, w.user()), "session_opened") == 1
    });

    // logrotate's default: rename, then tell rsyslog to reopen.
    std::fs::rename(&log, w.sandbox.dir.path().join("auth.log.1")).expect("rotate");
    let mut second = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "1"])
        .spawn()
        .expect("ssh");
    std::thread::sleep(Duration::from_millis(300));
    rsyslog.reopen();
    assert!(second.wait().expect("ssh").success());
    wait_until(Duration::from_secs(10), "second opened and closed", || {
        let events = events_for(&w.server, w.user());
        count(&events, "session_opened") == 2 && count(&events, "session_closed") >= 1
    });

    // rsyslog makes the new file when it writes its next line (the second session's
    // close, read from the journal on imjournal's own schedule); the agent's close comes
    // from the kernel and can be first.
    wait_until(
        Duration::from_secs(10),
        "rsyslog writing the new file",
        || log.exists(),
    );
    // copytruncate: copy aside, truncate in place; rsyslog appends to the emptied file.
    std::fs::copy(&log, w.sandbox.dir.path().join("auth.log.2")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    // A syslog file proves nothing by itself: a login is believed while its sshd
    // process can be seen, so each session here lasts long enough to be seen.
    let third = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "1"])
        .output()
        .expect("ssh");
    assert!(third.status.success());
    assert!(first.wait().expect("ssh").success());
    wait_until(
        Duration::from_secs(10),
        "all three opened and closed",
        || {
            let events = events_for(&w.server, w.user());
            count(&events, "session_opened") == 3 && count(&events, "session_closed") == 3
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let events = events_for(&w.server, w.user());
    assert_eq!(
        (
            count(&events, "session_opened"),
            count(&events, "session_closed")
        ),
        (3, 3),
        "{events:#?}"
    );
    assert_eq!(
        w.server.cp.stats().duplicate_events,
        0,
        "nothing read twice"
    );
}

/// `times` logins and logouts of the world's user with its account key, four at a time;
/// returns how many failed.
fn log_in_times(w: &World, times: usize) -> usize {
    let mut running: Vec<Child> = Vec::new();
    let mut failed = 0;
    for _ in 0..times {
        if running.len() >= 4 {
            let child = running.remove(0);
            failed += usize::from(!child.wait_with_output().expect("ssh").status.success());
        }
        running.push(
            w.sshd()
                .ssh(w.user(), &w.key("key_account").private, &["true"])
                .spawn()
                .expect("ssh"),
        );
    }
    for child in running {
        failed += usize::from(!child.wait_with_output().expect("ssh").status.success());
    }
    failed
}

#[test]
fn outage_1000_logins_kill_9_restart_every_event_arrives_once() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s4", "journal");
    let agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    w.server
        .cp
        .set_fault(Fault::ServerError { status: 503 }, None);

    let logins = 1000;
    let started = Instant::now();
    assert_eq!(log_in_times(&w, logins), 0, "every login worked");
    eprintln!("{logins} logins/logouts in {:?}", started.elapsed());
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    drop(agent);
    let _agent = w.sandbox.start_agent();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        events_for(&w.server, w.user()).is_empty(),
        "nothing accepted while down"
    );
    w.server.cp.clear_fault();
    wait_until(Duration::from_secs(60), "every event arrived", || {
        events_for(&w.server, w.user()).len() >= 2 * logins
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = events_for(&w.server, w.user());
    let unpaired: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let mine = |kind: &str| {
                count_where(&events, |o| {
                    o["type"] == kind && o["session_id"] == e["session_id"]
                })
            };
            mine("session_opened") != 1 || mine("session_closed") != 1
        })
        .collect();
    assert!(
        unpaired.is_empty(),
        "every session opened once and closed once; these are not: {unpaired:#?}"
    );
    assert_eq!(count(&events, "session_opened"), logins);
    assert_eq!(count(&events, "session_closed"), logins);
    let mut sessions: Vec<&str> = events
        .iter()
        .filter_map(|e| e["session_id"].as_str())
        .collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), logins, "each login is its own session");
    assert_eq!(w.server.cp.stats().duplicate_events, 0, "none sent twice");
}

#[test]
fn scan_log_prints_the_sessions_of_a_log_file_as_json_lines() {
    let fixture = format!(
        "{}/tests/fixtures/sshd/openssh-9.9-sshd-session.log",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(agent())
        .args(["--config", "/nonexistent", "scan-log", &fixture])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(count(&events, "session_opened"), 3);
    assert_eq!(count(&events, "session_closed"), 3);
    for field in [
        "id",
        "type",
        "at",
        "user",
        "auth_method",
        "key_id",
        "fingerprint",
        "source_ip",
        "source_port",
        "session_id",
    ] {
        assert!(
            events.iter().all(|e| e.get(field).is_some()),
            "field {field}"
        );
    }
    // And from standard input.
    let mut child = Command::new(agent())
        .args(["--config", "/nonexistent", "scan-log", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    let text = std::fs::read(&fixture).expect("fixture");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), &text).expect("write");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
}

#[test]
fn a_session_whose_sshd_was_killed_without_a_word_is_closed() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s5", "journal");
    let _agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    let mut session = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "60"])
        .spawn()
        .expect("ssh");
    wait_until(Duration::from_secs(10), "opened", || {
        count(&events_for(&w.server, w.user()), "session_opened") == 1
    });
    let opened = events_for(&w.server, w.user()).remove(0);
    let monitor: i32 = opened["session_id"]
        .as_str()
        .and_then(|s| s.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("pid");
    // SIGKILL the connection's processes, the monitor first: nothing gets to log a
    // goodbye. Then the user's processes (sshd's child runs as the user).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill monitor");
    let _ = Command::new("pkill")
        .args(["-KILL", "-u", w.user()])
        .status();
    let _ = session.wait();
    wait_until(
        Duration::from_secs(15),
        "closed by the liveness check",
        || count(&events_for(&w.server, w.user()), "session_closed") == 1,
    );
    wait_until(Duration::from_secs(5), "inactive", || {
        active_for(&w.server, w.user()).is_empty()
    });
}

#[test]
fn a_large_noisy_log_yields_exactly_its_logins() {
    let dir = tempdir();
    let path = dir.path().join("auth.log");
    let noise = std::fs::read_to_string(format!(
        "{}/tests/fixtures/sshd/noise.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("noise");
    let logins = std::fs::read_to_string(format!(
        "{}/tests/fixtures/sshd/openssh-9.2-debian12.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("logins");
    let mut text = String::new();
    for round in 0..2000u32 {
        text.push_str(&noise);
        // The captured logins again, under fresh pids so each is its own session.
        text.push_str(&logins.replace("sshd[30", &format!("sshd[{}", 100 + round)));
    }
    std::fs::write(&path, &text).expect("write");
    let out = Command::new(agent())
        .args(["--config", "/nonexistent", "scan-log"])
        .arg(&path)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    eprintln!("{} lines scanned", text.lines().count());
    assert_eq!(
        count(&events, "session_opened"),
        3 * 2000,
        "exactly the accepted logins"
    );
    assert_eq!(count(&events, "session_closed"), 3 * 2000);
    assert!(
        events.iter().all(|e| e["user"] == "pictor-e2e"),
        "no noise turned into a login"
    );
}

#[test]
fn sessions_opened_before_the_first_start_are_found_without_replaying_history() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s7", "journal");
    let once = w
        .sandbox
        .command(&["sync", "--once"])
        .output()
        .expect("sync");
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let mut session = w
        .sshd()
        .ssh(w.user(), &w.key("key_account").private, &["sleep", "20"])
        .spawn()
        .expect("ssh");
    // The login is logged before the agent ever runs.
    std::thread::sleep(Duration::from_millis(1500));
    let _agent = w.sandbox.start_agent();
    wait_until(
        Duration::from_secs(10),
        "the earlier session reported as active",
        || {
            active_for(&w.server, w.user())
                .iter()
                .any(|s| s["key_id"] == "key_account")
        },
    );
    // The event goes out on its own path (the outbox), maybe after the heartbeat.
    wait_until(
        Duration::from_secs(5),
        "the session's opening reported",
        || count(&events_for(&w.server, w.user()), "session_opened") == 1,
    );
    let _ = session.kill();
    let _ = session.wait();
}

#[test]
fn journalctl_grep_keeps_every_message_the_parser_needs_and_drops_the_noise() {
    use pictor_agent::sessions::{parse, source::JOURNAL_GREP};
    if !journal_available() {
        return;
    }
    // Every captured line, sent to the real journald under an identifier of this test,
    // then read back through the real journalctl with and without the agent's pattern.
    let stamps = parse::StampContext::utc(time::OffsetDateTime::now_utc());
    let mut messages = Vec::new();
    for name in [
        "noise.log",
        "openssh-7.4-centos7.log",
        "openssh-9.2-debian12.log",
        "openssh-9.9-sshd-session.log",
        "openssh-10.0-debian13.log",
    ] {
        let path = format!("{}/tests/fixtures/sshd/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture");
        for line in text.lines() {
            if let Some(record) = parse::parse_syslog_line(line, &stamps) {
                messages.push(record.message.to_owned());
            }
        }
    }
    let ident = format!("pictor-grep-{}", std::process::id());
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    socket.connect("/dev/log").expect("/dev/log");
    for message in &messages {
        socket
            .send(format!("<38>{ident}[4242]: {message}").as_bytes())
            .expect("send");
    }
    let read = |grep: bool| -> Vec<String> {
        let mut command = Command::new("journalctl");
        command.args(["--quiet", "--no-pager", "--all", "--output=cat"]);
        if grep {
            command.arg(format!("--grep={JOURNAL_GREP}"));
        }
        let out = command
            .arg(format!("SYSLOG_IDENTIFIER={ident}"))
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        "journald stored every line",
        || read(false).len() == messages.len(),
    );
    let kept = read(true);
    let needed: Vec<&String> = messages
        .iter()
        .filter(|m| parse::parse_message(m).is_some())
        .collect();
    let noise = messages.len() - needed.len();
    eprintln!(
        "{} messages: the parser needs {}, the pattern keeps {}",
        messages.len(),
        needed.len(),
        kept.len()
    );
    assert!(needed.len() >= 20 && noise >= 30, "fixtures cover both");
    for message in &needed {
        assert!(kept.contains(message), "the pattern drops {message:?}");
    }
    let through: Vec<&String> = kept
        .iter()
        .filter(|m| parse::parse_message(m).is_none())
        .collect();
    // Only the two forged lines of noise.log get past the pattern (their prefix is
    // right, their body is not), and the parser rejects them.
    assert_eq!(
        through,
        [
            "Accepted publickey for bad user from 1.2.3.4 port 5 ssh2: ED25519 SHA256:AAAA",
            "Accepted publickey for x from 999.1.1.1 port 5 ssh2: ED25519 SHA256:AAAA",
        ],
        "the pattern lets noise through"
    );
}

/// `AuthenticationMethods publickey,password`: sshd's `Accepted` line names the password
/// only; the key is in the `Partial` line before it, and the session is that key's.
#[test]
fn a_publickey_then_password_login_is_tied_to_its_key() {
    if !journal_available() {
        return;
    }
    let w = world_with(
        "pictor-s9",
        "journal",
        "AuthenticationMethods publickey,password\nPasswordAuthentication yes\nLogLevel VERBOSE\n",
    );
    let status = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(
                child.stdin.as_mut().expect("stdin"),
                b"pictor-s9:Pw-9-partial\n",
            )?;
            drop(child.stdin.take());
            child.wait()
        })
        .expect("chpasswd");
    assert!(status.success());
    let askpass = w.sandbox.dir.path().join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho Pw-9-partial\n").expect("askpass");
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let _agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    // The password comes from the askpass program (ssh takes the first value of an
    // option: BatchMode=no here wins over the helper's yes).
    let mut session = w
        .sshd()
        .ssh_with(
            w.user(),
            &w.key("key_account").private,
            &["-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1"],
            &["sleep", "8"],
        )
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .spawn()
        .expect("ssh");
    wait_until(Duration::from_secs(20), "session_opened", || {
        count(&events_for(&w.server, w.user()), "session_opened") == 1
    });
    let opened = events_for(&w.server, w.user()).remove(0);
    assert_eq!(opened["auth_method"], "publickey,password", "{opened}");
    assert_eq!(opened["key_id"], "key_account", "{opened}");
    // So deleting the key ends it.
    assert!(w.server.cp.delete_key("key_account"));
    wait_until(Duration::from_secs(10), "session_terminated", || {
        count(&events_for(&w.server, w.user()), "session_terminated") == 1
    });
    let status = session.wait().expect("ssh ends");
    assert!(!status.success(), "the connection was cut");
}

/// A user name of 100 characters (sshd logs up to 100; NSS sources allow such names,
/// `useradd` does not): the session is reported under its whole name.
#[test]
fn a_login_with_a_100_character_user_name_is_reported() {
    if !journal_available() {
        return;
    }
    let name = format!("pictor{}", "l".repeat(94));
    let home = PathBuf::from("/home/pictor-long-name");
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    if !passwd.lines().any(|l| l.starts_with(&format!("{name}:"))) {
        // What an NSS source can return, written where glibc's files source reads it.
        let append = |path: &str, line: String| {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open");
            std::io::Write::write_all(&mut file, line.as_bytes()).expect("append");
        };
        append(
            "/etc/passwd",
            format!("{name}:x:64999:64999::{}:/bin/sh\n", home.display()),
        );
        append("/etc/group", format!("{name}:x:64999:\n"));
        append("/etc/shadow", format!("{name}:*:20000:0:99999:7:::\n"));
    }
    let w = world("pictor-s10", "journal");
    let key = KeyPair::generate(w.sandbox.dir.path(), "long");
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).expect("mkdir");
    std::fs::write(
        ssh.join("authorized_keys"),
        format!("{}\n", key.public_line),
    )
    .expect("key");
    for path in [home.clone(), ssh.clone(), ssh.join("authorized_keys")] {
        std::os::unix::fs::chown(&path, Some(64999), Some(64999)).expect("chown");
    }
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let _agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "agent up", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    let mut session = w
        .sshd()
        .ssh(&name, &key.private, &["sleep", "8"])
        .spawn()
        .expect("ssh");
    wait_until(Duration::from_secs(20), "session_opened", || {
        count(&events_for(&w.server, &name), "session_opened") == 1
    });
    let opened = events_for(&w.server, &name).remove(0);
    assert_eq!(opened["key_id"], Value::Null, "a hand-added key: {opened}");
    let _ = session.kill();
    let _ = session.wait();
}

/// Issue 17, finding 8: during an outage, with the outbox capped at 100 events, one user
/// logs in 80 times (160 events); another user's login and logout, from before, are not
/// pushed out, and the number dropped is said in the log.
#[test]
fn one_users_logins_during_an_outage_do_not_push_out_another_users_events() {
    if !journal_available() {
        return;
    }
    let w = world("pictor-s8", "journal");
    let config = std::fs::read_to_string(&w.sandbox.config).expect("config");
    let config = config.replacen("[sessions]\n", "[sessions]\noutbox_max_events = 100\n", 1);
    std::fs::write(&w.sandbox.config, config).expect("config");
    let bob_key = KeyPair::generate(w.sandbox.dir.path(), "bob");
    user_with_hand_added_key("pictor-s8b", &bob_key);
    let _agent = w.sandbox.start_agent();
    wait_until(Duration::from_secs(5), "key written", || {
        w.sandbox
            .keys_text()
            .contains(&w.key("key_account").canonical())
    });
    w.server
        .cp
        .set_fault(Fault::ServerError { status: 503 }, None);
    assert!(
        w.sshd().login("pictor-s8b", &bob_key.private),
        "bob logs in"
    );
    assert_eq!(log_in_times(&w, 80), 0, "every login worked");
    w.sandbox.wait_for_log("session events dropped");
    w.server.cp.clear_fault();
    wait_until(
        Duration::from_secs(20),
        "bob's login and logout arrived",
        || {
            let bob = events_for(&w.server, "pictor-s8b");
            count(&bob, "session_opened") == 1 && count(&bob, "session_closed") == 1
        },
    );
    // (`last_error` carries the count only until a status with it is accepted; its
    // wording is unit-tested in heartbeat.rs.)
    let mallory = events_for(&w.server, w.user());
    assert!(
        mallory.len() < 160,
        "the busiest user paid for the overflow: {} events kept",
        mallory.len()
    );
}
