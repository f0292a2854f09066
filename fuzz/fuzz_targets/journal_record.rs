//! One `journalctl --output=json` line: `parse_journal_entry`, then the record's message
//! through `parse_message`.
//!
//! Invariants:
//! - an entry is returned only for a JSON object whose `__CURSOR` is that string, and its
//!   boot id is `_BOOT_ID`;
//! - a record is returned only when the trusted fields say root's sshd sent it (`_UID`
//!   0, `_COMM` and the last part of an absolute `_EXE` are `sshd` or `sshd-session`),
//!   with `_PID` > 0, the text `MESSAGE` (or, for a message that is not UTF-8, its byte
//!   array read with each invalid sequence replaced), and the clock conversion applied
//!   to `__MONOTONIC_TIMESTAMP`;
//! - what `parse_message` makes of the message is well formed (`common::check_message`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pictor_agent::sessions::boot_clock::BootTicks;
use pictor_agent::sessions::proof::Origin;
use pictor_agent::sessions::source;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Some((record, cursor, boot)) = source::parse_journal_entry(line, |us| BootTicks::new(us / 10_000)) else {
        return;
    };
    // `Value` refuses some JSON the entry's parser skips (a number out of range in a
    // field the agent ignores): then only what needs no second parse is checked.
    let value: Option<serde_json::Value> = serde_json::from_str(line).ok();
    let field = |name: &str| value.as_ref()?.get(name)?.as_str();
    let checked = value.is_some();
    if checked {
        assert_eq!(field("__CURSOR"), Some(cursor.as_str()));
        assert_eq!(field("_BOOT_ID"), boot.as_deref());
    }
    let Some(record) = record else {
        return;
    };
    assert!(record.pid > 0);
    if checked {
        assert_eq!(field("_PID").and_then(|p| p.parse().ok()), Some(record.pid));
        let message = value.as_ref().and_then(|v| v.get("MESSAGE"));
        let expected = match message {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        };
        assert_eq!(expected.as_deref(), Some(record.message.as_str()));
    }
    let Origin::Journal {
        uid,
        comm,
        exe,
        written_by,
    } = &record.origin
    else {
        panic!("a journal record with a file origin");
    };
    assert_eq!(*uid, Some(0), "a record not sent by root");
    let sshd = |name: &str| name == "sshd" || name == "sshd-session";
    assert!(comm.as_deref().is_some_and(sshd), "{comm:?}");
    assert!(
        exe.as_deref()
            .is_some_and(|e| e.starts_with('/') && e.rsplit('/').next().is_some_and(sshd)),
        "{exe:?}"
    );
    if checked {
        let monotonic = field("__MONOTONIC_TIMESTAMP").and_then(|m| m.parse::<u64>().ok());
        assert_eq!(*written_by, monotonic.map(|us| BootTicks::new(us / 10_000)));
    }
    common::check_message(&record.message);
    let _ = source::current_processes_lines(vec![record]);
});
