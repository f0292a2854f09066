//! The revocation rules without root, sshd, journald or a clock: sessions and key sets
//! built by hand, the host's facts from a table, time as values (and tokio's paused
//! clock where the shell's waiting is simulated).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use time::macros::datetime;

use super::*;
use crate::sessions::parse::{parse_message, Record};
use crate::sessions::track::{Closing, Lookups, Seen, Tracker};
use crate::sessions::Claim;

const NOW: OffsetDateTime = datetime!(2026-12-07 03:00 UTC);
const RATE: TickRate = TickRate::USUAL;
const FP_A: &str = "SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaA";
const FP_B: &str = "SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbA";
const FP_HAND: &str = "SHA256:hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhA";
const ON: Policy = Policy {
    terminate_on_revoke: true,
};

fn key(id: &str, fingerprint: &str) -> AccountKey {
    AccountKey {
        id: id.to_owned(),
        name: id.to_owned(),
        public_key: format!("ssh-ed25519 {id}"),
        fingerprint: fingerprint.to_owned(),
        expires_at: None,
        users: None,
    }
}

fn set(keys: &[AccountKey]) -> KeySet {
    KeySet {
        version: "v".to_owned(),
        keys: keys.to_vec(),
        rejected: Vec::new(),
    }
}

/// A session of `user` opened with the key of `fingerprint` (account key `key_id`).
fn session(pid: u32, user: &str, key_id: Option<&str>, fingerprint: Option<&str>) -> Session {
    Session {
        session_id: format!("boot:{pid}"),
        monitor_pid: pid,
        child_pid: None,
        user: user.to_owned(),
        auth_method: if fingerprint.is_some() {
            "publickey"
        } else {
            "password"
        }
        .to_owned(),
        key_id: key_id.map(str::to_owned),
        fingerprint: fingerprint.map(str::to_owned),
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        source_port: 50_000,
        since: NOW - time::Duration::minutes(5),
        process_start: Some(BootTicks::new(1_000)),
        proof: Proof::Kernel,
        contested: false,
        claims: fingerprint
            .map(|fp| Claim {
                fingerprint: fp.to_owned(),
                key_id: key_id.map(str::to_owned),
            })
            .into_iter()
            .collect(),
        seen_at: BootTicks::new(1_000),
    }
}

/// The host as a table: which sessions are held, the users, which monitors have the
/// user's child.
#[derive(Default)]
struct Host {
    not_held: Vec<String>,
    uids: HashMap<String, u32>,
    with_child: Vec<String>,
}

impl Host {
    fn with_users() -> Host {
        let mut host = Host::default();
        host.uids.insert("alice".to_owned(), 1000);
        host.uids.insert("bob".to_owned(), 1001);
        host
    }
}

impl Host {
    /// The users, and the user's child under the monitor of `session_id` (file mode).
    fn with_child_of(session_id: &str) -> Host {
        let mut host = Host::with_users();
        host.with_child.push(session_id.to_owned());
        host
    }
}

impl HostFacts for Host {
    fn held(&self, session: &Session) -> bool {
        !self.not_held.contains(&session.session_id)
    }
    fn uid(&self, user: &str) -> Option<u32> {
        self.uids.get(user).copied()
    }
    fn has_user_child(&self, session: &Session, _uid: u32) -> bool {
        self.with_child.contains(&session.session_id)
    }
}

fn verdicts(review: &Review) -> Vec<(&str, Verdict)> {
    review
        .verdicts
        .iter()
        .map(|(s, v)| (s.session_id.as_str(), v.clone()))
        .collect()
}

#[test]
fn only_the_sessions_of_keys_no_longer_in_force_are_ended() {
    let open = [
        session(1, "alice", Some("key_a"), Some(FP_A)),
        session(2, "alice", Some("key_b"), Some(FP_B)),
        // Keys the agent never managed: added by hand, a password.
        session(3, "alice", None, Some(FP_HAND)),
        session(4, "alice", None, None),
    ];
    let keys = set(&[key("key_a", FP_A)]);
    let at = BootTicks::new(10_000);
    let review = review(ON, &open, &keys, NOW, at, RATE, &Host::with_users());
    assert_eq!(verdicts(&review), [("boot:2", Verdict::End { uid: 1000 })]);
    assert_eq!(review.look_again, None);
    // Nothing lost its key: nothing to do.
    let all = set(&[key("key_a", FP_A), key("key_b", FP_B)]);
    assert!(
        super::review(ON, &open, &all, NOW, at, RATE, &Host::with_users())
            .verdicts
            .is_empty()
    );
}

