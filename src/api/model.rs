//! Every type the agent sends to or receives from the control plane, with the
//! contract's field names (`../shared/api-contract.md`, its "Additions to v1", and
//! `docs/api.md` for what this agent adds). The pure cores build these; nothing else in
//! the crate decides what goes on the wire. Unknown fields are ignored when reading, as
//! the contract asks, so newer servers stay compatible.
//!
//! - `GET .../ssh-keys`: [`KeyList`] of [`WireKey`]s (validated into `keys::KeySet`).
//! - `POST .../ssh-sessions`: an [`EventBatch`] of [`SessionEvent`]s.
//! - `PUT .../agent-status`: an [`AgentStatus`]: the [`KeysReport`] ([`StatusKey`]s,
//!   [`Rejection`]s, [`FileReport`]s), the [`ActiveSession`]s and the [`HostKey`]s.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

// GET .../ssh-keys

/// `200 OK` body of `GET /v1/instances/{id}/ssh-keys`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KeyList {
    pub version: String,
    pub keys: Vec<WireKey>,
}

/// One key as the control plane sends it, before validation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WireKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub users: Option<Vec<String>>,
}

// POST .../ssh-sessions

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
    /// Two different logins were claimed for the session's connection, so which key
    /// opened it is unknown: `key_id` and `fingerprint` are null (contract addition of
    /// 2026-12-06, on `session_opened`; this agent marks the session's later events
    /// too, docs/api.md). Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contested: bool,
}

/// The body of `POST .../ssh-sessions` (at most 500 events).
#[derive(Debug, Serialize)]
pub struct EventBatch<'a> {
    pub events: &'a [SessionEvent],
}

// PUT .../agent-status

/// The body of `PUT .../agent-status`.
#[derive(Debug, Serialize)]
pub struct AgentStatus<'a> {
    pub agent_version: &'static str,
    pub boot_id: &'a str,
    #[serde(flatten)]
    pub keys: &'a KeysReport,
    pub active_sessions: &'a [ActiveSession],
    /// `host_keys` in "Additions to v1".
    pub host_keys: &'a [HostKey],
}

/// The key side of the status, published by the main loop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeysReport {
    pub applied_version: Option<String>,
    pub applied_at: Option<String>,
    pub keys: Vec<StatusKey>,
    pub rejected_keys: Vec<Rejection>,
    pub last_error: Option<String>,
    /// Each managed file as it really stands (`files` in "Additions to v1").
    pub files: Vec<FileReport>,
}

/// A key as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusKey {
    pub id: String,
    pub fingerprint: String,
    /// The managed users it is written for.
    pub users: Vec<String>,
}

/// A key the agent refused, with the reason reported in the agent status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: String,
    pub reason: String,
}

/// A file's state as reported (`files` in the agent status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub user: String,
    pub path: String,
    pub state: FileState,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub behind_since: Option<OffsetDateTime>,
    pub keys_not_removed: Vec<String>,
    pub keys_not_added: Vec<String>,
}

/// `in_sync` or `behind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    InSync,
    Behind,
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
    /// Two different logins were claimed for its connection (contract addition of
    /// 2026-12-06): `key_id` and `fingerprint` are null; absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contested: bool,
    /// With `contested`: the ids of the account keys the claims named (this agent's
    /// addition, docs/api.md), so the account shows the session under each of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claimed_key_ids: Vec<String>,
}

/// One host key as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostKey {
    /// The key type as in the file (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`).
    #[serde(rename = "type")]
    pub key_type: String,
    /// `type base64`, no comment.
    pub public_key: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The matching host certificate, `type base64`, no comment; `None` when there is none.
    pub certificate: Option<String>,
}

