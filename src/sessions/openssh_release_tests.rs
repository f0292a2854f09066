//! What each OpenSSH release from 7.4 to 10.x writes for a session, as fixtures made from
//! its format strings (`auth.c`'s `auth_log`, `packet.c`'s connection id and loss lines,
//! `serverloop.c`'s timeouts and read errors, the monitor's and child's lines in
//! `sshd.c` / `sshd-session.c`, read at each release tag), through the parser and the
//! offline tracker: every login kind opens its session with the right user, method and
//! key, and every close kind closes it. The releases differ in:
//!
//! - 7.4: no connection id (`Disconnected from IP port P`, no `user U`);
//! - 7.4 to 7.6: `Timeout, client not responding.` with no address (7.7+: `from {ID}`);
//! - 7.4 to 7.8: a certificate login names no fingerprint of the certified key;
//! - 7.4, 7.5: gssapi names no principal, hostbased's `Accepted` line carries `, client
//!   user "U", client host "H"` after the fingerprint;
//! - 9.2+: `terminating inactive connection from {ID}` (UnusedConnectionTimeout);
//! - 9.8+: the program is `sshd-session`, and the connection's own EOF line is logged at
//!   INFO (before: VERBOSE).
//!
//! Captured from real sshds: `tests/fixtures/sshd/openssh-9.2-debian12.log` and
//! `openssh-10.0-debian13.log` (the system test's containers).

use std::net::IpAddr;

use super::parse::{parse_message, parse_syslog_line, StampContext};
use super::proof::Proof;
use super::track::{Closing, Lookups, Seen, Tracker};
use crate::api::model::{EventKind, SessionEvent};

/// A release, as (major, minor).
type Release = (u8, u8);

const RELEASES: [Release; 14] = [
    (7, 4),
    (7, 5),
    (7, 6),
    (7, 7),
    (7, 9),
    (8, 0),
    (8, 2),
    (8, 9),
    (9, 2),
    (9, 6),
    (9, 8),
    (9, 9),
    (10, 0),
    (10, 5),
];

const FP: &str = "SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0";
const CA_FP: &str = "SHA256:pRzhx2gOQ/F8yUwWXRyGNhe9o93CH5OmgZccfFgMWxg";
const MD5: &str = "MD5:0f:1e:2d:3c:4b:5a:69:78:87:96:a5:b4:c3:d2:e1:f0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginKind {
    Publickey,
    Certificate,
    Md5Publickey,
    Password,
    KeyboardInteractive,
    Gssapi,
    Hostbased,
    /// `AuthenticationMethods publickey,password`.
    PublickeyThenPassword,
    LinkLocalIpv6,
    LongUserName,
}

const LOGINS: [LoginKind; 10] = [
    LoginKind::Publickey,
    LoginKind::Certificate,
    LoginKind::Md5Publickey,
    LoginKind::Password,
    LoginKind::KeyboardInteractive,
    LoginKind::Gssapi,
    LoginKind::Hostbased,
    LoginKind::PublickeyThenPassword,
    LoginKind::LinkLocalIpv6,
    LoginKind::LongUserName,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseKind {
    /// The client said goodbye: `Received disconnect` and `Disconnected from`.
    ClientDisconnect,
    /// The TCP connection dropped: the child's `Connection closed by IP port P`.
    ConnectionClosed,
    ConnectionReset,
    ReadError,
    /// ClientAliveInterval ran out.
    ClientAliveTimeout,
    /// UnusedConnectionTimeout (9.2+).
    InactiveTimeout,
    /// With PAM: the monitor's `session closed`, and nothing else.
    PamOnly,
}

const CLOSES: [CloseKind; 7] = [
    CloseKind::ClientDisconnect,
    CloseKind::ConnectionClosed,
    CloseKind::ConnectionReset,
    CloseKind::ReadError,
    CloseKind::ClientAliveTimeout,
    CloseKind::InactiveTimeout,
    CloseKind::PamOnly,
];

fn at_least(release: Release, major: u8, minor: u8) -> bool {
    release >= (major, minor)
}

fn user_of(login: LoginKind) -> String {
    match login {
        LoginKind::LongUserName => "u".repeat(100),
        _ => "alice".into(),
    }
}

fn address_of(login: LoginKind) -> &'static str {
    match login {
        LoginKind::LinkLocalIpv6 => "fe80::1c2:3dff:fe4e:5f60%eth0",
        _ => "192.0.2.10",
    }
}