#[test]
fn an_expired_key_or_one_no_longer_granted_to_the_user_is_revoked_too() {
    let open = [
        session(1, "alice", Some("key_a"), Some(FP_A)),
        session(2, "bob", Some("key_b"), Some(FP_B)),
    ];
    let mut expired = key("key_a", FP_A);
    expired.expires_at = Some(NOW - time::Duration::seconds(1));
    let mut alice_only = key("key_b", FP_B);
    alice_only.users = Some(vec!["alice".to_owned()]);
    let keys = set(&[expired, alice_only]);
    let review = review(
        ON,
        &open,
        &keys,
        NOW,
        BootTicks::new(10_000),
        RATE,
        &Host::with_users(),
    );
    assert_eq!(
        verdicts(&review),
        [
            ("boot:1", Verdict::End { uid: 1000 }),
            ("boot:2", Verdict::End { uid: 1001 })
        ]
    );
}

#[test]
fn with_terminate_on_revoke_off_no_session_is_ended() {
    let open = [session(1, "alice", Some("key_a"), Some(FP_A))];
    let off = Policy {
        terminate_on_revoke: false,
    };
    let review = review(
        off,
        &open,
        &set(&[]),
        NOW,
        BootTicks::new(10_000),
        RATE,
        &Host::with_users(),
    );
    assert_eq!(review, Review::default());
}

#[test]
fn an_unproven_session_or_one_of_an_unknown_user_is_left_with_its_reason() {
    let open = [
        session(1, "alice", Some("key_a"), Some(FP_A)),
        session(2, "carol", Some("key_a"), Some(FP_A)),
    ];
    let mut host = Host::with_users();
    host.not_held.push("boot:1".to_owned());
    let review = review(
        ON,
        &open,
        &set(&[]),
        NOW,
        BootTicks::new(10_000),
        RATE,
        &host,
    );
    assert_eq!(
        verdicts(&review),
        [
            ("boot:1", Verdict::Skip(Skip::NotHeld)),
            ("boot:2", Verdict::Skip(Skip::UnknownUser))
        ]
    );
}

#[test]
fn a_file_mode_session_waits_to_settle_then_needs_the_users_child() {
    let mut young = session(1, "alice", Some("key_a"), Some(FP_A));
    young.proof = Proof::LogText;
    young.seen_at = BootTicks::new(10_000);
    let mut old = young.clone();
    old.session_id = "boot:2".to_owned();
    old.monitor_pid = 2;
    old.seen_at = BootTicks::new(9_000);
    let mut childless = old.clone();
    childless.session_id = "boot:3".to_owned();
    childless.monitor_pid = 3;
    let mut host = Host::with_users();
    host.with_child = vec!["boot:1".to_owned(), "boot:2".to_owned()];
    let now = BootTicks::new(10_050); // half a second after the young one was read
    let review = review(
        ON,
        &[young, old, childless],
        &set(&[]),
        NOW,
        now,
        RATE,
        &host,
    );
    let settled = BootTicks::new(10_101);
    assert_eq!(
        verdicts(&review),
        [
            ("boot:1", Verdict::Wait { at: settled }),
            ("boot:2", Verdict::End { uid: 1000 }),
            ("boot:3", Verdict::Skip(Skip::LoginNotProven)),
        ]
    );
    assert_eq!(review.look_again, Some(settled));
}

