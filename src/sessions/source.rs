//! Where sshd's messages come from: the systemd journal (through `journalctl --follow
//! --output=json --grep=...`, resumed from a saved cursor) or a classic syslog file (`auth.log`,
//! `secure`) followed with inotify through rotation, truncation and copytruncate, resumed
//! from a saved inode and offset.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::parse;
use super::procs;
use super::proof::{self, Origin};

/// Where reading resumes after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Position {
    Journal { cursor: String },
    File { dev: u64, ino: u64, offset: u64 },
}

/// An sshd record, owned, with what is known of who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Journal: `_PID` (the kernel's); file: the line's tag (a claim).
    pub pid: u32,
    pub at: Option<OffsetDateTime>,
    pub message: String,
    pub origin: Origin,
}

impl OwnedRecord {
    /// A syslog file's line, read at `read_at` (ticks since boot).
    pub fn from_line(record: &parse::Record<'_>, read_at: u64) -> OwnedRecord {
        OwnedRecord {
            pid: record.pid,
            at: record.at,
            message: record.message.to_owned(),
            origin: Origin::File { read_at },
        }
    }
}

/// What a source hands over: a record (or only progress, for lines that were not
/// sshd's) and the position just after it.
#[derive(Debug, Clone)]
pub struct LogItem {
    pub record: Option<OwnedRecord>,
    pub position: Position,
}

/// Which source to read; `auto` picks the journal when journald runs, else the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceChoice {
    Auto,
    Journal,
    File,
}

/// The source actually used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Journal,
    File(PathBuf),
}

/// The syslog files sshd's messages go to on Debian/Ubuntu and on RHEL-like systems.
pub const DEFAULT_LOG_FILES: [&str; 2] = ["/var/log/auth.log", "/var/log/secure"];

/// Resolves the configured choice on this machine.
pub fn choose(choice: SourceChoice, log_file: Option<&Path>) -> Source {
    decide(choice, log_file, &|path| path.exists())
}

/// The choice, given which paths `exists` says are there. `auto` takes the journal
/// wherever journald runs, even where sshd also logs to a file through rsyslog (EL 9
/// and 10 fill both the journal and `/var/log/secure`): only the journal's trusted
/// fields prove who sent a line. Without journald (containers), the configured file,
/// else the first of [`DEFAULT_LOG_FILES`] that exists, else `auth.log` (waited for).
pub fn decide(
    choice: SourceChoice,
    log_file: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
) -> Source {
    let file = || {
        log_file.map(Path::to_path_buf).unwrap_or_else(|| {
            DEFAULT_LOG_FILES
                .iter()
                .map(PathBuf::from)
                .find(|p| exists(p))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_FILES[0]))
        })
    };
    match choice {
        SourceChoice::Journal => Source::Journal,
        SourceChoice::File => Source::File(file()),
        SourceChoice::Auto if exists(Path::new("/run/systemd/journal/socket")) => Source::Journal,
        SourceChoice::Auto => Source::File(file()),
    }
}

