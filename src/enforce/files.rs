//! The pure core of enforcement: for every managed file, what it must hold (wanted) and
//! what it was last seen to hold (on disk), and from the two, what to write next, when to
//! try again, what changed and what to report.
//!
//! No disk, no clock, no randomness here: the shell hands in the time
//! ([`tokio::time::Instant`], so tests run on tokio's paused clock), the wall-clock time
//! for reports and a jitter draw, and carries the [`Job`]s to the workers and their
//! [`Attempt`]s back.
//!
//! The rules:
//!
//! - A file is `in_sync` only when the last attempt for the newest wanted block succeeded
//!   (written, or read and found right). Anything else is `behind`, with the reason.
//! - A failed attempt is retried after [`retry_delay`]: about a second at first, then
//!   doubling to [`RETRY_CAP`], jittered. A new wanted block (a revocation) is tried at
//!   once and starts the schedule again.
//! - A job without an answer after [`HUNG_AFTER`] makes the file `behind` (a frozen or dead
//!   mount); the answer, when it comes, settles it.
//! - Drift (the file or its directory changed) is checked after a settle time that grows
//!   with repeated repairs of the same file ([`drift_settle`]), so an edit loop costs a
//!   few rewrites, and the block is still back within seconds of the last edit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::api::model::FileReport;
use crate::api::model::FileState;
use crate::authorized_keys::merge::BlockKey;

/// The first retry after a failure comes after about this long (jittered down to half).
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Retries of a failing file never wait longer than this.
pub const RETRY_CAP: Duration = Duration::from_secs(10);
/// A job unanswered for this long marks its file `behind`.
pub const HUNG_AFTER: Duration = Duration::from_secs(3);
/// Repairs this far apart do not count as one edit loop.
pub const DRIFT_STREAK_RESET: Duration = Duration::from_secs(30);
/// The longest a drift repair waits after the last change was seen.
pub const DRIFT_SETTLE_CAP: Duration = Duration::from_secs(5);

/// A key the agent wants in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedKey {
    pub id: String,
    pub fingerprint: String,
    /// `type base64`, as in the block.
    pub public_key: String,
}

/// What a file must hold: its managed block and the keys in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub block: Arc<Vec<u8>>,
    pub keys: Vec<WantedKey>,
}

/// The generation of a job that releases the file of a user no longer managed (its
/// block removed): tracked generations start at 1, so its answer never counts for the
/// user's current file, which may be another one by then.
pub const RELEASE: u64 = 0;

/// Work for the user's I/O worker: make the file hold `block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub user: String,
    pub generation: u64,
    pub block: Arc<Vec<u8>>,
    /// A drift check: the worker may answer from a `stat` when the file is as it left it.
    pub check_only: bool,
}

/// What a job did to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The file already held the block.
    Unchanged,
    /// The file was replaced; `drift` says what had changed when the keys were the same.
    Written { drift: Option<String> },
}

/// A worker's answer to a [`Job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub user: String,
    pub generation: u64,
    pub result: Result<Done, String>,
    /// The key lines in the file's managed blocks as read after the attempt (`None`:
    /// the file could not be read; what was last seen still stands).
    pub on_disk: Option<Vec<BlockKey>>,
    /// The file kept changing under the write (its owner is editing it): tried again
    /// at the drift pace, not the failure pace, so an edit loop costs few rewrites.
    pub contended: bool,
    /// Other names sshd reads that were hard links of the file when it was replaced, and
    /// still are: they hold what the file held before (all of them, every time).
    pub stale_copies: Vec<StaleCopy>,
}

/// Another name of the managed file, left holding its old keys by a replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleCopy {
    pub path: PathBuf,
    /// The managed keys it holds.
    pub keys: Vec<BlockKey>,
}

/// Something the shell logs (or acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    KeyAdded {
        user: String,
        id: String,
        fingerprint: String,
    },
    KeyRemoved {
        user: String,
        id: String,
        fingerprint: String,
    },
    DriftRepaired {
        user: String,
        path: PathBuf,
        what: String,
    },
    /// The file is behind for a new reason (logged once per reason, not per retry).
    Behind {
        user: String,
        path: PathBuf,
        error: String,
        retry_in: Option<Duration>,
    },
    /// Keys deleted from the account can still log in through this file (the list
    /// changed; empty again when they are finally gone). `managed`: the agent's own file,
    /// retried until they are gone; else the file sshd reads beside it, never written.
    RevokedStillAccepted {
        user: String,
        path: PathBuf,
        key_ids: Vec<String>,
        managed: bool,
    },
    /// The file holds what it must again.
    CaughtUp { user: String, path: PathBuf },
}

/// What the shell must do after a call into the core.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub jobs: Vec<Job>,
    pub notes: Vec<Note>,
}

