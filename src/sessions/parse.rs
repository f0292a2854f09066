//! Pure parsing of sshd's log lines: a syslog line (RFC 3339 or BSD timestamp) or a
//! journal record's fields become a [`Record`]; its message becomes an [`SshdMessage`],
//! or nothing. Brute-force noise by the thousand is the common case, so the path that
//! rejects a line does no allocation and only a few prefix comparisons.
//!
//! Understood: OpenSSH 7.4 to 9.x and later, whose per-session process is `sshd` or
//! (9.8+) `sshd-session`.

use std::net::IpAddr;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// One log record from sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub at: Option<OffsetDateTime>,
    pub pid: u32,
    pub message: &'a str,
}

/// What an sshd message means for sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshdMessage<'a> {
    /// `Accepted METHOD for USER from IP port PORT ssh2[: KEY]`, logged by the
    /// connection's monitor process.
    Accepted {
        user: &'a str,
        method: &'a str,
        ip: IpAddr,
        port: u16,
        key: Option<LoggedKey<'a>>,
    },
    /// `User child is on pid N` (LogLevel VERBOSE): the session's child process.
    UserChild { child: u32 },
    /// The connection from `ip`:`port` ended (`Disconnected from user ...`, `Received
    /// disconnect from ...`, `Connection closed by ...`, `Connection reset by ...`).
    Ended { ip: IpAddr, port: u16 },
    /// `pam_unix(sshd:session): session closed for user USER`, from the monitor.
    PamClosed { user: &'a str },
}

/// The key sshd names in an `Accepted publickey` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedKey<'a> {
    /// As sshd prints it: `ED25519`, `RSA`, `ECDSA`, `ED25519-CERT`, ...
    pub key_type: &'a str,
    /// `SHA256:...`: for a certificate, the fingerprint of the certified key.
    pub fingerprint: &'a str,
    pub certificate: bool,
}

/// True for the program names sshd logs under.
pub fn is_sshd_program(program: &str) -> bool {
    program == "sshd" || program == "sshd-session"
}

/// Splits a syslog line `TIMESTAMP HOST PROGRAM[PID]: MESSAGE` and keeps it when the
/// program is sshd. BSD timestamps (`Nov 25 08:40:10`) carry no year: `year` is used.
pub fn parse_syslog_line(line: &str, year: i32) -> Option<Record<'_>> {
    let line = line.trim_end_matches(['\n', '\r']);
    // Cheap rejection first: every line we care about has "sshd" in its tag.
    let tag_end = line.find("]: ")?;
    let tag_start = line[..tag_end].rfind(' ')? + 1;
    let (program, pid) = line[tag_start..tag_end].split_once('[')?;
    if !is_sshd_program(program) {
        return None;
    }
    let pid = pid.parse::<u32>().ok().filter(|&p| p > 0)?;
    let message = &line[tag_end + 3..];
    // The time is only worth parsing for the few messages that can matter.
    let at = if may_matter(message) {
        parse_timestamp(&line[..tag_start], year)
    } else {
        None
    };
    Some(Record { at, pid, message })
}