/// Follows the journal until `tx` closes; restarts `journalctl` (with backoff) if it dies.
///
/// With a cursor of this boot, it resumes right after it (what was logged while the agent
/// was down is read). Otherwise (first start, or a new boot) it does not replay the
/// boot's whole history: it starts at the newest entry, and first asks the journal for
/// the lines of the sshd processes alive now (their `Accepted` lines), so sessions
/// opened before the agent started are known.
pub async fn follow_journal(
    mut cursor: Option<String>,
    boot_id: String,
    tx: mpsc::Sender<LogItem>,
) {
    let grep = match journal_grep_support().await {
        Ok(()) => true,
        Err(why) => {
            warn!(
                "journalctl cannot filter sshd's messages itself ({why}); \
                 reading all of them, which costs more CPU under brute force"
            );
            false
        }
    };
    let mut failures = 0;
    loop {
        // The boot as journald stamps it, which is what entries carry (in a container
        // a sandboxed process may see another boot id in /proc than journald does).
        let newest = newest_entry().await;
        let boot_id = newest
            .as_ref()
            .map(|(boot, _)| boot.clone())
            .unwrap_or_else(|| boot_id.clone());
        let resumable = cursor
            .as_deref()
            .is_some_and(|c| cursor_boot(c).is_none_or(|b| b == boot_id));
        if !resumable {
            cursor = newest.as_ref().map(|(_, c)| c.clone());
            if let Some(start) = &cursor {
                if !recover_live_sessions(&boot_id, start, &tx).await {
                    return;
                }
            }
        }
        let mut command = tokio::process::Command::new("journalctl");
        command.args([
            "--follow",
            "--output=json",
            "--no-pager",
            "--all",
            "--quiet",
            // Only the fields the parser reads: far less for journalctl to format.
            "--output-fields=MESSAGE,_PID,_UID,_COMM,_EXE",
        ]);
        // The boot is named explicitly: `--follow` otherwise filters on the boot id it
        // reads in /proc/sys, which sandboxing can hide or (in a container) get wrong.
        command.arg(format!("--boot={boot_id}"));
        if grep {
            // journalctl drops the noise before formatting it, which is where its CPU
            // goes; the cursor then moves with the messages kept, and a restart re-reads
            // (and drops again) only the noise logged since the last of them.
            command.arg(format!("--grep={JOURNAL_GREP}"));
        }
        match &cursor {
            Some(c) => command.args(["--lines=all", &format!("--after-cursor={c}")]),
            None => command.arg("--lines=0"),
        };
        command
            .args(TRUSTED_SENDER_MATCHES)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match command.spawn() {
            Ok(mut child) => {
                // Drain journalctl's stderr as it comes (a full pipe would stall it) and
                // keep its last line for the log if it exits.
                let last_error = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
                if let Some(stderr) = child.stderr.take() {
                    let last_error = last_error.clone();
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            *last_error.lock().unwrap_or_else(|p| p.into_inner()) = line;
                        }
                    });
                }
                if let Some(stdout) = child.stdout.take() {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        failures = 0;
                        let Some((record, new_cursor, boot)) = parse_journal_json(&line) else {
                            continue;
                        };
                        cursor = Some(new_cursor.clone());
                        let record =
                            record.filter(|_| boot.as_deref().is_none_or(|b| b == boot_id));
                        let item = LogItem {
                            record,
                            position: Position::Journal { cursor: new_cursor },
                        };
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                let _ = child.kill().await;
                let why = last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                warn!("journalctl stopped ({why}); restarting it");
            }
            Err(e) => warn!("cannot run journalctl: {e}"),
        }
        failures += 1;
        let delay = crate::schedule::backoff_delay(
            failures,
            Duration::from_secs(30),
            None,
            fastrand::f64(),
        );
        tokio::time::sleep(delay.max(Duration::from_millis(100))).await;
        if tx.is_closed() {
            return;
        }
    }
}

/// The journal matches that select what root's sshd logged, by the fields journald sets
/// from the sender's credentials (never by `SYSLOG_IDENTIFIER`, which the sender
/// chooses): anything else, forged records among it, is never read. Fields of one name
/// are alternatives, different names must all hold. [`proof::trusted_sender`] checks
/// each record again, `_EXE` among it.
pub const TRUSTED_SENDER_MATCHES: [&str; 3] = ["_UID=0", "_COMM=sshd", "_COMM=sshd-session"];

/// The sshd messages [`parse::parse_message`] can act on, as a PCRE2 pattern for
/// `journalctl --grep` (case-sensitive, as it has capitals): its prefixes (but not
/// LogLevel VERBOSE's `Accepted key ... found at`), and not pre-authentication chatter. A superset of what the parser keeps: the parser still
/// decides, this only spares journalctl formatting the brute-force noise.
pub const JOURNAL_GREP: &str = r"^(?:Accepted (?!key )|Partial |User child is on pid |pam_unix\(sshd:session\): session closed for user |Disconnected from |Connection (?:closed|reset) by |Received disconnect from |Read error from remote host |Timeout, client not responding|terminating inactive connection from )(?!.*\[preauth\]$)";

/// Whether this system's `journalctl` takes [`JOURNAL_GREP`] (systemd 237+ built with
/// PCRE2, which it loads at run time): it says why on stderr when not.
async fn journal_grep_support() -> Result<(), String> {
    let output = tokio::process::Command::new("journalctl")
        .args(["--quiet", "--no-pager", "--lines=0"])
        .arg(format!("--grep={JOURNAL_GREP}"))
        // A match that selects nothing: only the option and the pattern are tried.
        .arg("SYSLOG_IDENTIFIER=pictor-agent-probe")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), output).await {
        Ok(Ok(output)) if output.stderr.is_empty() => Ok(()),
        Ok(Ok(output)) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("journalctl did not answer in 10 s".to_owned()),
    }
}

