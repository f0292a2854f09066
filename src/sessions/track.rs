//! Pure correlation of sshd messages into sessions.
//!
//! The `Accepted` line comes from the connection's monitor process; it is tied to that
//! process by its pid and (live) the process's start time, which the kernel gives.
//!
//! How a session ends depends on what the tracker is fed ([`Closing`]). The daemon
//! learns it from the kernel (the monitor's pidfd becomes readable) and ignores every
//! closing line: the user's own sshd child logs `Disconnected ...`, and any local user
//! can log the same words. Reading an old log file (`scan-log`) has nothing but the
//! lines, so there the closing lines close: the monitor's PAM `session closed`, or the
//! child's `Disconnected from user ...` matched by source address and port.

use crate::api::model::{EventKind, SessionEvent};
use std::collections::HashMap;
use std::net::IpAddr;

use time::OffsetDateTime;

use super::boot_clock::BootTicks;
use super::parse::{LoggedKey, Login, Record, SshdMessage};
use super::proof::Proof;
use super::{Claim, Session};

/// What ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Only the caller, from the kernel ([`Tracker::closed`]): log lines never close.
    ProcessExit,
    /// The log's own closing lines (an old file read offline).
    LogLines,
}

/// Most `Partial` logins kept while waiting for their `Accepted` line: one per
/// connection in the middle of a multi-method login, so a few at a time; a flood of
/// them (a broken client, forged lines in a file) forgets the oldest.
const MAX_PENDING_PARTIAL: usize = 1024;

/// The open sessions of this boot.
#[derive(Debug, Clone)]
pub struct Tracker {
    boot_id: String,
    open: OpenSessions,
    closing: Closing,
    contested: Vec<Session>,
    /// The first `Partial` login of each monitor pid, until its `Accepted` line.
    partial: HashMap<u32, (PendingLogin, u64)>,
    /// Counts `Partial` lines, to forget the oldest when there are too many.
    partial_seq: u64,
}

/// A `Partial` login, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingLogin {
    user: String,
    method: String,
    ip: IpAddr,
    port: u16,
    /// The key's fingerprint (if logged) and whether it is a certificate.
    key: Option<(Option<String>, bool)>,
}

impl PendingLogin {
    fn of(login: &Login<'_>) -> PendingLogin {
        PendingLogin {
            user: login.user.to_owned(),
            method: login.method.to_owned(),
            ip: login.ip,
            port: login.port,
            key: login
                .key
                .as_ref()
                .map(|k| (k.fingerprint.map(str::to_owned), k.certificate)),
        }
    }

    fn same_connection(&self, login: &Login<'_>) -> bool {
        self.user == login.user && self.ip == login.ip && self.port == login.port
    }
}

/// The open sessions, found by monitor pid, by source address and by child pid in
/// constant time, so reading a log is linear in its lines however many sessions it
/// leaves open.
#[derive(Debug, Clone, Default)]
struct OpenSessions {
    list: Vec<Session>,
    by_pid: HashMap<u32, usize>,
    by_address: HashMap<(IpAddr, u16), u32>,
    by_child: HashMap<u32, u32>,
}

impl OpenSessions {
    fn from(sessions: Vec<Session>) -> OpenSessions {
        let mut open = OpenSessions::default();
        for session in sessions {
            open.insert(session);
        }
        open
    }

    /// Adds a session; one with the same monitor pid is replaced (and returned).
    fn insert(&mut self, session: Session) -> Option<Session> {
        let old = self.remove(session.monitor_pid);
        self.by_address.insert(
            (session.source_ip, session.source_port),
            session.monitor_pid,
        );
        if let Some(child) = session.child_pid {
            self.by_child.insert(child, session.monitor_pid);
        }
        self.by_pid.insert(session.monitor_pid, self.list.len());
        self.list.push(session);
        old
    }

    fn get(&self, pid: u32) -> Option<&Session> {
        self.by_pid.get(&pid).map(|&i| &self.list[i])
    }

    fn get_mut(&mut self, pid: u32) -> Option<&mut Session> {
        self.by_pid.get(&pid).map(|&i| &mut self.list[i])
    }