/// The delay before retry number `failures` (1 = after the first failure): doubling from
/// [`RETRY_FIRST`], capped at [`RETRY_CAP`], scaled by `jitter` in `[0.5, 1.0]` so that
/// instances failing together do not retry together.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let ceiling = crate::schedule::backoff_ceiling(RETRY_FIRST, failures, RETRY_CAP);
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// How long drift is gathered before the file is checked, after `streak` repairs in a
/// row: an editor's save at once, an edit loop at a slowing pace.
pub fn drift_settle(streak: u32) -> Duration {
    match streak {
        0 | 1 => Duration::from_millis(20),
        2 => Duration::from_millis(250),
        3 => Duration::from_secs(1),
        4 => Duration::from_secs(2),
        _ => DRIFT_SETTLE_CAP,
    }
}

/// The behind reason of a job with no answer yet.
pub fn hung_error(waited: Duration) -> String {
    format!(
        "the write has not finished after {} s: the file system may be hung (frozen, or a \
         dead network mount); it completes when the file system answers",
        waited.as_secs()
    )
}

#[derive(Debug)]
struct Track {
    path: PathBuf,
    /// In the status report (files the agent writes keys to; others only when behind).
    reported: bool,
    wanted: Option<Wanted>,
    generation: u64,
    /// The newest job handed to the worker and not answered yet, and since when the
    /// worker has had work outstanding.
    sent: Option<(u64, Instant)>,
    /// The generation whose block was last verified in the file.
    verified: Option<u64>,
    /// The keys verified written, for "key added/removed" lines.
    written: Option<Vec<WantedKey>>,
    on_disk: Option<Vec<BlockKey>>,
    /// Public key to id of every key wanted in this file since the agent started.
    known: HashMap<String, String>,
    error: Option<String>,
    behind_since: Option<OffsetDateTime>,
    /// Since when the newest block has been waiting to be verified in the file.
    unverified_since: Option<OffsetDateTime>,
    not_removed: Vec<String>,
    failures: u32,
    retry_at: Option<Instant>,
    drift_at: Option<Instant>,
    drift_streak: u32,
    last_repair: Option<Instant>,
    /// Stale copies of the file, and since when each has been seen.
    stale: Vec<(StaleCopy, OffsetDateTime)>,
    /// The deleted keys last logged for each stale copy.
    stale_noted: BTreeMap<PathBuf, Vec<String>>,
}

impl Track {
    fn new(path: PathBuf, reported: bool) -> Track {
        Track {
            path,
            reported,
            wanted: None,
            generation: 0,
            sent: None,
            verified: None,
            written: None,
            on_disk: None,
            known: HashMap::new(),
            error: None,
            behind_since: None,
            unverified_since: None,
            not_removed: Vec::new(),
            failures: 0,
            retry_at: None,
            drift_at: None,
            drift_streak: 0,
            last_repair: None,
            stale: Vec::new(),
            stale_noted: BTreeMap::new(),
        }
    }

    fn job(&mut self, user: &str, now: Instant, check_only: bool) -> Option<Job> {
        let wanted = self.wanted.as_ref()?;
        let since = match self.sent {
            Some((_, since)) => since,
            None => now,
        };
        self.sent = Some((self.generation, since));
        self.retry_at = None;
        Some(Job {
            user: user.to_owned(),
            generation: self.generation,
            block: wanted.block.clone(),
            check_only,
        })
    }

    /// Ids of keys no longer wanted that a stale copy still holds.
    fn deleted_in(&self, copy: &StaleCopy) -> Vec<String> {
        let wanted: BTreeSet<&str> = self
            .wanted
            .iter()
            .flat_map(|w| w.keys.iter().map(|k| k.public_key.as_str()))
            .collect();
        let ids: BTreeSet<String> = copy
            .keys
            .iter()
            .filter(|k| !wanted.contains(k.public_key.as_str()))
            .filter_map(|k| {
                self.known
                    .get(&k.public_key)
                    .or(k.tagged_id.as_ref())
                    .cloned()
            })
            .collect();
        ids.into_iter().collect()
    }