#[test]
fn a_journal_session_is_ended_at_once_without_asking_for_the_users_child() {
    let mut fresh = session(1, "alice", Some("key_a"), Some(FP_A));
    fresh.seen_at = BootTicks::new(10_000);
    // No child known: the journal proved the login, which is enough.
    let review = review(
        ON,
        &[fresh],
        &set(&[]),
        NOW,
        BootTicks::new(10_000),
        RATE,
        &Host::with_users(),
    );
    assert_eq!(verdicts(&review), [("boot:1", Verdict::End { uid: 1000 })]);
}

/// The tracker as the file source feeds it: `lines` (pid, message) of one connection
/// whose monitor started at 1,000 ticks, each read at 10,000.
fn tracked(lines: &[(u32, String)], keys: &KeySet) -> Tracker {
    let mut tracker = Tracker::new("boot", Vec::new(), Closing::ProcessExit);
    let revoked = RecentlyRevoked::default();
    for (pid, text) in lines {
        let record = Record {
            at: Some(NOW),
            pid: *pid,
            message: text,
        };
        let message = parse_message(text).expect("an sshd message");
        assert!(matches!(
            line_use(&message, Proof::LogText),
            LineUse::Login { .. }
        ));
        let key_id = |user: &str, fp: &str| {
            key_for_login(
                Some(keys),
                &revoked,
                user,
                fp,
                NOW,
                Some(BootTicks::new(1_000)),
            )
        };
        let start = |_| Some(BootTicks::new(1_000));
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &start,
        };
        let seen = Seen {
            proof: Proof::LogText,
            at: BootTicks::new(10_000),
        };
        tracker.observe(&record, message, NOW, seen, &lookups);
    }
    tracker
}

fn accepted(user: &str, port: u16, fingerprint: &str) -> String {
    format!("Accepted publickey for {user} from 127.0.0.1 port {port} ssh2: ED25519 {fingerprint}")
}

#[test]
fn a_forged_second_login_makes_a_session_end_with_any_key_claimed_for_it() {
    // forgery.rs, file mode: the attacker's own real session (key A) and a forged line
    // claiming it was opened with key B. Which is true cannot be known: deleting either
    // ends it.
    let keys = set(&[key("key_a", FP_A), key("key_b", FP_B)]);
    let tracker = tracked(
        &[
            (700, accepted("alice", 50_000, FP_A)),
            (700, accepted("alice", 50_000, FP_B)),
        ],
        &keys,
    );
    let open = tracker.open_sessions();
    assert!(open[0].contested);
    let host = Host::with_child_of("boot:700");
    let later = BootTicks::new(20_000);
    for remaining in [key("key_a", FP_A), key("key_b", FP_B)] {
        let review = review(ON, open, &set(&[remaining]), NOW, later, RATE, &host);
        assert_eq!(
            verdicts(&review),
            [("boot:700", Verdict::End { uid: 1000 })]
        );
    }
    // Both keys in force: it runs on.
    assert!(super::review(ON, open, &keys, NOW, later, RATE, &host)
        .verdicts
        .is_empty());
}

#[test]
fn a_forged_login_naming_a_key_that_is_no_account_key_changes_nothing() {
    // forgery.rs: a forged line naming a key the account never had (or a hand-added one)
    // contests the session but gives no reason to end it while its own key stays.
    let keys = set(&[key("key_a", FP_A)]);
    let tracker = tracked(
        &[
            (700, accepted("alice", 50_000, FP_A)),
            (700, accepted("alice", 50_000, FP_HAND)),
        ],
        &keys,
    );
    let open = tracker.open_sessions();
    assert!(open[0].contested);
    let host = Host::with_child_of("boot:700");
    let later = BootTicks::new(20_000);
    assert!(super::review(ON, open, &keys, NOW, later, RATE, &host)
        .verdicts
        .is_empty());
    // Its real key deleted: ended.
    let review = review(ON, open, &set(&[]), NOW, later, RATE, &host);
    assert_eq!(
        verdicts(&review),
        [("boot:700", Verdict::End { uid: 1000 })]
    );
}

