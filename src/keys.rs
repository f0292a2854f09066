//! Account keys: validation of what the control plane sends, and the key set in force.
//!
//! Pure code: no disk, no network, no clock (the time is always an argument).
//! A key that fails validation is rejected alone, with a reason a person can act on.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PublicKey};
use time::OffsetDateTime;

use crate::api::model::{KeyList, WireKey};
use crate::config::{is_valid_id, is_valid_user_name};

/// Smallest RSA modulus the contract accepts.
pub const MIN_RSA_BITS: usize = 2048;
/// Longest display name the contract allows, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest public key line accepted (a 16384-bit RSA key is about 2.8 kB).
pub const MAX_PUBLIC_KEY_BYTES: usize = 8192;

/// A validated account key, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountKey {
    pub id: String,
    pub name: String,
    /// Canonical `type base64` as re-encoded by ssh-key: no options, no comment, one line.
    pub public_key: String,
    /// `SHA256:...`, computed here.
    pub fingerprint: String,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
    /// `None`: every managed user.
    pub users: Option<Vec<String>>,
}

impl AccountKey {
    /// True once the key must no longer be honoured.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// True when the key is meant for `user`.
    pub fn is_for(&self, user: &str) -> bool {
        self.users
            .as_ref()
            .is_none_or(|users| users.iter().any(|u| u == user))
    }
}

/// A key the agent refused, with the reason reported in the agent status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: String,
    pub reason: String,
}

/// The validated result of one key list: what the agent will enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub version: String,
    pub keys: Vec<AccountKey>,
    pub rejected: Vec<Rejection>,
}

/// Why a whole key list was refused (the last good set then stays in force).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyListError {
    #[error("version {0:?} is empty, too long or not printable")]
    BadVersion(String),
}

impl KeySet {
    /// Validates every key of a list: bad keys are rejected one by one, duplicates of an
    /// id keep only the first.
    pub fn from_list(list: &KeyList) -> Result<KeySet, KeyListError> {
        let version = &list.version;
        if version.is_empty()
            || version.len() > 128
            || !version.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(KeyListError::BadVersion(version.chars().take(64).collect()));
        }
        let mut keys = Vec::with_capacity(list.keys.len());
        let mut rejected = Vec::new();
        let mut seen_ids = HashSet::with_capacity(list.keys.len());
        for wire in &list.keys {
            match validate(wire) {
                Ok(key) if !seen_ids.insert(key.id.clone()) => rejected.push(Rejection {
                    id: key.id,
                    reason: "duplicate id: an earlier key in the list has the same id".into(),
                }),
                Ok(key) => keys.push(key),
                Err(reason) => rejected.push(Rejection {
                    id: printable_id(&wire.id),
                    reason,
                }),
            }
        }
        Ok(KeySet {
            version: version.clone(),
            keys,
            rejected,
        })
    }

    /// The keys in force for `user` at `now`, each key once (by fingerprint: the first id
    /// that grants a key wins, so revoking one of two ids with the same key keeps it).
    pub fn in_force_for<'a>(&'a self, user: &str, now: OffsetDateTime) -> Vec<&'a AccountKey> {
        let mut seen = HashSet::new();
        self.keys
            .iter()
            .filter(|k| !k.is_expired(now) && k.is_for(user))
            .filter(|k| seen.insert(k.fingerprint.as_str()))
            .collect()
    }

    /// The earliest `expires_at` still in the future: when the set in force changes next
    /// without any word from the control plane.
    pub fn next_expiry(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.keys
            .iter()
            .filter_map(|k| k.expires_at)
            .filter(|&at| at > now)
            .min()
    }

    /// The key in force for `user` with this fingerprint: what let that user in.
    pub fn key_by_fingerprint(
        &self,
        user: &str,
        fingerprint: &str,
        now: OffsetDateTime,
    ) -> Option<&AccountKey> {
        self.keys
            .iter()
            .find(|k| k.fingerprint == fingerprint && !k.is_expired(now) && k.is_for(user))
    }

    /// The same set as the agent grants it on this machine: each key for the managed
    /// `users` it names (all of them when it names none), and for nobody else.
    pub fn granted_to(&self, users: &[String]) -> KeySet {
        let keys = self
            .keys
            .iter()
            .map(|k| AccountKey {
                users: Some(users.iter().filter(|u| k.is_for(u)).cloned().collect()),
                ..k.clone()
            })
            .collect();
        KeySet {
            version: self.version.clone(),
            keys,
            rejected: self.rejected.clone(),
        }
    }
}