/// The time at the start of a syslog header: RFC 3339 or BSD `Mmm dd hh:mm:ss` (UTC).
fn parse_timestamp(header: &str, year: i32) -> Option<OffsetDateTime> {
    let first = header.split(' ').next()?;
    if first.as_bytes().first()?.is_ascii_digit() {
        return crate::timefmt::parse(first);
    }
    let mut words = header.split_ascii_whitespace();
    let month = match words.next()? {
        "Jan" => Month::January,
        "Feb" => Month::February,
        "Mar" => Month::March,
        "Apr" => Month::April,
        "May" => Month::May,
        "Jun" => Month::June,
        "Jul" => Month::July,
        "Aug" => Month::August,
        "Sep" => Month::September,
        "Oct" => Month::October,
        "Nov" => Month::November,
        "Dec" => Month::December,
        _ => return None,
    };
    let day: u8 = words.next()?.parse().ok()?;
    let mut clock = words.next()?.split(':').map(|v| v.parse::<u8>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(h, m, s).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Understands one sshd message; `None` for everything that does not open or close a
/// session (failed logins, pre-authentication chatter, PAM auth lines, ...).
pub fn parse_message(message: &str) -> Option<SshdMessage<'_>> {
    if !may_matter(message) {
        return None;
    }
    if let Some(rest) = message.strip_prefix("Accepted ") {
        return parse_accepted(rest);
    }
    if let Some(rest) = message.strip_prefix("User child is on pid ") {
        return rest
            .trim()
            .parse()
            .ok()
            .map(|child| SshdMessage::UserChild { child });
    }
    if let Some(rest) = message.strip_prefix("pam_unix(sshd:session): session closed for user ") {
        let user = rest.trim();
        return valid_user(user).then_some(SshdMessage::PamClosed { user });
    }
    for prefix in [
        "Disconnected from ",
        "Connection closed by ",
        "Connection reset by ",
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let rest = rest.strip_prefix("user ").map(skip_word).unwrap_or(rest);
            let (ip, port) = ip_port(rest)?;
            return Some(SshdMessage::Ended { ip, port });
        }
    }
    if let Some(rest) = message.strip_prefix("Received disconnect from ") {
        let (ip, port) = ip_port(rest)?;
        return Some(SshdMessage::Ended { ip, port });
    }
    None
}

/// The cheap first test every message goes through: its first letter is one of those
/// the interesting messages start with, and it is not pre-authentication chatter.
fn may_matter(message: &str) -> bool {
    matches!(
        message.as_bytes().first(),
        Some(b'A' | b'U' | b'D' | b'R' | b'C' | b'p')
    ) && !message.ends_with("[preauth]")
}

/// `publickey for USER from IP port PORT ssh2: TYPE FP [ID ...]` and the other methods.
fn parse_accepted(rest: &str) -> Option<SshdMessage<'_>> {
    let (method, rest) = rest.split_once(" for ")?;
    let method = method.split('/').next()?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        return None;
    }
    let (user, rest) = rest.split_once(" from ")?;
    if !valid_user(user) {
        return None;
    }
    let (ip, port) = ip_port(rest)?;
    let key = match rest.split_once(" ssh2: ") {
        Some((_, key)) => {
            let mut words = key.split(' ');
            let key_type = words.next()?;
            let fingerprint = words.next()?;
            if !fingerprint.starts_with("SHA256:") || key_type.is_empty() {
                return None;
            }
            Some(LoggedKey {
                key_type,
                fingerprint,
                certificate: key_type.ends_with("-CERT"),
            })
        }
        None => None,
    };
    if method == "publickey" && key.is_none() {
        return None;
    }
    Some(SshdMessage::Accepted {
        user,
        method,
        ip,
        port,
        key,
    })
}

fn skip_word(text: &str) -> &str {
    text.split_once(' ').map(|(_, rest)| rest).unwrap_or("")
}

/// `IP port PORT[...]` at the start of `text`.
fn ip_port(text: &str) -> Option<(IpAddr, u16)> {
    let (ip, rest) = text.split_once(" port ")?;
    let ip: IpAddr = ip.parse().ok()?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let port = rest[..digits].parse().ok()?;
    Some((ip, port))
}

