//! The instance API v1, the contract's three calls (`GET ssh-keys` with ETag and
//! long-poll, `POST ssh-sessions`, `PUT agent-status`), each with the validators that
//! say what a well-formed request is (`validate_event`, `check_files`, `check_host_keys`).

use std::net::IpAddr;
use std::time::Duration;

use crate::fingerprint;
use crate::ControlPlane;
use crate::MAX_EVENTS_PER_BATCH;
use crate::MAX_WAIT_SECONDS;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(crate) fn with_etag(status: StatusCode, etag: &'static str, body: Body) -> Response {
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
pub(crate) struct WaitQuery {
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
pub(crate) async fn get_keys(
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
    match object.get("contested") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            // Which key opened it is unknown: naming one would be a claim.
            let named = |field: &str| object.get(field).is_some_and(|v| !v.is_null());
            if named("key_id") || named("fingerprint") {
                return Err("a contested event must have a null key_id and fingerprint".into());
            }
        }
        Some(_) => return Err("contested must be a boolean".into()),
    }
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

/// Checks a `POST .../ssh-sessions` body: `events`, an array of at most
/// [`MAX_EVENTS_PER_BATCH`] events, each valid ([`validate_event`]); the error names
/// the event and the field.
pub fn validate_batch(batch: &Value) -> Result<&Vec<Value>, String> {
    let events = batch
        .get("events")
        .and_then(Value::as_array)
        .ok_or("events must be an array")?;
    if events.len() > MAX_EVENTS_PER_BATCH {
        return Err("at most 500 events a request".into());
    }
    for (index, event) in events.iter().enumerate() {
        validate_event(event).map_err(|problem| format!("events[{index}]: {problem}"))?;
    }
    Ok(events)
}

/// `POST /v1/instances/{id}/ssh-sessions`: session events, deduplicated by `id`.
pub(crate) async fn post_sessions(
    State(cp): State<ControlPlane>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let batch = match cp.agent_body(&instance, &headers, &body).await {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    let events = match validate_batch(&batch) {
        Ok(events) => events,
        Err(problem) => return error(StatusCode::UNPROCESSABLE_ENTITY, &problem),
    };
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
pub(crate) async fn put_status(
    State(cp): State<ControlPlane>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let status = match cp.agent_body(&instance, &headers, &body).await {
        Ok(status) => status,
        Err(response) => return response,
    };
    if let Err(problem) = validate_status(&status) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &problem);
    }
    let mut inner = cp.lock();
    inner.stats.status_puts += 1;
    inner.statuses.insert(instance, status);
    StatusCode::NO_CONTENT.into_response()
}

/// Checks a `PUT .../agent-status` body: its required fields, `files`
/// ([`check_files`]) and `host_keys` ([`check_host_keys`]); the error names the field.
pub fn validate_status(status: &Value) -> Result<(), String> {
    for field in ["agent_version", "boot_id"] {
        if !status.get(field).is_some_and(Value::is_string) {
            return Err(format!("{field} must be a string"));
        }
    }
    for field in ["keys", "rejected_keys", "active_sessions"] {
        if !status.get(field).is_some_and(Value::is_array) {
            return Err(format!("{field} must be an array"));
        }
    }
    check_files(status)?;
    check_host_keys(status)
}

/// `files` ("Additions to v1"): optional (an older agent does not send it); when sent,
/// each entry is checked, with the rules that tie its fields together: a `behind` file
/// has an `error` and a `behind_since`, an `in_sync` one has neither and no key left to
/// add or remove, and `last_error` is non-null while any file is behind.
pub fn check_files(status: &Value) -> Result<(), String> {
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

impl ControlPlane {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_field_by_field() {
        let good = json!({"id": "e1", "type": "session_opened", "at": "2026-11-25T07:01:02.345Z",
            "user": "ubuntu", "auth_method": "publickey", "key_id": null, "fingerprint": null,
            "source_ip": "2001:db8::1", "source_port": 51234, "session_id": "b:42"});
        assert_eq!(validate_event(&good), Ok(()));
        let mut bad = good.clone();
        bad["type"] = json!("session_started");
        assert!(validate_event(&bad).is_err());
        let mut bad = good.clone();
        bad["source_ip"] = json!("not-an-ip");
        assert!(validate_event(&bad).unwrap_err().contains("source_ip"));
        // contested: a boolean; when true, no key may be named.
        let mut contested = good.clone();
        contested["contested"] = json!(true);
        assert_eq!(validate_event(&contested), Ok(()));
        contested["key_id"] = json!("key_a");
        assert!(validate_event(&contested)
            .unwrap_err()
            .contains("contested"));
        let mut bad = good;
        bad["contested"] = json!("yes");
        assert!(validate_event(&bad).unwrap_err().contains("contested"));
    }
}
