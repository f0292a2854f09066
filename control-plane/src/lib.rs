//! The reference control plane: a small, faithful implementation of the Pictor instance
//! API v1 (`../shared/api-contract.md`, with the choices written down in `docs/api.md`).
//!
//! It serves one account's key list to any number of registered instances, records the
//! session events and agent status they report, and has an admin interface to change
//! keys and to inject faults. Tests and benchmarks drive it in-process through
//! [`ControlPlane`]; people drive it over HTTP through `/admin/...` (see `main.rs`),
//! with the admin token, and only by the host names it was configured for ([`access`]).
//!
//! Read it as the spec's companion: every handler says which rule of the contract it
//! implements.

// Handlers return `Result<_, Response>` so an early answer reads as `?`; the size is fine here.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

pub mod access;
pub mod account;

pub use access::{AdminTokenError, InvalidHostName};

/// Longest long-poll wait the contract allows.
pub const MAX_WAIT_SECONDS: u64 = 300;
/// Most events one `POST .../ssh-sessions` may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 500;

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

/// What an admin supplies to add a key; the rest is filled in.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewKey {
    pub id: Option<String>,
    pub name: String,
    pub public_key: String,
    pub expires_at: Option<String>,
    pub users: Option<Vec<String>>,
}

/// A fault the key list endpoint (and the other agent endpoints) will show.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Wait this long before answering normally.
    Slow { ms: u64 },
    /// Answer with this status (5xx) and an error body.
    ServerError { status: u16 },
    /// `429 Too Many Requests` with `Retry-After`.
    TooManyRequests { retry_after: u64 },
    /// `200` with a body that is not JSON of the contract's shape.
    Garbage,
    /// `200` with a body of this many bytes; `chunked` leaves out Content-Length.
    Oversized { bytes: usize, chunked: bool },
    /// Send headers, then drop the connection mid-body.
    Drop,
}

#[derive(Debug, Clone, Serialize)]
struct ArmedFault {
    fault: Fault,
    /// Requests left to hit; `None`: until cleared.
    remaining: Option<u64>,
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
struct Inner {
    version: u64,
    keys: Vec<Key>,
    tokens: HashMap<String, String>,
    fault: Option<ArmedFault>,
    events: HashMap<String, Vec<Value>>,
    event_ids: HashSet<(String, String)>,
    statuses: HashMap<String, Value>,
    /// The addresses and host names users reach each instance by (for `known_hosts`).
    addresses: HashMap<String, Vec<String>>,
    /// The host certificate authority's public key, when the account uses one.
    host_ca: Option<String>,
    stats: Stats,
}

/// The control plane, shared between its HTTP handlers and in-process callers.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Mutex<Inner>>,
    /// The admin token, the host names browsers may use, the source of key ids.
    access: Arc<Mutex<access::Access>>,
    /// Bumped at every change of the key set; long-polls wait on it.
    changed: watch::Sender<u64>,
}

impl Default for ControlPlane {
    fn default() -> Self {
        Self::new()
    }
}

