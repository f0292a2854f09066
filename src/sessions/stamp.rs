//! The time stamps at the head of syslog lines: their shape read strictly
//! ([`split_stamp`], pure, no allocation), then placed in time ([`StampContext`], pure
//! once built: no wall clock, the reference time is handed in).
//!
//! The shapes sshd's lines reach files in:
//!
//! | writer | stamp | zone |
//! |---|---|---|
//! | RFC 3164 / BSD, journalctl `short` | `Nov 29 10:00:00` (`Nov  9`) | local, no year |
//! | journalctl `short-precise` | `Nov 29 10:00:00.123456` | local, no year |
//! | rsyslog's RSYSLOG_FileFormat, RFC 3339 | `2026-11-29T10:00:00.123456+01:00` | in the stamp |
//! | journalctl `short-iso` | `2026-11-29T10:00:00+0100` | in the stamp |
//! | journalctl `short-full` | `Sun 2026-11-29 10:00:00 CET` | abbreviation, checked |
//! | journalctl `short-unix` | `1764410400.123456` | UTC |
//! | RFC 5424 | `2026-11-29T10:00:00.1Z` or `-` | in the stamp |
//!
//! A stamp whose shape is right but whose values are not (`Nov 31`, `25:00:00`, an
//! abbreviation the local zone does not use, a local time skipped by a DST change)
//! is *unreadable*: [`StampContext::resolve`] gives `None`, never "now".
//!
//! Local stamps are read in the system's zone as the zone database describes it
//! (`TZ` when set, as libc reads it, else `/etc/localtime`; through `tz-rs`, a
//! reimplementation of libc's `localtime`/`mktime`), loaded once when the [`LocalZone`]
//! is built, i.e. when a follower starts: a change of the system zone is seen after the
//! agent restarts.
//!
//! Daylight saving time: a local time that occurs twice (the hour repeated when clocks
//! go back) is read with the earlier offset, i.e. as its first occurrence; a local time
//! that never occurs (the hour skipped when clocks go forward) is unreadable, since no
//! clock in that zone could have written it.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// How far after the reference time a year-less stamp may lie: clocks of the writer and
/// the reader may disagree a little, and a line may be read a little before its stamp
/// (a clock stepped back). A stamp further ahead in the reference's year is taken to be
/// from the year before.
pub const MAX_AHEAD: Duration = Duration::DAY;

/// Why a zone could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ZoneError(String);

/// A time zone from the zone database: the system's, or one given for tests.
#[derive(Debug, Clone)]
pub struct LocalZone(backend::Zone);

impl LocalZone {
    /// UTC.
    pub fn utc() -> LocalZone {
        LocalZone(backend::Zone::utc())
    }

    /// The system's zone: `TZ` when set (a zone name under `/usr/share/zoneinfo`, a
    /// path, `:path` or a POSIX rule), else `/etc/localtime` (a TZif file).
    pub fn try_system() -> Result<LocalZone, ZoneError> {
        backend::Zone::system().map(LocalZone)
    }

    /// The system's zone, or UTC (with a warning) when it cannot be read: what libc
    /// does too, so what the syslog daemon writing local stamps does.
    pub fn system() -> LocalZone {
        LocalZone::try_system().unwrap_or_else(|e| {
            tracing::warn!(
                "cannot read the system time zone ({e}); reading local log times as UTC"
            );
            LocalZone::utc()
        })
    }

    /// A zone from a POSIX TZ rule such as `EST5EDT,M3.2.0,M11.1.0` (pure).
    pub fn posix(rule: &str) -> Result<LocalZone, ZoneError> {
        backend::Zone::posix(rule).map(LocalZone)
    }

    /// A zone from the bytes of a TZif file (pure).
    pub fn tzif(data: &[u8]) -> Result<LocalZone, ZoneError> {
        backend::Zone::tzif(data).map(LocalZone)
    }
}

/// What placing a stamp in time needs: the zone of local stamps and the reference
/// time year-less stamps are placed next to (the time a live follower reads the line;
/// for an old file, its last modification time). Built once per follower; the
/// reference moved on with [`StampContext::set_reference`].
#[derive(Debug, Clone)]
pub struct StampContext {
    zone: LocalZone,
    reference: OffsetDateTime,
    /// The reference on the local wall clock, `None` when out of range.
    reference_local: Option<PrimitiveDateTime>,
}

