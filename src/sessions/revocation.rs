//! Every decision about ending a session, pure: which live session lost its key, whether
//! it may be ended now, later or not at all (and why), what an ending attempt means,
//! which logged login is believed, as what, and tied to which key, and what survives a
//! restart. [`super::task`] is the shell: it holds the pidfds, runs the kill rounds
//! ([`super::terminate`]) and fills the outbox, doing what these verdicts say.
//!
//! Time here is a value, never a clock read: wall-clock `now` for key expiry, and the
//! kernel's boot clock ([`BootTicks`]) for everything compared with a process's start.

use crate::api::model::{EventKind, SessionEvent};
use std::collections::HashSet;
use std::time::Duration;

use time::OffsetDateTime;

use super::boot_clock::{BootTicks, TickRate};
use super::parse::SshdMessage;
use super::procs::Refusal;
use super::proof::Proof;
use super::source::Position;
use super::Session;
use crate::keys::{AccountKey, KeySet};

/// A session whose login was read from a syslog file is ended only after this long
/// without a second, contradicting login logged for its connection (see
/// docs/security.md, "What file mode guarantees").
pub const FILE_MODE_SETTLE: Duration = Duration::from_secs(1);
/// A session that could not be ended is tried again this much later, for as long as its
/// key stays revoked.
pub const RETRY_ENDING: Duration = Duration::from_secs(1);

/// What the configuration says about ending sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// End the live sessions of keys that leave the set in force (`terminate_on_revoke`).
    pub terminate_on_revoke: bool,
}

/// What the shell knows of the host, asked only for sessions that lost their key.
pub trait HostFacts {
    /// The session's monitor is held by a pidfd (its login was proven).
    fn held(&self, session: &Session) -> bool;
    /// The uid of a local user, `None` when there is no such user.
    fn uid(&self, user: &str) -> Option<u32>;
    /// The held monitor of `session` has a live child running as `uid`.
    fn has_user_child(&self, session: &Session, uid: u32) -> bool;
}

/// What to do with one session whose key is no longer in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// End it now, as the session of `uid`.
    End { uid: u32 },
    /// Too young to be ended yet (file mode): look again at `at`.
    Wait { at: BootTicks },
    /// Leave it, for this reason (logged).
    Skip(Skip),
}

/// Why a session of a revoked key is left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("no proven process to end (its login was never verified)")]
    NotHeld,
    #[error("its user is not a local user any more")]
    UnknownUser,
    #[error(
        "it was read from a syslog file and its sshd has no process of the user, so its \
         login line is not proven"
    )]
    LoginNotProven,
}

/// One review of the open sessions against the keys in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Review {
    /// Each session that lost its key, with what to do about it.
    pub verdicts: Vec<(Session, Verdict)>,
    /// When to review again without any other reason (the earliest `Wait`).
    pub look_again: Option<BootTicks>,
}

/// True when `session` must end because a key it may have been opened with is no longer
/// in force for its user in `keys` at `now` (see [`Session::lost_its_key`]).
pub fn lost_its_key(session: &Session, keys: &KeySet, now: OffsetDateTime) -> bool {
    let in_force = keys.in_force_for(&session.user, now);
    session.lost_its_key(|fp| in_force.iter().any(|k| k.matches_fingerprint(fp)))
}

/// Reviews the open sessions: each one that lost its key gets a verdict. Sessions of
/// keys the agent does not manage (no account key at login), certificates and password
/// logins never do. Nothing at all when the policy does not end sessions.
pub fn review(
    policy: Policy,
    open: &[Session],
    keys: &KeySet,
    now: OffsetDateTime,
    boot_now: BootTicks,
    rate: TickRate,
    host: &impl HostFacts,
) -> Review {
    let mut review = Review::default();
    if !policy.terminate_on_revoke {
        return review;
    }
    for session in open.iter().filter(|s| lost_its_key(s, keys, now)) {
        let verdict = verdict(session, boot_now, rate, host);
        if let Verdict::Wait { at } = verdict {
            review.look_again = Some(soonest(review.look_again, at));
        }
        review.verdicts.push((session.clone(), verdict));
    }
    review
}