fn now_rfc3339() -> String {
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

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ControlPlane {
    pub fn new() -> ControlPlane {
        let inner = Inner {
            version: 1,
            ..Inner::default()
        };
        ControlPlane {
            inner: Arc::new(Mutex::new(inner)),
            access: Arc::new(Mutex::new(access::Access::new())),
            changed: watch::channel(1).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn access(&self) -> MutexGuard<'_, access::Access> {
        self.access.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The credential of `/admin` (`Authorization: Bearer TOKEN`): made at random when
    /// the control plane is created, unless an operator sets one.
    pub fn admin_token(&self) -> String {
        self.access().admin_token().to_owned()
    }

    /// Sets the admin token (at least 16 printable characters, no spaces).
    pub fn set_admin_token(&self, token: &str) -> Result<(), AdminTokenError> {
        self.access().set_admin_token(token)
    }

    /// Lets browsers and admins use this host name (`pictor.example`, `192.0.2.7`,
    /// `[2001:db8::7]`) besides the listen address.
    pub fn allow_host(&self, name: &str) -> Result<(), InvalidHostName> {
        self.access().allow_host(name)
    }

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
        let id = new.id.unwrap_or_else(|| self.new_key_id());
        let mut inner = self.lock();
        let key = Key {
            fingerprint: fingerprint(&new.public_key),
            id,
            name: new.name,
            public_key: new.public_key,
            created_at: now_rfc3339(),
            expires_at: new.expires_at,
            users: new.users,
        };
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
            inner.keys.push(Key {
                fingerprint: fingerprint(&new.public_key),
                id,
                name: new.name,
                public_key: new.public_key,
                created_at: now_rfc3339(),
                expires_at: new.expires_at,
                users: new.users,
            });
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

    /// Arms a fault for the next `count` agent requests (`None`: until cleared).
    pub fn set_fault(&self, fault: Fault, count: Option<u64>) {
        self.lock().fault = Some(ArmedFault {
            fault,
            remaining: count,
        });
    }

    pub fn clear_fault(&self) {
        self.lock().fault = None;
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

    /// The HTTP interface: the contract's three calls, plus `/admin` (with the admin
    /// token) and the account page, both only by a configured host name ([`access`]).
    pub fn router(&self) -> Router {
        let browsers = self
            .admin_routes()
            .merge(account::routes())
            .route_layer(from_fn_with_state(self.clone(), access::known_host));
        Router::new()
            .route("/v1/instances/{instance_id}/ssh-keys", get(get_keys))
            .route(
                "/v1/instances/{instance_id}/ssh-sessions",
                post(post_sessions),
            )
            .route("/v1/instances/{instance_id}/agent-status", put(put_status))
            .merge(browsers)
            .with_state(self.clone())
    }

    /// `/admin/...`, each call behind the admin token.
    fn admin_routes(&self) -> Router<ControlPlane> {
        Router::new()
            .route("/admin/keys", get(admin_list_keys).post(admin_add_key))
            .route(
                "/admin/keys/{key_id}",
                axum::routing::delete(admin_delete_key),
            )
            .route("/admin/keys/{key_id}/expire", post(admin_expire_key))
            .route("/admin/instances", post(admin_register))
            .route("/admin/instances/{instance_id}/events", get(admin_events))
            .route("/admin/instances/{instance_id}/status", get(admin_status))
            .route(
                "/admin/faults",
                put(admin_set_fault).delete(admin_clear_fault),
            )
            .route("/admin/stats", get(admin_stats))
            .route("/admin/revocations-pending", get(admin_revocations_pending))
            .route(
                "/admin/instances/{instance_id}/addresses",
                put(admin_set_addresses),
            )
            .route(
                "/admin/instances/{instance_id}/known_hosts",
                get(admin_known_hosts),
            )
            .route("/admin/known_hosts", get(admin_known_hosts_all))
            .route(
                "/admin/host-ca",
                put(admin_set_host_ca).delete(admin_clear_host_ca),
            )
            .route_layer(from_fn_with_state(self.clone(), access::admin_only))
    }

    /// Serves on `addr` (port 0 picks one) in a background task; returns the address.
    /// Browsers may then use the address (and `localhost` for a loopback listener).
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        self.access().allow_listener(local);
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(local)
    }

    /// Serves on a free loopback port from a runtime thread of its own, for callers
    /// that are not async themselves (tests, benchmarks); stops when dropped.
    pub fn serve_on_loopback(&self) -> std::io::Result<LoopbackServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let addr = runtime.block_on(self.serve(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        Ok(LoopbackServer {
            url: format!("http://{addr}"),
            runtime,
        })
    }

    /// Checks the bearer token: `401` without a valid one, `404` for an unknown instance.
    fn authorize(&self, instance: &str, headers: &HeaderMap) -> Result<(), Response> {
        let inner = self.lock();
        let Some(expected) = inner.tokens.get(instance) else {
            return Err(error(StatusCode::NOT_FOUND, "unknown instance"));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(expected.as_str()) {
            return Err(error(StatusCode::UNAUTHORIZED, "invalid token"));
        }
        Ok(())
    }

    /// Takes one shot of the armed fault, if any.
    fn take_fault(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let armed = inner.fault.as_mut()?;
        let fault = armed.fault.clone();
        match &mut armed.remaining {
            Some(0) => {
                inner.fault = None;
                return None;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    inner.fault = None;
                }
            }
            None => {}
        }
        Some(fault)
    }

    /// The common start of the agent's POST and PUT: authorization, faults, a JSON body.
    async fn agent_body(
        &self,
        instance: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, Response> {
        self.authorize(instance, headers)?;
        self.fault_response().await?;
        serde_json::from_slice::<Value>(body)
            .map_err(|_| error(StatusCode::BAD_REQUEST, "body is not JSON"))
    }

    /// Applies a fault: `Ok(())` to go on normally (after a slow wait), `Err` to answer it.
    async fn fault_response(&self) -> Result<(), Response> {
        let Some(fault) = self.take_fault() else {
            return Ok(());
        };
        match fault {
            Fault::Slow { ms } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
            Fault::ServerError { status } => Err(error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
            )),
            Fault::TooManyRequests { retry_after } => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                Err(response)
            }
            Fault::Garbage => Err(with_etag(
                StatusCode::OK,
                "\"garbage\"",
                Body::from("{\"version\": \"v9\", \"keys\": [{\"id\": 7"),
            )),
            Fault::Oversized { bytes, chunked } => {
                let body = if chunked {
                    let chunk = vec![b' '; 64 * 1024];
                    let chunks = bytes.div_ceil(chunk.len());
                    Body::from_stream(futures_util::stream::iter(
                        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                    ))
                } else {
                    Body::from(vec![b' '; bytes])
                };
                Err(with_etag(StatusCode::OK, "\"huge\"", body))
            }
            Fault::Drop => {
                let stream = futures_util::stream::iter([
                    Ok(b"{\"version\":".to_vec()),
                    Err(std::io::Error::other("connection dropped by fault switch")),
                ]);
                Err(with_etag(
                    StatusCode::OK,
                    "\"dropped\"",
                    Body::from_stream(stream),
                ))
            }
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn with_etag(status: StatusCode, etag: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_static(etag));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<String>,
}

/// True when `If-None-Match` names the current ETag (a list and `*` are understood).
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
        })
}

/// `GET /v1/instances/{id}/ssh-keys[?wait=N]`: the key list, with ETag and long-poll.
async fn get_keys(
    State(cp): State<ControlPlane>,
    Path(instance): Path<String>,
    Query(query): Query<WaitQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = cp.authorize(&instance, &headers) {
        return response;
    }
    cp.lock().stats.key_list_requests += 1;
    let wait = match query.wait.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(wait)) if wait <= MAX_WAIT_SECONDS => wait,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "wait must be an integer from 0 to 300",
            )
        }
    };
    if let Err(response) = cp.fault_response().await {
        return response;
    }
    // Subscribe before reading the version, so a change in between is not missed.
    let mut changes = cp.changed.subscribe();
    let etag = format!("\"{}\"", cp.version());
    if matches_etag(&headers, &etag) {
        if wait == 0 {
            return not_modified(&cp, &etag);
        }
        let deadline = tokio::time::sleep(Duration::from_secs(wait));
        tokio::select! {
            _ = changes.changed() => {}
            () = deadline => return not_modified(&cp, &etag),
        }
    }
    key_list(&cp)
}

