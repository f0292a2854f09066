//! Pure parsing of sshd's log lines: a syslog file line (its header read strictly at
//! its fixed place, see [`parse_syslog_line`]) or a journal record's fields become a
//! [`Record`]; its message becomes an [`SshdMessage`], or nothing. Brute-force noise by
//! the thousand is the common case, so the path that rejects a line does no allocation
//! and only a few byte comparisons.
//!
//! Any local user can write any line to syslog (`logger`), and remote clients choose
//! the user names that end up in it: every field taken from a line is checked against
//! what sshd itself writes (user names, methods, key types, fingerprints, pids) before
//! it goes anywhere. A line that passes is still only what someone wrote: decisions that
//! protect need what the kernel vouches for as well.
//!
//! Understood: OpenSSH 7.4 to 9.x and later, whose per-session process is `sshd` or
//! (9.8+) `sshd-session`.

use std::net::IpAddr;

use time::OffsetDateTime;

use super::stamp::{self, Stamp};
pub use super::stamp::{LocalZone, StampContext};

/// One log record from sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// When the line says it was written; `None` when its stamp cannot be read (or, from
    /// [`parse_syslog_line`], was not worked out because the message cannot matter).
    /// Only what the writer claims: never a reason to protect or not.
    pub at: Option<OffsetDateTime>,
    pub pid: u32,
    pub message: &'a str,
}

/// What an sshd message means for sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshdMessage<'a> {
    /// `Accepted METHOD for USER from IP port PORT ssh2[: INFO]`, logged by the
    /// connection's monitor process.
    Accepted(Login<'a>),
    /// `Partial METHOD for USER ...` (LogLevel VERBOSE): one method of several
    /// (`AuthenticationMethods publickey,password`) succeeded, from the monitor. The
    /// `Accepted` line that follows names the last method only; the key is here.
    Partial(Login<'a>),
    /// `User child is on pid N` (LogLevel VERBOSE): the session's child process.
    UserChild { child: u32 },
    /// The connection from `ip`:`port` ended (`Disconnected from [user U] ...`,
    /// `Received disconnect from ...`, `Connection closed by ...`, `Connection reset by
    /// ...`, `Read error from remote host ...`, `Timeout, client not responding from
    /// ...` (7.7+), `terminating inactive connection from ...` (9.2+)).
    Ended { ip: IpAddr, port: u16 },
    /// `Timeout, client not responding.` (7.4 to 7.6, no address): the session of the
    /// process that logs it ended.
    EndedHere,
    /// `pam_unix(sshd:session): session closed for user USER`, from the monitor.
    PamClosed { user: &'a str },
}

/// A successful authentication as sshd logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login<'a> {
    pub user: &'a str,
    /// Without its submethod (`keyboard-interactive/pam` is `keyboard-interactive`).
    pub method: &'a str,
    pub ip: IpAddr,
    pub port: u16,
    pub key: Option<LoggedKey<'a>>,
}

/// The key sshd names in a `publickey` or `hostbased` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedKey<'a> {
    /// As sshd prints it: `ED25519`, `RSA`, `ECDSA`, `ED25519-CERT`, ...
    pub key_type: &'a str,
    /// `SHA256:...` or `MD5:..` (`FingerprintHash md5`), checked by
    /// [`is_valid_fingerprint`]; for a certificate, the fingerprint of the certified key,
    /// which OpenSSH 7.4 to 7.8 do not log (`None`).
    pub fingerprint: Option<&'a str>,
    pub certificate: bool,
}

/// True for the program names sshd logs under.
pub fn is_sshd_program(program: &str) -> bool {
    program == "sshd" || program == "sshd-session"
}

/// Splits a syslog file line and keeps it when it is sshd's. The header is read at its
/// fixed place, nothing is searched for: the stamp (any shape [`stamp::split_stamp`]
/// reads), one space, the host (one token), one space, the tag `PROGRAM[PID]:` as the
/// third field, one space, the message. Or an RFC 5424 line: `<PRI>1 STAMP HOST
/// APP-NAME PROCID MSGID SD [MSG]`. The program must be exactly `sshd` or
/// `sshd-session`, the pid a positive decimal number. Anything else is not a record,
/// so a line of another program that quotes sshd's words in its message (`sudo`'s
/// command line, `logger`'s text) is none.
///
/// [`Record::at`] is the stamp placed in time by `stamps`, and `None` when it cannot be
/// read; it is only worked out for the messages [`parse_message`] may understand.
pub fn parse_syslog_line<'a>(line: &'a str, stamps: &StampContext) -> Option<Record<'a>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (stamp, pid, message) = if line.starts_with('<') {
        split_rfc5424(line)?
    } else {
        split_rfc3164(line)?
    };
    // The time is only worth working out for the few messages that can matter.
    let at = if may_matter(message) {
        stamps.resolve(&stamp)
    } else {
        None
    };
    Some(Record { at, pid, message })
}