impl StampContext {
    pub fn new(zone: LocalZone, reference: OffsetDateTime) -> StampContext {
        let reference_local = zone.0.to_local(reference);
        StampContext {
            zone,
            reference,
            reference_local,
        }
    }

    /// With the system's zone ([`LocalZone::system`]).
    pub fn system(reference: OffsetDateTime) -> StampContext {
        StampContext::new(LocalZone::system(), reference)
    }

    /// With UTC as the local zone.
    pub fn utc(reference: OffsetDateTime) -> StampContext {
        StampContext::new(LocalZone::utc(), reference)
    }

    pub fn set_reference(&mut self, reference: OffsetDateTime) {
        self.reference = reference;
        self.reference_local = self.zone.0.to_local(reference);
    }

    pub fn reference(&self) -> OffsetDateTime {
        self.reference
    }

    /// The instant a stamp names (in UTC), or `None` when it cannot be read.
    ///
    /// A year-less local stamp gets the year that puts it nearest to the reference time
    /// without being more than [`MAX_AHEAD`] after it: a `Dec 31` line read on 2 January
    /// is from last year, a `Jan  1 00:00:01` line read at 23:59:59 on 31 December is
    /// from the next one. A `short-full` stamp's abbreviation must be `UTC`, `GMT` or the
    /// one the local zone uses at that time (`CET` in winter, `CEST` in summer, in
    /// Europe/Paris; in the repeated hour it also tells which of the two is meant).
    pub fn resolve(&self, stamp: &Stamp<'_>) -> Option<OffsetDateTime> {
        match *stamp {
            Stamp::Iso {
                date,
                clock,
                offset_minutes,
            } => {
                let offset = UtcOffset::from_whole_seconds(i32::from(offset_minutes) * 60).ok()?;
                civil(date, clock)?
                    .assume_offset(offset)
                    .checked_to_offset(UtcOffset::UTC)
            }
            Stamp::Unix { seconds, nanos } => OffsetDateTime::from_unix_timestamp(seconds)
                .ok()?
                .checked_add(Duration::nanoseconds(i64::from(nanos))),
            Stamp::Local { month, day, clock } => {
                let time = clock.time()?;
                let reference = self.reference_local?;
                let limit = reference.checked_add(MAX_AHEAD)?;
                // The latest candidate not past the limit is the nearest one. Eight
                // years back reach the previous 29 February even across 2100.
                let year = reference.year();
                let local = (year - 8..=year + 1).rev().find_map(|year| {
                    let date = Date::from_calendar_date(year, month, day).ok()?;
                    let local = PrimitiveDateTime::new(date, time);
                    (local <= limit).then_some(local)
                })?;
                self.zone.0.to_utc(local, None)
            }
            Stamp::Full {
                weekday,
                date,
                clock,
                zone,
            } => {
                let local = civil(date, clock)?;
                if local.weekday() != weekday {
                    return None;
                }
                if zone == "UTC" || zone == "GMT" {
                    return Some(local.assume_utc());
                }
                self.zone.0.to_utc(local, Some(zone))
            }
            Stamp::Nil => None,
        }
    }
}

/// A stamp as written: its shape checked, its values not yet (see
/// [`StampContext::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp<'a> {
    /// RFC 3339 / ISO 8601 with its offset (`Z`, `+01:00`, `+0100`).
    Iso {
        date: Ymd,
        clock: Clock,
        offset_minutes: i16,
    },
    /// Seconds since the epoch (journalctl's `short-unix`).
    Unix { seconds: i64, nanos: u32 },
    /// A local wall-clock time without a year (BSD, journalctl's `short-precise`).
    Local { month: Month, day: u8, clock: Clock },
    /// A local wall-clock time with weekday, date and zone abbreviation (journalctl's
    /// `short-full`).
    Full {
        weekday: Weekday,
        date: Ymd,
        clock: Clock,
        zone: &'a str,
    },
    /// RFC 5424's `-`: the writer had no time.
    Nil,
}

/// A calendar date as written (not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ymd {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A time of day as written (not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
}

impl Clock {
    fn time(self) -> Option<Time> {
        Time::from_hms_nano(self.hour, self.minute, self.second, self.nanos).ok()
    }
}

fn civil(date: Ymd, clock: Clock) -> Option<PrimitiveDateTime> {
    let month = Month::try_from(date.month).ok()?;
    let date = Date::from_calendar_date(i32::from(date.year), month, date.day).ok()?;
    Some(PrimitiveDateTime::new(date, clock.time()?))
}