fn not_modified(cp: &ControlPlane, etag: &str) -> Response {
    cp.lock().stats.key_list_304 += 1;
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn key_list(cp: &ControlPlane) -> Response {
    let mut inner = cp.lock();
    inner.stats.key_list_200 += 1;
    let version = format!("v{}", inner.version);
    let body = json!({ "version": version, "keys": inner.keys });
    drop(inner);
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A control plane being served on loopback (see [`ControlPlane::serve_on_loopback`]).
pub struct LoopbackServer {
    /// `http://127.0.0.1:PORT`, the agent's `base_url`.
    pub url: String,
    /// The runtime serving it; a caller may spawn its own tasks on it too.
    pub runtime: tokio::runtime::Runtime,
}

/// Checks one session event against the contract; the error names the field.
pub fn validate_event(event: &Value) -> Result<(), String> {
    let object = event.as_object().ok_or("an event must be an object")?;
    let string = |field: &str| object.get(field).and_then(Value::as_str);
    let nullable_string = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(format!("{field} must be a string or null")),
    };
    let id = string("id").ok_or("id must be a string")?;
    if id.is_empty() || id.len() > 128 {
        return Err("id must be 1 to 128 characters".into());
    }
    match string("type") {
        Some("session_opened" | "session_closed" | "session_terminated") => {}
        _ => {
            return Err("type must be session_opened, session_closed or session_terminated".into())
        }
    }
    let at = string("at").ok_or("at must be a string")?;
    OffsetDateTime::parse(at, &Rfc3339).map_err(|_| "at must be an RFC 3339 time".to_owned())?;
    string("user")
        .filter(|u| !u.is_empty())
        .ok_or("user must be a non-empty string")?;
    string("auth_method").ok_or("auth_method must be a string")?;
    string("session_id")
        .filter(|s| !s.is_empty())
        .ok_or("session_id must be a non-empty string")?;
    nullable_string("key_id")?;
    nullable_string("fingerprint")?;
    if let Some(ip) = object.get("source_ip").filter(|v| !v.is_null()) {
        ip.as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .ok_or("source_ip must be an IP address")?;
    }
    if let Some(port) = object.get("source_port").filter(|v| !v.is_null()) {
        port.as_u64()
            .filter(|p| *p <= 65535)
            .ok_or("source_port must be 0..65535")?;
    }
    Ok(())
}

/// `POST /v1/instances/{id}/ssh-sessions`: session events, deduplicated by `id`.
async fn post_sessions(
    State(cp): State<ControlPlane>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let batch = match cp.agent_body(&instance, &headers, &body).await {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let Some(events) = batch.get("events").and_then(Value::as_array) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "events must be an array");
    };
    if events.len() > MAX_EVENTS_PER_BATCH {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 500 events a request",
        );
    }
    for (index, event) in events.iter().enumerate() {
        if let Err(problem) = validate_event(event) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("events[{index}]: {problem}"),
            );
        }
    }
    let mut inner = cp.lock();
    inner.stats.session_posts += 1;
    for event in events {
        let id = event
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if inner.event_ids.insert((instance.clone(), id)) {
            inner.stats.events_accepted += 1;
            inner
                .events
                .entry(instance.clone())
                .or_default()
                .push(event.clone());
        } else {
            inner.stats.duplicate_events += 1;
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": events.len() })),
    )
        .into_response()
}

