//! Prints figures, asserts nothing: sshd log parsing throughput on a realistic mixed log
//! (brute-force noise, PAM chatter, other programs, real logins), single core, side by
//! side with `grep -c Accepted` over the same file in the same run.
//!
//! Then the tracker's cost per line as logins pile up unclosed (a log whose closing lines
//! are gone: rotated away, or LogLevel too low), at N and 4N logins: the per-line cost
//! must stay flat (linear time), not grow with N.
//!
//! cargo bench --bench parse -- [--lines 1000000]

use std::io::Write;
use std::process::Command;
use std::time::Instant;

mod common;
use common::arg;
use pictor_agent::sessions::parse::{parse_message, parse_syslog_line};
use pictor_agent::sessions::track::{Closing, Lookups, Seen, Tracker};

/// One line of a busy internet-facing host's auth.log; about 1 in 50 is a real login.
fn line(i: usize, out: &mut Vec<u8>) -> bool {
    let pid = 10_000 + i;
    let ip_of = |i: usize| {
        format!(
            "{}.{}.{}.{}",
            1 + i % 223,
            (i / 7) % 256,
            (i / 13) % 256,
            1 + i % 254
        )
    };
    let ip = ip_of(i);
    let port = 1024 + i % 60_000;
    let stamp = format!(
        "2026-11-25T03:{:02}:{:02}.{:06}+00:00 gpu7",
        (i / 60) % 60,
        i % 60,
        i % 1_000_000
    );
    let text = match i % 50 {
        0 => format!("{stamp} sshd[{pid}]: Accepted publickey for ubuntu from {ip} port {port} ssh2: ED25519 SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0"),
        // The session opened on the line before ends (its child pid logs it).
        1 => format!("{stamp} sshd[{}]: Disconnected from user ubuntu {} port {}", pid + 6, ip_of(i - 1), 1024 + (i - 1) % 60_000),
        2..=12 => format!("{stamp} sshd[{pid}]: Failed password for root from {ip} port {port} ssh2"),
        13..=20 => format!("{stamp} sshd[{pid}]: Invalid user admin{i} from {ip} port {port}"),
        21..=26 => format!("{stamp} sshd[{pid}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"),
        27..=32 => format!("{stamp} sshd[{pid}]: Disconnected from invalid user admin {ip} port {port} [preauth]"),
        33..=37 => format!("{stamp} sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user=root"),
        38..=40 => format!("{stamp} sshd[{pid}]: Connection closed by authenticating user root {ip} port {port} [preauth]"),
        41..=42 => format!("{stamp} sshd[{pid}]: reverse mapping checking getaddrinfo for host-{i}.example.net [{ip}] failed."),
        43..=45 => format!("{stamp} CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
        46..=47 => format!("{stamp} systemd-logind[812]: New session {i} of user ubuntu."),
        _ => format!("{stamp} sshd[{pid}]: Connection closed by {ip} port {port} [preauth]"),
    };
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    i % 50 == 0
}

fn main() {
    let lines = arg("--lines", 1_000_000);
    let dir = common::tempdir();
    let path = dir.path().join("auth.log");
    let mut bytes = Vec::with_capacity(lines * 130);
    let mut expected_logins = 0;
    for i in 0..lines {
        expected_logins += usize::from(line(i, &mut bytes));
    }
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write log");
    let text = std::str::from_utf8(&bytes).expect("utf8");

    // grep, same file, warm cache (run twice, keep the faster).
    let mut grep_secs = f64::MAX;
    let mut grep_count = String::new();
    for _ in 0..2 {
        let start = Instant::now();
        let out = Command::new("grep")
            .arg("-c")
            .arg("Accepted")
            .arg(&path)
            .output()
            .expect("grep");
        grep_secs = grep_secs.min(start.elapsed().as_secs_f64());
        grep_count = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }

    let key_id = |_user: &str, fp: &str| (fp.len() > 10).then(|| "key_a".to_owned());
    let process_start = |_| None;
    let seen = Seen {
        proof: pictor_agent::sessions::proof::Proof::LogText,
        at: pictor_agent::sessions::boot_clock::BootTicks::new(0),
    };
    let lookups = Lookups {
        key_id: &key_id,
        process_start: &process_start,
    };
    let now = time::OffsetDateTime::now_utc();
    let stamps = pictor_agent::sessions::parse::StampContext::utc(now);
    let mut best = f64::MAX;
    let mut opened = 0;
    let mut still_open = 0;
    for _ in 0..3 {
        let mut tracker = Tracker::new("bench", Vec::new(), Closing::LogLines);
        opened = 0;
        let start = Instant::now();
        for l in text.lines() {
            if let Some(record) = parse_syslog_line(l, &stamps) {
                if let Some(message) = parse_message(record.message) {
                    opened += tracker
                        .observe(&record, message, now, seen, &lookups)
                        .iter()
                        .filter(|e| e.kind == pictor_agent::api::model::EventKind::SessionOpened)
                        .count();
                }
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
        still_open = tracker.open_sessions().len();
    }
    assert_eq!(still_open, 0, "every session closed");
    assert_eq!(opened, expected_logins, "exactly the accepted logins found");
    let ours = lines as f64 / best;
    let grep = lines as f64 / grep_secs;
    println!(
        "parse {lines} lines ({:.1} MiB, {expected_logins} logins): {:.0} lines/s single core; grep -c Accepted: {:.0} lines/s (count {grep_count}); ratio {:.2}",
        bytes.len() as f64 / 1048576.0,
        ours,
        grep,
        ours / grep
    );
    scaling(lines);
}

/// Seconds per line to track `n` logins that never close, best of three.
fn unclosed(n: usize) -> f64 {
    let key_id = |_user: &str, _fp: &str| None;
    let lookups = Lookups {
        key_id: &key_id,
        process_start: &|_| None,
    };
    let seen = Seen {
        proof: pictor_agent::sessions::proof::Proof::LogText,
        at: pictor_agent::sessions::boot_clock::BootTicks::new(0),
    };
    let now = time::OffsetDateTime::now_utc();
    let stamps = pictor_agent::sessions::parse::StampContext::utc(now);
    let lines: Vec<String> = (0..n)
        .flat_map(|i| {
            let (pid, port) = (100_000 + i, 1024 + i % 60_000);
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            [
                format!("2026-11-25T03:00:00+00:00 gpu7 sshd[{pid}]: Accepted publickey for ubuntu from {ip} port {port} ssh2: ED25519 SHA256:F3urKJr2liP+wA9ixhO8zCK3gLjHwPizAo7ievtguj0"),
                // A closing line that matches no open session (its pid and address are
                // another connection's): looked up, found nowhere.
                format!("2026-11-25T03:00:00+00:00 gpu7 sshd[{}]: Disconnected from user ubuntu 192.0.2.1 port {port}", pid + 1),
            ]
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut tracker = Tracker::new("bench", Vec::new(), Closing::LogLines);
        let start = Instant::now();
        for l in &lines {
            if let Some(record) = parse_syslog_line(l, &stamps) {
                if let Some(message) = parse_message(record.message) {
                    tracker.observe(&record, message, now, seen, &lookups);
                }
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(tracker.open_sessions().len(), n, "every login stays open");
    }
    best / lines.len() as f64
}

fn scaling(lines: usize) {
    let n = (lines / 20).max(1000);
    let small = unclosed(n);
    let large = unclosed(4 * n);
    println!(
        "unclosed logins: {n}: {:.0} ns/line; {}: {:.0} ns/line; ratio {:.2} (1.0 = linear, 4.0 = quadratic)",
        small * 1e9,
        4 * n,
        large * 1e9,
        large / small
    );
}