/// Reads the stamp a syslog file line starts with (every shape in the table above but
/// RFC 5424's) and returns it with what follows the one space after it.
pub fn split_stamp(line: &str) -> Option<(Stamp<'_>, &str)> {
    let bytes = line.as_bytes();
    let (stamp, len) = match bytes.first()? {
        b'0'..=b'9' if bytes.get(4) == Some(&b'-') => iso(bytes)?,
        b'0'..=b'9' => unix(bytes)?,
        b'A'..=b'Z' => match month(bytes) {
            Some(month) => bsd(bytes, month)?,
            None => full(line)?,
        },
        _ => return None,
    };
    after_space(line, len).map(|rest| (stamp, rest))
}

/// Reads RFC 5424's TIMESTAMP (RFC 3339, or `-`) and returns it with what follows the
/// one space after it.
pub fn split_rfc5424_stamp(text: &str) -> Option<(Stamp<'_>, &str)> {
    let bytes = text.as_bytes();
    let (stamp, len) = match bytes.first()? {
        b'-' => (Stamp::Nil, 1),
        b'0'..=b'9' => iso(bytes)?,
        _ => return None,
    };
    after_space(text, len).map(|rest| (stamp, rest))
}

fn after_space(text: &str, len: usize) -> Option<&str> {
    // The byte at `len` is an ASCII space, so `len + 1` is a char boundary.
    (text.as_bytes().get(len) == Some(&b' ')).then(|| &text[len + 1..])
}

/// The digit at `at`, if it is one.
#[inline]
fn digit(bytes: &[u8], at: usize) -> Option<u32> {
    let d = bytes.get(at)?.wrapping_sub(b'0');
    (d < 10).then_some(u32::from(d))
}

/// Two digits at `at`.
#[inline]
fn two(bytes: &[u8], at: usize) -> Option<u8> {
    Some((digit(bytes, at)? * 10 + digit(bytes, at + 1)?) as u8)
}

/// `.` and 1 to 9 digits at `at`, as nanoseconds, with its length; nothing if there is
/// no `.`.
#[inline]
fn fraction(bytes: &[u8], at: usize) -> Option<(u32, usize)> {
    if bytes.get(at) != Some(&b'.') {
        return Some((0, 0));
    }
    let mut nanos = 0;
    let mut n = 0;
    while n < 9 {
        match digit(bytes, at + 1 + n) {
            Some(d) => nanos = nanos * 10 + d,
            None => break,
        }
        n += 1;
    }
    if n == 0 || digit(bytes, at + 1 + n).is_some() {
        return None;
    }
    Some((nanos * 10u32.pow(9 - n as u32), n + 1))
}

/// `hh:mm:ss[.fffffffff]` at `at`, with the index just after it.
#[inline]
fn clock(bytes: &[u8], at: usize) -> Option<(Clock, usize)> {
    let &[h1, h2, b':', m1, m2, b':', s1, s2] = bytes.get(at..at + 8)? else {
        return None;
    };
    let pair = |a: u8, b: u8| {
        let (a, b) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
        (a < 10 && b < 10).then(|| a * 10 + b)
    };
    let (nanos, len) = fraction(bytes, at + 8)?;
    let clock = Clock {
        hour: pair(h1, h2)?,
        minute: pair(m1, m2)?,
        second: pair(s1, s2)?,
        nanos,
    };
    Some((clock, at + 8 + len))
}

/// `YYYY-MM-DD` at `at`.
#[inline]
fn ymd(bytes: &[u8], at: usize) -> Option<Ymd> {
    if bytes.get(at + 4) != Some(&b'-') || bytes.get(at + 7) != Some(&b'-') {
        return None;
    }
    Some(Ymd {
        year: u16::from(two(bytes, at)?) * 100 + u16::from(two(bytes, at + 2)?),
        month: two(bytes, at + 5)?,
        day: two(bytes, at + 8)?,
    })
}

