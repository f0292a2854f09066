//! The account page "Manage SSH Keys": the customer's side of the spec.
//!
//! `GET /account/ssh-keys` lists the account's keys and has the "Add New SSH Key" form;
//! `GET /account/ssh-keys/{key_id}` shows one key whole: its public key, created time,
//! the machines connected with it right now (from the agents' `active_sessions`), when
//! it was last used (their `session_opened` events), every instance where its deletion
//! is still pending (their `files[].keys_not_removed`, shown loudly), "Delete" with a
//! confirmation, and per instance its host key fingerprints and a `known_hosts`.
//!
//! Plain HTML, CSS and a little script served from the binary (no external asset, no
//! build step); the script polls the JSON under `/account/api/` every second and renders
//! with `textContent`, so names and comments are text, never markup. Every request that
//! changes something must come from the page's own origin ([`same_origin`]); every
//! request must name this server in `Host` (checked by the router: `crate::access`),
//! which is what keeps a DNS-rebound name from being "the page's own origin". The
//! JSON's answers are never cached nor sniffed.
//! [`validate_pasted`] gives each kind of wrong paste its own message for a person.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{access, error, fingerprint, known_hosts_response, ControlPlane, Key, NewKey};

const PAGE: &str = include_str!("account/page.html");
const STYLE: &str = include_str!("account/page.css");
const SCRIPT: &str = include_str!("account/page.js");

/// The routes of the page and its JSON.
pub fn routes() -> Router<ControlPlane> {
    let api = Router::new()
        .route("/account/api/ssh-keys", get(api_list).post(api_add))
        .route(
            "/account/api/ssh-keys/{key_id}",
            get(api_key).delete(api_delete),
        )
        .route(
            "/account/api/instances/{instance_id}/known_hosts",
            get(api_known_hosts),
        )
        .route_layer(middleware::map_response(access::not_cached));
    Router::new()
        .route("/account/ssh-keys", get(page))
        .route("/account/ssh-keys/{key_id}", get(page))
        .route(
            "/account/page.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/account/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .merge(api)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// True when a state-changing request comes from the page itself: its `Origin` (which
/// browsers send with every POST and DELETE) names the host it was sent to, or, without
/// an `Origin`, `Sec-Fetch-Site` says `same-origin`. Anything else (another site's form
/// or script, a request without either header) is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        host,
    ) {
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
        (None, _) => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "same-origin"),
    }
}

/// `Err(403)` unless [`same_origin`].
fn from_the_page(headers: &HeaderMap) -> Result<(), Response> {
    if same_origin(headers) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "requests that change the account must come from its own page",
        ))
    }
}

/// The types the account accepts (those the agent writes).
const KEY_TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Checks a name and a pasted public key the way a person needs to hear it; the key line
/// to store (`type base64 comment`) or the message to show.
pub fn validate_pasted(existing: &[Key], name: &str, pasted: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the key a name, such as the computer it is on.".into());
    }
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err("The name must be at most 128 characters, on one line.".into());
    }
    let text = pasted.trim();
    if text.is_empty() {
        return Err("Paste a public key: the one line in your .pub file.".into());
    }
    if text.contains("PRIVATE KEY") || text.starts_with("PuTTY-User-Key-File") {
        return Err("This is your private key: never share it. Paste the contents of the .pub file instead (for example ~/.ssh/id_ed25519.pub).".into());
    }
    if text.starts_with("---- BEGIN SSH2 PUBLIC KEY ----") {
        return Err("This key is in the SSH2 (PuTTY) format. Convert it to one OpenSSH line with `ssh-keygen -i -f key.pub` (or PuTTYgen's \"Public key for pasting into OpenSSH authorized_keys file\") and paste that.".into());
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > 1 {
        return Err(format!(
            "Paste one key at a time: this has {} lines. Add each key on its own.",
            lines.len()
        ));
    }
    let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
    let key_type = fields.next().unwrap_or_default();
    if key_type.ends_with("-cert-v01@openssh.com") {
        return Err("This is an SSH certificate, not a key: certificates are not accepted; add the CA with TrustedUserCAKeys instead, or paste the key itself.".into());
    }
    if !KEY_TYPES.contains(&key_type) {
        if key_type.contains(['=', ',', '"'])
            || ["restrict", "no-pty", "cert-authority"].contains(&key_type)
        {
            return Err("Remove the options in front of the key (like command=\"...\" or restrict): paste only the key, starting with its type, such as ssh-ed25519.".into());
        }
        if key_type == "ssh-dss" {
            return Err("DSA keys are no longer accepted by OpenSSH. Make a new key with `ssh-keygen -t ed25519`.".into());
        }
        return Err("This does not look like an OpenSSH public key. It should start with ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa, followed by a long block of letters and digits.".into());
    }
    let blob = fields.next().unwrap_or_default();
    let comment: Vec<&str> = fields.collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| {
            "The key is cut off or damaged: copy the whole line of the .pub file again.".to_owned()
        })?;
    let mut rest = raw.as_slice();
    let mut next = || -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let value = rest.get(4..4 + len)?.to_vec();
        rest = &rest[4 + len..];
        Some(value)
    };
    if next().as_deref() != Some(key_type.as_bytes()) {
        return Err(
            "The key is cut off or damaged: copy the whole line of the .pub file again.".into(),
        );
    }
    if key_type == "ssh-rsa" {
        let _exponent = next();
        let modulus = next().unwrap_or_default();
        let significant = modulus.iter().skip_while(|&&b| b == 0).count();
        let top = modulus.iter().find(|&&b| b != 0).copied().unwrap_or(0);
        let bits = (significant * 8).saturating_sub(top.leading_zeros() as usize);
        if bits < 2048 {
            return Err(format!("This RSA key has {bits} bits; keys need at least 2048. Make a new key with `ssh-keygen -t ed25519`."));
        }
    }
    let line = match comment.is_empty() {
        true => format!("{key_type} {blob}"),
        false => format!("{key_type} {blob} {}", comment.join(" ")),
    };
    let new_fingerprint = fingerprint(&line)
        .ok_or("The key is cut off or damaged: copy the whole line of the .pub file again.")?;
    if let Some(same) = existing
        .iter()
        .find(|k| k.fingerprint.as_deref() == Some(new_fingerprint.as_str()))
    {
        return Err(format!(
            "This key is already in your account, as \"{}\".",
            same.name
        ));
    }
    Ok(line)
}