/// `STAMP HOST PROGRAM[PID]: MESSAGE`.
fn split_rfc3164(line: &str) -> Option<(Stamp<'_>, u32, &str)> {
    let (stamp, rest) = stamp::split_stamp(line)?;
    // The host: one token of 1 to 255 bytes, no control character.
    let bytes = rest.as_bytes();
    let mut host = 0;
    loop {
        match *bytes.get(host)? {
            b' ' => break,
            b if b.is_ascii_control() => return None,
            _ => host += 1,
        }
    }
    if !(1..=255).contains(&host) {
        return None;
    }
    // The byte at `host` is an ASCII space: `host + 1` is a char boundary.
    let tag = &rest[host + 1..];
    let after = tag
        .strip_prefix("sshd[")
        .or_else(|| tag.strip_prefix("sshd-session["))?;
    let (pid, after) = split_pid(after, b']')?;
    match after.as_bytes() {
        [b']', b':'] => Some((stamp, pid, "")),
        [b']', b':', b' ', ..] => Some((stamp, pid, &after[3..])),
        _ => None,
    }
}

/// `<PRI>1 STAMP HOST APP-NAME PROCID MSGID STRUCTURED-DATA[ MSG]` (RFC 5424).
fn split_rfc5424(line: &str) -> Option<(Stamp<'_>, u32, &str)> {
    let (pri, rest) = line.strip_prefix('<')?.split_once('>')?;
    if !(1..=3).contains(&pri.len())
        || !pri.bytes().all(|b| b.is_ascii_digit())
        || pri.parse::<u8>().ok()? > 191
    {
        return None;
    }
    let rest = rest.strip_prefix("1 ")?;
    let (stamp, rest) = stamp::split_rfc5424_stamp(rest)?;
    let (_host, rest) = header_field(rest, 255)?;
    let (app, rest) = header_field(rest, 48)?;
    if !is_sshd_program(app) {
        return None;
    }
    let (procid, rest) = header_field(rest, 128)?;
    let pid = parse_pid(procid)?;
    let (_msgid, rest) = header_field(rest, 32)?;
    let rest = skip_structured_data(rest)?;
    let message = match rest.strip_prefix(' ') {
        // rsyslog's %msg% of a message received in the legacy format keeps the space
        // that followed its tag: one such space is not part of the message.
        Some(message) => match message.strip_prefix('\u{feff}') {
            Some(message) => message,
            None => message.strip_prefix(' ').unwrap_or(message),
        },
        None if rest.is_empty() => rest,
        None => return None,
    };
    Some((stamp, pid, message))
}

/// An RFC 5424 header field of 1 to `max` printable ASCII characters, and what follows
/// the space after it.
fn header_field(text: &str, max: usize) -> Option<(&str, &str)> {
    let (field, rest) = text.split_once(' ')?;
    ((1..=max).contains(&field.len()) && field.bytes().all(|b| b.is_ascii_graphic()))
        .then_some((field, rest))
}

/// What follows RFC 5424's STRUCTURED-DATA: `-`, or `[ID PARAM="VALUE" ...]` elements
/// (in a value, `\\`, `\"` and `\]` are escaped).
fn skip_structured_data(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'-') {
        return Some(&text[1..]);
    }
    // SD-NAME: 1 to 32 printable ASCII characters but `=`, space, `]` and `"`.
    let name = |at: usize| {
        let n = bytes
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
            .count();
        (1..=32).contains(&n).then_some(at + n)
    };
    let mut i = 0;
    if bytes.first() != Some(&b'[') {
        return None;
    }
    while bytes.get(i) == Some(&b'[') {
        i = name(i + 1)?;
        loop {
            match bytes.get(i)? {
                b']' => {
                    i += 1;
                    break;
                }
                b' ' => {
                    i = name(i + 1)?;
                    if bytes.get(i..i + 2)? != b"=\"" {
                        return None;
                    }
                    i += 2;
                    loop {
                        match bytes.get(i)? {
                            b'\\' => {
                                bytes.get(i + 1)?;
                                i += 2;
                            }
                            b'"' => {
                                i += 1;
                                break;
                            }
                            b']' => return None,
                            _ => i += 1,
                        }
                    }
                }
                _ => return None,
            }
        }
    }
    // `i` is just after an ASCII `]`, so on a char boundary.
    text.get(i..)
}

/// A pid as syslog writes it: a positive decimal number, no sign, no leading zero.
fn parse_pid(text: &str) -> Option<u32> {
    match split_pid(text, b' ') {
        Some((pid, "")) => Some(pid),
        _ => None,
    }
}