/// The monitor's authentication lines for `login`.
fn login_lines(release: Release, login: LoginKind, user: &str, address: &str) -> Vec<String> {
    let from = format!("for {user} from {address} port 50022 ssh2");
    let line = |method: &str, info: &str| format!("Accepted {method} {from}{info}");
    match login {
        LoginKind::Publickey | LoginKind::LinkLocalIpv6 | LoginKind::LongUserName => {
            vec![line("publickey", &format!(": ED25519 {FP}"))]
        }
        LoginKind::Certificate if at_least(release, 7, 9) => vec![line(
            "publickey",
            &format!(": ED25519-CERT {FP} ID alice laptop (serial 42) CA ED25519 {CA_FP}"),
        )],
        LoginKind::Certificate => vec![line(
            "publickey",
            &format!(": ED25519-CERT ID alice laptop (serial 42) CA ED25519 {CA_FP}"),
        )],
        LoginKind::Md5Publickey => vec![line("publickey", &format!(": RSA {MD5}"))],
        LoginKind::Password => vec![line("password", "")],
        LoginKind::KeyboardInteractive => vec![line("keyboard-interactive/pam", "")],
        LoginKind::Gssapi if at_least(release, 7, 6) => {
            vec![line("gssapi-with-mic", ": alice@EXAMPLE.COM")]
        }
        LoginKind::Gssapi => vec![line("gssapi-with-mic", "")],
        LoginKind::Hostbased if at_least(release, 7, 6) => {
            vec![line("hostbased", &format!(": ECDSA {FP}"))]
        }
        LoginKind::Hostbased => vec![line(
            "hostbased",
            &format!(": ECDSA {FP}, client user \"alice\", client host \"client.example.com\""),
        )],
        LoginKind::PublickeyThenPassword => vec![
            format!("Partial publickey {from}: ED25519 {FP}"),
            line("password", ""),
        ],
    }
}

/// The lines that end the session, as (logged by the child, text).
fn close_lines(
    release: Release,
    close: CloseKind,
    user: &str,
    address: &str,
) -> Vec<(bool, String)> {
    // OpenSSH 7.5+'s connection id once logged in; 7.4 has none.
    let id = if at_least(release, 7, 5) {
        format!("user {user} {address} port 50022")
    } else {
        format!("{address} port 50022")
    };
    match close {
        CloseKind::ClientDisconnect => vec![
            (
                true,
                format!("Received disconnect from {address} port 50022:11: disconnected by user"),
            ),
            (true, format!("Disconnected from {id}")),
        ],
        CloseKind::ConnectionClosed => {
            vec![(true, format!("Connection closed by {address} port 50022"))]
        }
        CloseKind::ConnectionReset => vec![(true, format!("Connection reset by {id}"))],
        CloseKind::ReadError => vec![(
            true,
            format!("Read error from remote host {address} port 50022: Connection timed out"),
        )],
        CloseKind::ClientAliveTimeout if at_least(release, 7, 7) => {
            vec![(true, format!("Timeout, client not responding from {id}"))]
        }
        CloseKind::ClientAliveTimeout => vec![(true, "Timeout, client not responding.".into())],
        CloseKind::InactiveTimeout => {
            vec![(true, format!("terminating inactive connection from {id}"))]
        }
        CloseKind::PamOnly => vec![(
            false,
            format!("pam_unix(sshd:session): session closed for user {user}"),
        )],
    }
}

/// Whether `close` exists in `release` at all.
fn exists(release: Release, close: CloseKind) -> bool {
    close != CloseKind::InactiveTimeout || at_least(release, 9, 2)
}

/// A whole session as `release` logs it through rsyslog's traditional format, at
/// LogLevel VERBOSE (`User child is on pid`) or INFO.
fn session_log(release: Release, login: LoginKind, close: CloseKind, verbose: bool) -> String {
    let program = if at_least(release, 9, 8) {
        "sshd-session"
    } else {
        "sshd"
    };
    let (monitor, child) = (2101, 2105);
    let user = user_of(login);
    let address = address_of(login);
    let mut lines = Vec::new();
    let mut log = |pid: u32, text: &str| {
        lines.push(format!("Nov 29 10:00:00 gpu-7 {program}[{pid}]: {text}"));
    };
    log(
        monitor,
        "Connection from 192.0.2.10 port 50022 on 198.51.100.5 port 22",
    );
    for line in login_lines(release, login, &user, address) {
        log(monitor, &line);
    }
    if verbose {
        log(monitor, &format!("User child is on pid {child}"));
        log(
            child,
            &format!("Starting session: shell on pts/0 for {user} from {address} port 50022 id 0"),
        );
    }
    for (by_child, line) in close_lines(release, close, &user, address) {
        log(if by_child { child } else { monitor }, &line);
    }
    lines.join("\n") + "\n"
}

