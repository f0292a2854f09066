//! The durable outbox of session events: nothing the agent has taken is lost across
//! restarts and reboots, and nothing grows without bound.
//!
//! `outbox.jsonl` starts with a header line naming its generation, then one event a
//! line, appended and fsynced before the events count as taken. `outbox.ack` (replaced
//! atomically) holds the generation and the byte offset up to which the control plane
//! has accepted. When the accepted prefix grows large, the file is rewritten with only
//! the pending lines under a new generation; a crash between the two writes leaves an
//! ack of the old generation, read as "nothing accepted yet", so events are sent again
//! (harmless: ids are deterministic), never lost. A torn last line (a crash mid-append,
//! before the fsync that makes it count) is cut off at open.
//!
//! Every file here is 0600 whatever the umask: the events name users, addresses and keys.
//!
//! **When it is full** (the control plane unreachable for long, `outbox_max_events`
//! pending), events are dropped by a fair policy ([`choose_drops`], pure) so that one
//! user's logins cannot push out another's: a `session_terminated` (and the opening of
//! its session) is never dropped; the user with the most pending events pays first;
//! within a user, whole sessions that already ended (an opened and its closed) go
//! before single events (a session still open, or the close of one already reported).
//! A little more than the excess goes at once ([`drop_target`]), so the file is
//! rewritten once per such step, not for every new event. The number dropped is logged
//! and published ([`Drops`]) for the status's `last_error`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::api::model::{EventKind, SessionEvent};
use crate::durable::{self, FileMode};

pub const OUTBOX_FILE: &str = "outbox.jsonl";
pub const ACK_FILE: &str = "outbox.ack";
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";
/// Accepted bytes at the head of the file before it is compacted. Until then the
/// accepted lines stay, so their ids are still known after a restart.
const COMPACT_AFTER: u64 = 1024 * 1024;
/// How many recent event ids are remembered to refuse a second copy.
const RECENT_IDS: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outbox {path}: {source}")]
    Replace {
        path: PathBuf,
        source: durable::ReplaceError,
    },
}

#[derive(Serialize, Deserialize)]
struct Header {
    outbox: u32,
    generation: u64,
}

#[derive(Serialize, Deserialize, Default, PartialEq, Debug)]
struct Ack {
    generation: u64,
    offset: u64,
}

/// A batch read from the outbox: the events and the offset just past them.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<SessionEvent>,
    pub end: u64,
}

/// Events dropped because the outbox was full, as the status reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Dropped since the agent started (each drop is in the journal too).
    pub dropped: u64,
    /// The cap in force when they were dropped.
    pub cap: usize,
    /// Some of what was kept after the last drop is still pending: the loss is current.
    pub draining: bool,
}

impl Drops {
    /// The `last_error` part for these drops, if any.
    pub fn problem(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "{} session events dropped since the agent started: the outbox was full ({} events) while the control plane did not take them",
                self.dropped, self.cap
            )
        })
    }
}

/// What the drop policy needs of a pending event.
#[derive(Debug, Clone, Copy)]
pub struct PendingEvent<'a> {
    pub kind: EventKind,
    pub user: &'a str,
    pub session_id: &'a str,
}

/// How many events to drop from `pending` over a cap of `cap`: the excess plus a
/// fiftieth of the cap (at least one), so that a full outbox is rewritten once per
/// that many new events rather than for each; none when not over.
pub fn drop_target(pending: usize, cap: usize) -> usize {
    if pending <= cap {
        return 0;
    }
    pending - cap + (cap / 50).max(1)
}

/// One thing that may be dropped: a whole ended session or one event.
struct Unit {
    first: usize,
    second: Option<usize>,
}

impl Unit {
    fn size(&self) -> usize {
        1 + usize::from(self.second.is_some())
    }
}

/// A user's droppable events, oldest first within each kind.
#[derive(Default)]
struct UserUnits {
    pending: usize,
    pairs: VecDeque<Unit>,
    singles: VecDeque<Unit>,
}

impl UserUnits {
    fn next(&self) -> Option<&Unit> {
        self.pairs.front().or_else(|| self.singles.front())
    }

    fn pop(&mut self) -> Option<Unit> {
        self.pairs.pop_front().or_else(|| self.singles.pop_front())
    }
}

