//! A datagram sent to the syslog socket, read (pure): `<PRI>`, an optional time stamp,
//! the tag `PROGRAM[PID]:` or `PROGRAM:`, the message. glibc's `syslog()`, util-linux
//! `logger`, busybox and Python's `SysLogHandler` all send a shape of this. Every part
//! is a claim of the sender: who sent it is the kernel's word ([`super::syslog_socket`]),
//! never the tag or the pid written here.

use crate::sessions::stamp;

/// One message as its sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub facility: u8,
    pub severity: u8,
    /// The program the sender says it is.
    pub tag: Option<&'a str>,
    /// The pid the sender wrote in its tag (a claim).
    pub claimed_pid: Option<u32>,
    pub message: &'a str,
}

/// Reads a datagram's text. Never fails: what has no header is all message, at
/// `user.notice` (syslog's default).
pub fn parse_frame(text: &str) -> Frame<'_> {
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let (pri, rest) = split_pri(text).unwrap_or((13, text));
    let rest = match stamp::split_stamp(rest) {
        Some((_, after)) => after,
        None => rest,
    };
    let (tag, claimed_pid, message) = split_tag(rest).unwrap_or((None, None, rest));
    Frame {
        facility: pri >> 3,
        severity: pri & 7,
        tag,
        claimed_pid,
        message,
    }
}

/// `<N>` with N from 0 to 191, and what follows.
fn split_pri(text: &str) -> Option<(u8, &str)> {
    let (digits, rest) = text.strip_prefix('<')?.split_once('>')?;
    if !(1..=3).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u8 = digits.parse().ok().filter(|&p| p <= 191)?;
    Some((pri, rest))
}

/// `PROGRAM[PID]: ` or `PROGRAM: ` (the program: 1 to 48 bytes, no space, `[` or `:`).
fn split_tag(text: &str) -> Option<(Option<&str>, Option<u32>, &str)> {
    let end = text.find([':', '[', ' '])?;
    let program = &text[..end];
    if program.is_empty() || program.len() > 48 || program.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let rest = &text[end..];
    let (pid, rest) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (digits, after) = inner.split_once(']')?;
            (Some(digits.parse::<u32>().ok()?), after)
        }
        None => (None, rest),
    };
    let message = rest.strip_prefix(':')?;
    Some((
        Some(program),
        pid,
        message.strip_prefix(' ').unwrap_or(message),
    ))
}

/// The facility's name, as syslog.conf spells it.
pub fn facility_name(facility: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES.get(usize::from(facility)).copied().unwrap_or("user")
}

/// The severity's name.
pub fn severity_name(severity: u8) -> &'static str {
    const NAMES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    NAMES[usize::from(severity & 7)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_syslog_lines_are_read() {
        // sshd through glibc's syslog(3): LOG_AUTH | LOG_INFO, LOG_PID.
        let frame = parse_frame(
            "<38>Dec  7 05:31:02 sshd[8957]: Accepted publickey for root from 127.0.0.1 port 50688 ssh2: ED25519 SHA256:x\n",
        );
        assert_eq!(facility_name(frame.facility), "auth");
        assert_eq!(severity_name(frame.severity), "info");
        assert_eq!(frame.tag, Some("sshd"));
        assert_eq!(frame.claimed_pid, Some(8957));
        assert!(frame.message.starts_with("Accepted publickey for root"));
        // OpenSSH 9.8+'s per-session binary, an ISO stamp (newer loggers).
        let frame = parse_frame("<86>2026-12-07T05:31:02.123456+00:00 sshd-session[12]: x");
        assert_eq!(facility_name(frame.facility), "authpriv");
        assert_eq!(
            (frame.tag, frame.claimed_pid, frame.message),
            (Some("sshd-session"), Some(12), "x")
        );
    }

    #[test]
    fn what_has_no_header_is_all_message() {
        let frame = parse_frame("hello world");
        assert_eq!((frame.facility, frame.severity), (1, 5));
        assert_eq!(
            (frame.tag, frame.claimed_pid, frame.message),
            (None, None, "hello world")
        );
        // Python's SysLogHandler: `<PRI>` and the message, no stamp, no tag.
        let frame = parse_frame("<14>just text");
        assert_eq!((frame.tag, frame.message), (None, "just text"));
        // A tag without a pid; a `[` that is no pid.
        let frame = parse_frame("<13>Dec  7 05:31:02 cron: job done");
        assert_eq!(
            (frame.tag, frame.claimed_pid, frame.message),
            (Some("cron"), None, "job done")
        );
        let frame = parse_frame("<13>app[abc]: text");
        assert_eq!((frame.tag, frame.message), (None, "app[abc]: text"));
        // A priority out of range is text.
        assert_eq!(parse_frame("<999>x").message, "<999>x");
        assert_eq!(facility_name(99), "user");
    }

    #[test]
    fn nothing_in_a_datagram_makes_the_reader_fail() {
        for text in [
            "",
            "<",
            "<>",
            "<1",
            "[",
            ":",
            "a[",
            "a[1",
            "\0\0",
            "<13>",
            "é[1]: ü",
        ] {
            let _ = parse_frame(text);
        }
    }
}