/// The boot a journal cursor belongs to (its `b=` part).
fn cursor_boot(cursor: &str) -> Option<&str> {
    cursor.split(';').find_map(|part| part.strip_prefix("b="))
}

/// Runs a one-shot `journalctl` (bounded in time) and returns its JSON lines.
async fn journal_query(args: &[String]) -> Vec<String> {
    let output = tokio::process::Command::new("journalctl")
        .args(["--output=json", "--no-pager", "--quiet", "--all"])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), output).await {
        Ok(Ok(output)) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The boot id and cursor of the newest journal entry: the boot journald writes now,
/// and the place to start following from.
async fn newest_entry() -> Option<(String, String)> {
    let lines = journal_query(&["--lines=1".to_owned()]).await;
    let entry: serde_json::Value = serde_json::from_str(lines.last()?).ok()?;
    let boot = entry.get("_BOOT_ID")?.as_str()?;
    let cursor = entry.get("__CURSOR")?.as_str()?;
    (boot.len() == 32 && boot.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (boot.to_owned(), cursor.to_owned()))
}

/// Sends the journal lines of the sshd connection processes alive now (their `Accepted`
/// lines among them), as if just read; false when the receiver is gone.
async fn recover_live_sessions(boot_id: &str, position: &str, tx: &mpsc::Sender<LogItem>) -> bool {
    let pids = procs::sshd_session_monitors();
    if pids.is_empty() {
        return true;
    }
    let mut args = vec![format!("--boot={boot_id}")];
    args.extend(pids.iter().map(|pid| format!("_PID={pid}")));
    args.extend(TRUSTED_SENDER_MATCHES.map(str::to_owned));
    let records = journal_query(&args)
        .await
        .iter()
        .filter_map(|line| parse_journal_json(line).and_then(|(record, _, _)| record))
        .collect();
    for record in current_processes_lines(records) {
        let item = LogItem {
            record: Some(record),
            position: Position::Journal {
                cursor: position.to_owned(),
            },
        };
        if tx.send(item).await.is_err() {
            return false;
        }
    }
    true
}

/// Of the logged lines of the pids alive now (in log order), those of each pid's
/// current process: from that pid's last `Accepted` line on. Pids are reused (pid_max
/// is often 32,768), so the log also holds the lines of earlier processes that had the
/// same pid; replaying them would report sessions that ended long ago.
pub fn current_processes_lines(records: Vec<OwnedRecord>) -> Vec<OwnedRecord> {
    let mut last_accepted = std::collections::HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if let Some(parse::SshdMessage::Accepted { .. }) = parse::parse_message(&record.message) {
            last_accepted.insert(record.pid, index);
        }
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(index, record)| last_accepted.get(&record.pid).is_some_and(|a| index >= a))
        .map(|(_, record)| record)
        .collect()
}

/// A journal field's value as text: journalctl writes a value that is not valid UTF-8
/// as an array of its bytes, read here with each invalid sequence replaced (sshd escapes
/// what it writes, so such bytes are never in what the parser reads). Several values of
/// one field (an array of values) are no message of sshd's.
fn journal_text(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|item| item.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes?).into_owned())
        }
        _ => None,
    }
}

/// One `journalctl -o json` line: the record (when root's sshd sent a text message, as
/// its trusted fields say), the cursor, and the boot it belongs to.
pub fn parse_journal_json(line: &str) -> Option<(Option<OwnedRecord>, String, Option<String>)> {
    parse_journal_entry(line, procs::monotonic_us_to_ticks)
}

