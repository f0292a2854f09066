//! The account's keys and what its instances reported: the one state behind every
//! handler, its version (the ETag) bumped at every change of the key set.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::faults::ArmedFault;
use crate::ControlPlane;

/// One key of the account, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub public_key: String,
    pub fingerprint: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
}

impl Key {
    /// A key as stored when added now under `id`: its fingerprint computed here.
    fn stored(id: String, new: NewKey) -> Key {
        Key {
            fingerprint: fingerprint(&new.public_key),
            id,
            name: new.name,
            public_key: new.public_key,
            created_at: now_rfc3339(),
            expires_at: new.expires_at,
            users: new.users,
        }
    }
}

/// What an admin supplies to add a key; the rest is filled in.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewKey {
    pub id: Option<String>,
    pub name: String,
    pub public_key: String,
    pub expires_at: Option<String>,
    pub users: Option<Vec<String>>,
}

/// Counters an operator (or a benchmark) reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub key_list_requests: u64,
    pub key_list_200: u64,
    pub key_list_304: u64,
    pub session_posts: u64,
    pub events_accepted: u64,
    pub duplicate_events: u64,
    pub status_puts: u64,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) version: u64,
    pub(crate) keys: Vec<Key>,
    pub(crate) tokens: HashMap<String, String>,
    pub(crate) fault: Option<ArmedFault>,
    pub(crate) events: HashMap<String, Vec<Value>>,
    pub(crate) event_ids: HashSet<(String, String)>,
    pub(crate) statuses: HashMap<String, Value>,
    /// The addresses and host names users reach each instance by (for `known_hosts`).
    pub(crate) addresses: HashMap<String, Vec<String>>,
    /// The host certificate authority's public key, when the account uses one.
    pub(crate) host_ca: Option<String>,
    pub(crate) stats: Stats,
}

pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The SHA256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l` prints it.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let blob = public_key.split_ascii_whitespace().nth(1)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = sha2::Sha256::digest(&raw);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ControlPlane {
    /// A key id nobody can guess, for a key added without one.
    fn new_key_id(&self) -> String {
        self.access().new_key_id()
    }

    /// Lets instance `id` in with `token`.
    pub fn register_instance(&self, id: &str, token: &str) {
        self.lock().tokens.insert(id.to_owned(), token.to_owned());
    }

    fn bump(&self, inner: &mut Inner) {
        inner.version += 1;
        self.changed.send_replace(inner.version);
    }

    /// Adds a key (the id is generated when not given) and returns it.
    pub fn add_key(&self, new: NewKey) -> Key {
        let id = new.id.clone().unwrap_or_else(|| self.new_key_id());
        let mut inner = self.lock();
        let key = Key::stored(id, new);
        inner.keys.retain(|k| k.id != key.id);
        inner.keys.push(key.clone());
        self.bump(&mut inner);
        key
    }

    /// Replaces the whole key list at once (one version bump).
    pub fn set_keys(&self, keys: Vec<NewKey>) {
        let keys: Vec<(String, NewKey)> = keys
            .into_iter()
            .map(|new| (new.id.clone().unwrap_or_else(|| self.new_key_id()), new))
            .collect();
        let mut inner = self.lock();
        inner.keys.clear();
        for (id, new) in keys {
            inner.keys.push(Key::stored(id, new));
        }
        self.bump(&mut inner);
    }

    /// Deletes a key; false when there was none.
    pub fn delete_key(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let before = inner.keys.len();
        inner.keys.retain(|k| k.id != id);
        let deleted = inner.keys.len() != before;
        if deleted {
            self.bump(&mut inner);
        }
        deleted
    }

    /// Sets a key's `expires_at`; false when there is no such key.
    pub fn expire_key(&self, id: &str, at: &str) -> bool {
        let mut inner = self.lock();
        let Some(key) = inner.keys.iter_mut().find(|k| k.id == id) else {
            return false;
        };
        key.expires_at = Some(at.to_owned());
        self.bump(&mut inner);
        true
    }

    pub fn keys(&self) -> Vec<Key> {
        self.lock().keys.clone()
    }

    /// The current version, `v<n>`, which is also the ETag's value.
    pub fn version(&self) -> String {
        format!("v{}", self.lock().version)
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Events an instance reported, in arrival order, without duplicates.
    pub fn events(&self, instance: &str) -> Vec<Value> {
        self.lock()
            .events
            .get(instance)
            .cloned()
            .unwrap_or_default()
    }

    /// The last agent status an instance sent.
    pub fn status(&self, instance: &str) -> Option<Value> {
        self.lock().statuses.get(instance).cloned()
    }

    /// Every deleted key that can still log in somewhere (a file reported `behind` with
    /// it in `keys_not_removed`): key id, instance, user, path, since when and why.
    pub fn revocations_pending(&self) -> Vec<Value> {
        let inner = self.lock();
        let mut pending = Vec::new();
        for (instance, status) in &inner.statuses {
            let files = status.get("files").and_then(Value::as_array);
            for file in files.into_iter().flatten() {
                let ids = file.get("keys_not_removed").and_then(Value::as_array);
                for id in ids.into_iter().flatten() {
                    pending.push(json!({
                        "key_id": id,
                        "instance_id": instance,
                        "user": file.get("user"),
                        "path": file.get("path"),
                        "behind_since": file.get("behind_since"),
                        "error": file.get("error"),
                    }));
                }
            }
        }
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // ssh-keygen -lf of this key prints SHA256:nzbw7nSRU8sOYCgwYoEye4rs7rA7ylpgjIegQSCJV8Q
        let line = include_str!("../../tests/fixtures/public_keys.txt")
            .lines()
            .nth(1)
            .expect("fixture");
        assert_eq!(
            fingerprint(line).as_deref(),
            Some("SHA256:nzbw7nSRU8sOYCgwYoEye4rs7rA7ylpgjIegQSCJV8Q")
        );
    }
}