#[test]
fn a_victims_session_with_no_account_key_is_never_ended_whatever_is_forged() {
    // forgery.rs: the victim logs in with a hand-added key; forged lines claim account
    // key B for the victim's connection. Deleting B must not end it.
    let tracker = tracked(
        &[
            (800, accepted("bob", 50_001, FP_HAND)),
            (800, accepted("bob", 50_001, FP_HAND)),
        ],
        &set(&[key("key_b", FP_B)]),
    );
    let open = tracker.open_sessions();
    assert!(!open[0].contested, "the same claim twice is no contest");
    let review = review(
        ON,
        open,
        &set(&[]),
        NOW,
        BootTicks::new(20_000),
        RATE,
        &Host::with_users(),
    );
    assert!(review.verdicts.is_empty());
}

#[test]
fn only_a_kernel_proven_partial_line_is_used_and_closing_lines_never_are() {
    let partial = format!("Partial publickey for alice from 127.0.0.1 port 7 ssh2: ED25519 {FP_B}");
    let partial = parse_message(&partial).expect("partial");
    assert_eq!(line_use(&partial, Proof::Kernel), LineUse::FirstMethod);
    assert_eq!(line_use(&partial, Proof::LogText), LineUse::Ignore);
    let login = accepted("alice", 7, FP_A);
    let login = parse_message(&login).expect("accepted");
    for proof in [Proof::Kernel, Proof::LogText] {
        assert_eq!(line_use(&login, proof), LineUse::Login { user: "alice" });
    }
    for closing in [
        "Disconnected from user alice 127.0.0.1 port 7",
        "Timeout, client not responding.",
        "pam_unix(sshd:session): session closed for user alice",
        "Read error from remote host 127.0.0.1 port 7: Connection timed out",
        "User child is on pid 4242",
    ] {
        let message = parse_message(closing).expect(closing);
        for proof in [Proof::Kernel, Proof::LogText] {
            assert_eq!(line_use(&message, proof), LineUse::Ignore, "{closing}");
        }
    }
}

#[test]
fn a_login_whose_process_is_gone_is_a_past_session_only_on_the_kernels_word() {
    let gone = [
        Refusal::NoProcess(42),
        Refusal::Exiting(42),
        Refusal::StartedAfter { pid: 42 },
    ];
    for refusal in &gone {
        assert_eq!(unproven(refusal, Proof::Kernel), Unproven::OpenedAndGone);
        // A file's line naming a dead pid proves nothing.
        assert_eq!(unproven(refusal, Proof::LogText), Unproven::NotBelieved);
    }
    let pidfd = Refusal::Pidfd {
        pid: 42,
        error: "ENOSYS".to_owned(),
    };
    for proof in [Proof::Kernel, Proof::LogText] {
        assert_eq!(unproven(&pidfd, proof), Unproven::HostCannotHold);
    }
    // The forgeries: a record not sent by root's sshd, the listener or another user's
    // monitor named, the user's own process calling itself sshd.
    let forged = [
        Refusal::NotRootSshd {
            uid: Some(1000),
            comm: Some("logger".to_owned()),
            exe: Some("/usr/bin/logger".to_owned()),
        },
        Refusal::NotTheUsersMonitor {
            pid: 1,
            user: "alice".to_owned(),
            title: "sshd: /usr/sbin/sshd -D [listener]".to_owned(),
        },
        Refusal::NotSshd {
            pid: 5,
            comm: "bash".to_owned(),
            uid: 1000,
            euid: 1000,
        },
        Refusal::EndedDuringCheck(6),
    ];
    for refusal in &forged {
        for proof in [Proof::Kernel, Proof::LogText] {
            assert_eq!(unproven(refusal, proof), Unproven::NotBelieved, "{refusal}");
        }
    }
}

