//! RFC 3339 times: parsing what the control plane sends and formatting what we report.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 time such as `2026-11-25T07:00:00Z`.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Formats a time as RFC 3339 in UTC, e.g. `2026-11-25T07:00:00.123Z`.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// The current wall-clock time.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_formats_in_utc() {
        let at = parse("2026-11-25T09:00:00+02:00").expect("valid");
        assert_eq!(format(at), "2026-11-25T07:00:00Z");
        assert!(parse("2026-11-25 07:00").is_none());
        assert!(parse("").is_none());
    }
}
