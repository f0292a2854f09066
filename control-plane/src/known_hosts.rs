//! `known_hosts` for users of the instances: the host keys each agent reported, at the
//! addresses an admin registered, and the host CA when the account has one.

use crate::fingerprint;
use crate::ControlPlane;
use crate::Inner;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

fn known_hosts_of(inner: &Inner, instance: &str) -> Option<String> {
    let status = inner.statuses.get(instance);
    let addresses = inner.addresses.get(instance);
    if status.is_none() && addresses.is_none() {
        return None;
    }
    let keys = status
        .and_then(|s| s.get("host_keys"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let addresses = addresses.cloned().unwrap_or_default();
    let mut text = String::new();
    for address in &addresses {
        for key in &keys {
            if let Some(public_key) = key.get("public_key").and_then(Value::as_str) {
                text.push_str(&format!("{address} {public_key}\n"));
            }
        }
    }
    let certified = keys
        .iter()
        .any(|k| k.get("certificate").is_some_and(Value::is_string));
    if let (true, Some(ca), false) = (certified, &inner.host_ca, addresses.is_empty()) {
        text.push_str(&format!("@cert-authority {} {ca}\n", addresses.join(",")));
    }
    Some(text)
}

pub(crate) fn known_hosts_response(text: String) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

impl ControlPlane {
    /// Sets the addresses (`203.0.113.7`, `[203.0.113.7]:2222`, `gpu-7.example`) users
    /// reach `instance` by; false when one is not a single printable word.
    pub fn set_addresses(&self, instance: &str, addresses: Vec<String>) -> bool {
        let valid = |a: &String| {
            (1..=255).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b',' && b != b'#')
                && !a.starts_with('@')
        };
        if !addresses.iter().all(valid) {
            return false;
        }
        self.lock().addresses.insert(instance.to_owned(), addresses);
        true
    }

    /// Sets (or with `None` clears) the host certificate authority's public key.
    pub fn set_host_ca(&self, public_key: Option<String>) -> bool {
        if public_key
            .as_deref()
            .is_some_and(|k| fingerprint(k).is_none())
        {
            return false;
        }
        self.lock().host_ca = public_key;
        true
    }

    /// `instance`'s `known_hosts` lines: `ADDRESS PUBLIC_KEY` for each registered address
    /// and each host key it last reported, and `@cert-authority ADDRESSES CA` when it
    /// reported a host certificate and the CA is set. `None` when the instance is not
    /// known.
    pub fn known_hosts(&self, instance: &str) -> Option<String> {
        let inner = self.lock();
        known_hosts_of(&inner, instance)
    }

    /// One `known_hosts` for every instance that reported host keys.
    pub fn known_hosts_all(&self) -> String {
        let inner = self.lock();
        let mut instances: Vec<&String> = inner.statuses.keys().collect();
        instances.sort();
        instances
            .into_iter()
            .filter_map(|i| known_hosts_of(&inner, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::check_host_keys;

    #[test]
    fn host_keys_are_checked_and_served_as_known_hosts() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";
        let fp = fingerprint(key).expect("fingerprint");
        let good = json!({"host_keys": [{"type": "ssh-ed25519", "public_key": key, "fingerprint": fp, "certificate": null}]});
        assert_eq!(check_host_keys(&good), Ok(()));
        assert_eq!(
            check_host_keys(&json!({})),
            Ok(()),
            "an older agent sends none"
        );
        for bad in [
            json!({"host_keys": [{"type": "ssh-ed25519", "public_key": format!("{key} comment"), "fingerprint": fp}]}),
            json!({"host_keys": [{"type": "ssh-rsa", "public_key": key, "fingerprint": fp}]}),
            json!({"host_keys": [{"type": "ssh-ed25519", "public_key": key, "fingerprint": "SHA256:x"}]}),
            json!({"host_keys": [{"type": "-----BEGIN", "public_key": "-----BEGIN OPENSSH-PRIVATE-KEY-----", "fingerprint": fp}]}),
            json!({"host_keys": [{"type": "ssh-ed25519", "public_key": key, "fingerprint": fp, "certificate": "ssh-ed25519 AAAA"}]}),
            json!({"host_keys": "none"}),
        ] {
            assert!(check_host_keys(&bad).is_err(), "{bad}");
        }
        let cp = ControlPlane::new();
        cp.lock().statuses.insert("i".into(), good);
        assert_eq!(cp.known_hosts("i").as_deref(), Some(""), "no address yet");
        assert!(!cp.set_addresses("i", vec!["a b".into()]));
        assert!(cp.set_addresses("i", vec!["203.0.113.7".into(), "[203.0.113.7]:2222".into()]));
        assert_eq!(
            cp.known_hosts("i").expect("known"),
            format!("203.0.113.7 {key}\n[203.0.113.7]:2222 {key}\n")
        );
        assert_eq!(cp.known_hosts("other"), None);
        assert_eq!(cp.known_hosts_all(), cp.known_hosts("i").expect("known"));
    }
}