/// The verdict on one session that lost its key.
fn verdict(
    session: &Session,
    boot_now: BootTicks,
    rate: TickRate,
    host: &impl HostFacts,
) -> Verdict {
    if !host.held(session) {
        return Verdict::Skip(Skip::NotHeld);
    }
    let Some(uid) = host.uid(&session.user) else {
        return Verdict::Skip(Skip::UnknownUser);
    };
    if session.proof == Proof::LogText {
        // A second, forged login for the same connection makes it contested; give it
        // the time to be read before the key read first decides.
        let settled = session.seen_at.plus(FILE_MODE_SETTLE, rate);
        if boot_now < settled {
            // One tick more: the clock is read in whole ticks.
            return Verdict::Wait {
                at: settled.plus_ticks(1),
            };
        }
        // sshd forks the user's child only once authentication has succeeded (after
        // logging it): without one, the login line cannot be its.
        if !host.has_user_child(session, uid) {
            return Verdict::Skip(Skip::LoginNotProven);
        }
    }
    Verdict::End { uid }
}

/// How an attempt to end a session went, as the shell saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Its processes were ended; `proven_complete` when the kernel gave a handle on the
    /// whole session (a logind scope or an audit session id).
    Ended { proven_complete: bool },
    /// Its monitor had ended by itself before it could be signalled.
    AlreadyGone,
    /// Not ended: processes survived, or its scope could not be read.
    Failed,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aftermath {
    /// Report `session_terminated`; when not proven complete, say so (error, status).
    Terminated { proven_complete: bool },
    /// Nothing here: its exit is reported as a close by its pidfd's waiter.
    ClosedByItself,
    /// Review again at `at`, for as long as the key stays revoked.
    RetryAt(BootTicks),
}

pub fn aftermath(attempt: Attempt, boot_now: BootTicks, rate: TickRate) -> Aftermath {
    match attempt {
        Attempt::Ended { proven_complete } => Aftermath::Terminated { proven_complete },
        Attempt::AlreadyGone => Aftermath::ClosedByItself,
        Attempt::Failed => Aftermath::RetryAt(boot_now.plus(RETRY_ENDING, rate)),
    }
}

/// The earlier of a pending wake-up and `at`.
pub fn soonest(pending: Option<BootTicks>, at: BootTicks) -> BootTicks {
    pending.map_or(at, |p| p.min(at))
}

/// After a batch of log lines: whether the sessions must be reviewed at once. A session
/// learnt of after its key went (the log lags a little) must end now.
pub fn review_after(events: &[SessionEvent]) -> bool {
    events
        .iter()
        .any(|e| e.kind == EventKind::SessionOpened && e.key_id.is_some())
}

/// What a parsed sshd message is to the live tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineUse<'a> {
    /// A login of `user`: believed only once its monitor is proven.
    Login { user: &'a str },
    /// The first method of a multi-method login, which names the key: taken as it is,
    /// since root's sshd sent it (the kernel says so).
    FirstMethod,
    /// Nothing: a session ends when its process does, not when a line says so.
    Ignore,
}

/// The use of `message`, read from a source with `proof`. A `Partial` line from a
/// syslog file is ignored: anyone could write one ahead of sshd's `Accepted` and tie a
/// session to another key.
pub fn line_use<'a>(message: &SshdMessage<'a>, proof: Proof) -> LineUse<'a> {
    match message {
        SshdMessage::Accepted(login) => LineUse::Login { user: login.user },
        SshdMessage::Partial(_) if proof == Proof::Kernel => LineUse::FirstMethod,
        _ => LineUse::Ignore,
    }
}

/// What a login whose monitor could not be proven is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unproven {
    /// Root's sshd logged it (the journal says so) and its process has ended since: a
    /// past session, reported opened and closed.
    OpenedAndGone,
    /// Not a doubtful line but a host that cannot hold processes (a seccomp filter, a
    /// kernel without pidfd_open): no session can be proven here; said loudly.
    HostCannotHold,
    /// A claim not believed (forged, or not a monitor of its user): dropped.
    NotBelieved,
}

pub fn unproven(refusal: &Refusal, proof: Proof) -> Unproven {
    match refusal {
        Refusal::NoProcess(_) | Refusal::Exiting(_) | Refusal::StartedAfter { .. }
            if proof == Proof::Kernel =>
        {
            Unproven::OpenedAndGone
        }
        Refusal::Pidfd { .. } => Unproven::HostCannotHold,
        _ => Unproven::NotBelieved,
    }
}