/// A pid at the start of `text`, ended by `end` or the end of `text`; what follows it,
/// from `end` on.
#[inline]
fn split_pid(text: &str, end: u8) -> Option<(u32, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'0') {
        return None;
    }
    let mut pid = 0u64;
    let mut n = 0;
    while let Some(&b) = bytes.get(n) {
        let d = b.wrapping_sub(b'0');
        if d >= 10 {
            if b != end {
                return None;
            }
            break;
        }
        if n == 10 {
            return None;
        }
        pid = pid * 10 + u64::from(d);
        n += 1;
    }
    if n == 0 {
        return None;
    }
    // The digits are ASCII: `n` is a char boundary.
    Some((u32::try_from(pid).ok()?, &text[n..]))
}

/// Understands one sshd message; `None` for everything that does not open or close a
/// session (failed logins, pre-authentication chatter, PAM auth lines, ...).
pub fn parse_message(message: &str) -> Option<SshdMessage<'_>> {
    if !may_matter(message) {
        return None;
    }
    if let Some(rest) = message.strip_prefix("Accepted ") {
        return parse_login(rest).map(SshdMessage::Accepted);
    }
    if let Some(rest) = message.strip_prefix("Partial ") {
        return parse_login(rest).map(SshdMessage::Partial);
    }
    if let Some(rest) = message.strip_prefix("User child is on pid ") {
        return parse_pid(rest).map(|child| SshdMessage::UserChild { child });
    }
    if let Some(user) = message.strip_prefix("pam_unix(sshd:session): session closed for user ") {
        return is_valid_logged_user(user).then_some(SshdMessage::PamClosed { user });
    }
    if message == "Timeout, client not responding." {
        return Some(SshdMessage::EndedHere);
    }
    // `{ID}` is OpenSSH 7.5+'s connection id: `[user U ]IP port P` once logged in.
    for prefix in [
        "Disconnected from ",
        "Connection closed by ",
        "Connection reset by ",
        "Timeout, client not responding from ",
        "terminating inactive connection from ",
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let rest = rest.strip_prefix("user ").map(skip_word).unwrap_or(rest);
            let (ip, port) = ip_port(rest)?;
            return Some(SshdMessage::Ended { ip, port });
        }
    }
    for prefix in ["Received disconnect from ", "Read error from remote host "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (ip, port) = ip_port(rest)?;
            return Some(SshdMessage::Ended { ip, port });
        }
    }
    None
}

/// The cheap first test every message goes through: its first letter is one of those
/// the interesting messages start with, and it is not pre-authentication chatter.
fn may_matter(message: &str) -> bool {
    matches!(
        message.as_bytes().first(),
        Some(b'A' | b'P' | b'U' | b'D' | b'R' | b'C' | b'T' | b't' | b'p')
    ) && !message.ends_with("[preauth]")
}

/// `METHOD[/SUBMETHOD] for USER from IP port PORT ssh2[: INFO]`. INFO is read for the
/// methods that name a key: `publickey` (`TYPE FP`, or for a certificate `TYPE-CERT
/// [FP ]ID KEY-ID (serial N) CA TYPE FP`: OpenSSH 7.9+ logs the certified key's
/// fingerprint, earlier ones do not) and `hostbased` (`TYPE FP`, and up to 7.5 `,
/// client user "U", client host "H"` after it). Other methods' INFO (gssapi's
/// principal) is not a key and is not read.
fn parse_login(rest: &str) -> Option<Login<'_>> {
    let (method, rest) = rest.split_once(" for ")?;
    // `keyboard-interactive/pam`: the submethod is checked too, and dropped.
    let (method, submethod) = match method.split_once('/') {
        Some((method, submethod)) => (method, Some(submethod)),
        None => (method, None),
    };
    if !is_valid_method(method) || submethod.is_some_and(|s| !is_valid_method(s)) {
        return None;
    }
    let (user, rest) = rest.split_once(" from ")?;
    if !is_valid_logged_user(user) {
        return None;
    }
    let (ip, port) = ip_port(rest)?;
    let info = rest.split_once(" ssh2: ").map(|(_, info)| info);
    let key = match (method, info) {
        ("publickey" | "hostbased", Some(info)) => Some(parse_logged_key(info)?),
        _ => None,
    };
    if method == "publickey" && key.is_none() {
        return None;
    }
    Some(Login {
        user,
        method,
        ip,
        port,
        key,
    })
}

fn parse_logged_key(info: &str) -> Option<LoggedKey<'_>> {
    let mut words = info.split(' ');
    let key_type = words.next()?;
    if !is_valid_key_type(key_type) {
        return None;
    }
    let certificate = key_type.ends_with("-CERT");
    let fingerprint = match words.next()? {
        // 7.4 to 7.8: `TYPE-CERT ID KEY-ID ...`, no fingerprint of the certified key.
        "ID" if certificate => None,
        // Hostbased up to 7.5: `TYPE FP, client user ...`.
        word => Some(word.strip_suffix(',').unwrap_or(word)),
    };
    if fingerprint.is_some_and(|fp| !is_valid_fingerprint(fp)) {
        return None;
    }
    Some(LoggedKey {
        key_type,
        fingerprint,
        certificate,
    })
}