    /// Report entries for the stale copies that still hold deleted keys: not files the
    /// agent manages, but sshd reads them, so each is shown `behind` with what it holds.
    fn stale_reports(&self, user: &str) -> impl Iterator<Item = FileReport> + '_ {
        let user = user.to_owned();
        self.stale.iter().filter_map(move |(copy, since)| {
            let deleted = self.deleted_in(copy);
            (!deleted.is_empty()).then(|| FileReport {
                user: user.clone(),
                path: copy.path.display().to_string(),
                state: FileState::Behind,
                error: Some(format!(
                    "not managed by the agent, but sshd reads it, and it holds a managed \
                     block (a copy or a second hard link of {}) with keys deleted from the \
                     account: remove it",
                    self.path.display()
                )),
                behind_since: Some(*since),
                keys_not_removed: deleted,
                keys_not_added: Vec::new(),
            })
        })
    }

    fn in_sync(&self) -> bool {
        self.error.is_none() && self.verified.is_some() && self.verified == Some(self.generation)
    }

    /// Ids of keys no longer wanted that the file still holds, and of wanted keys missing.
    fn differences(&self) -> (Vec<String>, Vec<String>) {
        let Some(wanted) = &self.wanted else {
            return (Vec::new(), Vec::new());
        };
        let Some(on_disk) = &self.on_disk else {
            // Never read: every wanted key counts as missing, nothing known as stale.
            return (
                Vec::new(),
                wanted.keys.iter().map(|k| k.id.clone()).collect(),
            );
        };
        let wanted_keys: BTreeSet<&str> =
            wanted.keys.iter().map(|k| k.public_key.as_str()).collect();
        let present: BTreeSet<&str> = on_disk.iter().map(|k| k.public_key.as_str()).collect();
        let mut not_removed = BTreeSet::new();
        for key in on_disk {
            if wanted_keys.contains(key.public_key.as_str()) {
                continue;
            }
            let id = self
                .known
                .get(&key.public_key)
                .or(key.tagged_id.as_ref())
                .cloned();
            // A line that claims a wanted key's id with other material is drift (put
            // right at the next repair), not a deleted key still accepted.
            if let Some(id) = id.filter(|id| !wanted.keys.iter().any(|k| k.id == *id)) {
                not_removed.insert(id);
            }
        }
        let not_added = wanted
            .keys
            .iter()
            .filter(|k| !present.contains(k.public_key.as_str()))
            .map(|k| k.id.clone())
            .collect();
        (not_removed.into_iter().collect(), not_added)
    }
}

/// Every managed file's wanted and on-disk state.
#[derive(Debug, Default)]
pub struct Files {
    tracks: BTreeMap<String, Track>,
}

impl Files {
    pub fn new() -> Files {
        Files::default()
    }

    /// Starts tracking `user`'s file at `path` (again: a changed path starts afresh).
    /// `reported`: the file is where the user's keys are written (not only a leftover
    /// block to keep empty).
    pub fn track(&mut self, user: &str, path: PathBuf, reported: bool) {
        match self.tracks.get_mut(user) {
            Some(track) if track.path == path => track.reported = reported,
            _ => {
                self.tracks
                    .insert(user.to_owned(), Track::new(path, reported));
            }
        }
    }

    /// Stops tracking `user` (no longer managed).
    pub fn forget(&mut self, user: &str) {
        self.tracks.remove(user);
    }

    /// Sets what `user`'s file must hold. A different block is a new generation, sent at
    /// once; the same block is sent only when the file is not known to hold it.
    pub fn want(
        &mut self,
        user: &str,
        wanted: Wanted,
        now: Instant,
        wall: OffsetDateTime,
    ) -> Option<Job> {
        let track = self.tracks.get_mut(user)?;
        for key in &wanted.keys {
            track.known.insert(key.public_key.clone(), key.id.clone());
        }
        if track.wanted.as_ref() == Some(&wanted) {
            let answered = track.sent.is_none();
            if !answered || track.in_sync() || track.retry_at.is_some() {
                return None;
            }
        } else {
            track.generation += 1;
            track.wanted = Some(wanted);
            track.unverified_since.get_or_insert(wall);
            // A new block (a revocation, perhaps) is tried now, on a fresh schedule.
            track.failures = 0;
        }
        track.job(user, now, false)
    }

    /// The file or its directory changed: check it after the settle time.
    pub fn drifted(&mut self, user: &str, now: Instant) {
        let Some(track) = self.tracks.get_mut(user) else {
            return;
        };
        if track
            .last_repair
            .is_some_and(|at| now.saturating_duration_since(at) > DRIFT_STREAK_RESET)
        {
            track.drift_streak = 0;
        }
        let at = now + drift_settle(track.drift_streak);
        // A later event does not push the check back: the settle counts from the first.
        track.drift_at = Some(track.drift_at.map_or(at, |t| t.min(at)));
    }

    /// Jobs whose time has come, and files whose job has gone unanswered too long.
    pub fn tick(&mut self, now: Instant, wall: OffsetDateTime) -> Output {
        let mut out = Output::default();
        for (user, track) in &mut self.tracks {
            if let Some((_, since)) = track.sent {
                let waited = now.saturating_duration_since(since);
                if waited >= HUNG_AFTER && track.error.is_none() {
                    let error = hung_error(waited);
                    set_behind(user, track, error, None, wall, &mut out.notes);
                }
                continue;
            }
            let retry = track.retry_at.is_some_and(|at| at <= now);
            let drift = track.drift_at.is_some_and(|at| at <= now);
            if retry || drift {
                track.drift_at = None;
                if let Some(job) = track.job(user, now, drift && !retry) {
                    out.jobs.push(job);
                }
            }
        }
        out
    }