/// An id safe to echo in a report even when it failed validation.
fn printable_id(id: &str) -> String {
    id.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Validates one key; the error is the reason reported for it.
pub fn validate(wire: &WireKey) -> Result<AccountKey, String> {
    if !is_valid_id(&wire.id) {
        return Err("id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'".into());
    }
    if wire.name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name is longer than {MAX_NAME_CHARS} characters"));
    }
    if wire.name.chars().any(char::is_control) {
        return Err("name contains control characters".into());
    }
    let (public_key, fingerprint) = validate_public_key(&wire.public_key)?;
    if let Some(given) = &wire.fingerprint {
        if *given != fingerprint {
            return Err(format!(
                "fingerprint mismatch: the server sent {}, the key's is {fingerprint}",
                printable_id(given)
            ));
        }
    }
    let expires_at = match &wire.expires_at {
        None => None,
        Some(text) => Some(
            crate::timefmt::parse(text)
                .ok_or_else(|| "expires_at is not an RFC 3339 time".to_owned())?,
        ),
    };
    if let Some(users) = &wire.users {
        if let Some(bad) = users.iter().find(|u| !is_valid_user_name(u)) {
            return Err(format!(
                "users: {:?} is not a valid local user name",
                printable_id(bad)
            ));
        }
    }
    Ok(AccountKey {
        id: wire.id.clone(),
        name: wire.name.clone(),
        public_key,
        fingerprint,
        expires_at,
        users: wire.users.clone(),
    })
}

/// Parses one OpenSSH public key line (`type base64 [comment]`, nothing else) and returns
/// its canonical form (`type base64`, comment dropped) and its SHA256 fingerprint.
pub fn validate_public_key(line: &str) -> Result<(String, String), String> {
    if line.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(format!(
            "public_key is longer than {MAX_PUBLIC_KEY_BYTES} bytes"
        ));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("public_key contains a line break or control character".into());
    }
    let type_token = line.split_ascii_whitespace().next().unwrap_or("");
    let mut key = PublicKey::from_openssh(line.trim())
        .map_err(|e| match allowed_type_name(type_token) {
            true => format!("public_key is not a valid {type_token} key ({e})"),
            false => format!(
                "public_key must start with an accepted key type, not {:?} (options are not allowed)",
                printable_id(type_token)
            ),
        })?;
    check_algorithm(&key)?;
    key.set_comment("");
    let canonical = key
        .to_openssh()
        .map_err(|e| format!("public_key cannot be re-encoded ({e})"))?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    Ok((canonical.trim_end().to_owned(), fingerprint))
}

fn allowed_type_name(name: &str) -> bool {
    matches!(
        name,
        "ssh-ed25519"
            | "sk-ssh-ed25519@openssh.com"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521"
            | "sk-ecdsa-sha2-nistp256@openssh.com"
            | "ssh-rsa"
    )
}

fn check_algorithm(key: &PublicKey) -> Result<(), String> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Ok(()),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521,
        } => Ok(()),
        Algorithm::Rsa { .. } => {
            let bits = key
                .key_data()
                .rsa()
                .and_then(|rsa| rsa.n.as_positive_bytes())
                .map(bit_length)
                .unwrap_or(0);
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is shorter than {MIN_RSA_BITS} bits"
                ))
            } else {
                Ok(())
            }
        }
        other => Err(format!("key type {} is not accepted", other.as_str())),
    }
}

