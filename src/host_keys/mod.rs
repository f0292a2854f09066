//! The instance's SSH host keys, published in the status (`host_keys` in the contract's
//! "Additions to v1") so the account can hand its users a `known_hosts` and the first
//! connection to a rented instance is verified, not trusted on first use.
//!
//! [`judge`] (pure) decides what a file's content is: one public key line of an accepted
//! type, or a reason to skip it; a certificate is matched to its key and must be a host
//! certificate. [`scan`] reads the configured files (no symlink followed, nothing large,
//! nothing but regular files); [`watch`] follows their directories with inotify and
//! publishes a new report within a second of a change (first-boot generation, rotation,
//! a certificate issued later).

pub mod scan;
pub mod watch;

use serde::Serialize;

use crate::api::model::HostKey;
use crate::keys::validate_public_key;

/// What a scan found: the keys to publish, and the files skipped with why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostKeysReport {
    pub keys: Vec<HostKey>,
    /// `PATH: reason`, one per file skipped (never the file's content).
    pub skipped: Vec<String>,
}

impl HostKeysReport {
    /// The `last_error` line for the skipped files, if any.
    pub fn problem(&self) -> Option<String> {
        match self.skipped.as_slice() {
            [] => None,
            [one] => Some(format!("host key file skipped: {one}")),
            [first, rest @ ..] => Some(format!(
                "{} host key files skipped: {first} (and {} more)",
                rest.len() + 1,
                rest.len()
            )),
        }
    }
}

/// The key types sshd serves as host keys (and the contract accepts).
pub const HOST_KEY_TYPES: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// Largest host key file read (an RSA-16384 public key line is about 2.8 kB; a
/// certificate with many principals a few more).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What a host key file holds, judged from its bytes: `(key type, canonical line,
/// fingerprint)` of its one public key, or why it is skipped. The reason never quotes
/// the content (a private key under a public key's name must not reach any report).
pub fn judge(content: &[u8]) -> Result<(String, String, String), String> {
    let text = std::str::from_utf8(content).map_err(|_| "not text".to_owned())?;
    if text.contains("PRIVATE KEY") {
        return Err("holds a private key, not a public one: not read, not sent".into());
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [] => return Err("empty: no public key line".into()),
        [line] => *line,
        _ => {
            return Err(format!(
                "{} lines: a host key file holds one public key line",
                lines.len()
            ))
        }
    };
    let key_type = line
        .split([' ', '\t'])
        .next()
        .unwrap_or_default()
        .to_owned();
    // Checked here first, so no reason below ever quotes a word of an unknown file.
    if !HOST_KEY_TYPES.contains(&key_type.as_str()) {
        return Err(format!(
            "not a public key line of a host key type ({})",
            HOST_KEY_TYPES.join(", ")
        ));
    }
    let (public_key, fingerprint) = validate_public_key(line).map_err(|reason| {
        // The type is a known word; the rest of the reason is the decoder's.
        reason.replacen("public_key", "the key", 1)
    })?;
    Ok((key_type, public_key, fingerprint))
}