/// `YYYY-MM-DDThh:mm:ss[.f](Z|±hh:mm|±hhmm)`.
fn iso(bytes: &[u8]) -> Option<(Stamp<'static>, usize)> {
    let date = ymd(bytes, 0)?;
    if bytes.get(10) != Some(&b'T') {
        return None;
    }
    let (clock, end) = clock(bytes, 11)?;
    let (offset_minutes, end) = match *bytes.get(end)? {
        b'Z' => (0, end + 1),
        sign @ (b'+' | b'-') => {
            let hours = two(bytes, end + 1)?;
            let (minutes, end) = if bytes.get(end + 3) == Some(&b':') {
                (two(bytes, end + 4)?, end + 6)
            } else {
                (two(bytes, end + 3)?, end + 5)
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let minutes = i16::from(hours) * 60 + i16::from(minutes);
            (if sign == b'-' { -minutes } else { minutes }, end)
        }
        _ => return None,
    };
    let stamp = Stamp::Iso {
        date,
        clock,
        offset_minutes,
    };
    Some((stamp, end))
}

/// `1764410400[.123456]`.
fn unix(bytes: &[u8]) -> Option<(Stamp<'static>, usize)> {
    let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=12).contains(&n) {
        return None;
    }
    let mut seconds = 0i64;
    for &b in &bytes[..n] {
        seconds = seconds * 10 + i64::from(b - b'0');
    }
    let (nanos, len) = fraction(bytes, n)?;
    Some((Stamp::Unix { seconds, nanos }, n + len))
}

const MONTHS: [(&[u8; 3], Month); 12] = [
    (b"Jan", Month::January),
    (b"Feb", Month::February),
    (b"Mar", Month::March),
    (b"Apr", Month::April),
    (b"May", Month::May),
    (b"Jun", Month::June),
    (b"Jul", Month::July),
    (b"Aug", Month::August),
    (b"Sep", Month::September),
    (b"Oct", Month::October),
    (b"Nov", Month::November),
    (b"Dec", Month::December),
];

const WEEKDAYS: [(&[u8; 3], Weekday); 7] = [
    (b"Mon", Weekday::Monday),
    (b"Tue", Weekday::Tuesday),
    (b"Wed", Weekday::Wednesday),
    (b"Thu", Weekday::Thursday),
    (b"Fri", Weekday::Friday),
    (b"Sat", Weekday::Saturday),
    (b"Sun", Weekday::Sunday),
];

fn month(bytes: &[u8]) -> Option<Month> {
    let name = bytes.get(..3)?;
    MONTHS.iter().find(|(n, _)| n[..] == *name).map(|&(_, m)| m)
}

/// `Mmm dd hh:mm:ss[.ffffff]`, the day space- or zero-padded.
fn bsd(bytes: &[u8], month: Month) -> Option<(Stamp<'static>, usize)> {
    if bytes.get(3) != Some(&b' ') || bytes.get(6) != Some(&b' ') {
        return None;
    }
    let day = match bytes.get(4..6)? {
        [b' ', d] if d.is_ascii_digit() => d - b'0',
        _ => two(bytes, 4)?,
    };
    let (clock, end) = clock(bytes, 7)?;
    Some((Stamp::Local { month, day, clock }, end))
}

/// `Www YYYY-MM-DD hh:mm:ss ZONE`.
fn full(line: &str) -> Option<(Stamp<'_>, usize)> {
    let bytes = line.as_bytes();
    let name = bytes.get(..3)?;
    let weekday = WEEKDAYS.iter().find(|(n, _)| n[..] == *name)?.1;
    if bytes.get(3) != Some(&b' ') {
        return None;
    }
    let date = ymd(bytes, 4)?;
    if bytes.get(14) != Some(&b' ') {
        return None;
    }
    let (clock, end) = clock(bytes, 15)?;
    if bytes.get(end) != Some(&b' ') {
        return None;
    }
    let start = end + 1;
    let n = bytes
        .get(start..)?
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'-')
        .count();
    if !(1..=16).contains(&n) {
        return None;
    }
    let stamp = Stamp::Full {
        weekday,
        date,
        clock,
        // ASCII bytes only, so on char boundaries.
        zone: &line[start..start + n],
    };
    Some((stamp, start + n))
}

/// The zone database, through `tz-rs`.
mod backend {
    use std::sync::Arc;

    use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
    use tz::datetime::FoundDateTimeKind;
    use tz::{DateTime, TimeZone, TimeZoneSettings};

    use super::ZoneError;

    #[derive(Debug, Clone)]
    pub struct Zone(Arc<TimeZone>);

    fn error(e: impl std::fmt::Display) -> ZoneError {
        ZoneError(e.to_string())
    }

