//! Account keys: validation of what the control plane sends, and the key set in force.
//!
//! Pure code: no disk, no network, no clock (the time is always an argument).
//! A key that fails validation is rejected alone, with a reason a person can act on.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PublicKey};
use time::OffsetDateTime;

use crate::api::model::Rejection;
use crate::api::model::{KeyList, WireKey};
use crate::config::{is_valid_id, is_valid_user_name};

/// Smallest RSA modulus the contract accepts.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus (and exponent) OpenSSH reads: sshd skips a longer key.
pub const MAX_RSA_BITS: usize = 16384;
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

    /// True when `logged` (a fingerprint as sshd logs it: `SHA256:...`, or `MD5:..` under
    /// `FingerprintHash md5`) is this key's.
    pub fn matches_fingerprint(&self, logged: &str) -> bool {
        if logged.starts_with("MD5:") {
            md5_fingerprint(&self.public_key).is_some_and(|md5| md5 == logged)
        } else {
            self.fingerprint == logged
        }
    }

    /// True when the key is meant for `user`.
    pub fn is_for(&self, user: &str) -> bool {
        self.users
            .as_ref()
            .is_none_or(|users| users.iter().any(|u| u == user))
    }
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
            .find(|k| k.matches_fingerprint(fingerprint) && !k.is_expired(now) && k.is_for(user))
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

/// `MD5:xx:xx:...` of a canonical `type base64` line, as sshd and `ssh-keygen -l -E md5`
/// print it: the digest of the key blob, in lowercase hex pairs joined by colons.
pub fn md5_fingerprint(canonical: &str) -> Option<String> {
    use md5::Digest;
    let key = PublicKey::from_openssh(canonical).ok()?;
    let blob = key.to_bytes().ok()?;
    let digest = md5::Md5::digest(&blob);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("MD5:{}", hex.join(":")))
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
///
/// It accepts what sshd accepts in `authorized_keys` and nothing it would skip, so a key
/// shown in force can log in: fields split by spaces or tabs, the type named in the
/// text equal to the type encoded in the key, an ECDSA point uncompressed, on its curve
/// and passing sshd's range checks, an RSA modulus of at most 16384 bits. The contract
/// is stricter than sshd in two ways: RSA under 2048 bits, and no options or
/// certificates (certificates are trusted through their CA, not listed one by one).
pub fn validate_public_key(line: &str) -> Result<(String, String), String> {
    if line.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(format!(
            "public_key is longer than {MAX_PUBLIC_KEY_BYTES} bytes"
        ));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("public_key contains a line break or control character".into());
    }
    let mut fields = line.split([' ', '\t']).filter(|field| !field.is_empty());
    let type_token = fields.next().unwrap_or("");
    if type_token.ends_with("-cert-v01@openssh.com") {
        return Err(
            "certificates are not accepted; add the CA with TrustedUserCAKeys instead".into(),
        );
    }
    if !allowed_type_name(type_token) {
        return Err(match type_token {
            "" => "public_key is empty".to_owned(),
            "ssh-dss" => "DSA keys are not accepted (OpenSSH no longer supports them)".to_owned(),
            option if looks_like_option(option) => format!(
                "public_key must start with its key type, not {:?}: options are not allowed",
                printable_id(option)
            ),
            other => format!(
                "public_key must start with an accepted key type (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa, or their sk- variants), not {:?}",
                printable_id(other)
            ),
        });
    }
    let blob = fields
        .next()
        .ok_or_else(|| format!("public_key has no key data after {type_token}"))?;
    let mut key = PublicKey::from_openssh(&format!("{type_token} {blob}"))
        .map_err(|e| format!("public_key is not a valid {type_token} key ({e})"))?;
    check_algorithm(&key)?;
    key.set_comment("");
    let canonical = key
        .to_openssh()
        .map_err(|e| format!("public_key cannot be re-encoded ({e})"))?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    Ok((canonical.trim_end().to_owned(), fingerprint))
}

/// An `authorized_keys` option (`restrict`, `command="..."`, `from=...,pty`) where the key
/// type should be.
fn looks_like_option(token: &str) -> bool {
    token.contains(['=', ',', '"'])
        || matches!(
            token,
            "restrict"
                | "cert-authority"
                | "no-pty"
                | "no-port-forwarding"
                | "no-agent-forwarding"
                | "no-X11-forwarding"
                | "no-user-rc"
                | "pty"
                | "no-touch-required"
                | "verify-required"
        )
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
        Algorithm::Ed25519 | Algorithm::SkEd25519 => Ok(()),
        Algorithm::SkEcdsaSha2NistP256 => match key.key_data() {
            KeyData::SkEcdsaSha2NistP256(sk) => {
                ec_point::check(EcdsaCurve::NistP256, sk.ec_point().as_bytes())
            }
            _ => Err("public_key's security key data is not ECDSA".into()),
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521,
        } => match key.key_data() {
            KeyData::Ecdsa(point) => ec_point::check(point.curve(), point.as_sec1_bytes()),
            _ => Err("public_key's ECDSA data is missing".into()),
        },
        Algorithm::Rsa { .. } => {
            let rsa = key
                .key_data()
                .rsa()
                .ok_or("public_key's RSA data is missing")?;
            let bits = rsa.n.as_positive_bytes().map(bit_length).unwrap_or(0);
            let exponent_bits = rsa.e.as_positive_bytes().map(bit_length).unwrap_or(0);
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is shorter than {MIN_RSA_BITS} bits"
                ))
            } else if bits > MAX_RSA_BITS || exponent_bits > MAX_RSA_BITS {
                Err(format!(
                    "RSA key of {bits} bits is longer than OpenSSH's limit of {MAX_RSA_BITS} bits: sshd would skip it"
                ))
            } else {
                Ok(())
            }
        }
        other => Err(format!("key type {} is not accepted", other.as_str())),
    }
}

