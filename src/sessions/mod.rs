//! Who is logged in with which key: sshd's log is parsed ([`parse`], pure), correlated
//! into sessions ([`track`], pure), read from the journal or a syslog file ([`source`]),
//! believed only when the kernel vouches for it ([`proof`], over the facts of
//! [`procs`]), held by a pidfd ([`pidfd`]) until its process ends, ended exactly
//! ([`terminate`]), and run as one task ([`task`]).

pub mod parse;
pub mod pidfd;
pub mod procs;
pub mod proof;
#[cfg(test)]
mod releases;
pub mod source;
pub mod stamp;
pub mod task;
pub mod terminate;
pub mod track;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;

/// The contract's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SessionOpened,
    SessionClosed,
    SessionTerminated,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionOpened => "session_opened",
            EventKind::SessionClosed => "session_closed",
            EventKind::SessionTerminated => "session_terminated",
        }
    }
}

/// One event of `POST .../ssh-sessions`, with the contract's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub at: String,
    pub user: String,
    pub auth_method: String,
    pub key_id: Option<String>,
    pub fingerprint: Option<String>,
    pub source_ip: String,
    pub source_port: u16,
    pub session_id: String,
}

/// A live SSH session as the agent knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    /// The connection's monitor process (the pid of the `Accepted` line).
    pub monitor_pid: u32,
    /// Its child (`User child is on pid N`), when logged.
    pub child_pid: Option<u32>,
    pub user: String,
    pub auth_method: String,
    pub key_id: Option<String>,
    pub fingerprint: Option<String>,
    pub source_ip: IpAddr,
    pub source_port: u16,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// The monitor's start time (clock ticks since boot), to tell a reused pid apart.
    pub process_start: Option<u64>,
    /// How the key was learnt: from journald's trusted fields, or a syslog file's text.
    #[serde(default = "legacy_proof")]
    pub proof: proof::Proof,
    /// More than one login was logged for this one monitor process: all but one are
    /// forged, so the key is unknown and the session is never ended for a key.
    #[serde(default)]
    pub contested: bool,
    /// When the agent read the login (ticks since boot).
    #[serde(default)]
    pub seen_at: u64,
}

/// Sessions saved before the proof was recorded are not trusted with a kill.
fn legacy_proof() -> proof::Proof {
    proof::Proof::LogText
}

/// A session as `active_sessions` in the agent status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSession {
    pub session_id: String,
    pub key_id: Option<String>,
    pub fingerprint: Option<String>,
    pub user: String,
    pub source_ip: String,
    pub since: String,
}

impl Session {
    /// The event of `kind` for this session at `at`. Its id depends only on the session
    /// (boot, pid, start) and the kind, so the same event found twice (a log replayed
    /// after a restart) has the same id and the control plane drops the copy.
    pub fn event(&self, kind: EventKind, at: OffsetDateTime) -> SessionEvent {
        SessionEvent {
            id: event_id(&self.session_id, kind, self.since),
            kind,
            at: crate::timefmt::format(at),
            user: self.user.clone(),
            auth_method: self.auth_method.clone(),
            key_id: self.key_id.clone(),
            fingerprint: self.fingerprint.clone(),
            source_ip: self.source_ip.to_string(),
            source_port: self.source_port,
            session_id: self.session_id.clone(),
        }
    }

    pub fn active(&self) -> ActiveSession {
        ActiveSession {
            session_id: self.session_id.clone(),
            key_id: self.key_id.clone(),
            fingerprint: self.fingerprint.clone(),
            user: self.user.clone(),
            source_ip: self.source_ip.to_string(),
            since: crate::timefmt::format(self.since),
        }
    }
}

/// 32 hex digits of SHA-256 over the session id, the event kind and the session start.
pub fn event_id(session_id: &str, kind: EventKind, since: OffsetDateTime) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(session_id.as_bytes());
    hash.update(b"|");
    hash.update(kind.as_str().as_bytes());
    hash.update(b"|");
    hash.update(since.unix_timestamp_nanos().to_be_bytes());
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