/// [`parse_journal_json`] with the clock conversion passed in (pure).
pub fn parse_journal_entry(
    line: &str,
    monotonic_to_ticks: impl Fn(u64) -> u64,
) -> Option<(Option<OwnedRecord>, String, Option<String>)> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "__CURSOR")]
        cursor: String,
        #[serde(rename = "MESSAGE")]
        message: Option<serde_json::Value>,
        #[serde(rename = "_PID")]
        pid: Option<String>,
        #[serde(rename = "_UID")]
        uid: Option<String>,
        #[serde(rename = "_COMM")]
        comm: Option<String>,
        #[serde(rename = "_EXE")]
        exe: Option<String>,
        #[serde(rename = "__REALTIME_TIMESTAMP")]
        realtime: Option<String>,
        #[serde(rename = "__MONOTONIC_TIMESTAMP")]
        monotonic: Option<String>,
        #[serde(rename = "_BOOT_ID")]
        boot: Option<String>,
    }
    let entry: Entry = serde_json::from_str(line).ok()?;
    let record = (|| {
        let uid = entry.uid.as_deref().and_then(|u| u.parse::<u32>().ok());
        proof::trusted_sender(uid, entry.comm.as_deref(), entry.exe.as_deref()).ok()?;
        let message = journal_text(entry.message?)?;
        // `_PID` only: `SYSLOG_PID` is whatever the sender wrote.
        let pid = entry.pid?.parse().ok().filter(|&p: &u32| p > 0)?;
        let at = entry
            .realtime
            .and_then(|us| us.parse::<i128>().ok())
            .and_then(|us| us.checked_mul(1000))
            .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok());
        let written_by = entry
            .monotonic
            .and_then(|us| us.parse::<u64>().ok())
            .map(&monotonic_to_ticks);
        Some(OwnedRecord {
            pid,
            at,
            message,
            origin: Origin::Journal {
                uid,
                comm: entry.comm,
                exe: entry.exe,
                written_by,
            },
        })
    })();
    Some((record, entry.cursor, entry.boot))
}

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
        let read_at = procs::ticks_since_boot_now();
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
                position: followed.position(size),
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
    let read_at = procs::ticks_since_boot_now();
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
        position: followed.position(followed.offset),
    })
    .await
    .is_ok()
}