fn track(text: &str) -> (Vec<SessionEvent>, usize) {
    let mut tracker = Tracker::new("boot", Vec::new(), Closing::LogLines);
    let key_id = |_: &str, fp: &str| (fp == FP).then(|| "key_a".to_owned());
    let lookups = Lookups {
        key_id: &key_id,
        process_start: &|_| None,
    };
    let seen = Seen {
        proof: Proof::LogText,
        at: crate::sessions::boot_clock::BootTicks::new(0),
    };
    let now = crate::timefmt::parse("2026-11-30T00:00:00Z").expect("time");
    let stamps = StampContext::utc(now);
    let mut events = Vec::new();
    for line in text.lines() {
        let Some(record) = parse_syslog_line(line, &stamps) else {
            continue;
        };
        if let Some(message) = parse_message(record.message) {
            events.extend(tracker.observe(&record, message, now, seen, &lookups));
        }
    }
    (events, tracker.open_sessions().len())
}

/// What the session must be reported as.
fn expected(
    release: Release,
    login: LoginKind,
) -> (
    String,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
) {
    let (method, fingerprint, key_id) = match login {
        LoginKind::Publickey | LoginKind::LinkLocalIpv6 | LoginKind::LongUserName => {
            ("publickey", Some(FP), Some("key_a"))
        }
        LoginKind::Certificate if at_least(release, 7, 9) => ("publickey", Some(FP), None),
        LoginKind::Certificate => ("publickey", None, None),
        LoginKind::Md5Publickey => ("publickey", Some(MD5), None),
        LoginKind::Password => ("password", None, None),
        LoginKind::KeyboardInteractive => ("keyboard-interactive", None, None),
        LoginKind::Gssapi => ("gssapi-with-mic", None, None),
        LoginKind::Hostbased => ("hostbased", Some(FP), Some("key_a")),
        LoginKind::PublickeyThenPassword => ("publickey,password", Some(FP), Some("key_a")),
    };
    (user_of(login), method, fingerprint, key_id)
}

/// Whether the offline tracker can see `close` end the session: every close kind, but
/// 7.4 to 7.6's address-less timeout at INFO, which names no connection and comes from
/// a child whose pid only LogLevel VERBOSE ties to it.
fn closes(release: Release, close: CloseKind, verbose: bool) -> bool {
    !(close == CloseKind::ClientAliveTimeout && !at_least(release, 7, 7) && !verbose)
}

#[test]
fn every_release_every_login_every_close() {
    let mut checked = 0;
    for release in RELEASES {
        for login in LOGINS {
            for close in CLOSES.into_iter().filter(|&c| exists(release, c)) {
                for verbose in [false, true] {
                    // The Partial line is logged at VERBOSE only.
                    if login == LoginKind::PublickeyThenPassword && !verbose {
                        continue;
                    }
                    let text = session_log(release, login, close, verbose);
                    let (events, still_open) = track(&text);
                    let case = format!("{release:?} {login:?} {close:?} verbose={verbose}\n{text}");
                    let opened = events
                        .iter()
                        .find(|e| e.kind == EventKind::SessionOpened)
                        .unwrap_or_else(|| panic!("no login understood: {case}"));
                    let (user, method, fingerprint, key_id) = expected(release, login);
                    assert_eq!(
                        (
                            opened.user.as_str(),
                            opened.auth_method.as_str(),
                            opened.fingerprint.as_deref(),
                            opened.key_id.as_deref(),
                        ),
                        (user.as_str(), method, fingerprint, key_id),
                        "{case}"
                    );
                    assert_eq!(opened.session_id, "boot:2101", "{case}");
                    let source: IpAddr = opened.source_ip.parse().expect("an address");
                    assert_eq!(
                        source.is_ipv6(),
                        login == LoginKind::LinkLocalIpv6,
                        "{case}"
                    );
                    assert_eq!(opened.at, "2026-11-29T10:00:00Z", "{case}");
                    let closed = events.iter().any(|e| e.kind == EventKind::SessionClosed);
                    assert_eq!(closed, closes(release, close, verbose), "{case}");
                    assert_eq!(still_open, usize::from(!closed), "{case}");
                    checked += 1;
                }
            }
        }
    }
    // 8 releases with 6 close kinds, 6 (9.2+) with 7; 9 login kinds at both levels and
    // the Partial one at VERBOSE.
    assert_eq!(checked, (8 * 6 + 6 * 7) * (9 * 2 + 1));
}

#[test]
fn openssh_10_0_captured_from_debian_13() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sshd/openssh-10.0-debian13.log"
    ))
    .expect("fixture");
    let (events, still_open) = track(&text);
    let opened: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::SessionOpened)
        .map(|e| {
            (
                e.user.as_str(),
                e.auth_method.as_str(),
                e.fingerprint.is_some(),
            )
        })
        .collect();
    assert!(opened.len() >= 5, "{opened:?}");
    assert!(opened
        .iter()
        .all(|(user, _, _)| ["alice", "bob"].contains(user)));
    // bob's `AuthenticationMethods publickey,password` login keeps its key.
    assert!(
        opened.contains(&("bob", "publickey,password", true)),
        "{opened:?}"
    );
    // The monitor killed from outside logs no `Disconnected`: PAM's line closes it.
    assert_eq!(still_open, 0, "every session closed");
}