/// Which of `pending` (oldest first) to drop so that at least `target` go (fewer only
/// when nothing else may go), as indexes in ascending order. Pure.
///
/// - A `session_terminated` is never dropped, nor the `session_opened` of its session:
///   a revocation's proof must reach the account whole.
/// - The user with the most pending events loses one unit at a time until the target
///   is met (ties: the user whose next unit is oldest), so a user at or under the
///   others' level keeps everything while someone else is above it.
/// - Within a user, an opened and its closed go together (a session over and done,
///   before any single event); then single events, oldest first.
pub fn choose_drops(pending: &[PendingEvent<'_>], target: usize) -> Vec<usize> {
    if target == 0 {
        return Vec::new();
    }
    // The events of each session (by user too: the id is per connection).
    #[derive(Default)]
    struct SessionEvents {
        opened: Option<usize>,
        closed: Option<usize>,
        terminated: bool,
    }
    let mut sessions: HashMap<(&str, &str), SessionEvents> = HashMap::new();
    let mut users: HashMap<&str, UserUnits> = HashMap::new();
    for (index, event) in pending.iter().enumerate() {
        users.entry(event.user).or_default().pending += 1;
        let session = sessions.entry((event.user, event.session_id)).or_default();
        match event.kind {
            EventKind::SessionOpened => session.opened = session.opened.or(Some(index)),
            EventKind::SessionClosed => session.closed = session.closed.or(Some(index)),
            EventKind::SessionTerminated => session.terminated = true,
        }
    }
    let mut ordered: Vec<((&str, &str), SessionEvents)> = sessions.into_iter().collect();
    ordered.sort_by_key(|(_, s)| s.opened.or(s.closed).unwrap_or(usize::MAX));
    for ((user, _), session) in ordered {
        let Some(units) = users.get_mut(user) else {
            continue;
        };
        match (session.terminated, session.opened, session.closed) {
            (true, _, _) => {}
            (false, Some(opened), Some(closed)) => units.pairs.push_back(Unit {
                first: opened.min(closed),
                second: Some(opened.max(closed)),
            }),
            (false, Some(one), None) | (false, None, Some(one)) => units.singles.push_back(Unit {
                first: one,
                second: None,
            }),
            (false, None, None) => {}
        }
    }
    for units in users.values_mut() {
        units.singles.make_contiguous().sort_by_key(|u| u.first);
    }
    let mut heap: BinaryHeap<(usize, Reverse<usize>, &str)> = users
        .iter()
        .filter_map(|(user, units)| Some((units.pending, Reverse(units.next()?.first), *user)))
        .collect();
    let mut dropped = Vec::new();
    while dropped.len() < target {
        let Some((_, _, user)) = heap.pop() else {
            break;
        };
        let Some(units) = users.get_mut(user) else {
            continue;
        };
        let Some(unit) = units.pop() else { continue };
        units.pending -= unit.size();
        dropped.push(unit.first);
        dropped.extend(unit.second);
        if let Some(next) = units.next() {
            heap.push((units.pending, Reverse(next.first), user));
        }
    }
    dropped.sort_unstable();
    dropped
}

/// The fields of an outbox line the drop policy reads.
#[derive(Deserialize)]
struct LineMeta {
    #[serde(rename = "type")]
    kind: EventKind,
    user: String,
    session_id: String,
}

/// The outbox in a state directory.
pub struct Outbox {
    dir: PathBuf,
    file: File,
    generation: u64,
    header_len: u64,
    acked: u64,
    len: u64,
    pending: usize,
    max_pending: usize,
    /// Ids already in the outbox (pending or recently accepted): the same event found
    /// twice (a log replayed after a crash) goes in once.
    recent: HashSet<String>,
    recent_order: VecDeque<String>,
    drops: Drops,
    drops_tx: Option<tokio::sync::watch::Sender<Drops>>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`; at most `max_pending` events are kept,
    /// the oldest dropped (and counted in the log) beyond that.
    pub fn open(dir: &Path, max_pending: usize) -> Result<Outbox, OutboxError> {
        let path = dir.join(OUTBOX_FILE);
        let io = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        durable::ensure_dir(dir, crate::state::DIR_MODE).map_err(io)?;
        let mut file = durable::open_append(&path, true).map_err(io)?;
        let mut reader = BufReader::new(file.try_clone().map_err(io)?);
        let mut first = String::new();
        reader.read_line(&mut first).map_err(io)?;
        let header: Option<Header> = serde_json::from_str(first.trim_end())
            .ok()
            .filter(|_| first.ends_with('\n'));
        let mut outbox = match header {
            Some(header) => Outbox {
                dir: dir.to_owned(),
                generation: header.generation,
                header_len: first.len() as u64,
                acked: first.len() as u64,
                len: first.len() as u64,
                pending: 0,
                max_pending,
                file,
                recent: HashSet::new(),
                recent_order: VecDeque::new(),
                drops: Drops::default(),
                drops_tx: None,
            },
            None => {
                // New, or torn before its header was durable: start a fresh generation.
                drop(reader);
                file.set_len(0).map_err(io)?;
                let generation = fastrand::u64(..);
                let line = header_line(generation);
                file.write_all(line.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                return Ok(Outbox {
                    dir: dir.to_owned(),
                    file,
                    generation,
                    header_len: line.len() as u64,
                    acked: line.len() as u64,
                    len: line.len() as u64,
                    pending: 0,
                    max_pending,
                    recent: HashSet::new(),
                    recent_order: VecDeque::new(),
                    drops: Drops::default(),
                    drops_tx: None,
                });
            }
        };
        let ack = read_ack(dir);
        if ack.generation == outbox.generation && ack.offset >= outbox.header_len {
            outbox.acked = ack.offset;
        }
        // Walk the lines: count what is pending, cut a torn tail.
        let mut offset = outbox.header_len;
        let mut line = String::new();
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(io)?;
            if read == 0 {
                break;
            }
            let parsed = line
                .ends_with('\n')
                .then(|| serde_json::from_str::<SessionEvent>(line.trim_end()).ok())
                .flatten();
            let Some(event) = parsed else {
                warn!(path = %path.display(), offset, "outbox: cutting a torn or damaged tail");
                break;
            };
            outbox.remember(event.id);
            offset += read as u64;
            if offset > outbox.acked {
                outbox.pending += 1;
            }
        }
        outbox.acked = outbox.acked.min(offset);
        if offset != outbox.file.metadata().map_err(io)?.len() {
            outbox.file.set_len(offset).map_err(io)?;
            outbox.file.sync_all().map_err(io)?;
        }
        outbox.len = offset;
        Ok(outbox)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(OUTBOX_FILE)
    }

    fn io(&self, source: std::io::Error) -> OutboxError {
        OutboxError::Io {
            path: self.path(),
            source,
        }
    }

    /// Events waiting for the control plane.
    pub fn pending(&self) -> usize {
        self.pending
    }

    fn remember(&mut self, id: String) {
        if self.recent.insert(id.clone()) {
            self.recent_order.push_back(id);
            if self.recent_order.len() > RECENT_IDS {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// Appends events and fsyncs: from here on they survive anything. An event whose id
    /// is already in the outbox is not appended again.
    pub fn append(&mut self, events: &[SessionEvent]) -> Result<(), OutboxError> {
        let events: Vec<&SessionEvent> = events
            .iter()
            .filter(|e| !self.recent.contains(&e.id))
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(events.len() * 320);
        for event in &events {
            serde_json::to_writer(&mut bytes, event).map_err(|e| self.io(e.into()))?;
            bytes.push(b'\n');
        }
        self.file.write_all(&bytes).map_err(|e| self.io(e))?;
        self.file.sync_data().map_err(|e| self.io(e))?;
        self.len += bytes.len() as u64;
        self.pending += events.len();
        for event in events {
            self.remember(event.id.clone());
        }
        if self.pending > self.max_pending {
            self.drop_fairly()?;
        }
        Ok(())
    }

    /// Publishes the drop count on `tx` from now on (the heartbeat reads it).
    pub fn report_drops_to(&mut self, tx: tokio::sync::watch::Sender<Drops>) {
        tx.send_replace(self.drops);
        self.drops_tx = Some(tx);
    }

    /// What has been dropped so far.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    fn publish_drops(&self) {
        if let Some(tx) = &self.drops_tx {
            tx.send_replace(self.drops);
        }
    }

    /// Over the cap: drops what [`choose_drops`] picks and rewrites the file with the
    /// rest (a new generation, as a compaction: a crash in between resends, never loses).
    fn drop_fairly(&mut self) -> Result<(), OutboxError> {
        let mut file = self.file.try_clone().map_err(|e| self.io(e))?;
        file.seek(SeekFrom::Start(self.acked))
            .map_err(|e| self.io(e))?;
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut rest).map_err(|e| self.io(e))?;
        let lines: Vec<&[u8]> = rest.split_inclusive(|b| *b == b'\n').collect();
        let metas: Vec<Option<LineMeta>> = lines
            .iter()
            .map(|line| serde_json::from_slice(line).ok())
            .collect();
        let pending: Vec<PendingEvent<'_>> = metas
            .iter()
            .flatten()
            .map(|m| PendingEvent {
                kind: m.kind,
                user: &m.user,
                session_id: &m.session_id,
            })
            .collect();
        // Indexes of `pending` map back to lines through the parsed ones only (a
        // damaged line, never expected, is dropped with the rewrite).
        let parsed: Vec<usize> = (0..lines.len()).filter(|i| metas[*i].is_some()).collect();
        let target = drop_target(pending.len(), self.max_pending);
        let dropped = choose_drops(&pending, target);
        let gone: HashSet<usize> = dropped.iter().map(|i| parsed[*i]).collect();
        let kept: Vec<u8> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| metas[*i].is_some() && !gone.contains(i))
            .flat_map(|(_, line)| line.iter().copied())
            .collect();
        let kept_count = pending.len() - dropped.len();
        self.rewrite(&kept)?;
        self.pending = kept_count;
        self.drops.dropped += dropped.len() as u64;
        self.drops.cap = self.max_pending;
        self.drops.draining = true;
        let users: HashSet<&str> = dropped.iter().map(|i| pending[*i].user).collect();
        let mut users: Vec<String> = users
            .into_iter()
            .map(|u| crate::escape::escaped(u).into_owned())
            .collect();
        users.sort();
        warn!(
            dropped = dropped.len(),
            dropped_total = self.drops.dropped,
            kept = kept_count,
            cap = self.max_pending,
            users = users.join(","),
            "outbox full: session events dropped (the busiest users' ended sessions first, never a termination)"
        );
        self.publish_drops();
        Ok(())
    }

    /// The oldest pending events, at most `max`.
    pub fn read(&self, max: usize) -> Result<Batch, OutboxError> {
        let mut file = self.file.try_clone().map_err(|e| self.io(e))?;
        file.seek(SeekFrom::Start(self.acked))
            .map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(file);
        let mut events = Vec::new();
        let mut end = self.acked;
        let mut line = String::new();
        while events.len() < max && end < self.len {
            line.clear();
            let read = reader.read_line(&mut line).map_err(|e| self.io(e))?;
            if read == 0 {
                break;
            }
            end += read as u64;
            match serde_json::from_str::<SessionEvent>(line.trim_end()) {
                Ok(event) => events.push(event),
                Err(e) => error!("outbox: skipping a damaged line: {e}"),
            }
        }
        Ok(Batch { events, end })
    }

    /// Marks everything up to `batch.end` as accepted (durably), compacting when due.
    pub fn ack(&mut self, batch: &Batch) -> Result<(), OutboxError> {
        self.acked = batch.end.min(self.len);
        self.pending = self.pending.saturating_sub(batch.events.len());
        if self.pending == 0 && self.drops.draining {
            self.drops.draining = false;
            self.publish_drops();
        }
        if self.acked - self.header_len > COMPACT_AFTER {
            return self.compact();
        }
        self.write_ack()
    }

    fn write_ack(&self) -> Result<(), OutboxError> {
        let ack = Ack {
            generation: self.generation,
            offset: self.acked,
        };
        let bytes = serde_json::to_vec(&ack).map_err(|e| self.io(e.into()))?;
        replace(&self.dir, ACK_FILE, &bytes)
    }

    /// Rewrites the file with only the pending lines, under a new generation.
    fn compact(&mut self) -> Result<(), OutboxError> {
        let mut rest = Vec::new();
        let mut file = self.file.try_clone().map_err(|e| self.io(e))?;
        file.seek(SeekFrom::Start(self.acked))
            .map_err(|e| self.io(e))?;
        std::io::Read::read_to_end(&mut file, &mut rest).map_err(|e| self.io(e))?;
        self.rewrite(&rest)
    }

    /// Replaces the file by a new generation holding `rest` (whole pending lines),
    /// nothing of it accepted yet.
    fn rewrite(&mut self, rest: &[u8]) -> Result<(), OutboxError> {
        let generation = fastrand::u64(..);
        let header = header_line(generation);
        let content = [header.as_bytes(), rest].concat();
        replace(&self.dir, OUTBOX_FILE, &content)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.path())
            .map_err(|e| self.io(e))?;
        self.generation = generation;
        self.header_len = header.len() as u64;
        self.acked = self.header_len;
        self.len = content.len() as u64;
        self.write_ack()
    }

    /// Sets rejected events aside in `dead-letter.jsonl` (fsynced) and acknowledges them.
    pub fn dead_letter(&mut self, batch: &Batch, reason: &str) -> Result<(), OutboxError> {
        let path = self.dir.join(DEAD_LETTER_FILE);
        let io = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        let mut file = durable::open_append(&path, false).map_err(io)?;
        let mut bytes = Vec::new();
        for event in &batch.events {
            let entry = serde_json::json!({ "rejected_because": reason, "event": event });
            serde_json::to_writer(&mut bytes, &entry).map_err(|e| io(e.into()))?;
            bytes.push(b'\n');
        }
        file.write_all(&bytes).map_err(io)?;
        file.sync_data().map_err(io)?;
        error!(events = batch.events.len(), path = %path.display(), "control plane rejected events as malformed ({reason}); set aside");
        self.ack(batch)
    }
}

fn header_line(generation: u64) -> String {
    format!(
        "{}\n",
        serde_json::json!({ "outbox": 1, "generation": generation })
    )
}

fn read_ack(dir: &Path) -> Ack {
    std::fs::read(dir.join(ACK_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), OutboxError> {
    let path = dir.join(name);
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OutboxError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    let mode = FileMode {
        owner: None,
        mode: durable::PRIVATE,
        label: None,
    };
    durable::replace_at(&fd, OsStr::new(name), bytes, mode, || true)
        .map_err(|source| OutboxError::Replace { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::EventKind;

    fn event(n: u32) -> SessionEvent {
        SessionEvent {
            id: format!("e{n}"),
            kind: EventKind::SessionOpened,
            at: "2026-11-25T07:00:00Z".into(),
            user: "u".into(),
            auth_method: "publickey".into(),
            key_id: None,
            fingerprint: None,
            source_ip: "127.0.0.1".into(),
            source_port: 1,
            session_id: format!("b:{n}"),
            contested: false,
        }
    }

    fn ids(batch: &Batch) -> Vec<String> {
        batch.events.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn survives_reopen_and_resumes_after_the_ack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        outbox
            .append(&[event(1), event(2), event(3)])
            .expect("append");
        let first = outbox.read(2).expect("read");
        assert_eq!(ids(&first), ["e1", "e2"]);
        outbox.ack(&first).expect("ack");
        drop(outbox);
        let outbox = Outbox::open(dir.path(), 100).expect("reopen");
        assert_eq!(outbox.pending(), 1);
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e3"]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_events_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        outbox.append(&[event(1)]).expect("append");
        drop(outbox);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(OUTBOX_FILE))
            .expect("open");
        file.write_all(b"{\"id\":\"e2\",\"ty").expect("torn write");
        let mut outbox = Outbox::open(dir.path(), 100).expect("reopen");
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e1"]);
        outbox.append(&[event(3)]).expect("append after repair");
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e1", "e3"]);
    }

    #[test]
    fn compaction_keeps_pending_events_and_a_stale_ack_means_resend_not_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        outbox.append(&[event(1), event(2)]).expect("append");
        let all = outbox.read(10).expect("read");
        outbox.ack(&all).expect("ack all");
        outbox.compact().expect("compact");
        outbox.append(&[event(3)]).expect("append");
        drop(outbox);
        // Simulate a crash between the compaction and its ack: an ack of another generation.
        std::fs::write(
            dir.path().join(ACK_FILE),
            br#"{"generation":1,"offset":99999}"#,
        )
        .expect("stale ack");
        let outbox = Outbox::open(dir.path(), 100).expect("reopen");
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e3"]);
    }

    #[test]
    fn an_event_appended_twice_goes_in_once_even_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        outbox.append(&[event(1), event(2)]).expect("append");
        let first = outbox.read(1).expect("read");
        outbox.ack(&first).expect("ack e1");
        drop(outbox);
        let mut outbox = Outbox::open(dir.path(), 100).expect("reopen");
        outbox
            .append(&[event(1), event(2), event(3)])
            .expect("replayed");
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e2", "e3"]);
    }

    #[test]
    fn the_cap_drops_the_oldest_of_one_user_and_a_little_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 3).expect("open");
        outbox
            .append(&(1..=5).map(event).collect::<Vec<_>>())
            .expect("append");
        // Two over the cap, and one more so the next event does not rewrite again.
        assert_eq!(outbox.pending(), 2);
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e4", "e5"]);
        assert_eq!(outbox.drops().dropped, 3);
        drop(outbox);
        let outbox = Outbox::open(dir.path(), 3).expect("reopen");
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e4", "e5"]);
    }

    fn session_event(user: &str, session: u32, kind: EventKind) -> SessionEvent {
        SessionEvent {
            id: format!("{user}-{session}-{}", kind.as_str()),
            kind,
            user: user.into(),
            session_id: format!("b:{session}"),
            ..event(session)
        }
    }

    /// Issue 17, finding 8: during an outage, with the cap at 100, one user's 80 logins
    /// pushed out another user's session_opened/session_closed.
    #[test]
    fn one_users_logins_do_not_push_out_another_users_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        let (tx, rx) = tokio::sync::watch::channel(Drops::default());
        outbox.report_drops_to(tx);
        outbox
            .append(&[
                session_event("bob", 1, EventKind::SessionOpened),
                session_event("bob", 1, EventKind::SessionClosed),
            ])
            .expect("bob");
        for n in 100..180 {
            outbox
                .append(&[
                    session_event("mallory", n, EventKind::SessionOpened),
                    session_event("mallory", n, EventKind::SessionClosed),
                ])
                .expect("mallory");
        }
        let kept = ids(&outbox.read(1000).expect("read"));
        assert!(kept.len() <= 100, "{}", kept.len());
        assert!(
            kept.contains(&"bob-1-session_opened".to_owned())
                && kept.contains(&"bob-1-session_closed".to_owned()),
            "{kept:?}"
        );
        let drops = *rx.borrow();
        assert_eq!(drops.dropped as usize, 162 - kept.len());
        assert!(drops.draining);
        assert!(drops
            .problem()
            .expect("reported")
            .contains("session events dropped"));
        // Mallory's pairs went whole: every kept opened has its closed.
        for n in 100..180 {
            let opened = kept.contains(&format!("mallory-{n}-session_opened"));
            let closed = kept.contains(&format!("mallory-{n}-session_closed"));
            assert_eq!(opened, closed, "session {n}");
        }
        // Delivered: the loss is no longer current, the count stays.
        let all = outbox.read(1000).expect("read");
        outbox.ack(&all).expect("ack");
        assert!(!rx.borrow().draining);
        assert_eq!(rx.borrow().dropped, drops.dropped);
    }

    fn pending<'a>(
        events: &'a [(&'a str, u32, EventKind)],
        ids: &'a [String],
    ) -> Vec<PendingEvent<'a>> {
        events
            .iter()
            .zip(ids)
            .map(|((user, _, kind), id)| PendingEvent {
                kind: *kind,
                user,
                session_id: id,
            })
            .collect()
    }

    fn choose(events: &[(&str, u32, EventKind)], target: usize) -> Vec<usize> {
        let ids: Vec<String> = events.iter().map(|(_, s, _)| s.to_string()).collect();
        choose_drops(&pending(events, &ids), target)
    }

    use EventKind::{SessionClosed as C, SessionOpened as O, SessionTerminated as T};

    #[test]
    fn a_termination_and_its_opening_are_never_dropped() {
        let events = [("a", 1, O), ("a", 1, T), ("a", 2, T), ("a", 3, O)];
        assert_eq!(choose(&events, 4), [3]);
    }

    #[test]
    fn whole_ended_sessions_go_before_single_events() {
        // Session 1 still open (a single), session 2 opened and closed (a pair).
        let events = [("a", 1, O), ("a", 2, O), ("a", 2, C), ("a", 3, C)];
        assert_eq!(choose(&events, 1), [1, 2]);
        assert_eq!(choose(&events, 3), [0, 1, 2]);
        assert_eq!(choose(&events, 4), [0, 1, 2, 3]);
    }

    #[test]
    fn the_busiest_user_pays_and_the_others_keep_their_share() {
        let mut events = vec![("b", 1, O), ("c", 2, O), ("c", 2, C)];
        for n in 10..20 {
            events.push(("a", n, O));
            events.push(("a", n, C));
        }
        // 23 events; a has 20: a loses until it is down to the others' level.
        let dropped = choose(&events, 16);
        assert!(dropped.iter().all(|i| events[*i].0 == "a"), "{dropped:?}");
        assert_eq!(dropped.len(), 16);
        // Oldest pairs first.
        assert_eq!(dropped[..2], [3, 4]);
        // Past that level everyone pays, the heaviest first: c's pair before b's single.
        let dropped = choose(&events, 21);
        assert!(dropped.contains(&1) && dropped.contains(&2), "{dropped:?}");
        assert!(!dropped.contains(&0), "{dropped:?}");
    }

    #[test]
    fn nothing_to_drop_means_nothing_dropped() {
        assert!(choose(&[("a", 1, O)], 0).is_empty());
        assert!(choose(&[("a", 1, T)], 5).is_empty());
        assert_eq!(drop_target(100, 100), 0);
        assert_eq!(drop_target(101, 100), 3);
        assert_eq!(drop_target(100_001, 100_000), 2_001);
    }

    #[test]
    fn dead_letters_are_kept_aside_and_do_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        outbox.append(&[event(1), event(2)]).expect("append");
        let bad = outbox.read(1).expect("read");
        outbox
            .dead_letter(&bad, "422 events[0]: type")
            .expect("dead letter");
        assert_eq!(ids(&outbox.read(10).expect("read")), ["e2"]);
        let kept =
            std::fs::read_to_string(dir.path().join(DEAD_LETTER_FILE)).expect("dead letters");
        assert!(kept.contains("\"e1\"") && kept.contains("422"));
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn every_file_is_0600_and_the_directory_0711() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("state");
        let mut outbox = Outbox::open(&dir, 100).expect("open");
        outbox.append(&[event(1), event(2)]).expect("append");
        let first = outbox.read(1).expect("read");
        outbox.ack(&first).expect("ack");
        let bad = outbox.read(1).expect("read");
        outbox.dead_letter(&bad, "422").expect("dead letter");
        assert_eq!(mode(&dir), 0o711);
        for name in [OUTBOX_FILE, ACK_FILE, DEAD_LETTER_FILE] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        outbox.compact().expect("compact");
        assert_eq!(mode(&dir.join(OUTBOX_FILE)), 0o600, "after compaction");
    }

    #[test]
    fn files_left_readable_by_an_older_version_are_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut outbox = Outbox::open(dir.path(), 100).expect("open");
        outbox.append(&[event(1), event(2)]).expect("append");
        drop(outbox);
        for name in [OUTBOX_FILE, DEAD_LETTER_FILE] {
            let path = dir.path().join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("create");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let mut outbox = Outbox::open(dir.path(), 100).expect("reopen");
        assert_eq!(mode(&dir.path().join(OUTBOX_FILE)), 0o600);
        let bad = outbox.read(1).expect("read");
        outbox.dead_letter(&bad, "422").expect("dead letter");
        assert_eq!(mode(&dir.path().join(DEAD_LETTER_FILE)), 0o600);
    }

    #[test]
    fn a_symlink_in_place_of_the_outbox_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"").expect("write");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(OUTBOX_FILE)).expect("symlink");
        assert!(Outbox::open(dir.path(), 100).is_err());
        assert_eq!(std::fs::read(&elsewhere).expect("read"), b"");
    }
}