/// sshd's checks of an ECDSA public point, with the curve arithmetic of the RustCrypto
/// curve crates: uncompressed encoding, on the curve and not the point at infinity
/// (what OpenSSL checks as sshd decodes the point), each coordinate longer than half the
/// group order's bits and below the order minus one (OpenSSH's own range checks). The
/// curves have cofactor 1, so a point on the curve is in the group of prime order.
mod ec_point {
    use std::cmp::Ordering;

    use p256::elliptic_curve::bigint::Encoding;
    use p256::elliptic_curve::Curve;
    use ssh_key::EcdsaCurve;

    pub fn check(curve: EcdsaCurve, bytes: &[u8]) -> Result<(), String> {
        let (on_curve, order) = match curve {
            EcdsaCurve::NistP256 => (
                p256::PublicKey::from_sec1_bytes(bytes).is_ok(),
                p256::NistP256::ORDER.to_be_bytes().to_vec(),
            ),
            EcdsaCurve::NistP384 => (
                p384::PublicKey::from_sec1_bytes(bytes).is_ok(),
                p384::NistP384::ORDER.to_be_bytes().to_vec(),
            ),
            EcdsaCurve::NistP521 => (
                p521::PublicKey::from_sec1_bytes(bytes).is_ok(),
                p521::NistP521::ORDER.to_be_bytes().to_vec(),
            ),
        };
        let coordinates = match bytes.split_first() {
            Some((4, xy)) if xy.len() % 2 == 0 => xy.split_at(xy.len() / 2),
            _ => {
                return Err(
                    "public_key's ECDSA point is not in uncompressed form, which sshd requires"
                        .into(),
                )
            }
        };
        if !on_curve {
            return Err("public_key's ECDSA point is not on its curve: sshd would skip it".into());
        }
        let order_bits = super::bit_length(&order);
        let order_minus_one = minus_one(&order);
        for coordinate in [coordinates.0, coordinates.1] {
            if super::bit_length(coordinate) <= order_bits / 2
                || compare(coordinate, &order_minus_one) != Ordering::Less
            {
                return Err(
                    "public_key's ECDSA point fails OpenSSH's range check: sshd would skip it"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// `n - 1` for a big-endian `n > 0`.
    fn minus_one(n: &[u8]) -> Vec<u8> {
        let mut out = n.to_vec();
        for byte in out.iter_mut().rev() {
            let (value, borrow) = byte.overflowing_sub(1);
            *byte = value;
            if !borrow {
                break;
            }
        }
        out
    }

    /// Compares two big-endian unsigned integers of any lengths.
    fn compare(a: &[u8], b: &[u8]) -> Ordering {
        let strip = |x: &[u8]| -> Vec<u8> { x.iter().copied().skip_while(|&b| b == 0).collect() };
        let (a, b) = (strip(a), strip(b));
        a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn big_endian_helpers() {
            assert_eq!(minus_one(&[1, 0]), vec![0, 0xff]);
            assert_eq!(minus_one(&[0, 5]), vec![0, 4]);
            assert_eq!(compare(&[0, 0, 2], &[1]), Ordering::Greater);
            assert_eq!(compare(&[0, 1, 0], &[0xff]), Ordering::Greater);
            assert_eq!(compare(&[0, 3], &[3]), Ordering::Equal);
        }
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
#[path = "../tests/shared/key_cases.rs"]
mod key_cases;

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
    fn keys_are_judged_as_sshd_judges_them_with_reasons_for_a_person() {
        for case in super::key_cases::key_cases() {
            match (validate_public_key(&case.line), case.agent) {
                (Ok(_), Ok(())) => {}
                (Err(reason), Err(expected)) => assert!(
                    reason.contains(expected),
                    "{}: reason {reason:?} does not say {expected:?}",
                    case.name
                ),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
            }
        }
    }

    #[test]
    fn md5_fingerprints_as_sshd_logs_them_match_the_key() {
        let p256 = include_str!("../tests/fixtures/public_keys.txt")
            .lines()
            .find(|l| l.starts_with("ecdsa-sha2-nistp256 "))
            .expect("fixture");
        let key = validate(&wire("k1", p256)).expect("valid");
        // `ssh-keygen -l -E md5 -f` on the fixture.
        let md5 = "MD5:fc:1d:7e:89:84:16:11:9e:af:64:22:de:e3:e7:37:96";
        assert_eq!(md5_fingerprint(&key.public_key).as_deref(), Some(md5));
        assert!(key.matches_fingerprint(md5));
        assert!(key.matches_fingerprint(&key.fingerprint.clone()));
        assert!(!key.matches_fingerprint("MD5:fc:1d:7e:89:84:16:11:9e:af:64:22:de:e3:e7:37:97"));
    }

    #[test]
    fn a_tab_separated_line_is_the_same_key() {
        let tabs = ED25519.replace(' ', "\t");
        assert_eq!(
            validate_public_key(&tabs).expect("tabs"),
            validate_public_key(ED25519).expect("spaces")
        );
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
