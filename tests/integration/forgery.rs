//! Forged log lines, as an ordinary local user writes them (`logger`, `systemd-cat`),
//! against the real sshd, journald, rsyslog and the agent with `terminate_on_revoke`:
//! no forged line opens, closes or ends a session, and the real session of a deleted key
//! still ends.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use testkit::procs::{alive, child_of, monitor_of};
use testkit::*;

fn opened(server: &Server, user: &str) -> Vec<Value> {
    events_for(server, user)
        .into_iter()
        .filter(|e| e["type"] == "session_opened")
        .collect()
}

/// The attacker and the victim on one sshd: the attacker is the managed user, with a
/// hand-added key and account keys `key_a` and `key_b`; the victim, not managed, logs
/// in with a hand-added key only (`hand:VICTIM`).
struct Scene {
    world: World,
    mallory: &'static str,
    victim: &'static str,
}

impl std::ops::Deref for Scene {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for Scene {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Scene {
    fn victim_key(&self) -> &KeyPair {
        self.key(&format!("hand:{}", self.victim))
    }
}

/// The scene, with sshd's lines read from `source` (`journal`, or a file's name in the
/// sandbox).
fn scene(mallory: &'static str, victim: &'static str, source: &str) -> Scene {
    let builder = World::builder()
        .user(mallory)
        .hand_added_key()
        .account_keys(&["key_a", "key_b"])
        .other_user(victim)
        .sshd();
    let world = match source {
        "journal" => builder.sessions_from_journal(),
        file => builder.sessions_from_file(file),
    }
    .build();
    Scene {
        world,
        mallory,
        victim,
    }
}

/// Every forgery of the issue, then the deletions: none of the forgeries has any effect,
/// and deleting the key that really opened a session ends it (and only it).
fn forgeries_have_no_effect(s: &mut Scene, file_mode: bool) {
    let _agent = s.sandbox.start_agent();
    wait_until(Duration::from_secs(10), "keys written", || {
        let text = s.sandbox.keys_text();
        text.contains(&s.key("key_a").canonical()) && text.contains(&s.key("key_b").canonical())
    });
    // The victim's session (hand-added key) and the attacker's own, with key A.
    let victim_session = s
        .sshd()
        .ssh(s.victim, &s.victim_key().private, &["sleep", "2001"])
        .spawn()
        .expect("ssh");
    s.sessions.push(victim_session);
    let own = s
        .sshd()
        .ssh(s.mallory, &s.key("key_a").private, &["sleep", "2002"])
        .spawn()
        .expect("ssh");
    s.sessions.push(own);
    wait_until(
        Duration::from_secs(20),
        "the real session is reported",
        || opened(&s.server, s.mallory).len() == 1,
    );
    let real = opened(&s.server, s.mallory).remove(0);
    assert_eq!(real["key_id"], "key_a");
    let port = real["source_port"].as_u64().expect("port");
    // The login is logged before sshd forks the user's child and sets its title.
    wait_until(
        Duration::from_secs(10),
        "both monitors and the attacker's child titled",
        || {
            monitor_of(s.victim).is_some()
                && monitor_of(s.mallory).is_some()
                && child_of(s.mallory).is_some()
        },
    );
    let victim_monitor = monitor_of(s.victim).expect("victim's monitor");
    let own_monitor = monitor_of(s.mallory).expect("own monitor");
    let own_child = child_of(s.mallory).expect("own child");
    let listener = s.sshd().pid();
    let fp_b = s.key("key_b").fingerprint();
    let me = s.mallory;

    // 1. The victim's monitor, claimed as a login of the attacker with key B.
    // 2. The listener, the same (and pid 1).
    // 3. The attacker's own real session, claimed as opened with key B.
    // 4. A disconnect of the attacker's real session.
    // 5. The same through systemd-cat, and under the sshd-session name.
    // 6. A sudo line whose command text holds an sshd tag and a login of the victim.
    // 7. The closes and the first-method line later OpenSSH releases write: timeouts
    //    (7.7+ and 7.4-7.6), an unused connection, a read error, `Partial` naming key B
    //    for the attacker's own and the victim's connection, and a login line with a
    //    byte that is not UTF-8.
    let accepted = |port: u64| {
        format!("Accepted publickey for {me} from 127.0.0.1 port {port} ssh2: ED25519 {fp_b}")
    };
    for command in [
        format!("logger -t sshd --id={victim_monitor} '{}'", accepted(1)),
        format!("logger -t sshd --id={listener} '{}'", accepted(2)),
        format!("logger -t sshd --id=1 '{}'", accepted(6)),
        format!("logger -t sshd --id={own_monitor} '{}'", accepted(port)),
        format!("logger -t sshd --id={own_child} 'Disconnected from user {me} 127.0.0.1 port {port}'"),
        format!("logger -t sshd --id={own_monitor} 'pam_unix(sshd:session): session closed for user {me}'"),
        format!("echo '{}' | systemd-cat -t sshd", accepted(3)),
        format!("logger -t sshd-session --id={victim_monitor} '{}'", accepted(4)),
        format!("logger -t sshd --id={own_child} 'Timeout, client not responding from user {me} 127.0.0.1 port {port}'"),
        format!("logger -t sshd --id={own_child} 'Timeout, client not responding.'"),
        format!("logger -t sshd --id={own_monitor} 'Timeout, client not responding.'"),
        format!("logger -t sshd --id={own_child} 'terminating inactive connection from user {me} 127.0.0.1 port {port}'"),
        format!("logger -t sshd --id={own_child} 'Read error from remote host 127.0.0.1 port {port}: Connection timed out'"),
        format!("logger -t sshd --id={own_monitor} 'Partial publickey for {me} from 127.0.0.1 port {port} ssh2: ED25519 {fp_b}'"),
        format!("logger -t sshd --id={victim_monitor} 'Partial publickey for {me} from 127.0.0.1 port 7 ssh2: ED25519 {fp_b}'"),
        format!("printf '%s\\377\\n' '{}' | logger -t sshd --id={victim_monitor}", accepted(8)),
        format!(
            "logger -t sudo '  {me} : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/echo \
             sshd[{victim_monitor}]: Accepted publickey for {victim} from 127.0.0.1 port 5 \
             ssh2: ED25519 {fp_b}'",
            victim = s.victim
        ),
    ] {
        as_user(me, &command);
    }
    // A real login afterwards: once the agent has reported it, it has read past every
    // forged line (the log is read in order).
    let barrier = s
        .sshd()
        .ssh(s.mallory, &s.key("key_a").private, &["sleep", "2"])
        .output()
        .expect("ssh");
    assert!(barrier.status.success());
    wait_until(
        Duration::from_secs(20),
        "the barrier login is reported",
        || opened(&s.server, s.mallory).len() >= 2,
    );
    std::thread::sleep(Duration::from_millis(500));

    let events = opened(&s.server, s.mallory);
    assert_eq!(events.len(), 2, "only the two real logins: {events:#?}");
    assert!(events.iter().all(|e| e["key_id"] == "key_a"), "{events:#?}");
    let about_victim = events_for(&s.server, s.victim);
    assert!(
        about_victim.len() == 1
            && about_victim[0]["type"] == "session_opened"
            && about_victim[0]["key_id"].is_null(),
        "only the victim's real login, with no account key: {about_victim:#?}"
    );
    let closes: Vec<Value> = events_for(&s.server, s.mallory)
        .into_iter()
        .filter(|e| e["type"] != "session_opened" && e["session_id"] == real["session_id"])
        .collect();
    assert!(
        closes.is_empty(),
        "the forged disconnect closed nothing: {closes:#?}"
    );
    wait_until(
        Duration::from_secs(15),
        "the real session still active",
        || {
            active_for(&s.server, s.mallory)
                .iter()
                .any(|a| a["session_id"] == real["session_id"])
        },
    );
    if file_mode {
        // In a syslog file the forged login for the attacker's own connection cannot be
        // told from the real one: the session is contested, its key unknown.
        s.sandbox
            .wait_for_log("two different logins were logged for one sshd connection");
    }
    let contested: Vec<String> = s
        .sandbox
        .log()
        .lines()
        .filter(|l| l.contains("two different logins"))
        .map(str::to_owned)
        .collect();
    assert!(
        contested.iter().all(|l| !l.contains(s.victim)),
        "the victim's session was never touched: {contested:#?}"
    );

    // Deleting key B (claimed by every forgery) ends nothing, but in file mode the
    // attacker's own contested session: any key claimed for it counts (fail closed).
    s.server.cp.delete_key("key_b");
    wait_until(Duration::from_secs(10), "key B removed", || {
        !s.sandbox.keys_text().contains(&s.key("key_b").canonical())
    });
    if file_mode {
        wait_until(
            Duration::from_secs(10),
            "the contested session ended with a key claimed for it",
            || !alive(own_monitor),
        );
        // Its termination is reported contested, naming no key.
        let terminated = || {
            events_for(&s.server, s.mallory).into_iter().find(|e| {
                e["type"] == "session_terminated" && e["session_id"] == real["session_id"]
            })
        };
        wait_until(
            Duration::from_secs(10),
            "the contested session's termination reported",
            || terminated().is_some(),
        );
        let event = terminated().unwrap_or_default();
        assert!(
            event["contested"] == true
                && event["key_id"].is_null()
                && event["fingerprint"].is_null(),
            "{event:#}"
        );
    } else {
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            alive(own_monitor),
            "the attacker's real session (key A) survives"
        );
    }
    assert!(alive(victim_monitor), "the victim's session survives");
    assert!(alive(listener), "the listener survives");
    assert!(
        s.sshd().login(s.victim, &s.victim_key().private),
        "logins still work"
    );