    /// Takes a worker's answer. `jitter` in `[0, 1]` spreads the next retry.
    pub fn finished(
        &mut self,
        attempt: Attempt,
        now: Instant,
        wall: OffsetDateTime,
        jitter: f64,
    ) -> Output {
        let mut out = Output::default();
        if attempt.generation == RELEASE {
            return out;
        }
        let Some(track) = self.tracks.get_mut(&attempt.user) else {
            return out;
        };
        let user = attempt.user.as_str();
        let newest = attempt.generation == track.generation;
        if let Some((sent, _)) = track.sent {
            if sent <= attempt.generation {
                track.sent = None;
            }
        }
        if let Some(on_disk) = attempt.on_disk {
            track.on_disk = Some(on_disk);
        }
        let seen: Vec<OffsetDateTime> = attempt
            .stale_copies
            .iter()
            .map(|copy| {
                track
                    .stale
                    .iter()
                    .find(|(known, _)| known.path == copy.path)
                    .map_or(wall, |(_, since)| *since)
            })
            .collect();
        track.stale = attempt.stale_copies.into_iter().zip(seen).collect();
        let stale_now: BTreeMap<PathBuf, Vec<String>> = track
            .stale
            .iter()
            .map(|(copy, _)| (copy.path.clone(), track.deleted_in(copy)))
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        for (path, ids) in &stale_now {
            if track.stale_noted.get(path) != Some(ids) {
                out.notes.push(Note::RevokedStillAccepted {
                    user: user.to_owned(),
                    path: path.clone(),
                    key_ids: ids.clone(),
                    managed: false,
                });
            }
        }
        for path in track.stale_noted.keys() {
            if !stale_now.contains_key(path) {
                out.notes.push(Note::RevokedStillAccepted {
                    user: user.to_owned(),
                    path: path.clone(),
                    key_ids: Vec::new(),
                    managed: false,
                });
            }
        }
        track.stale_noted = stale_now;
        match attempt.result {
            Ok(done) => {
                if let Done::Written { drift: Some(what) } = &done {
                    out.notes.push(Note::DriftRepaired {
                        user: user.to_owned(),
                        path: track.path.clone(),
                        what: what.clone(),
                    });
                }
                // Only a repair of drift counts toward an edit loop: a burst of account
                // changes must not slow down the next repair of a hand edit.
                if matches!(done, Done::Written { drift: Some(_) }) {
                    if track
                        .last_repair
                        .is_some_and(|at| now.saturating_duration_since(at) <= DRIFT_STREAK_RESET)
                    {
                        track.drift_streak = track.drift_streak.saturating_add(1);
                    } else {
                        track.drift_streak = 1;
                    }
                    track.last_repair = Some(now);
                }
                if newest {
                    track.verified = Some(attempt.generation);
                    track.unverified_since = None;
                    track.failures = 0;
                    track.retry_at = None;
                    let keys = track.wanted.as_ref().map(|w| w.keys.clone());
                    if let Some(keys) = keys {
                        log_key_changes(user, track.written.as_deref(), &keys, &mut out.notes);
                        track.written = Some(keys);
                    }
                    if track.error.take().is_some() {
                        track.behind_since = None;
                        out.notes.push(Note::CaughtUp {
                            user: user.to_owned(),
                            path: track.path.clone(),
                        });
                    }
                } else if track.sent.is_none() {
                    // An older block went in while a newer one waits: send the newer.
                    if let Some(job) = track.job(user, now, false) {
                        out.jobs.push(job);
                    }
                }
            }
            Err(error) => {
                if track.sent.is_none() {
                    track.failures = track.failures.saturating_add(1);
                    let mut delay = retry_delay(track.failures, jitter);
                    if attempt.contended {
                        // Each try that lost to an edit counts as a repair of a loop.
                        delay = delay.max(drift_settle(track.drift_streak));
                        track.drift_streak = track.drift_streak.saturating_add(1);
                        track.last_repair = Some(now);
                    }
                    track.retry_at = Some(now + delay);
                    set_behind(user, track, error, Some(delay), wall, &mut out.notes);
                }
            }
        }
        let (not_removed, _) = track.differences();
        if not_removed != track.not_removed {
            out.notes.push(Note::RevokedStillAccepted {
                user: user.to_owned(),
                path: track.path.clone(),
                key_ids: not_removed.clone(),
                managed: true,
            });
            track.not_removed = not_removed;
        }
        out
    }

    /// True while a job younger than [`HUNG_AFTER`] is out: its answer is about to
    /// change the report, so the report waits for it.
    pub fn settling(&self, now: Instant) -> bool {
        self.tracks.values().any(|t| {
            t.sent
                .is_some_and(|(_, since)| now.saturating_duration_since(since) < HUNG_AFTER)
        })
    }

    /// The next instant [`Files::tick`] has work: a retry, a drift check or a hang deadline.
    pub fn next_wake(&self) -> Option<Instant> {
        self.tracks
            .values()
            .filter_map(|t| match t.sent {
                Some(_) if t.error.is_some() => None,
                Some((_, since)) => Some(since + HUNG_AFTER),
                None => [t.retry_at, t.drift_at].into_iter().flatten().min(),
            })
            .min()
    }