#[test]
fn a_login_read_late_is_tied_to_a_key_revoked_after_its_process_started() {
    let mut revoked = RecentlyRevoked::default();
    let a = key("key_a", FP_A);
    revoked.update(
        Some(&set(std::slice::from_ref(&a))),
        NOW,
        BootTicks::new(5_000),
    );
    revoked.update(Some(&set(&[])), NOW, BootTicks::new(6_000));
    let started_before = Some(BootTicks::new(5_500));
    let started_after = Some(BootTicks::new(6_500));
    assert_eq!(
        key_for_login(None, &revoked, "alice", FP_A, NOW, started_before).as_deref(),
        Some("key_a")
    );
    // Started after the key left the files: that key cannot have opened it.
    assert_eq!(
        key_for_login(None, &revoked, "alice", FP_A, NOW, started_after),
        None
    );
    // A past session, its process gone: any key revoked lately.
    assert_eq!(
        key_for_login(None, &revoked, "alice", FP_A, NOW, None).as_deref(),
        Some("key_a")
    );
    // A key in force wins, and another fingerprint is nobody's.
    let b = set(&[key("key_b", FP_B)]);
    assert_eq!(
        key_for_login(Some(&b), &revoked, "alice", FP_B, NOW, started_after).as_deref(),
        Some("key_b")
    );
    assert_eq!(
        key_for_login(Some(&b), &revoked, "alice", FP_HAND, NOW, None),
        None
    );
}

#[test]
fn a_revoked_key_is_forgotten_after_ten_minutes_or_when_it_comes_back() {
    let a = key("key_a", FP_A);
    let mut revoked = RecentlyRevoked::default();
    revoked.update(Some(&set(std::slice::from_ref(&a))), NOW, BootTicks::new(1));
    revoked.update(Some(&set(&[])), NOW, BootTicks::new(2));
    assert!(revoked.key_id("alice", FP_A, BootTicks::new(0)).is_some());
    // No set known: nothing changes.
    revoked.update(None, NOW + time::Duration::hours(1), BootTicks::new(3));
    assert!(revoked.key_id("alice", FP_A, BootTicks::new(0)).is_some());
    let later = NOW + RecentlyRevoked::KEEP;
    revoked.update(Some(&set(&[])), later, BootTicks::new(4));
    assert_eq!(revoked.key_id("alice", FP_A, BootTicks::new(0)), None);
    // Back in the set: not revoked.
    let mut back = RecentlyRevoked::default();
    back.update(Some(&set(std::slice::from_ref(&a))), NOW, BootTicks::new(1));
    back.update(Some(&set(&[])), NOW, BootTicks::new(2));
    back.update(Some(&set(std::slice::from_ref(&a))), NOW, BootTicks::new(3));
    assert_eq!(back.key_id("alice", FP_A, BootTicks::new(0)), None);
    // Taken away from one user: revoked for that user's sessions.
    let mut narrowed = RecentlyRevoked::default();
    narrowed.update(Some(&set(std::slice::from_ref(&a))), NOW, BootTicks::new(1));
    let mut bob_only = a.clone();
    bob_only.users = Some(vec!["bob".to_owned()]);
    narrowed.update(Some(&set(&[bob_only])), NOW, BootTicks::new(2));
    assert_eq!(
        narrowed.key_id("alice", FP_A, BootTicks::new(0)).as_deref(),
        Some("key_a")
    );
    // An expired key leaves the set too.
    let mut expiring = a;
    expiring.expires_at = Some(NOW + time::Duration::seconds(30));
    let mut timed = RecentlyRevoked::default();
    timed.update(Some(&set(&[expiring.clone()])), NOW, BootTicks::new(1));
    let after = NOW + time::Duration::minutes(1);
    timed.update(Some(&set(&[expiring])), after, BootTicks::new(2));
    assert_eq!(
        timed.key_id("alice", FP_A, BootTicks::new(0)).as_deref(),
        Some("key_a")
    );
}

#[test]
fn an_attempt_is_reported_left_to_the_waiter_or_tried_again_a_second_later() {
    let now = BootTicks::new(7_000);
    assert_eq!(
        aftermath(
            Attempt::Ended {
                proven_complete: false
            },
            now,
            RATE
        ),
        Aftermath::Terminated {
            proven_complete: false
        }
    );
    assert_eq!(
        aftermath(Attempt::AlreadyGone, now, RATE),
        Aftermath::ClosedByItself
    );
    assert_eq!(
        aftermath(Attempt::Failed, now, RATE),
        Aftermath::RetryAt(BootTicks::new(7_100))
    );
    assert_eq!(soonest(None, now), now);
    assert_eq!(
        soonest(Some(BootTicks::new(6_000)), now),
        BootTicks::new(6_000)
    );
}