    /// Settings that never read a file: a TZ string is then a POSIX rule or nothing.
    const NO_FILES: TimeZoneSettings<'static> =
        TimeZoneSettings::new(&[], |_| Err("no files".into()));

    impl Zone {
        fn new(zone: TimeZone) -> Zone {
            Zone(Arc::new(zone))
        }

        pub fn utc() -> Zone {
            Zone::new(TimeZone::utc())
        }

        /// As libc reads it: `TZ` unset: `/etc/localtime`; empty: UTC; else a zone name
        /// or path (`:` optional) or a POSIX rule.
        pub fn system() -> Result<Zone, ZoneError> {
            let zone = match std::env::var_os("TZ") {
                None => TimeZone::local(),
                Some(tz) if tz.is_empty() => Ok(TimeZone::utc()),
                Some(tz) => {
                    let tz = tz
                        .to_str()
                        .ok_or_else(|| ZoneError("TZ is not UTF-8".into()))?;
                    TimeZone::from_posix_tz(tz)
                }
            };
            zone.map(Zone::new).map_err(error)
        }

        pub fn posix(rule: &str) -> Result<Zone, ZoneError> {
            NO_FILES.parse_posix_tz(rule).map(Zone::new).map_err(error)
        }

        pub fn tzif(data: &[u8]) -> Result<Zone, ZoneError> {
            TimeZone::from_tz_data(data).map(Zone::new).map_err(error)
        }

        /// The wall-clock time of `at` here.
        pub fn to_local(&self, at: OffsetDateTime) -> Option<PrimitiveDateTime> {
            let kind = self.0.find_local_time_type(at.unix_timestamp()).ok()?;
            let offset = UtcOffset::from_whole_seconds(kind.ut_offset()).ok()?;
            let local = at.checked_to_offset(offset)?;
            Some(PrimitiveDateTime::new(local.date(), local.time()))
        }