/// `PUT /v1/instances/{id}/agent-status`: the heartbeat; replaces what was known.
async fn put_status(
    State(cp): State<ControlPlane>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let status = match cp.agent_body(&instance, &headers, &body).await {
        Ok(status) => status,
        Err(response) => return response,
    };
    for field in ["agent_version", "boot_id"] {
        if !status.get(field).is_some_and(Value::is_string) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{field} must be a string"),
            );
        }
    }
    for field in ["keys", "rejected_keys", "active_sessions"] {
        if !status.get(field).is_some_and(Value::is_array) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{field} must be an array"),
            );
        }
    }
    if let Err(problem) = check_files(&status) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &problem);
    }
    if let Err(problem) = check_host_keys(&status) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &problem);
    }
    let mut inner = cp.lock();
    inner.stats.status_puts += 1;
    inner.statuses.insert(instance, status);
    StatusCode::NO_CONTENT.into_response()
}

/// `files` ("Additions to v1"): optional (an older agent does not send it); when sent,
/// each entry is checked, with the rules that tie its fields together: a `behind` file
/// has an `error` and a `behind_since`, an `in_sync` one has neither and no key left to
/// add or remove, and `last_error` is non-null while any file is behind.
fn check_files(status: &Value) -> Result<(), String> {
    let Some(files) = status.get("files") else {
        return Ok(());
    };
    let files = files.as_array().ok_or("files must be an array")?;
    let mut behind = false;
    for (i, file) in files.iter().enumerate() {
        let field = |name: &str| file.get(name).unwrap_or(&Value::Null);
        for name in ["user", "path", "state"] {
            if !field(name).is_string() {
                return Err(format!("files[{i}].{name} must be a string"));
            }
        }
        for name in ["keys_not_removed", "keys_not_added"] {
            let ok = field(name)
                .as_array()
                .is_some_and(|ids| ids.iter().all(Value::is_string));
            if !ok {
                return Err(format!("files[{i}].{name} must be an array of key ids"));
            }
        }
        for name in ["error", "behind_since"] {
            if !(field(name).is_null() || field(name).is_string()) {
                return Err(format!("files[{i}].{name} must be a string or null"));
            }
        }
        let clean = field("keys_not_removed")
            .as_array()
            .is_some_and(Vec::is_empty)
            && field("keys_not_added")
                .as_array()
                .is_some_and(Vec::is_empty);
        match field("state").as_str() {
            Some("in_sync") => {
                if !field("error").is_null() || !field("behind_since").is_null() || !clean {
                    return Err(format!(
                        "files[{i}] is in_sync, so error and behind_since must be null and \
                         no key may be left to add or remove"
                    ));
                }
            }
            Some("behind") => {
                if !field("error").is_string() || !field("behind_since").is_string() {
                    return Err(format!(
                        "files[{i}] is behind, so it must say why (error) and since when \
                         (behind_since)"
                    ));
                }
                behind = true;
            }
            _ => return Err(format!("files[{i}].state must be in_sync or behind")),
        }
    }
    if behind && !status.get("last_error").is_some_and(Value::is_string) {
        return Err("last_error must be non-null while a file is behind".into());
    }
    Ok(())
}