#[test]
fn only_a_new_session_of_an_account_key_calls_for_a_review() {
    let s = session(1, "alice", Some("key_a"), Some(FP_A));
    let hand = session(2, "alice", None, Some(FP_HAND));
    assert!(review_after(&[s.event(EventKind::SessionOpened, NOW)]));
    assert!(!review_after(&[hand.event(EventKind::SessionOpened, NOW)]));
    assert!(!review_after(&[s.event(EventKind::SessionClosed, NOW)]));
    assert!(!review_after(&[]));
}

#[test]
fn a_restart_keeps_a_files_position_only_in_the_same_boot() {
    let file = Some(Position::File {
        dev: 1,
        ino: 2,
        offset: 3,
    });
    let journal = Some(Position::Journal {
        cursor: "s=1".to_owned(),
    });
    assert_eq!(resume("b1", Vec::new(), file.clone(), "b1").position, file);
    assert_eq!(resume("b0", Vec::new(), file, "b1").position, None);
    assert_eq!(
        resume("b0", Vec::new(), journal.clone(), "b1").position,
        journal
    );
}

#[test]
fn only_this_boots_sessions_with_a_known_start_are_held_again() {
    let mut this = session(1, "alice", Some("key_a"), Some(FP_A));
    this.session_id = "b1:1".to_owned();
    let mut unknown_start = this.clone();
    unknown_start.session_id = "b1:2".to_owned();
    unknown_start.monitor_pid = 2;
    unknown_start.process_start = None;
    let mut other_boot = this.clone();
    other_boot.session_id = "b0:3".to_owned();
    let mut prefix = this.clone();
    prefix.session_id = "b10:4".to_owned();
    let open = [this, unknown_start, other_boot, prefix];
    let again: Vec<_> = to_hold_again(&open, "b1")
        .map(|(s, pid, start)| (s.session_id.as_str(), pid, start))
        .collect();
    assert_eq!(again, [("b1:1", 1, BootTicks::new(1_000))]);
}

/// The shell's loop, with the boot clock following tokio's paused clock: a file-mode
/// session of a deleted key is ended once it has settled, not before, and a failed
/// attempt is tried again a second later.
#[tokio::test(start_paused = true)]
async fn on_the_clock_a_file_mode_session_ends_once_settled_and_a_failure_is_retried() {
    let origin = tokio::time::Instant::now();
    let boot_at_origin = BootTicks::new(10_000);
    let boot_now = || boot_at_origin.plus(origin.elapsed(), RATE);
    let mut s = session(1, "alice", Some("key_a"), Some(FP_A));
    s.proof = Proof::LogText;
    s.seen_at = boot_now();
    let host = Host::with_child_of("boot:1");
    let mut attempts = Vec::new();
    let mut failures_left = 1;
    let mut wake: Option<BootTicks> = None;
    loop {
        let review = review(ON, &[s.clone()], &set(&[]), NOW, boot_now(), RATE, &host);
        wake = review.look_again.or(wake);
        let mut ended = false;
        for (_, verdict) in &review.verdicts {
            if let Verdict::End { .. } = verdict {
                attempts.push(origin.elapsed());
                let attempt = if failures_left > 0 {
                    failures_left -= 1;
                    Attempt::Failed
                } else {
                    Attempt::Ended {
                        proven_complete: true,
                    }
                };
                match aftermath(attempt, boot_now(), RATE) {
                    Aftermath::RetryAt(at) => wake = Some(soonest(None, at)),
                    Aftermath::Terminated { .. } => ended = true,
                    Aftermath::ClosedByItself => unreachable!("not simulated"),
                }
            }
        }
        if ended {
            break;
        }
        let at = wake
            .take()
            .expect("a wake-up is always set while the session lives");
        tokio::time::sleep(at.since(boot_now(), RATE)).await;
    }
    // Settled after 1 s (and one tick), then the failure's retry 1 s later.
    assert_eq!(
        attempts,
        [Duration::from_millis(1_010), Duration::from_millis(2_010)]
    );
}