    fn set_child(&mut self, pid: u32, child: u32) {
        if let Some(session) = self.get_mut(pid) {
            if let Some(old) = session.child_pid.replace(child) {
                self.by_child.remove(&old);
            }
            self.by_child.insert(child, pid);
        }
    }

    fn by_address(&self, ip: IpAddr, port: u16) -> Option<u32> {
        self.by_address.get(&(ip, port)).copied()
    }

    fn by_child(&self, child: u32) -> Option<u32> {
        self.by_child.get(&child).copied()
    }

    fn remove(&mut self, pid: u32) -> Option<Session> {
        let index = self.by_pid.remove(&pid)?;
        let session = self.list.swap_remove(index);
        if let Some(moved) = self.list.get(index) {
            self.by_pid.insert(moved.monitor_pid, index);
        }
        let address = (session.source_ip, session.source_port);
        if self.by_address.get(&address) == Some(&pid) {
            self.by_address.remove(&address);
        }
        if let Some(child) = session.child_pid {
            if self.by_child.get(&child) == Some(&pid) {
                self.by_child.remove(&child);
            }
        }
        Some(session)
    }

    fn take_all(&mut self) -> Vec<Session> {
        self.by_pid.clear();
        self.by_address.clear();
        self.by_child.clear();
        std::mem::take(&mut self.list)
    }
}

/// What the tracker needs from outside, as functions so it stays pure.
pub struct Lookups<'a> {
    /// Key id of the account key in force for (user, fingerprint as logged).
    pub key_id: &'a dyn Fn(&str, &str) -> Option<String>,
    /// Start time of the proven monitor process of a pid (live), or `None` (offline).
    pub process_start: &'a dyn Fn(u32) -> Option<BootTicks>,
}

/// Where and how the tracker's caller read a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub proof: Proof,
    /// When it was read.
    pub at: BootTicks,
}

impl Tracker {
    pub fn new(boot_id: &str, open: Vec<Session>, closing: Closing) -> Tracker {
        Tracker {
            boot_id: boot_id.to_owned(),
            open: OpenSessions::from(open),
            closing,
            contested: Vec::new(),
            partial: HashMap::new(),
            partial_seq: 0,
        }
    }

    pub fn open_sessions(&self) -> &[Session] {
        &self.open.list
    }

    /// The sessions found contested since the last call (each once).
    pub fn take_contested(&mut self) -> Vec<Session> {
        std::mem::take(&mut self.contested)
    }