/// `host_keys` ("Additions to v1"): optional (an older agent does not send it); when
/// sent, each entry is a public key line (`type base64`, nothing else), its `type` the
/// line's first word, its `fingerprint` the line's, and `certificate` a
/// `TYPE-cert-v01@openssh.com base64` line or null. A private key is never accepted.
pub fn check_host_keys(status: &Value) -> Result<(), String> {
    let Some(keys) = status.get("host_keys") else {
        return Ok(());
    };
    let keys = keys.as_array().ok_or("host_keys must be an array")?;
    for (i, key) in keys.iter().enumerate() {
        let field = |name: &str| key.get(name).and_then(Value::as_str);
        let (Some(key_type), Some(public_key), Some(given)) =
            (field("type"), field("public_key"), field("fingerprint"))
        else {
            return Err(format!(
                "host_keys[{i}] must have type, public_key and fingerprint strings"
            ));
        };
        let words: Vec<&str> = public_key.split(' ').collect();
        if words.len() != 2 || words[0] != key_type || public_key.contains("PRIVATE") {
            return Err(format!(
                "host_keys[{i}].public_key must be `{key_type} base64`, nothing else"
            ));
        }
        if fingerprint(public_key).as_deref() != Some(given) {
            return Err(format!(
                "host_keys[{i}].fingerprint is not the key's SHA256 fingerprint"
            ));
        }
        match key.get("certificate") {
            None | Some(Value::Null) => {}
            Some(Value::String(line)) => {
                let words: Vec<&str> = line.split(' ').collect();
                if words.len() != 2 || !words[0].ends_with("-cert-v01@openssh.com") {
                    return Err(format!(
                        "host_keys[{i}].certificate must be `TYPE-cert-v01@openssh.com base64`"
                    ));
                }
            }
            Some(_) => {
                return Err(format!(
                    "host_keys[{i}].certificate must be a string or null"
                ))
            }
        }
    }
    Ok(())
}

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

#[derive(Deserialize)]
struct AddressesBody {
    addresses: Vec<String>,
}

/// `PUT /admin/instances/{id}/addresses` `{"addresses": [...]}`.
async fn admin_set_addresses(
    State(cp): State<ControlPlane>,
    Path(id): Path<String>,
    Json(body): Json<AddressesBody>,
) -> Response {
    if cp.set_addresses(&id, body.addresses) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "each address must be 1 to 255 printable characters without spaces, commas or #",
        )
    }
}

fn known_hosts_response(text: String) -> Response {
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

/// `GET /admin/instances/{id}/known_hosts`: the instance's lines, as text.
async fn admin_known_hosts(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    match cp.known_hosts(&id) {
        Some(text) => known_hosts_response(text),
        None => error(StatusCode::NOT_FOUND, "no such instance"),
    }
}

/// `GET /admin/known_hosts`: every instance's lines.
async fn admin_known_hosts_all(State(cp): State<ControlPlane>) -> Response {
    known_hosts_response(cp.known_hosts_all())
}

#[derive(Deserialize)]
struct HostCaBody {
    public_key: String,
}

/// `PUT /admin/host-ca` `{"public_key": "ssh-ed25519 AAAA... ca"}`.
async fn admin_set_host_ca(
    State(cp): State<ControlPlane>,
    Json(body): Json<HostCaBody>,
) -> Response {
    if cp.set_host_ca(Some(body.public_key)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "public_key is not an OpenSSH public key line",
        )
    }
}

