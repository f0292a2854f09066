//! A classic syslog file (`auth.log`, `secure`) as the source, followed with inotify
//! through rotation, truncation and copytruncate, resumed from an inode and offset.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::parse;
use super::procs;
use crate::sessions::boot_clock::{self, BootTicks};

use super::{current_processes_lines, LogItem, OwnedRecord, Position};

/// The open file being followed.
struct Followed {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Followed {
    /// The position `offset` bytes into this file.
    fn position(&self, offset: u64) -> Position {
        Position::File {
            dev: self.dev,
            ino: self.ino,
            offset,
        }
    }
}

/// The shortest time between two reads of a busy syslog file.
const READ_COALESCE: Duration = Duration::from_millis(100);

/// Follows a syslog file until `tx` closes.
pub async fn follow_file(path: PathBuf, start: Option<Position>, tx: mpsc::Sender<LogItem>) {
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<()>();
    let Some(dir) = path.parent().map(Path::to_path_buf) else {
        return;
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        // The directory is shared with other logs: only our file (and its rotated name).
        if event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&name))
        }) {
            let _ = wake_tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("cannot watch {}: {e}; polling it every 5 s", dir.display());
            None
        }
    };
    if let Some(w) = watcher.as_mut() {
        if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
            warn!("cannot watch {}: {e}; polling it every 5 s", dir.display());
            watcher = None;
        }
    }
    let mut stamps = parse::StampContext::system(OffsetDateTime::now_utc());
    let mut current: Option<Followed> = None;
    let mut rotated: Vec<Followed> = Vec::new();
    let mut fresh_start = start.is_none();
    let mut resume = start;
    let mut last_read = tokio::time::Instant::now();
    loop {
        // Under a flood of lines (brute force), read at most every READ_COALESCE: a
        // quiet file is read at once on its first line, a busy one in batches.
        tokio::time::sleep_until(last_read + READ_COALESCE).await;
        while wake_rx.try_recv().is_ok() {}
        last_read = tokio::time::Instant::now();
        stamps.set_reference(OffsetDateTime::now_utc());
        // Lines still landing in a rotated file (the writer not yet reopened) come first.
        for old in &mut rotated {
            if !drain(old, &stamps, &tx).await {
                return;
            }
        }
        if current.is_none() {
            current = open_followed(&path, resume.take());
            if let (true, Some(followed)) = (fresh_start, current.as_mut()) {
                // No saved position: do not replay the file's history; read the lines of
                // the sshd processes alive now, then follow from the end.
                fresh_start = false;
                if !recover_from_file(followed, &stamps, &tx).await {
                    return;
                }
            }
        }
        if let Some(followed) = current.as_mut() {
            if !drain(followed, &stamps, &tx).await {
                return;
            }
            let now_at_path = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            if now_at_path != Some((followed.dev, followed.ino)) {
                debug!(path = %path.display(), "log file rotated");
                if let Some(old) = current.take() {
                    rotated.push(old);
                    rotated.truncate(2);
                }
                continue;
            }
        }
        let poll = if watcher.is_some() {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(5)
        };
        tokio::select! {
            _ = wake_rx.recv() => {}
            () = tokio::time::sleep(poll) => {
                // A rotated file that stayed quiet a full period is done.
                rotated.clear();
            }
            () = tx.closed() => return,
        }
        while wake_rx.try_recv().is_ok() {}
    }
}

fn open_followed(path: &Path, resume: Option<Position>) -> Option<Followed> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let offset = match resume {
        Some(Position::File { dev, ino, offset })
            if dev == meta.dev() && ino == meta.ino() && offset <= meta.len() =>
        {
            offset
        }
        _ => 0,
    };
    Some(Followed {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        offset,
        partial: Vec::new(),
    })
}

/// Sends the lines of the sshd connection processes alive now from the start of the
/// file, then moves `followed` to its end; false when the receiver is gone.
async fn recover_from_file(
    followed: &mut Followed,
    stamps: &parse::StampContext,
    tx: &mpsc::Sender<LogItem>,
) -> bool {
    let pids = procs::sshd_session_monitors();
    let size = followed.file.metadata().map(|m| m.len()).unwrap_or(0);
    if !pids.is_empty() {
        let read_at = boot_clock::now();
        let mut text = Vec::new();
        if followed.file.seek(SeekFrom::Start(0)).is_ok() {
            let _ = (&mut followed.file).take(size).read_to_end(&mut text);
        }
        let mut records = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            // A byte that is not UTF-8 (another program's, or a relay's) spoils only
            // itself: sshd escapes every non-ASCII byte it writes.
            let line = String::from_utf8_lossy(line);
            let Some(record) = parse::parse_syslog_line(&line, stamps) else {
                continue;
            };
            if !pids.contains(&record.pid) || parse::parse_message(record.message).is_none() {
                continue;
            }
            records.push(OwnedRecord::from_line(&record, read_at));
        }
        for record in current_processes_lines(records) {
            let item = LogItem {
                record: Some(record),
                position: Some(followed.position(size)),
            };
            if tx.send(item).await.is_err() {
                return false;
            }
        }
    }
    followed.offset = size;
    followed.partial.clear();
    true
}

/// Reads what is new in `followed` and sends it; false when the receiver is gone.
async fn drain(
    followed: &mut Followed,
    stamps: &parse::StampContext,
    tx: &mpsc::Sender<LogItem>,
) -> bool {
    let size = followed.file.metadata().map(|m| m.len()).unwrap_or(0);
    if size < followed.offset {
        // Truncated in place (copytruncate): start over from the top.
        debug!("log file truncated; reading it from the start");
        followed.offset = 0;
        followed.partial.clear();
    }
    if size == followed.offset {
        return true;
    }
    if followed
        .file
        .seek(SeekFrom::Start(
            followed.offset + followed.partial.len() as u64,
        ))
        .is_err()
    {
        return true;
    }
    let mut buffer = vec![0u8; 64 * 1024];
    let read_at = boot_clock::now();
    loop {
        let read = match followed.file.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        followed.partial.extend_from_slice(&buffer[..read]);
        let mut consumed = 0;
        while let Some(newline) = followed.partial[consumed..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line = &followed.partial[consumed..consumed + newline];
            consumed += newline + 1;
            let text = String::from_utf8_lossy(line);
            if let Some(record) = parse::parse_syslog_line(&text, stamps) {
                if parse::parse_message(record.message).is_some() {
                    let position = followed.position(followed.offset + consumed as u64);
                    if !send_record(tx, &record, read_at, position).await {
                        return false;
                    }
                }
            }
        }
        followed.partial.drain(..consumed);
        followed.offset += consumed as u64;
    }
    tx.send(LogItem {
        record: None,
        position: Some(followed.position(followed.offset)),
    })
    .await
    .is_ok()
}

/// Hands one sshd record over with the position just after it; false when the
/// receiver is gone.
async fn send_record(
    tx: &mpsc::Sender<LogItem>,
    record: &parse::Record<'_>,
    read_at: BootTicks,
    position: Position,
) -> bool {
    tx.send(LogItem {
        record: Some(OwnedRecord::from_line(record, read_at)),
        position: Some(position),
    })
    .await
    .is_ok()
}