    /// Takes one message; returns the events it causes (none for most).
    pub fn observe(
        &mut self,
        record: &Record<'_>,
        message: SshdMessage<'_>,
        now: OffsetDateTime,
        seen: Seen,
        lookups: &Lookups<'_>,
    ) -> Vec<SessionEvent> {
        let at = record.at.unwrap_or(now);
        let mut events = Vec::new();
        match message {
            SshdMessage::Accepted(login) => {
                let login = self.with_first_partial(record.pid, login);
                let start = (lookups.process_start)(record.pid);
                let fingerprint = login.key.as_ref().and_then(|k| k.fingerprint.as_deref());
                let same_claim = |s: &Session| {
                    s.user == login.user
                        && s.auth_method == login.method
                        && s.source_ip == login.ip
                        && s.source_port == login.port
                        && s.fingerprint.as_deref() == fingerprint
                };
                if let Some(session) = self.open.get_mut(record.pid) {
                    match start {
                        // The same process, proven by its start time.
                        Some(start) if session.process_start == Some(start) => {
                            if !same_claim(session) {
                                // One connection authenticates once: a second, different
                                // login for it was forged. Which one is unknowable here,
                                // so every key claimed counts (fail closed).
                                let claim = fingerprint.map(|fp| Claim {
                                    fingerprint: fp.to_owned(),
                                    key_id: (lookups.key_id)(&session.user, fp),
                                });
                                let first = !session.contested;
                                if first && session.claims.is_empty() {
                                    // A session saved by an older agent: its own key is
                                    // the first claim, kept before it is forgotten.
                                    if let Some(fp) = &session.fingerprint {
                                        session.claims.push(Claim {
                                            fingerprint: fp.clone(),
                                            key_id: session.key_id.clone(),
                                        });
                                    }
                                }
                                if let Some(claim) = claim {
                                    if !session.claims.contains(&claim) {
                                        session.claims.push(claim);
                                    }
                                }
                                if first {
                                    session.contested = true;
                                    session.key_id = None;
                                    session.fingerprint = None;
                                    self.contested.push(session.clone());
                                }
                            }
                            // Otherwise the same line read again (a replay): nothing new.
                            return events;
                        }
                        Some(_) => {}
                        None if session.source_ip == login.ip
                            && session.source_port == login.port
                            && session.since == at =>
                        {
                            // The same line read again (a log replayed): nothing new.
                            return events;
                        }
                        None => {}
                    }
                }
                let session = self.session(record, login, at, start, seen, lookups);
                events.push(session.event(EventKind::SessionOpened, at));
                // A pid that opens a new connection is not running the old one any more.
                if let Some(old) = self.open.insert(session) {
                    events.insert(0, old.event(EventKind::SessionClosed, at));
                }
            }
            SshdMessage::Partial(login) => {
                // The first method's key is the one the session is tied to.
                if !self.partial.contains_key(&record.pid) {
                    if self.partial.len() >= MAX_PENDING_PARTIAL {
                        if let Some(oldest) = self
                            .partial
                            .iter()
                            .min_by_key(|(_, (_, n))| *n)
                            .map(|(p, _)| *p)
                        {
                            self.partial.remove(&oldest);
                        }
                    }
                    self.partial_seq += 1;
                    self.partial
                        .insert(record.pid, (PendingLogin::of(&login), self.partial_seq));
                }
            }
            _ if self.closing == Closing::ProcessExit => {}
            SshdMessage::UserChild { child } => self.open.set_child(record.pid, child),
            SshdMessage::Ended { ip, port } => {
                let pid = record.pid;
                if let Some(monitor) = self.open.by_address(ip, port).filter(|&monitor| {
                    self.open.get(monitor).is_some_and(|s| {
                        s.monitor_pid == pid || s.child_pid.is_none_or(|c| c == pid)
                    })
                }) {
                    if let Some(session) = self.open.remove(monitor) {
                        events.push(session.event(EventKind::SessionClosed, at));
                    }
                }
            }
            SshdMessage::EndedHere => {
                // Logged by the session's child (or, for root before 9.8, its monitor).
                let monitor = self.open.by_child(record.pid).or_else(|| {
                    self.open
                        .get(record.pid)
                        .filter(|s| s.child_pid.is_none())
                        .map(|s| s.monitor_pid)
                });
                if let Some(session) = monitor.and_then(|m| self.open.remove(m)) {
                    events.push(session.event(EventKind::SessionClosed, at));
                }
            }
            SshdMessage::PamClosed { user } => {
                if self.open.get(record.pid).is_some_and(|s| s.user == user) {
                    if let Some(session) = self.open.remove(record.pid) {
                        events.push(session.event(EventKind::SessionClosed, at));
                    }
                }
            }
        }
        events
    }

