//! Pure correlation of sshd messages into sessions.
//!
//! The `Accepted` line comes from the connection's monitor process; the end of the
//! session is logged by the monitor (PAM's `session closed`) or by its child
//! (`Disconnected from user ...`). Everything is tied together by the monitor pid and by
//! the source address and port, which identify one connection while it lasts.

use time::OffsetDateTime;

use super::parse::{Record, SshdMessage};
use super::{EventKind, Session, SessionEvent};

/// The open sessions of this boot.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    boot_id: String,
    open: Vec<Session>,
}

/// What the tracker needs from outside, as functions so it stays pure.
pub struct Lookups<'a> {
    /// Key id of the account key in force for (user, fingerprint).
    pub key_id: &'a dyn Fn(&str, &str) -> Option<String>,
    /// Start time of a live process, for pid-reuse checks.
    pub process_start: &'a dyn Fn(u32) -> Option<u64>,
}

impl Tracker {
    pub fn new(boot_id: &str, open: Vec<Session>) -> Tracker {
        Tracker {
            boot_id: boot_id.to_owned(),
            open,
        }
    }

    pub fn open_sessions(&self) -> &[Session] {
        &self.open
    }

    /// Takes one message; returns the events it causes (none for most).
    pub fn observe(
        &mut self,
        record: &Record<'_>,
        message: SshdMessage<'_>,
        now: OffsetDateTime,
        lookups: &Lookups<'_>,
    ) -> Vec<SessionEvent> {
        let at = record.at.unwrap_or(now);
        let mut events = Vec::new();
        match message {
            SshdMessage::Accepted {
                user,
                method,
                ip,
                port,
                key,
            } => {
                // The same line read again (a log replayed after a restart): nothing new.
                if self.open.iter().any(|s| {
                    s.monitor_pid == record.pid
                        && s.source_ip == ip
                        && s.source_port == port
                        && s.since == at
                }) {
                    return events;
                }
                // A pid that opens a new connection is not running the old one any more.
                if let Some(index) = self.open.iter().position(|s| s.monitor_pid == record.pid) {
                    let old = self.open.remove(index);
                    events.push(old.event(EventKind::SessionClosed, at));
                }
                let (fingerprint, key_id) = match &key {
                    Some(key) if key.certificate => (Some(key.fingerprint.to_owned()), None),
                    Some(key) => (
                        Some(key.fingerprint.to_owned()),
                        (lookups.key_id)(user, key.fingerprint),
                    ),
                    None => (None, None),
                };
                let session = Session {
                    session_id: format!("{}:{}", self.boot_id, record.pid),
                    monitor_pid: record.pid,
                    child_pid: None,
                    user: user.to_owned(),
                    auth_method: method.to_owned(),
                    key_id,
                    fingerprint,
                    source_ip: ip,
                    source_port: port,
                    since: at,
                    process_start: (lookups.process_start)(record.pid),
                };
                events.push(session.event(EventKind::SessionOpened, at));
                self.open.push(session);
            }
            SshdMessage::UserChild { child } => {
                if let Some(session) = self.open.iter_mut().find(|s| s.monitor_pid == record.pid) {
                    session.child_pid = Some(child);
                }
            }
            SshdMessage::Ended { ip, port } => {
                let pid = record.pid;
                if let Some(index) = self.open.iter().position(|s| {
                    s.source_ip == ip
                        && s.source_port == port
                        && (s.monitor_pid == pid || s.child_pid.is_none_or(|c| c == pid))
                }) {
                    events.push(self.open.remove(index).event(EventKind::SessionClosed, at));
                }
            }
            SshdMessage::PamClosed { user } => {
                if let Some(index) = self
                    .open
                    .iter()
                    .position(|s| s.monitor_pid == record.pid && s.user == user)
                {
                    events.push(self.open.remove(index).event(EventKind::SessionClosed, at));
                }
            }
        }
        events
    }

    /// Closes the sessions `gone` says have no process any more (sshd killed without a
    /// closing line), as of `at`.
    pub fn close_gone(
        &mut self,
        gone: impl Fn(&Session) -> bool,
        at: OffsetDateTime,
    ) -> Vec<SessionEvent> {
        let (closed, open): (Vec<Session>, Vec<Session>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|s| gone(s));
        self.open = open;
        closed
            .iter()
            .map(|s| s.event(EventKind::SessionClosed, at))
            .collect()
    }

    /// Removes a session the agent ended itself and returns its `session_terminated`.
    pub fn terminated(&mut self, session_id: &str, at: OffsetDateTime) -> Option<SessionEvent> {
        let index = self.open.iter().position(|s| s.session_id == session_id)?;
        Some(
            self.open
                .remove(index)
                .event(EventKind::SessionTerminated, at),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::parse::{parse_message, parse_syslog_line};

    fn run(text: &str) -> (Tracker, Vec<SessionEvent>) {
        let mut tracker = Tracker::new("boot", Vec::new());
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
            if let Some(record) = parse_syslog_line(line, 2026) {
                if let Some(message) = parse_message(record.message) {
                    events.extend(tracker.observe(&record, message, now, &lookups));
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
            let record = parse_syslog_line(line, 2026).expect("sshd line");
            if let Some(message) = parse_message(record.message) {
                let now = crate::timefmt::now();
                assert!(
                    tracker.observe(&record, message, now, &lookups).is_empty(),
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
}