/// Bits in a big-endian unsigned integer, leading zero bits not counted.
fn bit_length(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|&b| b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";

    fn wire(id: &str, public_key: &str) -> WireKey {
        WireKey {
            id: id.into(),
            name: "laptop".into(),
            public_key: public_key.into(),
            fingerprint: None,
            created_at: None,
            expires_at: None,
            users: None,
        }
    }

    #[test]
    fn a_good_key_is_canonicalised_without_its_comment() {
        let key = validate(&wire("k1", ED25519)).expect("valid");
        assert_eq!(
            key.public_key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti"
        );
        assert!(key.fingerprint.starts_with("SHA256:"));
    }

    #[test]
    fn given_fingerprint_must_match() {
        let mut w = wire("k1", ED25519);
        let good = validate(&w).expect("valid").fingerprint;
        w.fingerprint = Some(good);
        assert!(validate(&w).is_ok());
        w.fingerprint = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
        assert!(validate(&w).unwrap_err().contains("fingerprint mismatch"));
    }

    #[test]
    fn injection_attempts_are_rejected() {
        let cases = [
            format!("{ED25519}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEVIL"),
            format!("command=\"/bin/sh\" {ED25519}"),
            format!("restrict,pty {ED25519}"),
            format!("{ED25519}\r"),
            format!("{ED25519}\0"),
            String::new(),
            "ssh-ed25519".into(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98".into(),
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP".into(),
        ];
        for case in cases {
            assert!(validate(&wire("k1", &case)).is_err(), "accepted {case:?}");
        }
    }

    #[test]
    fn type_in_text_must_match_the_encoded_key() {
        let lie = ED25519.replacen("ssh-ed25519", "ecdsa-sha2-nistp256", 1);
        assert!(validate(&wire("k1", &lie)).is_err());
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert!(validate(&wire("bad id", ED25519)).is_err());
        assert!(validate(&wire(&"x".repeat(65), ED25519)).is_err());
        let mut w = wire("k1", ED25519);
        w.name = "x".repeat(129);
        assert!(validate(&w).is_err());
        w.name = "two\nlines".into();
        assert!(validate(&w).is_err());
        w.name = "é".repeat(128);
        assert!(
            validate(&w).is_ok(),
            "128 characters, more bytes, is allowed"
        );
        w.users = Some(vec!["root; rm".into()]);
        assert!(validate(&w).is_err());
    }

    fn fixture(line: usize) -> &'static str {
        include_str!("../tests/fixtures/public_keys.txt")
            .lines()
            .nth(line)
            .expect("fixture line")
    }

    #[test]
    fn weak_rsa_is_rejected_and_2048_bits_accepted() {
        let weak = validate(&wire("k1", fixture(0))).expect_err("1024 bits");
        assert!(weak.contains("1024 bits"), "{weak}");
        let ok = validate(&wire("k2", fixture(1))).expect("2048 bits");
        assert_eq!(
            ok.fingerprint, "SHA256:nzbw7nSRU8sOYCgwYoEye4rs7rA7ylpgjIegQSCJV8Q",
            "same as ssh-keygen -lf"
        );
        assert!(
            validate(&wire("k3", fixture(2))).is_ok(),
            "ecdsa-sha2-nistp384"
        );
    }

    #[test]
    fn truncated_keys_are_rejected() {
        let full = fixture(1);
        for cut in [20, full.len() / 2, full.len() - 30] {
            assert!(
                validate(&wire("k1", &full[..cut])).is_err(),
                "accepted a key cut at {cut}"
            );
        }
    }

    #[test]
    fn bit_length_counts_significant_bits() {
        assert_eq!(bit_length(&[0x00, 0x01]), 1);
        assert_eq!(bit_length(&[0x80, 0x00]), 16);
        assert_eq!(bit_length(&[]), 0);
    }

    #[test]
    fn one_bad_key_does_not_sink_the_list() {
        let list = KeyList {
            version: "v1".into(),
            keys: vec![
                wire("good", ED25519),
                wire("bad", "ssh-rsa AAAA"),
                wire("good", ED25519),
            ],
        };
        let set = KeySet::from_list(&list).expect("list ok");
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.rejected.len(), 2);
        assert_eq!(set.rejected[0].id, "bad");
        assert!(set.rejected[1].reason.contains("duplicate"));
    }

    #[test]
    fn expiry_is_honoured_at_the_instant() {
        let at = crate::timefmt::parse("2026-11-25T08:00:00Z").expect("time");
        let mut w = wire("k1", ED25519);
        w.expires_at = Some("2026-11-25T08:00:00Z".into());
        let set = KeySet::from_list(&KeyList {
            version: "v1".into(),
            keys: vec![w],
        })
        .expect("ok");
        let before = at - time::Duration::milliseconds(1);
        assert_eq!(set.in_force_for("ubuntu", before).len(), 1);
        assert_eq!(set.in_force_for("ubuntu", at).len(), 0);
        assert_eq!(set.next_expiry(before), Some(at));
        assert_eq!(set.next_expiry(at), None);
    }

    #[test]
    fn bad_expiry_rejects_the_key_alone() {
        let mut w = wire("k1", ED25519);
        w.expires_at = Some("tomorrow".into());
        assert!(validate(&w).unwrap_err().contains("expires_at"));
    }

    #[test]
    fn users_filter_keys() {
        let mut w = wire("k1", ED25519);
        w.users = Some(vec!["alice".into()]);
        let set = KeySet::from_list(&KeyList {
            version: "v1".into(),
            keys: vec![w],
        })
        .expect("ok");
        let now = crate::timefmt::now();
        assert_eq!(set.in_force_for("alice", now).len(), 1);
        assert_eq!(set.in_force_for("bob", now).len(), 0);
    }

    #[test]
    fn bad_versions_reject_the_whole_list() {
        for version in ["", "v 1", "v\n1"] {
            let list = KeyList {
                version: version.into(),
                keys: vec![],
            };
            assert!(KeySet::from_list(&list).is_err());
        }
    }

    #[test]
    fn a_key_is_found_only_for_the_managed_users_it_is_granted_to() {
        let mut alice_only = validate(&wire("k1", ED25519)).expect("valid");
        alice_only.users = Some(vec!["alice".into()]);
        let set = KeySet {
            version: "v1".into(),
            keys: vec![alice_only],
            rejected: Vec::new(),
        };
        let fp = set.keys[0].fingerprint.clone();
        let now = OffsetDateTime::now_utc();
        assert!(set.key_by_fingerprint("alice", &fp, now).is_some());
        assert!(set.key_by_fingerprint("bob", &fp, now).is_none());

        let mut everyone = set.clone();
        everyone.keys[0].users = None;
        let granted = everyone.granted_to(&["alice".into(), "bob".into()]);
        assert!(granted.key_by_fingerprint("bob", &fp, now).is_some());
        assert!(
            granted.key_by_fingerprint("root", &fp, now).is_none(),
            "root is not managed: its sessions are not the agent's to end"
        );
        assert!(set
            .granted_to(&["bob".into()])
            .key_by_fingerprint("alice", &fp, now)
            .is_none());
    }
}