fn valid_user(user: &str) -> bool {
    !user.is_empty() && user.len() <= 64 && !user.contains([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/sshd/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("fixture")
    }

    fn messages(text: &str) -> Vec<(u32, SshdMessage<'_>)> {
        text.lines()
            .filter_map(|l| parse_syslog_line(l, 2026))
            .filter_map(|r| parse_message(r.message).map(|m| (r.pid, m)))
            .collect()
    }

    #[test]
    fn debian_openssh_9_2_captured_from_the_real_sshd() {
        let text = fixture("openssh-9.2-debian12.log");
        let found = messages(&text);
        let accepted: Vec<_> = found
            .iter()
            .filter(|(_, m)| matches!(m, SshdMessage::Accepted { .. }))
            .collect();
        assert_eq!(accepted.len(), 3);
        assert_eq!(
            accepted[0],
            &(
                30770,
                SshdMessage::Accepted {
                    user: "pictor-e2e",
                    method: "publickey",
                    ip: "127.0.0.1".parse().expect("ip"),
                    port: 39170,
                    key: Some(LoggedKey {
                        key_type: "ED25519",
                        fingerprint: "SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0",
                        certificate: false
                    }),
                }
            )
        );
        match &accepted[1].1 {
            SshdMessage::Accepted {
                ip, key: Some(key), ..
            } => {
                assert_eq!(*ip, "::1".parse::<IpAddr>().expect("ip"));
                assert_eq!(key.key_type, "RSA");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(found.contains(&(30770, SshdMessage::UserChild { child: 30776 })));
        assert!(found.contains(&(
            30776,
            SshdMessage::Ended {
                ip: "127.0.0.1".parse().expect("ip"),
                port: 39170
            }
        )));
        assert!(found.contains(&(30770, SshdMessage::PamClosed { user: "pictor-e2e" })));
        // The failed key and the invalid user produce nothing.
        assert!(!found.iter().any(|(pid, _)| *pid == 30797 || *pid == 30800));
    }

    #[test]
    fn openssh_7_4_with_bsd_timestamps_and_password_logins() {
        let text = fixture("openssh-7.4-centos7.log");
        let record = parse_syslog_line(text.lines().nth(1).expect("line"), 2026).expect("sshd");
        assert_eq!(record.at, crate::timefmt::parse("2026-11-24T09:15:02Z"));
        let found = messages(&text);
        assert!(found.contains(&(
            2215,
            SshdMessage::Ended {
                ip: "198.51.100.23".parse().expect("ip"),
                port: 52144
            }
        )));
        assert!(found.iter().any(|(pid, m)| *pid == 2301
            && matches!(
                m,
                SshdMessage::Accepted {
                    method: "password",
                    key: None,
                    ..
                }
            )));
    }

    #[test]
    fn sshd_session_ipv6_certificates_and_keyboard_interactive() {
        let text = fixture("openssh-9.9-sshd-session.log");
        let found = messages(&text);
        assert!(found.iter().any(|(pid, m)| *pid == 4242
            && matches!(
                m,
                SshdMessage::Accepted {
                    ip: IpAddr::V6(_),
                    port: 51234,
                    ..
                }
            )));
        let cert = found
            .iter()
            .find(|(pid, _)| *pid == 4300)
            .expect("certificate login");
        match &cert.1 {
            SshdMessage::Accepted { key: Some(key), .. } => {
                assert!(key.certificate);
                assert_eq!(
                    key.fingerprint,
                    "SHA256:pRzhx2gOQ/F8yUwWXRyGNhe9o93CH5OmgZccfFgMWxg"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(found.iter().any(|(pid, m)| *pid == 4310
            && matches!(
                m,
                SshdMessage::Accepted {
                    method: "keyboard-interactive",
                    key: None,
                    ..
                }
            )));
        assert!(found.contains(&(
            4310,
            SshdMessage::Ended {
                ip: "203.0.113.8".parse().expect("ip"),
                port: 40100
            }
        )));
    }

    #[test]
    fn brute_force_noise_and_garbage_produce_nothing() {
        let text = fixture("noise.log");
        assert_eq!(messages(&text), vec![]);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        for line in [
            "",
            "]: ",
            "x sshd[1]: ",
            "a b sshd[1]: Accepted",
            "a b sshd[1]: Accepted  for  from  port ",
            "a b sshd[4294967296]: Accepted password for u from 1.2.3.4 port 5 ssh2",
            "a b sshd[1]: Accepted password for u from 1.2.3.4 port 99999 ssh2",
            "a b sshd[1]: Disconnected from user",
            "Nov 99 99:99:99 h sshd[1]: User child is on pid x",
        ] {
            let _ = parse_syslog_line(line, 2026).map(|r| parse_message(r.message));
        }
    }
}