    /// `login` with the key and method of the `Partial` login of the same connection
    /// (same monitor pid, user, address and port) that came before it: the session is
    /// tied to the key offered first, and its method is the methods in order
    /// (`publickey,password`).
    fn with_first_partial<'a>(&mut self, pid: u32, login: Login<'a>) -> PartialApplied<'a> {
        match self.partial.remove(&pid) {
            Some((first, _)) if first.same_connection(&login) => PartialApplied {
                user: login.user,
                method: format!("{},{}", first.method, login.method),
                ip: login.ip,
                port: login.port,
                key: first.key.map(|(fingerprint, certificate)| OwnedKey {
                    fingerprint,
                    certificate,
                }),
            },
            _ => PartialApplied {
                user: login.user,
                method: login.method.to_owned(),
                ip: login.ip,
                port: login.port,
                key: login.key.map(|k: LoggedKey<'_>| OwnedKey {
                    fingerprint: k.fingerprint.map(str::to_owned),
                    certificate: k.certificate,
                }),
            },
        }
    }

    fn session(
        &self,
        record: &Record<'_>,
        login: PartialApplied<'_>,
        at: OffsetDateTime,
        start: Option<BootTicks>,
        seen: Seen,
        lookups: &Lookups<'_>,
    ) -> Session {
        let (fingerprint, key_id) = match login.key {
            Some(key) if key.certificate => (key.fingerprint, None),
            Some(OwnedKey {
                fingerprint: Some(fingerprint),
                ..
            }) => {
                let key_id = (lookups.key_id)(login.user, &fingerprint);
                (Some(fingerprint), key_id)
            }
            _ => (None, None),
        };
        Session {
            session_id: format!("{}:{}", self.boot_id, record.pid),
            monitor_pid: record.pid,
            child_pid: None,
            user: login.user.to_owned(),
            auth_method: login.method,
            source_ip: login.ip,
            source_port: login.port,
            since: at,
            process_start: start,
            proof: seen.proof,
            contested: false,
            claims: fingerprint
                .iter()
                .map(|fp| Claim {
                    fingerprint: fp.clone(),
                    key_id: key_id.clone(),
                })
                .collect(),
            fingerprint,
            key_id,
            seen_at: seen.at,
        }
    }

    /// A login whose process had ended before it was read (a short session, or one
    /// logged while the agent was down): reported as opened, then closed as of `now`,
    /// and never kept. Only for lines whose sender is proven (the journal's trusted
    /// fields): a file's line with no live process behind it proves nothing.
    pub fn opened_and_gone(
        &mut self,
        record: &Record<'_>,
        message: SshdMessage<'_>,
        now: OffsetDateTime,
        seen: Seen,
        lookups: &Lookups<'_>,
    ) -> Vec<SessionEvent> {
        let SshdMessage::Accepted(login) = message else {
            return Vec::new();
        };
        let login = self.with_first_partial(record.pid, login);
        let at = record.at.unwrap_or(now);
        let session = self.session(record, login, at, None, seen, lookups);
        vec![
            session.event(EventKind::SessionOpened, at),
            session.event(EventKind::SessionClosed, now.max(at)),
        ]
    }

    /// The session of monitor `pid` (started at `start`) ended, as the kernel said.
    pub fn closed(
        &mut self,
        pid: u32,
        start: BootTicks,
        at: OffsetDateTime,
    ) -> Option<SessionEvent> {
        if self.open.get(pid)?.process_start != Some(start) {
            return None;
        }
        Some(self.open.remove(pid)?.event(EventKind::SessionClosed, at))
    }

    /// Closes the sessions `gone` says have no process any more, as of `at`.
    pub fn close_gone(
        &mut self,
        gone: impl Fn(&Session) -> bool,
        at: OffsetDateTime,
    ) -> Vec<SessionEvent> {
        let (closed, open): (Vec<Session>, Vec<Session>) =
            self.open.take_all().into_iter().partition(|s| gone(s));
        self.open = OpenSessions::from(open);
        closed
            .iter()
            .map(|s| s.event(EventKind::SessionClosed, at))
            .collect()
    }

    /// Removes a session the agent ended itself and returns its `session_terminated`.
    pub fn terminated(&mut self, session_id: &str, at: OffsetDateTime) -> Option<SessionEvent> {
        let pid = self
            .open
            .list
            .iter()
            .find(|s| s.session_id == session_id)?
            .monitor_pid;
        Some(
            self.open
                .remove(pid)?
                .event(EventKind::SessionTerminated, at),
        )
    }
}

/// A login with its `Partial` predecessor applied, owned where it had to change.
struct PartialApplied<'a> {
    user: &'a str,
    method: String,
    ip: IpAddr,
    port: u16,
    key: Option<OwnedKey>,
}

struct OwnedKey {
    fingerprint: Option<String>,
    certificate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::parse::{parse_message, parse_syslog_line, StampContext};

    const SEEN: Seen = Seen {
        proof: Proof::LogText,
        at: BootTicks::new(0),
    };

