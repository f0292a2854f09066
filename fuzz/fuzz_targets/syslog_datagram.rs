//! One datagram on the syslog socket the agent binds in a container: `parse_frame`,
//! then the message through `parse_message` (what the sessions task does with a line
//! root's sshd sent). Any local user can send any bytes here.
//!
//! Invariants:
//! - reading never fails, and the facility (0-23) and severity (0-7) are in range;
//! - the message is the datagram's tail (its line ending and NULs removed);
//! - a tag is a non-empty word of at most 48 bytes without `:`, `[`, space or control
//!   character, and a claimed pid comes only with a tag;
//! - what `parse_message` makes of the message is well formed (`common::check_message`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pictor_agent::sessions::source::syslog_frame;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let frame = syslog_frame::parse_frame(&text);
    assert!(frame.facility <= 23, "facility {}", frame.facility);
    assert!(frame.severity <= 7);
    let _ = (
        syslog_frame::facility_name(frame.facility),
        syslog_frame::severity_name(frame.severity),
    );
    let trimmed = text.trim_end_matches(['\n', '\r', '\0']);
    assert!(trimmed.ends_with(frame.message), "message is not the tail");
    match frame.tag {
        Some(tag) => {
            assert!(!tag.is_empty() && tag.len() <= 48);
            assert!(!tag.contains([':', '[', ' ']) && !tag.bytes().any(|b| b.is_ascii_control()));
        }
        None => assert!(frame.claimed_pid.is_none(), "a pid without a tag"),
    }
    common::check_message(frame.message);
});
