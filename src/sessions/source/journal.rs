//! The systemd journal as the source: `journalctl --follow --output=json --grep=...`,
//! only what root's sshd sent (the journal's trusted fields), resumed from a cursor.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tracing::warn;

use super::procs;
use super::proof::{self, Origin};
use crate::sessions::boot_clock::{self, BootTicks};

use super::{current_processes_lines, LogItem, OwnedRecord, Position};

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
                            position: Some(Position::Journal { cursor: new_cursor }),
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

/// The sshd messages [`crate::sessions::parse::parse_message`] can act on, as a PCRE2 pattern for
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
            position: Some(Position::Journal {
                cursor: position.to_owned(),
            }),
        };
        if tx.send(item).await.is_err() {
            return false;
        }
    }
    true
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
    parse_journal_entry(line, boot_clock::from_monotonic_us)
}

/// [`parse_journal_json`] with the clock conversion passed in (pure).
pub fn parse_journal_entry(
    line: &str,
    monotonic_to_ticks: impl Fn(u64) -> BootTicks,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_json_records_are_read_by_their_trusted_fields() {
        let ticks = |us: u64| BootTicks::new(us / 10_000);
        let line = r#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1764057610000000","__MONOTONIC_TIMESTAMP":"123450000","_PID":"30770","_UID":"0","_COMM":"sshd","_EXE":"/usr/sbin/sshd","SYSLOG_PID":"1","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Accepted publickey for u from 127.0.0.1 port 1 ssh2: ED25519 SHA256:x","_BOOT_ID":"b1"}"#;
        let (record, cursor, boot) = parse_journal_entry(line, ticks).expect("entry");
        let record = record.expect("record");
        assert_eq!(
            (record.pid, cursor.as_str(), boot.as_deref()),
            (30770, "s=abc;i=1", Some("b1")),
            "the pid is _PID, not SYSLOG_PID"
        );
        assert_eq!(record.at.map(|t| t.unix_timestamp()), Some(1_764_057_610));
        assert_eq!(record.origin.written_by(), BootTicks::new(12345));
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
}