async fn admin_clear_host_ca(State(cp): State<ControlPlane>) -> Response {
    cp.set_host_ca(None);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /admin/revocations-pending`: every deleted key that can still log in somewhere,
/// with where and why: what the account page must show loudly.
async fn admin_revocations_pending(State(cp): State<ControlPlane>) -> Response {
    Json(json!({ "pending": cp.revocations_pending() })).into_response()
}

async fn admin_list_keys(State(cp): State<ControlPlane>) -> Response {
    Json(json!({ "version": cp.version(), "keys": cp.keys() })).into_response()
}

async fn admin_add_key(State(cp): State<ControlPlane>, Json(new): Json<NewKey>) -> Response {
    if new.id.as_deref().is_some_and(|id| !valid_id(id)) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "id must match [A-Za-z0-9_-]{1,64}",
        );
    }
    (StatusCode::CREATED, Json(cp.add_key(new))).into_response()
}

async fn admin_delete_key(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    if cp.delete_key(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such key")
    }
}

#[derive(Deserialize)]
struct ExpireBody {
    at: Option<String>,
}

/// `POST /admin/keys/{id}/expire` with `{"at": ...}`, or no body at all for now (a body
/// is JSON: [`access::admin_only`] refused any other).
async fn admin_expire_key(
    State(cp): State<ControlPlane>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let given = match body.trim_ascii() {
        b"" => None,
        json => match serde_json::from_slice::<ExpireBody>(json) {
            Ok(body) => body.at,
            Err(_) => return error(StatusCode::BAD_REQUEST, "body is not {\"at\": TIME}"),
        },
    };
    let at = given.unwrap_or_else(now_rfc3339);
    if cp.expire_key(&id, &at) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such key")
    }
}

#[derive(Deserialize)]
struct RegisterBody {
    id: String,
    token: String,
}

async fn admin_register(
    State(cp): State<ControlPlane>,
    Json(body): Json<RegisterBody>,
) -> Response {
    if !valid_id(&body.id) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "id must match [A-Za-z0-9_-]{1,64}",
        );
    }
    cp.register_instance(&body.id, &body.token);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_events(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    Json(cp.events(&id)).into_response()
}

async fn admin_status(State(cp): State<ControlPlane>, Path(id): Path<String>) -> Response {
    match cp.status(&id) {
        Some(status) => Json(status).into_response(),
        None => error(StatusCode::NOT_FOUND, "no status reported yet"),
    }
}

#[derive(Deserialize)]
struct FaultBody {
    #[serde(flatten)]
    fault: Fault,
    count: Option<u64>,
}

async fn admin_set_fault(State(cp): State<ControlPlane>, Json(body): Json<FaultBody>) -> Response {
    cp.set_fault(body.fault, body.count);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_clear_fault(State(cp): State<ControlPlane>) -> Response {
    cp.clear_fault();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_stats(State(cp): State<ControlPlane>) -> Response {
    Json(cp.stats()).into_response()
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

    #[test]
    fn events_are_checked_field_by_field() {
        let good = json!({"id": "e1", "type": "session_opened", "at": "2026-11-25T07:01:02.345Z",
            "user": "ubuntu", "auth_method": "publickey", "key_id": null, "fingerprint": null,
            "source_ip": "2001:db8::1", "source_port": 51234, "session_id": "b:42"});
        assert_eq!(validate_event(&good), Ok(()));
        let mut bad = good.clone();
        bad["type"] = json!("session_started");
        assert!(validate_event(&bad).is_err());
        let mut bad = good;
        bad["source_ip"] = json!("not-an-ip");
        assert!(validate_event(&bad).unwrap_err().contains("source_ip"));
    }

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

    #[test]
    fn faults_run_out_after_their_count() {
        let cp = ControlPlane::new();
        cp.set_fault(Fault::Garbage, Some(2));
        assert!(cp.take_fault().is_some());
        assert!(cp.take_fault().is_some());
        assert!(cp.take_fault().is_none());
    }
}