/// Hands one sshd record over with the position just after it; false when the
/// receiver is gone.
async fn send_record(
    tx: &mpsc::Sender<LogItem>,
    record: &parse::Record<'_>,
    read_at: u64,
    position: Position,
) -> bool {
    tx.send(LogItem {
        record: Some(OwnedRecord::from_line(record, read_at)),
        position,
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_current_process_of_a_reused_pid_is_replayed() {
        let record = |pid: u32, message: &str| super::OwnedRecord {
            pid,
            at: None,
            message: message.to_owned(),
            origin: Origin::File { read_at: 0 },
        };
        let old_login =
            "Accepted publickey for alice from 10.0.0.1 port 1000 ssh2: ED25519 SHA256:ooooooooooooooooooooooooooooooooooooooooooA";
        let new_login =
            "Accepted publickey for bob from 10.0.0.2 port 2000 ssh2: ED25519 SHA256:nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnA";
        let records = vec![
            record(700, old_login),
            record(700, "User child is on pid 701"),
            record(800, "pam_unix(sshd:session): session closed for user carol"),
            record(700, "Disconnected from user alice 10.0.0.1 port 1000"),
            record(700, new_login),
            record(700, "User child is on pid 702"),
        ];
        let kept: Vec<String> = super::current_processes_lines(records)
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(kept, [new_login, "User child is on pid 702"]);
    }

    use super::*;

    #[test]
    fn journal_json_records_are_read_by_their_trusted_fields() {
        let ticks = |us: u64| us / 10_000;
        let line = r#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1764057610000000","__MONOTONIC_TIMESTAMP":"123450000","_PID":"30770","_UID":"0","_COMM":"sshd","_EXE":"/usr/sbin/sshd","SYSLOG_PID":"1","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Accepted publickey for u from 127.0.0.1 port 1 ssh2: ED25519 SHA256:x","_BOOT_ID":"b1"}"#;
        let (record, cursor, boot) = parse_journal_entry(line, ticks).expect("entry");
        let record = record.expect("record");
        assert_eq!(
            (record.pid, cursor.as_str(), boot.as_deref()),
            (30770, "s=abc;i=1", Some("b1")),
            "the pid is _PID, not SYSLOG_PID"
        );
        assert_eq!(record.at.map(|t| t.unix_timestamp()), Some(1_764_057_610));
        assert_eq!(record.origin.written_by(), 12345);
        // What a local user's `logger -t sshd --id=PID` or `systemd-cat` sends: its own
        // credentials, whatever it says about itself.
        for forged in [
            r#"{"__CURSOR":"c3","_PID":"999","_UID":"1000","_COMM":"logger","_EXE":"/usr/bin/logger","SYSLOG_PID":"30770","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Accepted publickey for u from 127.0.0.1 port 1 ssh2: ED25519 SHA256:x"}"#,
            r#"{"__CURSOR":"c3","_PID":"999","_UID":"1000","_COMM":"sshd","_EXE":"/home/u/sshd","MESSAGE":"Accepted password for u from 127.0.0.1 port 1 ssh2"}"#,
            r#"{"__CURSOR":"c3","_PID":"999","_UID":"0","_COMM":"sudo","_EXE":"/usr/bin/sudo","MESSAGE":"Accepted password for root from 127.0.0.1 port 1 ssh2"}"#,
            r#"{"__CURSOR":"c3","SYSLOG_PID":"30770","MESSAGE":"Accepted password for root from 127.0.0.1 port 1 ssh2"}"#,
        ] {
            let (record, cursor, _) = parse_journal_entry(forged, ticks).expect("entry");
            assert_eq!((record, cursor.as_str()), (None, "c3"), "{forged}");
        }
        // A message that is not UTF-8 comes as its bytes: read, the bad byte replaced.
        let binary = r#"{"__CURSOR":"c2","MESSAGE":[65,66,255,67],"_PID":"1","_UID":"0","_COMM":"sshd","_EXE":"/usr/sbin/sshd"}"#;
        let (record, _, _) = parse_journal_entry(binary, ticks).expect("entry");
        assert_eq!(record.expect("record").message, "AB\u{fffd}C");
        // Several values of one field are no message of sshd's.
        let several = r#"{"__CURSOR":"c2","MESSAGE":["a","b"],"_PID":"1","_UID":"0","_COMM":"sshd","_EXE":"/usr/sbin/sshd"}"#;
        let (record, _, _) = parse_journal_entry(several, ticks).expect("entry");
        assert_eq!(record, None);
        assert!(parse_journal_json("not json").is_none());
        // Found by fuzzing (fuzz/regressions/journal_record/realtime-overflow.json): a
        // receive time past i128's nanoseconds overflowed.
        let huge = r#"{"__CURSOR":"","__REALTIME_TIMESTAMP":"1000000000000000000000000000000000000","_PID":"1","_UID":"0","_COMM":"sshd","_EXE":"/sshd","MESSAGE":""}"#;
        let (record, _, _) = parse_journal_entry(huge, ticks).expect("entry");
        assert_eq!(record.map(|r| r.at), Some(None));
    }

    /// The paths each kind of image has, as `decide` sees them.
    fn image(paths: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |path| paths.iter().any(|p| Path::new(p) == path)
    }

    #[test]
    fn auto_takes_the_journal_wherever_journald_runs() {
        const JOURNAL: &str = "/run/systemd/journal/socket";
        // EL 9 and 10: journald, and rsyslog writing /var/log/secure beside it.
        let el9 = image(&[JOURNAL, "/var/log/secure"]);
        assert_eq!(decide(SourceChoice::Auto, None, &el9), Source::Journal);
        // Debian 12 and 13, Ubuntu 24.04 cloud images: journald; auth.log only with rsyslog.
        let debian = image(&[JOURNAL, "/var/log/auth.log"]);
        assert_eq!(decide(SourceChoice::Auto, None, &debian), Source::Journal);
        // A container without systemd: the file that exists, Ubuntu's or the EL family's.
        let ubuntu_container = image(&["/var/log/auth.log"]);
        assert_eq!(
            decide(SourceChoice::Auto, None, &ubuntu_container),
            Source::File(PathBuf::from("/var/log/auth.log"))
        );
        let el_container = image(&["/var/log/secure"]);
        assert_eq!(
            decide(SourceChoice::Auto, None, &el_container),
            Source::File(PathBuf::from("/var/log/secure"))
        );
        // Neither yet (rsyslog not started): auth.log, waited for.
        assert_eq!(
            decide(SourceChoice::Auto, None, &image(&[])),
            Source::File(PathBuf::from("/var/log/auth.log"))
        );
        // `file` on EL 9 reads /var/log/secure although the journal is there.
        assert_eq!(
            decide(SourceChoice::File, None, &el9),
            Source::File(PathBuf::from("/var/log/secure"))
        );
    }

    #[test]
    fn auto_prefers_an_explicit_file_when_there_is_no_journal() {
        let chosen = choose(SourceChoice::File, Some(Path::new("/tmp/x.log")));
        assert_eq!(chosen, Source::File(PathBuf::from("/tmp/x.log")));
        assert_eq!(choose(SourceChoice::Journal, None), Source::Journal);
    }
}