fn skip_word(text: &str) -> &str {
    text.split_once(' ').map(|(_, rest)| rest).unwrap_or("")
}

/// `IP port PORT[...]` at the start of `text`. An IPv6 link-local address carries its
/// zone (`fe80::1%eth0`, as getnameinfo writes it): the zone, an interface name or
/// number, is checked and dropped.
fn ip_port(text: &str) -> Option<(IpAddr, u16)> {
    let (ip, rest) = text.split_once(" port ")?;
    let ip = match ip.split_once('%') {
        Some((address, zone)) if is_valid_zone(zone) => match address.parse().ok()? {
            IpAddr::V6(v6) => IpAddr::V6(v6),
            IpAddr::V4(_) => return None,
        },
        Some(_) => return None,
        None => ip.parse().ok()?,
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let port = rest[..digits].parse().ok()?;
    Some((ip, port))
}

/// An IPv6 zone as getnameinfo writes it: an interface name (at most 15 bytes, Linux's
/// IFNAMSIZ less its NUL, no `/`, no space) or its index.
fn is_valid_zone(zone: &str) -> bool {
    (1..=15).contains(&zone.len())
        && zone
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%')
}

/// A user name as sshd logs it: 1 to 100 bytes (sshd logs at most 100), printable
/// ASCII, no whitespace. sshd writes any other byte of a name as a `\ooo` escape, so a
/// raw control character, space or non-ASCII byte never comes from sshd. This is wider
/// than [`crate::config::is_valid_user_name`] (32 bytes, `useradd`'s characters): names
/// from NSS (LDAP, SSSD: `john.doe@corp.example`) log in too, and their sessions are
/// reported, but the rule shares its aim: nothing that could break a line or a field.
pub fn is_valid_logged_user(user: &str) -> bool {
    (1..=100).contains(&user.len()) && user.bytes().all(|b| b.is_ascii_graphic())
}

/// An authentication method (or submethod) name: 1 to 32 of `[a-z0-9-]`.
pub fn is_valid_method(method: &str) -> bool {
    (1..=32).contains(&method.len())
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A key type as sshd logs it (`ED25519`, `RSA-CERT`, `ECDSA-SK`): 1 to 32 of
/// `[A-Z0-9-]`.
pub fn is_valid_key_type(key_type: &str) -> bool {
    (1..=32).contains(&key_type.len())
        && key_type
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

/// A key fingerprint as sshd logs it: `SHA256:` and the 43 characters of unpadded
/// base64 that encode 32 bytes (the last one carrying no stray bits), or `MD5:` and 16
/// lowercase hex pairs separated by colons (`FingerprintHash md5`).
pub fn is_valid_fingerprint(fingerprint: &str) -> bool {
    const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if let Some(digest) = fingerprint.strip_prefix("SHA256:") {
        let bytes = digest.as_bytes();
        // 43 sextets are 258 bits: the last character's two low bits are padding.
        return bytes.len() == 43
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            && BASE64
                .iter()
                .position(|&c| Some(&c) == bytes.last())
                .is_some_and(|sextet| sextet % 4 == 0);
    }
    if let Some(digest) = fingerprint.strip_prefix("MD5:") {
        return digest.len() == 47
            && digest.bytes().enumerate().all(|(i, b)| match i % 3 {
                2 => b == b':',
                _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
            });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/sshd/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("fixture")
    }

    fn at(text: &str) -> OffsetDateTime {
        crate::timefmt::parse(text).expect("time")
    }

    /// UTC, read on 1 December 2026.
    fn ctx() -> StampContext {
        StampContext::utc(at("2026-12-01T00:00:00Z"))
    }

    fn messages(text: &str) -> Vec<(u32, SshdMessage<'_>)> {
        let stamps = ctx();
        text.lines()
            .filter_map(|l| parse_syslog_line(l, &stamps))
            .filter_map(|r| parse_message(r.message).map(|m| (r.pid, m)))
            .collect()
    }

    #[test]
    fn debian_openssh_9_2_captured_from_the_real_sshd() {
        let text = fixture("openssh-9.2-debian12.log");
        let found = messages(&text);
        let accepted: Vec<_> = found
            .iter()
            .filter(|(_, m)| matches!(m, SshdMessage::Accepted(_)))
            .collect();
        assert_eq!(accepted.len(), 3);
        assert_eq!(
            accepted[0],
            &(
                30770,
                SshdMessage::Accepted(Login {
                    user: "pictor-e2e",
                    method: "publickey",
                    ip: "127.0.0.1".parse().expect("ip"),
                    port: 39170,
                    key: Some(LoggedKey {
                        key_type: "ED25519",
                        fingerprint: Some("SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0"),
                        certificate: false
                    }),
                })
            )
        );
        match &accepted[1].1 {
            SshdMessage::Accepted(Login {
                ip, key: Some(key), ..
            }) => {
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
        let record = parse_syslog_line(text.lines().nth(1).expect("line"), &ctx()).expect("sshd");
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
                SshdMessage::Accepted(Login {
                    method: "password",
                    key: None,
                    ..
                })
            )));
    }

    #[test]
    fn sshd_session_ipv6_certificates_and_keyboard_interactive() {
        let text = fixture("openssh-9.9-sshd-session.log");
        let found = messages(&text);
        assert!(found.iter().any(|(pid, m)| *pid == 4242
            && matches!(
                m,
                SshdMessage::Accepted(Login {
                    ip: IpAddr::V6(_),
                    port: 51234,
                    ..
                })
            )));
        let cert = found
            .iter()
            .find(|(pid, _)| *pid == 4300)
            .expect("certificate login");
        match &cert.1 {
            SshdMessage::Accepted(Login { key: Some(key), .. }) => {
                assert!(key.certificate);
                assert_eq!(
                    key.fingerprint,
                    Some("SHA256:pRzhx2gOQ/F8yUwWXRyGNhe9o93CH5OmgZccfFgMWxg")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(found.iter().any(|(pid, m)| *pid == 4310
            && matches!(
                m,
                SshdMessage::Accepted(Login {
                    method: "keyboard-interactive",
                    key: None,
                    ..
                })
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
            // Found by fuzzing (fuzz/regressions/log_line/clock-overflow).
            "Jan  1 x0:00:00",
            "Jan  1 x0:00:00 h sshd[1]: Accepted password for u from 1.2.3.4 port 5 ssh2",
        ] {
            let _ = parse_syslog_line(line, &ctx()).map(|r| parse_message(r.message));
        }
    }

    const FP: &str = "SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0";
    const MSG: &str = "Accepted password for alice from 10.0.0.1 port 1000 ssh2";
    const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";
    const PARIS: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    fn zone(rule: &str, reference: &str) -> StampContext {
        StampContext::new(LocalZone::posix(rule).expect("rule"), at(reference))
    }

    /// The pid, time and message of a line under `stamps`.
    fn read<'a>(
        line: &'a str,
        stamps: &StampContext,
    ) -> Option<(u32, Option<OffsetDateTime>, &'a str)> {
        parse_syslog_line(line, stamps).map(|r| (r.pid, r.at, r.message))
    }

    #[test]
    fn every_header_format_sshd_reaches_files_in() {
        let utc = ctx();
        let paris = zone(PARIS, "2026-12-01T00:00:00Z");
        let sd = r#"[exampleSDID@32473 iut="3" eventSource="App"][x@1 a="b\"c\]d\\"]"#;
        let cases = [
            // RFC 3164 / BSD, local time, no year; the day zero- or space-padded.
            (format!("Nov 29 10:00:00 host sshd[123]: {MSG}"), &utc, "2026-11-29T10:00:00Z"),
            (format!("Nov  9 10:00:00 host sshd[123]: {MSG}"), &utc, "2026-11-09T10:00:00Z"),
            (format!("Nov 09 10:00:00 h sshd-session[123]: {MSG}"), &utc, "2026-11-09T10:00:00Z"),
            (format!("Nov 29 10:00:00 host sshd[123]: {MSG}"), &paris, "2026-11-29T09:00:00Z"),
            // journalctl short-precise.
            (format!("Nov 29 10:00:00.123456 host sshd[123]: {MSG}"), &paris, "2026-11-29T09:00:00.123456Z"),
            // rsyslog's RSYSLOG_FileFormat: the zone is in the stamp, not the system's.
            (format!("2026-11-29T10:00:00.123456+01:00 host sshd[123]: {MSG}"), &utc, "2026-11-29T09:00:00.123456Z"),
            (format!("2026-11-29T10:00:00Z host sshd[123]: {MSG}"), &paris, "2026-11-29T10:00:00Z"),
            (format!("2026-11-29T10:00:00.5-05:30 host sshd[123]: {MSG}"), &utc, "2026-11-29T15:30:00.5Z"),
            // journalctl short-iso (old and new offset forms).
            (format!("2026-11-29T10:00:00+0100 host sshd[123]: {MSG}"), &utc, "2026-11-29T09:00:00Z"),
            // journalctl short-full: the abbreviation must be the local zone's then, or UTC.
            (format!("Sun 2026-11-29 10:00:00 CET host sshd[123]: {MSG}"), &paris, "2026-11-29T09:00:00Z"),
            (format!("Wed 2026-07-29 10:00:00 CEST host sshd[123]: {MSG}"), &paris, "2026-07-29T08:00:00Z"),
            (format!("Sun 2026-11-29 10:00:00 UTC host sshd[123]: {MSG}"), &paris, "2026-11-29T10:00:00Z"),
            (format!("Sun 2026-11-29 10:00:00 GMT host sshd[123]: {MSG}"), &paris, "2026-11-29T10:00:00Z"),
            // journalctl short-unix.
            (format!("1764410400.123456 host sshd[123]: {MSG}"), &paris, "2025-11-29T10:00:00.123456Z"),
            (format!("1764410400 host sshd[123]: {MSG}"), &utc, "2025-11-29T10:00:00Z"),
            // RFC 5424: no structured data, blocks of it, a BOM, rsyslog's legacy space.
            (format!("<38>1 2026-11-29T10:00:00.1Z host sshd 123 - - {MSG}"), &utc, "2026-11-29T10:00:00.1Z"),
            (format!("<38>1 2026-11-29T10:00:00+01:00 h.example sshd-session 123 ID47 {sd} \u{feff}{MSG}"), &utc, "2026-11-29T09:00:00Z"),
            (format!("<86>1 2026-11-29T10:00:00Z - sshd 123 - {sd}  {MSG}"), &utc, "2026-11-29T10:00:00Z"),
            (format!("<0>1 2026-11-29T10:00:00Z host sshd 123 - - {MSG}\r\n"), &utc, "2026-11-29T10:00:00Z"),
        ];
        for (line, stamps, expected) in &cases {
            assert_eq!(
                read(line, stamps),
                Some((123, Some(at(expected)), MSG)),
                "{line}"
            );
        }
    }

    #[test]
    fn a_stamp_that_cannot_be_read_is_none_but_the_header_still_counts() {
        let paris = zone(PARIS, "2026-12-01T00:00:00Z");
        for line in [
            "Nov 31 10:00:00 host sshd[7]: User child is on pid 8",
            "Nov 29 24:00:00 host sshd[7]: User child is on pid 8",
            "Nov 29 10:61:00 host sshd[7]: User child is on pid 8",
            "2026-13-01T10:00:00Z host sshd[7]: User child is on pid 8",
            "2026-02-29T10:00:00Z host sshd[7]: User child is on pid 8",
            "2026-11-29T10:00:60Z host sshd[7]: User child is on pid 8",
            "9999-12-31T23:59:59-23:59 host sshd[7]: User child is on pid 8",
            "999999999999 host sshd[7]: User child is on pid 8",
            // Not the zone's abbreviation then, or not at all; a weekday that is wrong.
            "Sun 2026-11-29 10:00:00 CEST host sshd[7]: User child is on pid 8",
            "Sun 2026-11-29 10:00:00 PST host sshd[7]: User child is on pid 8",
            "Mon 2026-11-29 10:00:00 CET host sshd[7]: User child is on pid 8",
            "<38>1 - host sshd 7 - - User child is on pid 8",
        ] {
            assert_eq!(
                read(line, &paris),
                Some((7, None, "User child is on pid 8")),
                "{line}"
            );
        }
    }

    #[test]
    fn only_a_tag_in_the_third_field_is_sshd_s() {
        let login = "Accepted password for root from 1.2.3.4 port 22 ssh2";
        for line in [
            // sudo logs the command line: its text is not a tag.
            format!("Nov 29 10:00:00 host sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/echo x sshd[4242]: {login}"),
            format!("Nov 29 10:00:00 host sudo[77]: alice : COMMAND=/usr/bin/logger sshd[4242]: {login}"),
            format!("2026-11-29T10:00:00Z host alice: Nov 29 10:00:00 host sshd[4242]: {login}"),
            // The tag elsewhere than the third field.
            format!("Nov 29 10:00:00 host extra sshd[4242]: {login}"),
            format!("Nov 29 10:00:00 sshd[4242]: {login}"),
            format!("Nov 29 10:00:00  host sshd[4242]: {login}"),
            format!("2026-11-29T10:00:00Z host  sshd[4242]: {login}"),
            format!("host sshd[4242]: {login}"),
            format!("sshd[4242]: {login}"),
            format!("x Nov 29 10:00:00 host sshd[4242]: {login}"),
            // Not exactly sshd, or no pid as syslog writes one.
            format!("Nov 29 10:00:00 host sshd2[4242]: {login}"),
            format!("Nov 29 10:00:00 host xsshd[4242]: {login}"),
            format!("Nov 29 10:00:00 host SSHD[4242]: {login}"),
            format!("Nov 29 10:00:00 host sshd: {login}"),
            format!("Nov 29 10:00:00 host sshd[]: {login}"),
            format!("Nov 29 10:00:00 host sshd[0]: {login}"),
            format!("Nov 29 10:00:00 host sshd[+4242]: {login}"),
            format!("Nov 29 10:00:00 host sshd[-4242]: {login}"),
            format!("Nov 29 10:00:00 host sshd[04242]: {login}"),
            format!("Nov 29 10:00:00 host sshd[ 4242]: {login}"),
            format!("Nov 29 10:00:00 host sshd[4294967296]: {login}"),
            format!("Nov 29 10:00:00 host sshd[4242]:{login}"),
            format!("Nov 29 10:00:00 host sshd[4242] {login}"),
            format!("Nov 29 10:00:00 host\tsshd[4242]: {login}"),
            // Stamps of no known shape.
            format!("Nov 9 10:00:00 host sshd[4242]: {login}"),
            format!("nov 29 10:00:00 host sshd[4242]: {login}"),
            format!("Nov 29 10:00 host sshd[4242]: {login}"),
            format!("Nov 29 10:00:00. host sshd[4242]: {login}"),
            format!("2026-11-29 10:00:00 host sshd[4242]: {login}"),
            format!("2026-11-29T10:00:00 host sshd[4242]: {login}"),
            format!("2026-11-29T10:00:00+1 host sshd[4242]: {login}"),
            format!("2026-11-29T10:00:00+24:00 host sshd[4242]: {login}"),
            format!("Sun 2026-11-29 10:00:00 host sshd[4242]: {login}"),
            format!("[ 1234.567890] host sshd[4242]: {login}"),
            format!("1764410400. host sshd[4242]: {login}"),
            format!("-1764410400 host sshd[4242]: {login}"),
            // RFC 5424 done wrong.
            format!("<38>2 2026-11-29T10:00:00Z host sshd 4242 - - {login}"),
            format!("<192>1 2026-11-29T10:00:00Z host sshd 4242 - - {login}"),
            format!("<>1 2026-11-29T10:00:00Z host sshd 4242 - - {login}"),
            format!("<38>1 2026-11-29T10:00:00Z host sshd 04242 - - {login}"),
            format!("<38>1 2026-11-29T10:00:00Z host logger 4242 - - sshd 4242 - - {login}"),
            format!("<38>1 2026-11-29T10:00:00Z host sshd 4242 - {login}"),
            format!("<38>1 2026-11-29T10:00:00Z host sshd 4242 - [x a=b] {login}"),
            format!("<38>1 2026-11-29T10:00:00Z host sshd 4242 - [x a=\"b] {login}"),
            format!("<38>1 2026-11-29T10:00:00Z host sshd 4242 - [x a=\"b\"]{login}"),
            format!("<38>1 2026-11-29T10:00:00Z host sshd 4242 - [] {login}"),
            format!("<38>1 2026-11-29 host sshd 4242 - - {login}"),
        ] {
            assert_eq!(read(&line, &ctx()), None, "{line}");
        }
        assert!(read("<38>1 2026-11-29T10:00:00Z host sshd 4242 - -", &ctx()).is_some());
        assert!(read("Nov 29 10:00:00 host sshd[4242]:", &ctx()).is_some());
    }

    fn accepted(line: &str) -> Option<SshdMessage<'_>> {
        parse_message(line)
    }

    #[test]
    fn user_names_from_the_log_are_checked() {
        let login = |user: &str| {
            format!("Accepted publickey for {user} from 10.0.0.1 port 1000 ssh2: ED25519 {FP}")
        };
        let closed = |user: &str| format!("pam_unix(sshd:session): session closed for user {user}");
        for user in [
            "a".repeat(100),
            "john.doe@corp.example".into(),
            r"CORP\alice".into(),
            "u$".into(),
        ] {
            assert!(
                matches!(accepted(&login(&user)), Some(SshdMessage::Accepted(Login { user: u, .. })) if u == user),
                "{user}"
            );
            assert_eq!(
                accepted(&closed(&user)),
                Some(SshdMessage::PamClosed { user: &user })
            );
        }
        for user in [
            "a".repeat(101),
            String::new(),
            "ali\u{7}ce".into(),
            "ali\u{1b}[31mce".into(),
            "ali\tce".into(),
            "ali\u{a0}ce".into(),
            "alïce".into(),
            "\u{202e}ecila".into(),
            "ali\u{7f}".into(),
        ] {
            assert_eq!(accepted(&login(&user)), None, "{user:?}");
            assert_eq!(accepted(&closed(&user)), None, "{user:?}");
        }
        assert_eq!(
            accepted("pam_unix(sshd:session): session closed for user alice "),
            None
        );
    }

    #[test]
    fn fingerprints_methods_and_key_types_are_checked() {
        let login = |method: &str, key: &str| {
            format!("Accepted {method} for alice from 10.0.0.1 port 1000 ssh2: {key}")
        };
        let md5 = "MD5:0f:1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1:f0";
        for (method, key) in [
            ("publickey", format!("ED25519 {FP}")),
            (
                "publickey",
                format!("ED25519-CERT {FP} ID alice (serial 1) CA ED25519 {FP}"),
            ),
            ("publickey", format!("ECDSA-SK {md5}")),
            (
                "publickey",
                "RSA SHA256:nzbw7nSRU8sOYCgwYoEye4rs7rA7ylpgjIegQSCJV8Q".into(),
            ),
            ("keyboard-interactive/pam", format!("RSA {FP}")),
            ("gssapi-with-mic", format!("RSA {FP}")),
        ] {
            assert!(
                matches!(
                    accepted(&login(method, &key)),
                    Some(SshdMessage::Accepted(_))
                ),
                "{method} {key}"
            );
        }
        for (method, key) in [
            (
                "publickey",
                "ED25519 SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj".into(),
            ),
            ("publickey", format!("ED25519 {FP}A")),
            (
                "publickey",
                "ED25519 SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0=".into(),
            ),
            (
                "publickey",
                "ED25519 SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj-".into(),
            ),
            // 43 characters, but the last one has bits past the 32 bytes.
            (
                "publickey",
                "ED25519 SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj1".into(),
            ),
            (
                "publickey",
                "ED25519 sha256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0".into(),
            ),
            (
                "publickey",
                "ED25519 MD5:0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0".into(),
            ),
            (
                "publickey",
                "ED25519 MD5:0f:1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1".into(),
            ),
            (
                "publickey",
                "ED25519 MD5:0f1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1:f0:".into(),
            ),
            ("publickey", "ED25519".into()),
            ("publickey", format!("ed25519 {FP}")),
            ("publickey", format!("ED25519\u{1b}[0m {FP}")),
            ("publickey", format!("{} {FP}", "A".repeat(33))),
            ("publickey", format!(" {FP}")),
            ("PublicKey", format!("ED25519 {FP}")),
            ("keyboard-interactive/PAM", format!("ED25519 {FP}")),
            ("keyboard-interactive/", format!("ED25519 {FP}")),
            (&"a".repeat(33), format!("ED25519 {FP}")),
            ("", format!("ED25519 {FP}")),
        ] {
            assert_eq!(accepted(&login(method, &key)), None, "{method} {key}");
        }
        assert_eq!(
            accepted("User child is on pid 5"),
            Some(SshdMessage::UserChild { child: 5 })
        );
        for child in ["+5", "05", "0", "-5", " 5", "5 ", "4294967296", ""] {
            assert_eq!(
                accepted(&format!("User child is on pid {child}")),
                None,
                "{child}"
            );
        }
    }

    mod never_panic {
        use super::*;
        use proptest::prelude::*;

        const PIECES: &[&str] = &[
            "Nov",
            "Sun",
            " ",
            "  ",
            "29",
            " 9",
            ":",
            "10:00:00",
            ".",
            "123456",
            "2026-11-29",
            "T",
            "Z",
            "+01:00",
            "-0530",
            "CET",
            "UTC",
            "1764410400",
            "host",
            "sshd",
            "sshd-session",
            "[",
            "]",
            "]:",
            "4242",
            "0",
            "+",
            "<38>1",
            "<",
            ">",
            "-",
            "\"",
            "\\",
            "=",
            "\u{feff}",
            "Accepted ",
            "publickey",
            " for ",
            "alice",
            " from ",
            "10.0.0.1",
            "::1",
            " port ",
            "22",
            " ssh2: ",
            "ED25519",
            FP,
            "User child is on pid ",
            "Disconnected from ",
            "user ",
            "pam_unix(sshd:session): session closed for user ",
            "[preauth]",
            "é",
            "\t",
            "\u{0}",
            "\r",
            "\n",
        ];

        fn contexts() -> Vec<StampContext> {
            vec![
                ctx(),
                zone(NEW_YORK, "2026-03-08T07:30:00Z"),
                StampContext::utc(OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX)),
                StampContext::utc(OffsetDateTime::new_utc(
                    time::Date::MIN,
                    time::Time::MIDNIGHT,
                )),
            ]
        }

        fn check(line: &str, contexts: &[StampContext]) {
            for stamps in contexts {
                if let Some(record) = parse_syslog_line(line, stamps) {
                    let _ = parse_message(record.message);
                }
            }
            let _ = parse_message(line);
        }

        proptest! {
            #[test]
            fn arbitrary_strings(line in any::<String>()) {
                check(&line, &contexts());
            }

            #[test]
            fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                check(&String::from_utf8_lossy(&bytes), &contexts());
            }

            #[test]
            fn lines_made_of_header_pieces(pieces in prop::collection::vec(prop::sample::select(PIECES), 0..40)) {
                check(&pieces.concat(), &contexts());
            }

            #[test]
            fn real_headers_with_arbitrary_tails(
                head in prop::sample::select(&[
                    "Nov 29 10:00:00 host sshd[1]: ",
                    "2026-11-29T10:00:00.1+01:00 host sshd-session[1]: ",
                    "Sun 2026-11-29 10:00:00 CET host sshd[1]: ",
                    "1764410400.5 host sshd[1]: ",
                    "<38>1 2026-11-29T10:00:00Z host sshd 1 - ",
                    "<38>1 - host sshd 1 - [a b=\"",
                    "Accepted publickey for ",
                ][..]),
                tail in any::<String>(),
            ) {
                check(&format!("{head}{tail}"), &contexts());
            }
        }
    }
}
