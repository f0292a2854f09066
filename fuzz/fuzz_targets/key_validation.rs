//! Key validation: what the control plane sends, before it can reach an authorized_keys
//! file.
//!
//! The input is tried two ways:
//! - as a `KeyList` JSON body (the wire type of `GET .../ssh-keys`), validated with
//!   `KeySet::from_list` as the sync path does;
//! - when it is UTF-8, as one public key line given straight to `validate_public_key`.
//!
//! Invariants:
//! - an accepted key's canonical text is one line of printable ASCII, `type base64`, and
//!   validating it again accepts it unchanged with the same fingerprint (also with a
//!   comment added);
//! - every key of a list is either kept or rejected, kept ids are unique and valid,
//!   rejected ids are printable;
//! - the kept keys rendered as the managed block parse back as exactly that block, and
//!   merging it is idempotent: no accepted key can break the block;
//! - the key set survives the state file's JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pictor_agent::api::model::KeyList;
use pictor_agent::authorized_keys::merge::{self, ManagedLine};
use pictor_agent::keys::{validate_public_key, KeySet};

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        check_line(line);
    }
    if let Ok(list) = serde_json::from_slice::<KeyList>(data) {
        check_list(&list);
    }
});

fn check_line(line: &str) {
    let Ok((canonical, fingerprint)) = validate_public_key(line) else {
        return;
    };
    check_canonical(&canonical, &fingerprint);
}

fn check_canonical(canonical: &str, fingerprint: &str) {
    assert!(
        canonical.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
        "canonical key has a control or non-ASCII byte: {canonical:?}"
    );
    assert_eq!(
        canonical.split(' ').count(),
        2,
        "canonical key is not `type base64`: {canonical:?}"
    );
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint:?}");
    let again = validate_public_key(canonical).expect("the canonical form is accepted");
    assert_eq!(again.0, canonical, "canonical form is not a fixed point");
    assert_eq!(again.1, fingerprint, "fingerprint changed on re-validation");
    let commented = validate_public_key(&format!("{canonical} user@host"))
        .expect("the canonical form with a comment is accepted");
    assert_eq!(commented.0, canonical);
    assert_eq!(commented.1, fingerprint);
}

fn check_list(list: &KeyList) {
    let Ok(set) = KeySet::from_list(list) else {
        return;
    };
    assert_eq!(set.version, list.version);
    assert_eq!(
        set.keys.len() + set.rejected.len(),
        list.keys.len(),
        "a key was neither kept nor rejected"
    );
    let mut ids = std::collections::HashSet::new();
    for key in &set.keys {
        assert!(
            ids.insert(key.id.as_str()),
            "duplicate id kept: {:?}",
            key.id
        );
        assert!(pictor_agent::config::is_valid_id(&key.id), "{:?}", key.id);
        assert!(!key.name.chars().any(char::is_control), "{:?}", key.name);
        check_canonical(&key.public_key, &key.fingerprint);
    }
    for rejection in &set.rejected {
        assert!(
            rejection.id.len() <= 64 && rejection.id.bytes().all(|b| b.is_ascii_graphic()),
            "rejected id is not printable: {:?}",
            rejection.id
        );
    }

    // What the daemon writes for these keys is exactly one intact block.
    let lines: Vec<ManagedLine<'_>> = set
        .keys
        .iter()
        .map(|k| ManagedLine {
            public_key: &k.public_key,
            key_id: &k.id,
        })
        .collect();
    let block = merge::render_block(&lines);
    let file = merge::merge(b"", &block);
    let parsed = merge::parse(&file);
    if set.keys.is_empty() {
        assert_eq!(parsed.blocks, 0);
    } else {
        assert_eq!(parsed.blocks, 1);
        assert_eq!(parsed.block, Some(block.as_slice()));
        assert!(parsed.before.is_empty() && parsed.after.is_empty());
    }
    assert_eq!(merge::merge(&file, &block), file, "merge is not idempotent");

    // The last good set is kept on disk as JSON and must come back the same.
    let json = serde_json::to_vec(&set).expect("a key set serializes");
    let back: KeySet = serde_json::from_slice(&json).expect("a serialized key set parses");
    assert_eq!(back, set, "key set changed through its JSON round trip");

    // The queries the daemon makes never panic.
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = set.next_expiry(now);
    for key in &set.keys {
        let users = key.users.clone().unwrap_or_default();
        for user in users.iter().take(4) {
            let _ = set.in_force_for(user, now);
            let _ = set.key_by_fingerprint(user, &key.fingerprint, now);
        }
        let _ = set.granted_to(&users);
    }
}