    /// True while any job is out (not answered yet).
    pub fn outstanding(&self) -> bool {
        self.tracks.values().any(|t| t.sent.is_some())
    }

    /// True when any file is behind (a stale copy holding a deleted key included).
    pub fn any_behind(&self) -> bool {
        self.tracks
            .values()
            .any(|t| t.error.is_some() || t.stale.iter().any(|(c, _)| !t.deleted_in(c).is_empty()))
    }

    /// The `files` of the agent status.
    pub fn report(&self) -> Vec<FileReport> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.wanted.is_some() && (t.reported || t.error.is_some()))
            .map(|(user, t)| {
                let (keys_not_removed, keys_not_added) = t.differences();
                let in_sync = t.in_sync();
                FileReport {
                    user: user.clone(),
                    path: t.path.display().to_string(),
                    state: if in_sync {
                        FileState::InSync
                    } else {
                        FileState::Behind
                    },
                    error: if in_sync {
                        None
                    } else {
                        Some(t.error.clone().unwrap_or_else(|| {
                            "not verified since the last change: being written".to_owned()
                        }))
                    },
                    behind_since: if in_sync {
                        None
                    } else {
                        t.behind_since.or(t.unverified_since)
                    },
                    keys_not_removed,
                    keys_not_added,
                }
            })
            .chain(
                self.tracks
                    .iter()
                    .flat_map(|(user, t)| t.stale_reports(user)),
            )
            .collect()
    }
}

fn set_behind(
    user: &str,
    track: &mut Track,
    error: String,
    retry_in: Option<Duration>,
    wall: OffsetDateTime,
    notes: &mut Vec<Note>,
) {
    if track.behind_since.is_none() {
        track.behind_since = Some(wall);
    }
    if track.error.as_deref() != Some(error.as_str()) {
        notes.push(Note::Behind {
            user: user.to_owned(),
            path: track.path.clone(),
            error: error.clone(),
            retry_in,
        });
    }
    track.error = Some(error);
}