/// What the agent serializes, made by its own pure cores from real inputs, must pass the
/// reference control plane's own validators (the ones its handlers answer 422 with).
#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use serde_json::Value;
    use time::macros::datetime;
    use tokio::time::Instant;

    use super::*;
    use crate::enforce::files::{Attempt, Done, Files, Wanted, WantedKey};
    use crate::sessions::parse::{parse_message, parse_syslog_line, StampContext};
    use crate::sessions::track::{Closing, Lookups, Seen, Tracker};

    const NOW: OffsetDateTime = datetime!(2026-12-07 03:00 UTC);

    fn json(value: &impl Serialize) -> Value {
        serde_json::to_value(value).expect("serializes")
    }

    /// The sessions of a real sshd log (OpenSSH 9.2, logins with and without an account key,
    /// IPv4 and IPv6), as the tracker makes them, closed by the log's own lines or kept
    /// open (`closing`).
    fn tracked(closing: Closing) -> (Tracker, Vec<SessionEvent>) {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/sshd/openssh-9.2-debian12.log",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture");
        let mut tracker = Tracker::new("0123456789abcdef0123456789abcdef", Vec::new(), closing);
        let key_id = |_: &str, fp: &str| fp.starts_with("SHA256:F3ur").then(|| "key_a".to_owned());
        let lookups = Lookups {
            key_id: &key_id,
            process_start: &|_| None,
        };
        let seen = Seen {
            proof: crate::sessions::proof::Proof::Kernel,
            at: crate::sessions::boot_clock::BootTicks::new(0),
        };
        let stamps = StampContext::utc(NOW);
        let mut events = Vec::new();
        for line in text.lines() {
            let Some(record) = parse_syslog_line(line, &stamps) else {
                continue;
            };
            if let Some(message) = parse_message(record.message) {
                events.extend(tracker.observe(&record, message, NOW, seen, &lookups));
            }
        }
        (tracker, events)
    }

    #[test]
    fn every_event_the_tracker_makes_passes_the_control_planes_checks() {
        let (_, mut events) = tracked(Closing::LogLines);
        let (mut open, _) = tracked(Closing::ProcessExit);
        let session = open.open_sessions()[0].session_id.clone();
        events.extend(open.terminated(&session, NOW));
        let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(
            kinds,
            ["session_closed", "session_opened", "session_terminated"]
        );
        assert!(events.iter().any(|e| e.key_id.is_none()));
        assert!(events.iter().any(|e| e.source_ip.contains(':')), "IPv6");
        // A contested session's events say so, with no key.
        let mut contested = events[0].clone();
        contested.contested = true;
        contested.key_id = None;
        contested.fingerprint = None;
        contested.id = "contested-1".into();
        events.push(contested);
        let batch = json(&EventBatch { events: &events });
        assert!(
            batch["events"][0].get("contested").is_none(),
            "absent when false"
        );
        assert_eq!(batch["events"][events.len() - 1]["contested"], true);
        let checked = pictor_control_plane::validate_batch(&batch).expect("a valid batch");
        assert_eq!(checked.len(), events.len());
    }

    /// Alice's file in sync; bob's behind, a deleted key still in it.
    fn files() -> Vec<FileReport> {
        let key = |id: &str| WantedKey {
            id: id.to_owned(),
            fingerprint: format!("SHA256:{id}"),
            public_key: format!("ssh-ed25519 AAAA{id}"),
        };
        let wanted = |ids: &[&str]| Wanted {
            block: Arc::new(Vec::new()),
            keys: ids.iter().map(|id| key(id)).collect(),
        };
        let disk = |ids: &[&str]| {
            ids.iter()
                .map(|id| crate::authorized_keys::merge::BlockKey {
                    public_key: key(id).public_key,
                    tagged_id: Some((*id).to_owned()),
                })
                .collect::<Vec<_>>()
        };
        let mut files = Files::new();
        for user in ["alice", "bob"] {
            files.track(
                user,
                PathBuf::from(format!("/home/{user}/.ssh/authorized_keys")),
                true,
            );
        }
        let now = Instant::now();
        for (user, result, on_disk) in [
            ("alice", Ok(Done::Written { drift: None }), disk(&["k1"])),
            (
                "bob",
                Err("No space left on device".to_owned()),
                disk(&["k1", "k2"]),
            ),
        ] {
            let job = files.want(user, wanted(&["k1"]), now, NOW).expect("a job");
            let attempt = Attempt {
                user: user.to_owned(),
                generation: job.generation,
                result,
                on_disk: Some(on_disk),
                contended: false,
                stale_copies: Vec::new(),
            };
            files.finished(attempt, now, NOW, 0.5);
        }
        files.report()
    }

    #[tokio::test(start_paused = true)]
    async fn the_status_the_agent_builds_passes_the_control_planes_checks() {
        let files = files();
        assert_eq!(
            files.iter().map(|f| f.state).collect::<Vec<_>>(),
            [FileState::InSync, FileState::Behind]
        );
        assert_eq!(files[1].keys_not_removed, ["k2"]);
        let last_error = crate::enforce::report::last_error(None, &files, None);
        let keys =
            crate::enforce::report::keys_report(None, &["alice", "bob"], files, last_error, NOW);
        let (tracker, _) = tracked(Closing::ProcessExit);
        let active: Vec<ActiveSession> = tracker
            .open_sessions()
            .iter()
            .map(crate::sessions::Session::active)
            .collect();
        assert!(!active.is_empty());
        let host_keys: Vec<HostKey> = include_str!("../../tests/fixtures/host_keys.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .take(1)
            .map(|line| {
                let (key_type, public_key, fingerprint) =
                    crate::host_keys::judge(line.as_bytes()).expect("a host key");
                HostKey {
                    key_type,
                    certificate: None,
                    public_key,
                    fingerprint,
                }
            })
            .collect();
        let status = json(&AgentStatus {
            agent_version: crate::VERSION,
            boot_id: "0123456789abcdef0123456789abcdef",
            keys: &keys,
            active_sessions: &active,
            host_keys: &host_keys,
        });
        assert_eq!(pictor_control_plane::validate_status(&status), Ok(()));
        // The checks are real: the same status without its last_error is refused.
        let mut silent = status.clone();
        silent["last_error"] = Value::Null;
        assert!(pictor_control_plane::validate_status(&silent).is_err());
    }
}