/// The account key a login of `user` with `fingerprint` is tied to: the one in force
/// now, or one revoked after the connection's monitor `started` (the kernel's start
/// time, never the line's stamp, which is a claim): the log is read a little late, and
/// such a session must still be known as that key's. `started` is `None` for a past
/// session whose process is gone: any key revoked lately then.
pub fn key_for_login(
    keys: Option<&KeySet>,
    revoked: &RecentlyRevoked,
    user: &str,
    fingerprint: &str,
    now: OffsetDateTime,
    started: Option<BootTicks>,
) -> Option<String> {
    keys.and_then(|k| k.key_by_fingerprint(user, fingerprint, now))
        .map(|k| k.id.clone())
        .or_else(|| revoked.key_id(user, fingerprint, started.unwrap_or_default()))
}

/// Keys that left the set in force lately, so a login logged before the revocation but
/// read after it is still tied to its key (and then ended).
#[derive(Debug, Default)]
pub struct RecentlyRevoked {
    /// The keys in force at the last update.
    in_force: Vec<AccountKey>,
    /// Keys that left the set, when on the wall clock (to forget them) and on the boot
    /// clock (to compare with process start times).
    removed: Vec<(AccountKey, OffsetDateTime, BootTicks)>,
}

impl RecentlyRevoked {
    /// How long a revoked key is remembered: far longer than any log delay.
    pub const KEEP: time::Duration = time::Duration::minutes(10);

    /// Follows a new set (`None`: none known yet, nothing changes).
    pub fn update(&mut self, keys: Option<&KeySet>, now: OffsetDateTime, boot_now: BootTicks) {
        let Some(keys) = keys else { return };
        let current: Vec<AccountKey> = keys
            .keys
            .iter()
            .filter(|k| !k.is_expired(now))
            .cloned()
            .collect();
        // A key stays "in force" while the same key (id, fingerprint, users) is there.
        let identity = |k: &AccountKey| (k.id.clone(), k.fingerprint.clone(), k.users.clone());
        let present: HashSet<_> = current.iter().map(identity).collect();
        for key in std::mem::take(&mut self.in_force) {
            if !present.contains(&identity(&key)) {
                self.removed.push((key, now, boot_now));
            }
        }
        self.removed
            .retain(|(key, at, _)| now - *at < Self::KEEP && !present.contains(&identity(key)));
        self.in_force = current;
    }

    /// The id of a key that let `user` in with `fingerprint` and left the set after the
    /// connection's monitor `started`: before that, the key could not have opened it
    /// through the agent's files.
    pub fn key_id(&self, user: &str, fingerprint: &str, started: BootTicks) -> Option<String> {
        self.removed
            .iter()
            .rev()
            .find(|(key, _, removed_at)| {
                key.matches_fingerprint(fingerprint) && key.is_for(user) && *removed_at >= started
            })
            .map(|(key, _, _)| key.id.clone())
    }
}

/// What a restart keeps of the saved sessions table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The saved open sessions (those whose process is gone are closed once the shell
    /// has tried to hold them again).
    pub open: Vec<Session>,
    /// Where reading resumes.
    pub position: Option<Position>,
}

/// The saved table of boot `saved_boot`, read in boot `boot_id`. After another boot, a
/// file's position means nothing (the file may have been rotated, its inode reused); a
/// journal cursor still does.
pub fn resume(
    saved_boot: &str,
    open: Vec<Session>,
    position: Option<Position>,
    boot_id: &str,
) -> Resumed {
    let position = if saved_boot == boot_id {
        position
    } else {
        position.filter(|p| matches!(p, Position::Journal { .. }))
    };
    Resumed { open, position }
}

/// The saved sessions whose monitor may still run: those of this boot with a known start
/// time (`(session, pid, start)`), for the shell to hold again if the same process
/// still is there. Every other one ended while the agent was down.
pub fn to_hold_again<'a>(
    open: &'a [Session],
    boot_id: &'a str,
) -> impl Iterator<Item = (&'a Session, u32, BootTicks)> + 'a {
    open.iter()
        .filter(move |s| {
            s.session_id
                .strip_prefix(boot_id)
                .is_some_and(|pid| pid.starts_with(':'))
        })
        .filter_map(|s| s.process_start.map(|start| (s, s.monitor_pid, start)))
}

#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;
