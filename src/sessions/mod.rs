//! Who is logged in with which key: sshd's log is parsed ([`parse`], pure), correlated
//! into sessions ([`track`], pure), read from the journal or a syslog file ([`source`]),
//! believed only when the kernel vouches for it ([`proof`], over the facts of
//! [`procs`]), held by a pidfd ([`pidfd`]) until its process ends, ended when
//! [`revocation`] (pure: every decision about ending a session) says so, exactly
//! ([`terminate`]), and run as one task ([`task`]). Process start times, when a line was
//! read and when a key left are moments on the kernel's boot clock ([`boot_clock`]).

pub mod boot_clock;
#[cfg(test)]
mod openssh_release_tests;
pub mod parse;
pub mod pidfd;
pub mod procs;
pub mod proof;
pub mod revocation;
pub mod source;
pub mod stamp;
pub mod task;
pub mod terminate;
pub mod track;

use std::net::IpAddr;

use crate::api::model::ActiveSession;
use crate::api::model::EventKind;
use crate::api::model::SessionEvent;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;

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
    /// The monitor's start time, to tell a reused pid apart.
    pub process_start: Option<boot_clock::BootTicks>,
    /// How the key was learnt: from journald's trusted fields, or a syslog file's text.
    #[serde(default = "legacy_proof")]
    pub proof: proof::Proof,
    /// More than one login was logged for this one monitor process: all but one are
    /// forged, so which key opened it is unknown. It stays reported (contested), and is
    /// ended when any account key claimed for it is no longer in force (fail closed).
    #[serde(default)]
    pub contested: bool,
    /// Every key a login line claimed for this connection (the first one included).
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// When the agent read the login.
    #[serde(default)]
    pub seen_at: boot_clock::BootTicks,
}

/// A key a login line named for a connection, and the account key it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub fingerprint: String,
    /// The account key in force for the session's user with that fingerprint, when the
    /// line was read (`None`: no account key: never a reason to end the session).
    pub key_id: Option<String>,
}

/// Sessions saved before the proof was recorded are not trusted with a kill.
fn legacy_proof() -> proof::Proof {
    proof::Proof::LogText
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
            contested: self.contested,
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
            contested: self.contested,
            claimed_key_ids: if self.contested {
                self.claimed_key_ids()
            } else {
                Vec::new()
            },
        }
    }

    /// True when the session must end because a key it may have been opened with is no
    /// longer in force for its user (`in_force` says, by fingerprint as logged): its
    /// account key; for a contested session, any account key claimed for it, since which
    /// one opened it cannot be known (fail closed: a forged line never keeps a session
    /// alive past the deletion of its key; the cost, that a user can name another's
    /// session with a key of theirs, is documented). Sessions of keys that were no
    /// account key at login (added by hand, certificates, passwords) never end here.
    pub fn lost_its_key(&self, in_force: impl Fn(&str) -> bool) -> bool {
        if self.contested {
            self.claims
                .iter()
                .any(|c| c.key_id.is_some() && !in_force(&c.fingerprint))
        } else {
            self.key_id.is_some() && self.fingerprint.as_deref().is_some_and(|fp| !in_force(fp))
        }
    }

    /// The account key ids claimed for this session, each once.
    pub fn claimed_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .claims
            .iter()
            .filter_map(|c| c.key_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
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