fn log_key_changes(
    user: &str,
    before: Option<&[WantedKey]>,
    after: &[WantedKey],
    notes: &mut Vec<Note>,
) {
    let before = before.unwrap_or_default();
    for key in after.iter().filter(|k| !before.contains(k)) {
        notes.push(Note::KeyAdded {
            user: user.to_owned(),
            id: key.id.clone(),
            fingerprint: key.fingerprint.clone(),
        });
    }
    for key in before.iter().filter(|k| !after.contains(k)) {
        notes.push(Note::KeyRemoved {
            user: user.to_owned(),
            id: key.id.clone(),
            fingerprint: key.fingerprint.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> WantedKey {
        WantedKey {
            id: id.into(),
            fingerprint: format!("SHA256:{id}"),
            public_key: format!("ssh-ed25519 AAAA{id}"),
        }
    }

    fn wanted(ids: &[&str]) -> Wanted {
        let keys: Vec<WantedKey> = ids.iter().map(|id| key(id)).collect();
        let block = keys
            .iter()
            .map(|k| format!("{} pictor-key-id={}\n", k.public_key, k.id))
            .collect::<String>();
        Wanted {
            block: Arc::new(block.into_bytes()),
            keys,
        }
    }

    fn on_disk(ids: &[&str]) -> Vec<BlockKey> {
        ids.iter()
            .map(|id| BlockKey {
                public_key: key(id).public_key,
                tagged_id: Some((*id).into()),
            })
            .collect()
    }

    fn wall() -> OffsetDateTime {
        crate::timefmt::parse("2026-11-30T03:00:00Z").expect("time")
    }

    fn answer(job: &Job, result: Result<Done, &str>, disk: Option<&[&str]>) -> Attempt {
        Attempt {
            stale_copies: Vec::new(),
            user: job.user.clone(),
            generation: job.generation,
            result: result.map_err(str::to_owned),
            on_disk: disk.map(on_disk),
            contended: false,
        }
    }

    fn files() -> Files {
        let mut files = Files::new();
        files.track("alice", "/home/alice/.ssh/authorized_keys".into(), true);
        files
    }

    /// Alice's file holds k1 and k2, verified.
    fn synced(files: &mut Files) {
        let job = files
            .want("alice", wanted(&["k1", "k2"]), Instant::now(), wall())
            .expect("a job");
        files.finished(
            answer(&job, Ok(Done::Written { drift: None }), Some(&["k1", "k2"])),
            Instant::now(),
            wall(),
            0.5,
        );
    }

    #[test]
    fn retry_delays_start_near_a_second_double_and_stay_under_the_cap() {
        assert!(retry_delay(1, 0.0) >= Duration::from_millis(500));
        assert!(retry_delay(1, 1.0) <= RETRY_FIRST);
        assert_eq!(retry_delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(40, 1.0), RETRY_CAP);
        assert_eq!(retry_delay(u32::MAX, 0.0), RETRY_CAP / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_written_file_is_in_sync_and_its_keys_are_noted_once() {
        let mut files = files();
        let job = files
            .want("alice", wanted(&["k1"]), Instant::now(), wall())
            .expect("a job");
        assert!(files.settling(Instant::now()));
        assert_eq!(
            files.report()[0].state,
            FileState::Behind,
            "not verified yet"
        );
        let out = files.finished(
            answer(&job, Ok(Done::Written { drift: None }), Some(&["k1"])),
            Instant::now(),
            wall(),
            0.5,
        );
        assert_eq!(
            out.notes,
            [Note::KeyAdded {
                user: "alice".into(),
                id: "k1".into(),
                fingerprint: "SHA256:k1".into()
            }]
        );
        let report = &files.report()[0];
        assert_eq!(report.state, FileState::InSync);
        assert_eq!(report.error, None);
        assert_eq!(report.behind_since, None);
        assert!(report.keys_not_removed.is_empty() && report.keys_not_added.is_empty());
        assert!(!files.settling(Instant::now()));
        assert_eq!(files.next_wake(), None, "nothing to do: no timer");
        assert_eq!(
            files.want("alice", wanted(&["k1"]), Instant::now(), wall()),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_revocation_is_retried_within_a_second_then_backs_off_and_heals() {
        let mut files = files();
        synced(&mut files);
        let start = Instant::now();
        let job = files
            .want("alice", wanted(&["k1"]), start, wall())
            .expect("now");
        let out = files.finished(
            answer(&job, Err("No space left on device"), Some(&["k1", "k2"])),
            start,
            wall(),
            1.0,
        );
        assert!(out.notes.contains(&Note::RevokedStillAccepted {
            user: "alice".into(),
            path: "/home/alice/.ssh/authorized_keys".into(),
            key_ids: vec!["k2".into()],
            managed: true,
        }));
        let report = &files.report()[0];
        assert_eq!(report.state, FileState::Behind);
        assert_eq!(report.error.as_deref(), Some("No space left on device"));
        assert_eq!(report.behind_since, Some(wall()));
        assert_eq!(report.keys_not_removed, ["k2"]);
        assert!(report.keys_not_added.is_empty());
        assert_eq!(files.next_wake(), Some(start + Duration::from_secs(1)));

        // Nothing before the retry time; the retry at it.
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(files.tick(Instant::now(), wall()).jobs.is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let retry = files.tick(Instant::now(), wall()).jobs;
        assert_eq!(retry.len(), 1);
        // The same error again: not said again, and the next wait doubles.
        let out = files.finished(
            answer(
                &retry[0],
                Err("No space left on device"),
                Some(&["k1", "k2"]),
            ),
            Instant::now(),
            wall(),
            1.0,
        );
        assert!(out.notes.is_empty(), "{:?}", out.notes);
        assert_eq!(
            files.next_wake(),
            Some(Instant::now() + Duration::from_secs(2))
        );
        // Space freed: the next retry succeeds and everything is clean again.
        tokio::time::advance(Duration::from_secs(2)).await;
        let retry = files.tick(Instant::now(), wall()).jobs;
        let out = files.finished(
            answer(&retry[0], Ok(Done::Written { drift: None }), Some(&["k1"])),
            Instant::now(),
            wall(),
            1.0,
        );
        assert!(out.notes.contains(&Note::CaughtUp {
            user: "alice".into(),
            path: "/home/alice/.ssh/authorized_keys".into(),
        }));
        assert!(out.notes.contains(&Note::RevokedStillAccepted {
            user: "alice".into(),
            path: "/home/alice/.ssh/authorized_keys".into(),
            key_ids: vec![],
            managed: true,
        }));
        assert!(out
            .notes
            .iter()
            .any(|n| matches!(n, Note::KeyRemoved { id, .. } if id == "k2")));
        let report = &files.report()[0];
        assert_eq!(report.state, FileState::InSync);
        assert_eq!(report.behind_since, None);
        assert!(!files.any_behind());
        assert_eq!(files.next_wake(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_capped_and_a_new_block_is_tried_at_once() {
        let mut files = files();
        synced(&mut files);
        let mut job = files
            .want("alice", wanted(&["k1"]), Instant::now(), wall())
            .expect("job");
        for _ in 0..12 {
            files.finished(
                answer(&job, Err("read-only file system"), None),
                Instant::now(),
                wall(),
                1.0,
            );
            let wake = files.next_wake().expect("a retry");
            assert!(wake - Instant::now() <= RETRY_CAP);
            tokio::time::advance(wake - Instant::now()).await;
            job = files.tick(Instant::now(), wall()).jobs.remove(0);
        }
        files.finished(
            answer(&job, Err("read-only file system"), None),
            Instant::now(),
            wall(),
            1.0,
        );
        assert_eq!(files.next_wake(), Some(Instant::now() + RETRY_CAP));
        // Unreadable: what was last seen stands (k2 was in the file).
        assert_eq!(files.report()[0].keys_not_removed, ["k2"]);
        // Another change does not wait for the backoff.
        let job = files.want("alice", wanted(&[]), Instant::now(), wall());
        assert!(job.is_some_and(|j| j.block.is_empty()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_job_makes_the_file_behind_until_the_answer_comes() {
        let mut files = files();
        synced(&mut files);
        let job = files
            .want("alice", wanted(&["k1"]), Instant::now(), wall())
            .expect("job");
        assert_eq!(files.next_wake(), Some(Instant::now() + HUNG_AFTER));
        tokio::time::advance(HUNG_AFTER - Duration::from_millis(1)).await;
        assert!(files.tick(Instant::now(), wall()).notes.is_empty());
        assert!(files.settling(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        let out = files.tick(Instant::now(), wall());
        assert!(matches!(&out.notes[..], [Note::Behind { error, .. }] if error.contains("hung")));
        assert!(out.jobs.is_empty(), "the worker is busy: no second job");
        assert!(!files.settling(Instant::now()));
        assert_eq!(
            files.next_wake(),
            None,
            "waiting for the answer, not polling"
        );
        let report = &files.report()[0];
        assert_eq!(report.state, FileState::Behind);
        assert_eq!(report.keys_not_removed, ["k2"], "as last seen");
        // More changes while frozen go to the worker, which keeps only the newest.
        let newer = files
            .want("alice", wanted(&["k3"]), Instant::now(), wall())
            .expect("queued");
        // The thaw: the old job answers, then the newest.
        files.finished(
            answer(&job, Ok(Done::Written { drift: None }), Some(&["k1"])),
            Instant::now(),
            wall(),
            0.5,
        );
        assert_eq!(files.report()[0].state, FileState::Behind, "k3 not in yet");
        files.finished(
            answer(&newer, Ok(Done::Written { drift: None }), Some(&["k3"])),
            Instant::now(),
            wall(),
            0.5,
        );
        assert_eq!(files.report()[0].state, FileState::InSync);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_drift_repairs_slow_down_and_a_quiet_file_starts_afresh() {
        let mut files = files();
        synced(&mut files);
        let mut gaps = Vec::new();
        for _ in 0..8 {
            files.drifted("alice", Instant::now());
            let wake = files.next_wake().expect("a drift check");
            gaps.push(wake - Instant::now());
            tokio::time::advance(wake - Instant::now()).await;
            let jobs = files.tick(Instant::now(), wall()).jobs;
            assert!(jobs[0].check_only);
            files.finished(
                answer(
                    &jobs[0],
                    Ok(Done::Written {
                        drift: Some("edited".into()),
                    }),
                    None,
                ),
                Instant::now(),
                wall(),
                0.5,
            );
        }
        assert_eq!(gaps[0], Duration::from_millis(20));
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "{gaps:?}");
        assert_eq!(*gaps.last().expect("gaps"), DRIFT_SETTLE_CAP);
        // A check that finds nothing to repair does not count as a repair.
        tokio::time::advance(DRIFT_STREAK_RESET + Duration::from_secs(1)).await;
        files.drifted("alice", Instant::now());
        assert_eq!(
            files.next_wake(),
            Some(Instant::now() + Duration::from_millis(20))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_for_an_older_block_does_not_count_for_the_newer() {
        let mut files = files();
        let first = files
            .want("alice", wanted(&["k1"]), Instant::now(), wall())
            .expect("1");
        let second = files
            .want("alice", wanted(&["k2"]), Instant::now(), wall())
            .expect("2");
        assert_eq!(second.generation, first.generation + 1);
        files.finished(
            answer(&first, Err("disk full"), Some(&[])),
            Instant::now(),
            wall(),
            0.5,
        );
        assert_eq!(files.report()[0].state, FileState::Behind);
        assert!(!files.any_behind(), "the newer job may still succeed");
        files.finished(
            answer(&second, Ok(Done::Unchanged), Some(&["k2"])),
            Instant::now(),
            wall(),
            0.5,
        );
        assert_eq!(files.report()[0].state, FileState::InSync);
    }

    #[test]
    fn a_file_of_an_unreported_user_shows_only_when_behind() {
        let mut files = Files::new();
        files.track("bob", "/home/bob/.ssh/authorized_keys".into(), false);
        let now = Instant::now();
        let job = files.want("bob", wanted(&[]), now, wall()).expect("job");
        files.finished(
            answer(&job, Ok(Done::Unchanged), Some(&[])),
            now,
            wall(),
            0.5,
        );
        assert!(files.report().is_empty());
        let mut files2 = Files::new();
        files2.track("bob", "/home/bob/.ssh/authorized_keys".into(), false);
        let job = files2.want("bob", wanted(&[]), now, wall()).expect("job");
        files2.finished(
            answer(&job, Err("immutable"), Some(&["old"])),
            now,
            wall(),
            0.5,
        );
        assert_eq!(files2.report()[0].keys_not_removed, ["old"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_its_owner_keeps_editing_is_retried_at_the_drift_pace() {
        let mut files = files();
        synced(&mut files);
        let mut waits = Vec::new();
        for _ in 0..7 {
            files.drifted("alice", Instant::now());
            let wake = files.next_wake().expect("wake");
            tokio::time::advance(wake - Instant::now()).await;
            let job = files.tick(Instant::now(), wall()).jobs.remove(0);
            let mut lost = answer(&job, Err("kept changing"), Some(&["k1", "k2"]));
            lost.contended = true;
            files.finished(lost, Instant::now(), wall(), 1.0);
            let retry = files.next_wake().expect("a retry") - Instant::now();
            waits.push(retry);
            tokio::time::advance(retry).await;
            let job = files.tick(Instant::now(), wall()).jobs.remove(0);
            files.finished(
                answer(&job, Ok(Done::Written { drift: None }), Some(&["k1", "k2"])),
                Instant::now(),
                wall(),
                1.0,
            );
        }
        assert_eq!(*waits.last().expect("waits"), DRIFT_SETTLE_CAP, "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_account_changes_does_not_slow_the_next_drift_repair() {
        let mut files = files();
        let mut ids = vec!["k0".to_owned()];
        for n in 1..=20 {
            ids.push(format!("k{n}"));
            let wanted_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let job = files
                .want("alice", wanted(&wanted_ids), Instant::now(), wall())
                .expect("a new block is sent");
            files.finished(
                answer(&job, Ok(Done::Written { drift: None }), Some(&wanted_ids)),
                Instant::now(),
                wall(),
                1.0,
            );
            tokio::time::advance(Duration::from_millis(50)).await;
        }
        files.drifted("alice", Instant::now());
        let wake = files.next_wake().expect("a drift check") - Instant::now();
        assert_eq!(
            wake,
            drift_settle(0),
            "the first repair of a hand edit is at once"
        );
    }

    #[test]
    fn a_stale_hard_link_holding_a_deleted_key_is_reported_behind_until_gone() {
        let mut files = files();
        let now = Instant::now();
        let first = files
            .want("alice", wanted(&["k1", "k2"]), now, wall())
            .expect("job");
        files.finished(
            answer(
                &first,
                Ok(Done::Written { drift: None }),
                Some(&["k1", "k2"]),
            ),
            now,
            wall(),
            1.0,
        );
        let second = files
            .want("alice", wanted(&["k1"]), now, wall())
            .expect("job");
        let mut done = answer(&second, Ok(Done::Written { drift: None }), Some(&["k1"]));
        let copy = StaleCopy {
            path: PathBuf::from("/home/alice/.ssh/authorized_keys2"),
            keys: on_disk(&["k1", "k2"]),
        };
        done.stale_copies = vec![copy];
        files.finished(done, now, wall(), 1.0);
        let report = files.report();
        assert_eq!(report.len(), 2, "{report:?}");
        assert_eq!(report[0].state, FileState::InSync, "the managed file");
        assert_eq!(report[1].path, "/home/alice/.ssh/authorized_keys2");
        assert_eq!(report[1].state, FileState::Behind);
        assert_eq!(report[1].keys_not_removed, ["k2"]);
        assert!(files.any_behind());
        // The link removed: the next answer carries no stale copy.
        let check = files.want("alice", wanted(&["k1"]), now, wall());
        assert!(check.is_none(), "in sync: nothing to send");
        files.finished(
            answer(&second, Ok(Done::Unchanged), Some(&["k1"])),
            now,
            wall(),
            1.0,
        );
        assert_eq!(files.report().len(), 1);
        assert!(!files.any_behind());
    }

    #[test]
    fn a_line_claiming_a_wanted_id_with_other_material_is_not_a_deleted_key() {
        let mut files = files();
        let now = Instant::now();
        let job = files
            .want("alice", wanted(&["k1"]), now, wall())
            .expect("job");
        let mut disk = on_disk(&["k1"]);
        disk[0].public_key = "ssh-ed25519 AAAATampered".into();
        let mut lost = answer(&job, Err("kept changing"), None);
        lost.on_disk = Some(disk);
        files.finished(lost, now, wall(), 0.5);
        let report = &files.report()[0];
        assert!(report.keys_not_removed.is_empty(), "{report:?}");
        assert_eq!(report.keys_not_added, ["k1"]);
    }

    #[test]
    fn the_answer_of_a_released_file_never_counts_for_the_users_current_one() {
        let mut files = files();
        synced(&mut files);
        let release = Attempt {
            stale_copies: Vec::new(),
            user: "alice".into(),
            generation: RELEASE,
            result: Err("read-only file system".into()),
            on_disk: Some(on_disk(&["old"])),
            contended: false,
        };
        let out = files.finished(release, Instant::now(), wall(), 0.5);
        assert_eq!(out, Output::default());
        let report = &files.report()[0];
        assert_eq!(report.state, FileState::InSync);
        assert!(report.keys_not_removed.is_empty());
    }
}