        /// The instant of wall-clock time `local` here, with the earlier offset when it
        /// occurs twice and none when it never occurs; with `abbreviation`, only an
        /// offset under that abbreviation.
        pub fn to_utc(
            &self,
            local: PrimitiveDateTime,
            abbreviation: Option<&str>,
        ) -> Option<OffsetDateTime> {
            let found = DateTime::find(
                local.year(),
                u8::from(local.month()),
                local.day(),
                local.hour(),
                local.minute(),
                local.second(),
                local.nanosecond(),
                TimeZone::as_ref(&self.0),
            )
            .ok()?;
            // In ascending order of instants.
            found.into_inner().into_iter().find_map(|kind| match kind {
                FoundDateTimeKind::Normal(found)
                    if abbreviation.is_none_or(|name| {
                        found.local_time_type().time_zone_designation() == name
                    }) =>
                {
                    OffsetDateTime::from_unix_timestamp(found.unix_time())
                        .ok()?
                        .checked_add(time::Duration::nanoseconds(i64::from(found.nanoseconds())))
                }
                _ => None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";

    fn at(text: &str) -> OffsetDateTime {
        crate::timefmt::parse(text).expect("time")
    }

    fn zone(rule: &str, reference: &str) -> StampContext {
        StampContext::new(LocalZone::posix(rule).expect("rule"), at(reference))
    }

    /// The time of the stamp `text` starts with (as in a syslog header, a space and
    /// more follow it).
    fn time_of(text: &str, stamps: &StampContext) -> Option<OffsetDateTime> {
        let line = format!("{text} host");
        let (stamp, _) = split_stamp(&line)?;
        stamps.resolve(&stamp)
    }

    #[test]
    fn local_stamps_are_read_in_the_zone_not_as_utc() {
        let new_york = zone(NEW_YORK, "2026-12-01T00:00:00Z");
        let line = "Nov 29 10:00:00 host sshd[1]: User child is on pid 2";
        assert_eq!(time_of(line, &new_york), Some(at("2026-11-29T15:00:00Z")));
        // Summer time, and the same zone from TZif data.
        let july = "Jul 29 10:00:00 host sshd[1]: User child is on pid 2";
        assert_eq!(time_of(july, &new_york), Some(at("2026-07-29T14:00:00Z")));
        let tzif = StampContext::new(
            LocalZone::tzif(&tzif_with_footer(NEW_YORK)).expect("tzif"),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(time_of(line, &tzif), Some(at("2026-11-29T15:00:00Z")));
        assert_eq!(time_of(july, &tzif), Some(at("2026-07-29T14:00:00Z")));
    }

    /// A minimal TZif (version 2) file: no transitions, one type, and a POSIX footer.
    fn tzif_with_footer(rule: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..2 {
            out.extend_from_slice(b"TZif2");
            out.extend_from_slice(&[0; 15]);
            // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
            for count in [0u32, 0, 0, 0, 1, 4] {
                out.extend_from_slice(&count.to_be_bytes());
            }
            out.extend_from_slice(&(-18000i32).to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(b"EST\0");
        }
        out.extend_from_slice(format!("\n{rule}\n").as_bytes());
        out
    }

    #[test]
    fn a_year_less_stamp_takes_the_year_nearest_the_reference_and_not_after_it() {
        let time = |stamp: &str, stamps: &StampContext| time_of(stamp, stamps);
        // Read just after midnight on New Year's Day (New York): last year's line.
        let new_year = zone(NEW_YORK, "2027-01-01T05:00:05Z");
        assert_eq!(
            time("Dec 31 23:59:59", &new_year),
            Some(at("2027-01-01T04:59:59Z"))
        );
        assert_eq!(
            time("Jan  1 00:00:01", &new_year),
            Some(at("2027-01-01T05:00:01Z"))
        );
        // Read just before midnight: a line a second or a day ahead is next year's,
        // one more than a day ahead is from the January before.
        let eve = zone(NEW_YORK, "2027-01-01T04:59:59Z");
        assert_eq!(
            time("Jan  1 00:00:01", &eve),
            Some(at("2027-01-01T05:00:01Z"))
        );
        assert_eq!(
            time("Jan  1 23:59:59", &eve),
            Some(at("2027-01-02T04:59:59Z"))
        );
        assert_eq!(
            time("Jan  2 00:00:00", &eve),
            Some(at("2026-01-02T05:00:00Z"))
        );
        assert_eq!(
            time("Dec 31 23:59:58", &eve),
            Some(at("2027-01-01T04:59:58Z"))
        );
        // An old file read in March: its 29 February is the last one there was.
        let march = StampContext::utc(at("2027-03-01T00:00:00Z"));
        assert_eq!(
            time("Feb 29 12:00:00", &march),
            Some(at("2024-02-29T12:00:00Z"))
        );
        assert_eq!(
            time("Mar  1 12:00:00", &march),
            Some(at("2027-03-01T12:00:00Z"))
        );
        assert_eq!(
            time("Mar  2 12:00:00", &march),
            Some(at("2026-03-02T12:00:00Z"))
        );
        // References at the ends of time do not panic.
        for reference in [
            OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT),
            OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX),
        ] {
            for stamps in [
                StampContext::utc(reference),
                StampContext::new(LocalZone::posix(NEW_YORK).expect("rule"), reference),
            ] {
                let _ = time("Dec 31 23:59:59", &stamps);
                let _ = time("Jan  1 00:00:00", &stamps);
            }
        }
    }

    #[test]
    fn daylight_saving_changes_neither_panic_nor_guess() {
        let new_york = zone(NEW_YORK, "2026-12-01T00:00:00Z");
        // Some(None): a stamp of a known shape, whose time does not exist.
        let time = |stamp: &str| {
            let line = format!("{stamp} host");
            split_stamp(&line).map(|(stamp, _)| new_york.resolve(&stamp))
        };
        // 1 November 2026: 01:30 happens twice; the first (EDT, -04:00) is taken.
        assert_eq!(
            time("Nov  1 01:30:00"),
            Some(Some(at("2026-11-01T05:30:00Z")))
        );
        // short-full's abbreviation tells the two apart.
        assert_eq!(
            time("Sun 2026-11-01 01:30:00 EDT"),
            Some(Some(at("2026-11-01T05:30:00Z")))
        );
        assert_eq!(
            time("Sun 2026-11-01 01:30:00 EST"),
            Some(Some(at("2026-11-01T06:30:00Z")))
        );
        // 8 March 2026: 02:30 never happens; the record stands, its time is unreadable.
        assert_eq!(time("Mar  8 02:30:00"), Some(None));
        assert_eq!(time("Sun 2026-03-08 02:30:00 EST"), Some(None));
        assert_eq!(
            time("Mar  8 03:00:00"),
            Some(Some(at("2026-03-08T07:00:00Z")))
        );
    }
}