/// The certificate line of `content`, checked to be a host certificate of `public_key`
/// (canonical `type base64`): `type base64` without its comment, or why not.
///
/// Read from the wire format itself (`PROTOCOL.certkeys`: the certificate type, a nonce,
/// the certified key's own fields, the serial, then the certificate's type, 1 user or
/// 2 host): the key's fields must be exactly those of `public_key`'s blob. The CA's
/// signature and validity are for the clients that trust the CA to check, not for the
/// agent, which only reports what sshd presents.
pub fn judge_certificate(content: &[u8], public_key: &str) -> Result<String, String> {
    use base64::Engine;
    const HOST: u32 = 2;
    let text = std::str::from_utf8(content).map_err(|_| "not text".to_owned())?;
    let line = text.trim();
    if line.is_empty() || line.contains('\n') {
        return Err("not one certificate line".into());
    }
    let mut fields = line.split([' ', '\t']).filter(|f| !f.is_empty());
    let (Some(cert_type), Some(encoded)) = (fields.next(), fields.next()) else {
        return Err("not one certificate line".into());
    };
    let mut key_fields = public_key.split(' ');
    let (Some(key_type), Some(key_encoded)) = (key_fields.next(), key_fields.next()) else {
        return Err("no key to match".into());
    };
    if cert_type != format!("{key_type}-cert-v01@openssh.com") {
        return Err(format!("not a certificate of an {key_type} key"));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let blob = engine
        .decode(encoded)
        .map_err(|_| "not an OpenSSH certificate (bad base64)".to_owned())?;
    let key_blob = engine
        .decode(key_encoded)
        .map_err(|_| "the key beside it is not base64".to_owned())?;
    let mut rest = blob.as_slice();
    let mut string = || -> Option<&[u8]> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let value = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(value)
    };
    if string() != Some(cert_type.as_bytes()) || string().is_none() {
        return Err("not an OpenSSH certificate".into());
    }
    // The key's own fields: its blob without the leading type string.
    let own = key_blob
        .get(4 + key_type.len()..)
        .ok_or("the key beside it is malformed")?;
    let after = rest
        .strip_prefix(own)
        .ok_or("certifies another key than the one beside it")?;
    let kind = after
        .get(8..12)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("not an OpenSSH certificate (truncated)")?;
    if kind != HOST {
        return Err("a user certificate, not a host certificate".into());
    }
    Ok(format!("{cert_type} {encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti root@host";

    #[test]
    fn one_public_key_line_is_a_host_key() {
        let (key_type, public_key, fingerprint) = judge(ED25519.as_bytes()).expect("a key");
        assert_eq!(key_type, "ssh-ed25519");
        assert_eq!(
            public_key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti"
        );
        assert!(fingerprint.starts_with("SHA256:"));
        assert!(judge(format!("{ED25519}\n").as_bytes()).is_ok());
    }

    /// `tests/fixtures/host_keys.txt`: a host key, its host certificate, a user
    /// certificate of the same key, another key (made with ssh-keygen).
    fn fixture(n: usize) -> &'static str {
        include_str!("../../tests/fixtures/host_keys.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .nth(n)
            .expect("fixture line")
    }

    #[test]
    fn a_certificate_counts_when_it_is_a_host_certificate_of_exactly_the_key_beside_it() {
        let (key, host_cert, user_cert, other) = (fixture(0), fixture(1), fixture(2), fixture(3));
        assert_eq!(
            judge_certificate(format!("{host_cert} host@ca\n").as_bytes(), key).as_deref(),
            Ok(host_cert),
            "the comment goes, the line stays"
        );
        let user = judge_certificate(user_cert.as_bytes(), key).expect_err("user");
        assert!(user.contains("user certificate"), "{user}");
        let another = judge_certificate(host_cert.as_bytes(), other).expect_err("other key");
        assert!(another.contains("another key"), "{another}");
        for bad in [
            key.to_owned(),
            format!("{host_cert}\n{host_cert}"),
            String::new(),
        ] {
            assert!(judge_certificate(bad.as_bytes(), key).is_err(), "{bad}");
        }
        // Cut short: never a panic, always a reason.
        let cut = &host_cert[..host_cert.len() / 2];
        let cut = &cut[..cut.len() - cut.len() % 4];
        assert!(judge_certificate(cut.as_bytes(), key).is_err());
    }

    #[test]
    fn anything_else_is_skipped_with_a_reason_that_quotes_nothing() {
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n";
        for (content, reason) in [
            (private.as_bytes().to_vec(), "private key"),
            (Vec::new(), "empty"),
            (b"garbage here\n".to_vec(), "host key type"),
            (format!("{ED25519}\n{ED25519}\n").into_bytes(), "2 lines"),
            (vec![0xff, 0xfe, 0x00], "not text"),
            (
                b"root:$6$salt$hash:19000:0:99999:7:::\n".to_vec(),
                "host key type",
            ),
        ] {
            let got = judge(&content).expect_err("skipped");
            assert!(got.contains(reason), "{got:?} for {content:?}");
            assert!(
                !got.contains("OPENSSH") && !got.contains("$6$") && !got.contains("garbage"),
                "{got}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn hostile_files_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = judge(&bytes);
            let _ = judge_certificate(&bytes, fixture(0));
            let mut line = fixture(1).as_bytes().to_vec();
            line.truncate(bytes.len().min(line.len()));
            let _ = judge_certificate(&line, fixture(0));
        }
    }
}