/// A key as the list shows it.
fn summary(key: &Key, connected: usize) -> Value {
    let mut words = key.public_key.split_whitespace();
    let key_type = words.next().unwrap_or_default();
    let comment: Vec<&str> = words.skip(1).collect();
    json!({
        "id": key.id,
        "name": key.name,
        "type": key_type,
        "fingerprint": key.fingerprint,
        "comment": comment.join(" "),
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "connected": connected,
    })
}

/// The machines connected with `key_id` now: (instance, user, source, since).
fn connected(statuses: &std::collections::HashMap<String, Value>, key_id: &str) -> Vec<Value> {
    let mut machines = Vec::new();
    let mut instances: Vec<&String> = statuses.keys().collect();
    instances.sort();
    for instance in instances {
        let sessions = statuses[instance]["active_sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // A contested session (two logins claimed for one connection, the key that
        // opened it unknown) shows under every key claimed for it, marked: it is never
        // hidden from the keys it may be using.
        let claims = |s: &Value| {
            s["contested"] == true
                && s["claimed_key_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == key_id))
        };
        for session in sessions
            .iter()
            .filter(|s| s["key_id"] == key_id || claims(s))
        {
            machines.push(json!({
                "instance": instance,
                "user": session["user"],
                "source_ip": session["source_ip"],
                "since": session["since"],
                "contested": session["contested"] == true,
            }));
        }
    }
    machines
}

async fn api_list(State(cp): State<ControlPlane>) -> Response {
    let inner = cp.lock();
    let keys: Vec<Value> = inner
        .keys
        .iter()
        .map(|k| summary(k, connected(&inner.statuses, &k.id).len()))
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

async fn api_key(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    let pending: Vec<Value> = cp
        .revocations_pending()
        .into_iter()
        .filter(|p| p["key_id"] == id.as_str())
        .collect();
    let inner = cp.lock();
    let key = inner.keys.iter().find(|k| k.id == id);
    if key.is_none() && pending.is_empty() {
        return error(StatusCode::NOT_FOUND, "no such key");
    }
    let last_used = inner
        .events
        .values()
        .flatten()
        .filter(|e| e["type"] == "session_opened" && e["key_id"] == id.as_str())
        .filter_map(|e| e["at"].as_str())
        .max()
        .map(str::to_owned);
    let mut instances: Vec<&String> = inner.statuses.keys().collect();
    instances.sort();
    let hosts: Vec<Value> = instances
        .into_iter()
        .map(|instance| {
            let keys = inner.statuses[instance]["host_keys"].as_array().cloned().unwrap_or_default();
            json!({
                "instance": instance,
                "host_keys": keys.iter().map(|k| json!({"type": k["type"], "fingerprint": k["fingerprint"]})).collect::<Vec<_>>(),
                "known_hosts": format!("/account/api/instances/{instance}/known_hosts"),
            })
        })
        .collect();
    Json(json!({
        "id": id,
        "key": key.map(|k| json!({
            "summary": summary(k, 0),
            "public_key": k.public_key,
        })),
        "deleted": key.is_none(),
        "connected": connected(&inner.statuses, &id),
        "last_used": last_used,
        "pending": pending,
        "instances": hosts,
    }))
    .into_response()
}

/// `GET /account/api/instances/{id}/known_hosts`: the page's "Download known_hosts",
/// the customer's copy of `/admin/instances/{id}/known_hosts` (which needs the admin
/// token).
async fn api_known_hosts(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    match cp.known_hosts(&id) {
        Some(text) => known_hosts_response(text),
        None => error(StatusCode::NOT_FOUND, "no such instance"),
    }
}

#[derive(Deserialize)]
struct AddBody {
    name: String,
    public_key: String,
}

async fn api_add(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Json(body): Json<AddBody>,
) -> Response {
    if let Err(refused) = from_the_page(&headers) {
        return refused;
    }
    let existing = cp.keys();
    match validate_pasted(&existing, &body.name, &body.public_key) {
        Ok(line) => {
            let key = cp.add_key(NewKey {
                name: body.name.trim().to_owned(),
                public_key: line,
                ..NewKey::default()
            });
            (StatusCode::CREATED, Json(json!({ "id": key.id }))).into_response()
        }
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": message })),
        )
            .into_response(),
    }
}

async fn api_delete(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = from_the_page(&headers) {
        return refused;
    }
    if cp.delete_key(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti alice@laptop";

    #[test]
    fn each_wrong_paste_gets_its_own_message() {
        let keys = include_str!("../../tests/fixtures/public_keys.txt");
        let rsa_1024 = keys.lines().next().expect("fixture");
        let cert = keys
            .lines()
            .find(|l| l.starts_with("ssh-ed25519-cert"))
            .expect("fixture");
        let existing = vec![Key {
            id: "k1".into(),
            name: "laptop".into(),
            public_key: ED25519.into(),
            fingerprint: fingerprint(ED25519),
            created_at: String::new(),
            expires_at: None,
            users: None,
        }];
        for (paste, says) in [
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
                "private key",
            ),
            (
                "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none",
                "private key",
            ),
            (
                "---- BEGIN SSH2 PUBLIC KEY ----\nComment: x\nAAAA\n---- END SSH2 PUBLIC KEY ----",
                "SSH2",
            ),
            (&format!("{ED25519}\n{ED25519}"), "one key at a time"),
            (&format!("restrict,command=\"x\" {ED25519}"), "options"),
            (rsa_1024, "1024 bits"),
            (cert, "certificate"),
            (ED25519, "already in your account, as \"laptop\""),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1", "cut off"),
            ("hello", "does not look like"),
        ] {
            let got = validate_pasted(&existing, "new", paste).expect_err(paste);
            assert!(got.contains(says), "{paste:?}: {got}");
        }
        let other = keys
            .lines()
            .find(|l| l.starts_with("ecdsa-sha2-nistp256"))
            .expect("fixture");
        assert!(validate_pasted(&existing, "desk", other).is_ok());
        assert!(validate_pasted(&existing, "", other).is_err());
    }

    #[test]
    fn only_the_page_s_own_origin_may_change_the_account() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("value"));
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
    }

    async fn body(response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn a_deletion_still_pending_is_on_the_key_s_page_and_changes_need_the_page_s_origin() {
        let cp = ControlPlane::new();
        let key = cp.add_key(NewKey {
            id: Some("k1".into()),
            name: "laptop".into(),
            public_key: ED25519.into(),
            ..NewKey::default()
        });
        // A cross-site request (or one without Origin) changes nothing.
        let mut foreign = HeaderMap::new();
        foreign.insert(header::HOST, "127.0.0.1:8080".parse().expect("host"));
        foreign.insert(
            header::ORIGIN,
            "http://evil.example".parse().expect("origin"),
        );
        let (status, _) =
            body(api_delete(State(cp.clone()), foreign.clone(), Path("k1".into())).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = body(
            api_add(
                State(cp.clone()),
                HeaderMap::new(),
                Json(AddBody {
                    name: "x".into(),
                    public_key: ED25519.into(),
                }),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(cp.keys().len(), 1);

        // Deleted, but an instance's file could not be rewritten: the page says where.
        assert!(cp.delete_key(&key.id));
        cp.lock().statuses.insert(
            "gpu-7".into(),
            json!({
                "active_sessions": [],
                "files": [{"user": "ubuntu", "path": "/home/ubuntu/.ssh/authorized_keys",
                           "state": "behind", "error": "No space left on device",
                           "behind_since": "2026-11-30T06:00:00Z",
                           "keys_not_removed": ["k1"], "keys_not_added": []}],
            }),
        );
        let (status, page) = body(api_key(State(cp.clone()), Path("k1".into())).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["deleted"], true);
        assert_eq!(page["pending"][0]["instance_id"], "gpu-7");
        assert_eq!(page["pending"][0]["error"], "No space left on device");
        let (status, _) = body(api_key(State(cp.clone()), Path("k9".into())).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
