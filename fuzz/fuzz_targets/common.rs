//! Checks shared by the sshd log targets.

use pictor_agent::sessions::parse::{self, SshdMessage};

/// `parse_message` never panics, and what it returns holds together.
pub fn check_message(message: &str) {
    let parsed = parse::parse_message(message);
    if message.ends_with("[preauth]") {
        assert_eq!(parsed, None, "pre-authentication chatter understood");
    }
    match parsed {
        None => {}
        Some(SshdMessage::Accepted(login) | SshdMessage::Partial(login)) => {
            let parse::Login {
                user, method, key, ..
            } = login;
            // What sshd itself writes: nothing that could break a line or a field.
            assert!(parse::is_valid_logged_user(user), "{user:?}");
            assert!((1..=100).contains(&user.len()) && user.bytes().all(|b| b.is_ascii_graphic()));
            assert!(parse::is_valid_method(method), "{method:?}");
            assert!(message.contains(user) && message.contains(method));
            if let Some(key) = &key {
                assert!(parse::is_valid_key_type(key.key_type), "{:?}", key.key_type);
                if let Some(fingerprint) = key.fingerprint {
                    assert!(parse::is_valid_fingerprint(fingerprint), "{fingerprint:?}");
                    assert!(fingerprint.starts_with("SHA256:") || fingerprint.starts_with("MD5:"));
                } else {
                    assert!(
                        key.certificate,
                        "only a 7.4-7.8 certificate names no fingerprint"
                    );
                }
                assert_eq!(key.certificate, key.key_type.ends_with("-CERT"));
            }
            if method == "publickey" {
                assert!(key.is_some(), "publickey without the key");
            }
        }
        Some(SshdMessage::PamClosed { user }) => {
            assert!(parse::is_valid_logged_user(user), "{user:?}");
            assert!(!user.is_empty() && user.bytes().all(|b| b.is_ascii_graphic()));
        }
        Some(
            SshdMessage::UserChild { .. } | SshdMessage::Ended { .. } | SshdMessage::EndedHere,
        ) => {}
    }
}
