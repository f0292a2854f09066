//! One syslog file line (`auth.log`, `secure`): `parse_syslog_line`, then the record's
//! message through `parse_message`.
//!
//! Each line is read with a few stamp contexts: UTC, and zones with daylight saving
//! time in both hemispheres, with reference times mid-year, at a turn of the year, on a
//! DST change, and at the ends of the supported range.
//!
//! Invariants:
//! - a record is returned only when the line's tag is exactly `sshd[PID]:` or
//!   `sshd-session[PID]:` (or, RFC 5424, the APP-NAME `sshd`/`sshd-session` and PROCID),
//!   PID > 0, and the message is the line's tail, line ending removed;
//! - the stamp context only changes the time, never whether or what a line is; a line
//!   ending (`\n`, `\r\n`) changes nothing;
//! - a year-less (BSD) stamp read in UTC keeps the month, day and clock written, and
//!   lands at most `MAX_AHEAD` (plus a DST hour) after the reference time and not long
//!   before it (a year; eight for 29 February);
//! - what `parse_message` makes of the message is well formed (`common::check_message`).
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pictor_agent::sessions::parse::{self, LocalZone, Record, StampContext};
use pictor_agent::sessions::stamp::MAX_AHEAD;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time};

fn at(year: i32, month: Month, day: u8, h: u8, m: u8, s: u8) -> OffsetDateTime {
    let date = Date::from_calendar_date(year, month, day).expect("date");
    PrimitiveDateTime::new(date, Time::from_hms(h, m, s).expect("time")).assume_utc()
}

/// The contexts every line is read with; the first is UTC.
fn contexts() -> &'static [StampContext] {
    static CONTEXTS: OnceLock<Vec<StampContext>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let paris = LocalZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("posix rule");
        let auckland = LocalZone::posix("NZST-12NZDT,M9.5.0,M4.1.0/3").expect("posix rule");
        let new_york = LocalZone::posix("EST5EDT,M3.2.0,M11.1.0").expect("posix rule");
        vec![
            StampContext::utc(at(2026, Month::November, 25, 12, 0, 0)),
            StampContext::new(paris.clone(), at(2026, Month::January, 1, 0, 0, 30)),
            StampContext::new(paris, at(2026, Month::March, 29, 1, 30, 0)),
            StampContext::new(auckland, at(2028, Month::February, 29, 23, 0, 0)),
            StampContext::new(new_york, at(2026, Month::December, 31, 23, 59, 59)),
            StampContext::utc(at(9999, Month::December, 31, 23, 59, 59)),
            StampContext::utc(at(-9999, Month::January, 1, 0, 0, 0)),
        ]
    })
}

fn parse_line<'a>(line: &'a str, stamps: &StampContext) -> Option<Record<'a>> {
    parse::parse_syslog_line(line, stamps)
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let contexts = contexts();
    let record = parse_line(line, &contexts[0]);
    for stamps in &contexts[1..] {
        let other = parse_line(line, stamps);
        assert_eq!(
            what(&record),
            what(&other),
            "the stamp context changed the line"
        );
    }
    if !line.ends_with(['\n', '\r']) {
        for ending in ["\n", "\r\n"] {
            let ended = format!("{line}{ending}");
            assert_eq!(
                parse_line(&ended, &contexts[0]),
                record,
                "a line ending changed the line"
            );
        }
    }
    let Some(record) = record else {
        return;
    };
    assert!(record.pid > 0);
    let trimmed = line.trim_end_matches(['\n', '\r']);
    assert!(
        trimmed.ends_with(record.message),
        "message is not the line's tail"
    );
    let head = &trimmed[..trimmed.len() - record.message.len()];
    if line.starts_with('<') {
        let pid = format!(" {} ", record.pid);
        assert!(
            (head.contains(" sshd ") || head.contains(" sshd-session ")) && head.contains(&pid),
            "RFC 5424 header without sshd's APP-NAME and PROCID: {head:?}"
        );
    } else {
        check_tag(head, record.pid, record.message.is_empty());
        if let Some(at) = record.at {
            check_bsd_stamp(line, at, contexts[0].reference());
        }
    }
    common::check_message(record.message);
});

/// `STAMP HOST TAG: `: the tag is the third field (the stamp may hold spaces, the host
/// cannot) and names sshd.
fn check_tag(head: &str, pid: u32, empty_message: bool) {
    let tag = head
        .strip_suffix(": ")
        .or_else(|| head.strip_suffix(':').filter(|_| empty_message))
        .expect("the tag ends with ':'");
    let (before, word) = tag.rsplit_once(' ').expect("a space before the tag");
    assert!(
        word == format!("sshd[{pid}]") || word == format!("sshd-session[{pid}]"),
        "{word:?}"
    );
    let (_stamp, host) = before.rsplit_once(' ').expect("a stamp before the host");
    assert!(!host.is_empty() && host.bytes().all(|b| !b.is_ascii_control()));
}

/// A BSD stamp `Mmm dd hh:mm:ss` read in UTC keeps what is written, in the year chosen.
fn check_bsd_stamp(line: &str, at: OffsetDateTime, reference: OffsetDateTime) {
    let bytes = line.as_bytes();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let Some(month) = bytes
        .get(..3)
        .and_then(|m| months.iter().position(|n| n.as_bytes() == m))
    else {
        return;
    };
    if bytes.get(3) != Some(&b' ') {
        return;
    }
    let text = std::str::from_utf8(&bytes[4..15]).expect("ASCII stamp");
    let day: u8 = text[..2].trim_start().parse().expect("day");
    let clock: Vec<u8> = text[3..11]
        .split(':')
        .map(|v| v.parse().expect("clock"))
        .collect();
    assert_eq!(usize::from(u8::from(at.month())) - 1, month, "month");
    assert_eq!(at.day(), day, "day");
    assert_eq!(
        (at.hour(), at.minute(), at.second()),
        (clock[0], clock[1], clock[2])
    );
    let ahead = at - reference;
    assert!(ahead <= MAX_AHEAD, "{at} is too far after {reference}");
    let back = if (month, day) == (1, 29) {
        Duration::days(8 * 366 + 1)
    } else {
        Duration::days(367)
    };
    assert!(ahead >= -back, "{at} is too far before {reference}");
}

/// What a record says, its time left out.
fn what<'a>(record: &Option<Record<'a>>) -> Option<(u32, &'a str)> {
    record.as_ref().map(|r| (r.pid, r.message))
}