    // Deleting key A, which really opened the attacker's session, ends it (journal; in
    // file mode it ended with key B already).
    s.server.cp.delete_key("key_a");
    if !file_mode {
        wait_until(
            Duration::from_secs(10),
            "the real session of key A ended",
            || !alive(own_monitor),
        );
        wait_until(
            Duration::from_secs(10),
            "session_terminated reported",
            || {
                events_for(&s.server, s.mallory).iter().any(|e| {
                    e["type"] == "session_terminated" && e["session_id"] == real["session_id"]
                })
            },
        );
    }
    assert!(alive(victim_monitor), "the victim's session survives");
    assert!(alive(listener), "the listener survives");
    assert!(
        s.sshd().login(s.victim, &s.victim_key().private),
        "logins still work"
    );
}

#[test]
fn journal_forged_logins_and_disconnects_from_a_local_user_have_no_effect() {
    if !journal_available() {
        return;
    }
    let mut s = scene("pictor-f1", "pictor-f1v", "journal");
    forgeries_have_no_effect(&mut s, false);
}

#[test]
fn file_mode_forged_lines_have_no_effect_and_a_contested_session_ends_with_any_key_claimed() {
    if !journal_available() {
        return;
    }
    let mut s = scene("pictor-f2", "pictor-f2v", "auth.log");
    let log = s.sandbox.dir.path().join("auth.log");
    let Some(_rsyslog) = Rsyslog::start(s.sandbox.dir.path(), &log) else {
        return;
    };
    forgeries_have_no_effect(&mut s, true);
}

/// Issue 17, finding 4: in file mode, another user writes a login line for the victim's
/// connection naming a key of theirs. The victim's session is contested: it stays in
/// `active_sessions` (contested, with both keys claimed) and still ends when the
/// victim's own key is deleted.
#[test]
fn file_mode_a_forged_line_neither_hides_a_session_nor_keeps_it_past_its_keys_deletion() {
    if !journal_available() {
        return;
    }
    let s = scene("pictor-f4", "pictor-f4v", "auth.log");
    let log = s.sandbox.dir.path().join("auth.log");
    let Some(_rsyslog) = Rsyslog::start(s.sandbox.dir.path(), &log) else {
        return;
    };
    // The victim is managed too, and logs in with an account key of their own.
    let config = std::fs::read_to_string(&s.sandbox.config).expect("config");
    std::fs::write(
        &s.sandbox.config,
        format!("{config}\n[[users]]\nname = {:?}\n", s.victim),
    )
    .expect("config");
    let own_key = KeyPair::generate(s.sandbox.dir.path(), "victims-own");
    s.server.cp.add_key(own_key.new_key("key_v"));
    let _agent = s.sandbox.start_agent();
    let victim_file = nix::unistd::User::from_name(s.victim)
        .expect("lookup")
        .expect("victim")
        .dir
        .join(".ssh/authorized_keys");
    wait_until(Duration::from_secs(10), "the victim's key written", || {
        std::fs::read_to_string(&victim_file).is_ok_and(|t| t.contains(&own_key.canonical()))
    });
    let mut session = s
        .sshd()
        .ssh(s.victim, &own_key.private, &["sleep", "2101"])
        .spawn()
        .expect("ssh");
    wait_until(
        Duration::from_secs(20),
        "the victim's login reported",
        || {
            opened(&s.server, s.victim)
                .iter()
                .any(|e| e["key_id"] == "key_v")
        },
    );
    let real = opened(&s.server, s.victim).remove(0);
    let port = real["source_port"].as_u64().expect("port");
    let victim_monitor = monitor_of(s.victim).expect("victim's monitor");
    let forged = format!(
        "Accepted publickey for {} from 127.0.0.1 port {port} ssh2: ED25519 {}",
        s.victim,
        s.key("key_b").fingerprint()
    );
    as_user(
        s.mallory,
        &format!("logger -t sshd --id={victim_monitor} '{forged}'"),
    );
    s.sandbox
        .wait_for_log("two different logins were logged for one sshd connection");
    wait_until(
        Duration::from_secs(15),
        "the victim's session still reported, contested, with both keys claimed",
        || {
            active_for(&s.server, s.victim).iter().any(|a| {
                a["session_id"] == real["session_id"]
                    && a["contested"] == true
                    && a["key_id"].is_null()
                    && a["claimed_key_ids"] == serde_json::json!(["key_b", "key_v"])
            })
        },
    );
    s.server.cp.delete_key("key_v");
    wait_until(
        Duration::from_secs(10),
        "the victim's session ended with its own key",
        || !alive(victim_monitor),
    );
    wait_until(
        Duration::from_secs(10),
        "session_terminated reported",
        || {
            events_for(&s.server, s.victim)
                .iter()
                .any(|e| e["type"] == "session_terminated" && e["session_id"] == real["session_id"])
        },
    );
    let _ = session.kill();
    let _ = session.wait();
}

/// A file-mode session without forgeries, in a zone west of UTC with traditional
/// (RFC 3164, local time, no year) stamps: tracked, and ended when its key is deleted.
#[test]
fn file_mode_with_traditional_stamps_west_of_utc_tracks_and_ends_a_session() {
    if !journal_available() {
        return;
    }
    let mut s = scene("pictor-f3", "pictor-f3v", "secure");
    let log = s.sandbox.dir.path().join("secure");
    let Some(_rsyslog) = Rsyslog::start_traditional(s.sandbox.dir.path(), &log, "America/New_York")
    else {
        return;
    };
    // The agent runs in a mount namespace of its own where /etc/localtime is New York's.
    let zone = s.sandbox.dir.path().join("localtime");
    std::fs::copy("/usr/share/zoneinfo/America/New_York", &zone).expect("zoneinfo");
    let _agent = s.sandbox.start_agent_with(|command| {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        let mut wrapped = Command::new("unshare");
        wrapped
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /etc/localtime && exec \"$0\" \"$@\"",
                zone.display()
            ))
            .arg(program)
            .args(args);
        for (key, value) in command.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        *command = wrapped;
    });
    wait_until(Duration::from_secs(10), "keys written", || {
        s.sandbox.keys_text().contains(&s.key("key_a").canonical())
    });
    let session = s
        .sshd()
        .ssh(s.mallory, &s.key("key_a").private, &["sleep", "2003"])
        .spawn()
        .expect("ssh");
    s.sessions.push(session);
    wait_until(Duration::from_secs(20), "the session is reported", || {
        opened(&s.server, s.mallory).len() == 1
    });
    let real = opened(&s.server, s.mallory).remove(0);
    assert_eq!(real["key_id"], "key_a");
    // The local stamp was read in New York's zone: the login's time is now, not 5 h off.
    let at = time::OffsetDateTime::parse(
        real["at"].as_str().expect("at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    let off = (time::OffsetDateTime::now_utc() - at).abs();
    assert!(
        off < time::Duration::minutes(2),
        "login logged {off} from now"
    );
    let monitor = monitor_of(s.mallory).expect("monitor");
    // Well past the old 5 s liveness check that closed such sessions.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        active_for(&s.server, s.mallory)
            .iter()
            .any(|a| a["session_id"] == real["session_id"]),
        "still active"
    );
    s.server.cp.delete_key("key_a");
    wait_until(Duration::from_secs(10), "the session ended", || {
        !alive(monitor)
    });
    wait_until(
        Duration::from_secs(10),
        "session_terminated reported",
        || {
            events_for(&s.server, s.mallory)
                .iter()
                .any(|e| e["type"] == "session_terminated")
        },
    );
}