    fn run(text: &str) -> (Tracker, Vec<SessionEvent>) {
        let mut tracker = Tracker::new("boot", Vec::new(), Closing::LogLines);
        let key_id = |_user: &str, fp: &str| {
            (fp == "SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0").then(|| "key_a".to_owned())
        };
        let process_start = |_| None;
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &process_start,
        };
        let now = crate::timefmt::now();
        let mut events = Vec::new();
        for line in text.lines() {
            if let Some(record) = parse_syslog_line(line, &StampContext::utc(now)) {
                if let Some(message) = parse_message(record.message) {
                    events.extend(tracker.observe(&record, message, now, SEEN, &lookups));
                }
            }
        }
        (tracker, events)
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/sshd/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    #[test]
    fn real_sshd_logins_open_and_close_once_each() {
        let (tracker, events) = run(&fixture("openssh-9.2-debian12.log"));
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind, e.session_id.as_str(), e.key_id.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::SessionOpened, "boot:30770", Some("key_a")),
                (EventKind::SessionClosed, "boot:30770", Some("key_a")),
                (EventKind::SessionOpened, "boot:30779", None),
                (EventKind::SessionClosed, "boot:30779", None),
                (EventKind::SessionOpened, "boot:30788", Some("key_a")),
                (EventKind::SessionClosed, "boot:30788", Some("key_a")),
            ]
        );
        assert!(tracker.open_sessions().is_empty());
        assert_eq!(events[2].source_ip, "::1");
        assert_eq!(events[0].at, "2026-11-25T08:40:10Z");
        assert_eq!(events[0].auth_method, "publickey");
    }

    #[test]
    fn certificate_and_password_logins_carry_no_key_id() {
        let (tracker, events) = run(&fixture("openssh-9.9-sshd-session.log"));
        let cert = events
            .iter()
            .find(|e| e.session_id == "boot:4300")
            .expect("cert");
        assert_eq!(cert.key_id, None);
        assert!(cert.fingerprint.is_some());
        let kbd = events
            .iter()
            .find(|e| e.session_id == "boot:4310")
            .expect("kbd");
        assert_eq!(
            (
                kbd.key_id.as_deref(),
                kbd.fingerprint.as_deref(),
                kbd.auth_method.as_str()
            ),
            (None, None, "keyboard-interactive")
        );
        assert!(tracker.open_sessions().is_empty(), "every session closed");
        // The IPv6 session's key matches an account key.
        assert_eq!(events[0].key_id.as_deref(), Some("key_a"));
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        let (_, first) = run(&fixture("openssh-9.2-debian12.log"));
        let (_, again) = run(&fixture("openssh-9.2-debian12.log"));
        assert_eq!(first, again, "a replayed log gives the same ids");
        let mut ids: Vec<_> = first.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), first.len());
    }

    #[test]
    fn sessions_whose_process_is_gone_are_closed() {
        let text = fixture("openssh-9.2-debian12.log");
        let opened_only: String = text
            .lines()
            .filter(|l| !l.contains("closed") && !l.contains("isconnect"))
            .map(|l| format!("{l}\n"))
            .collect();
        let (mut tracker, events) = run(&opened_only);
        assert_eq!(events.len(), 3);
        let closed = tracker.close_gone(|s| s.monitor_pid != 30788, crate::timefmt::now());
        assert_eq!(closed.len(), 2);
        assert!(closed.iter().all(|e| e.kind == EventKind::SessionClosed));
        assert_eq!(tracker.open_sessions().len(), 1);
        // Replaying the log opens nothing twice.
        let before = tracker.open_sessions().to_vec();
        let key_id = |_: &str, _: &str| None;
        let process_start = |_| None;
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &process_start,
        };
        for line in opened_only.lines().filter(|l| l.contains("30788")) {
            let stamps = StampContext::utc(crate::timefmt::now());
            let record = parse_syslog_line(line, &stamps).expect("sshd line");
            if let Some(message) = parse_message(record.message) {
                let now = crate::timefmt::now();
                assert!(
                    tracker
                        .observe(&record, message, now, SEEN, &lookups)
                        .is_empty(),
                    "{line}"
                );
            }
        }
        assert_eq!(tracker.open_sessions(), before.as_slice());
        let terminated = tracker
            .terminated("boot:30788", crate::timefmt::now())
            .expect("known");
        assert_eq!(terminated.kind, EventKind::SessionTerminated);
    }

    #[test]
    fn live_sessions_close_only_when_the_kernel_says_and_a_second_login_contests() {
        let mut tracker = Tracker::new("boot", Vec::new(), Closing::ProcessExit);
        let key_id = |_: &str, fp: &str| match fp {
            "SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaA" => Some("key_a".to_owned()),
            "SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbA" => Some("key_b".to_owned()),
            _ => None,
        };
        let process_start = |pid: u32| (pid == 700).then_some(BootTicks::new(4242));
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &process_start,
        };
        let seen = Seen {
            proof: Proof::Kernel,
            at: BootTicks::new(5000),
        };
        let now = crate::timefmt::now();
        let feed = |tracker: &mut Tracker, message: &str| {
            let record = Record {
                at: None,
                pid: 700,
                message,
            };
            let parsed = parse_message(message).expect("understood");
            tracker.observe(&record, parsed, now, seen, &lookups)
        };
        let login = "Accepted publickey for alice from 10.0.0.1 port 1000 ssh2: ED25519 SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaA";
        let opened = feed(&mut tracker, login);
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].key_id.as_deref(), Some("key_a"));
        assert_eq!(
            tracker.open_sessions()[0].process_start,
            Some(BootTicks::new(4242))
        );
        assert_eq!(tracker.open_sessions()[0].seen_at, BootTicks::new(5000));
        // Closing words close nothing: a forged disconnect hides nothing.
        for closing in [
            "Disconnected from user alice 10.0.0.1 port 1000",
            "pam_unix(sshd:session): session closed for user alice",
            "Received disconnect from 10.0.0.1 port 1000:11: disconnected by user",
        ] {
            assert!(feed(&mut tracker, closing).is_empty());
        }
        assert_eq!(tracker.open_sessions().len(), 1);
        // The same line again: nothing.
        assert!(feed(&mut tracker, login).is_empty());
        assert!(tracker.take_contested().is_empty());
        // Another login claimed for the same process: contested, the key forgotten.
        let forged =
            "Accepted publickey for alice from 10.0.0.1 port 1000 ssh2: ED25519 SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbA";
        assert!(feed(&mut tracker, forged).is_empty());
        let contested = tracker.take_contested();
        assert_eq!(contested.len(), 1);
        let session = &tracker.open_sessions()[0];
        assert!(session.contested);
        assert_eq!(
            (session.key_id.as_deref(), session.fingerprint.as_deref()),
            (None, None)
        );
        assert!(feed(&mut tracker, login).is_empty(), "stays contested");
        assert!(tracker.take_contested().is_empty(), "reported once");
        // Both keys claimed stay known, and the session stays reported, contested.
        let session = &tracker.open_sessions()[0];
        assert_eq!(session.claimed_key_ids(), ["key_a", "key_b"]);
        let active = session.active();
        assert!(active.contested);
        assert_eq!(active.key_id, None);
        assert_eq!(active.claimed_key_ids, ["key_a", "key_b"]);
        // Fail closed: the deletion of either key claimed ends it; of neither, nothing.
        let a = "SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaA";
        let b = "SHA256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbA";
        assert!(!session.lost_its_key(|fp| fp == a || fp == b));
        assert!(session.lost_its_key(|fp| fp == b), "key_a deleted");
        assert!(session.lost_its_key(|fp| fp == a), "key_b deleted");
        // A third claim naming no account key is never a reason to end it.
        let unknown =
            "Accepted publickey for alice from 10.0.0.1 port 1000 ssh2: ED25519 SHA256:ccccccccccccccccccccccccccccccccccccccccccA";
        assert!(feed(&mut tracker, unknown).is_empty());
        let session = &tracker.open_sessions()[0];
        assert_eq!(session.claims.len(), 3);
        assert!(!session.lost_its_key(|fp| fp == a || fp == b));
        // A session saved by an older agent (no claims recorded) keeps its own key as a
        // claim when it is contested.
        let mut legacy = session.clone();
        legacy.contested = false;
        legacy.claims.clear();
        legacy.key_id = Some("key_a".into());
        legacy.fingerprint = Some(a.into());
        let mut restored = Tracker::new("boot", vec![legacy], Closing::ProcessExit);
        assert!(feed(&mut restored, unknown).is_empty());
        let session = &restored.open_sessions()[0];
        assert!(session.contested);
        assert!(
            session.lost_its_key(|fp| fp != a),
            "its own key still ends it"
        );
        // The kernel says the process ended.
        assert!(
            tracker.closed(700, BootTicks::new(1), now).is_none(),
            "another process"
        );
        let closed = tracker
            .closed(700, BootTicks::new(4242), now)
            .expect("closed");
        assert_eq!(closed.kind, EventKind::SessionClosed);
        assert!(tracker.open_sessions().is_empty());
    }
}
