//! `/admin/...`: keys, instances, faults, statistics, pending revocations and
//! `known_hosts`, every call behind the admin token ([`crate::access::admin_only`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error;
use crate::known_hosts_response;
use crate::state::{now_rfc3339, valid_id};
use crate::Fault;
use crate::NewKey;
use crate::{access, ControlPlane};

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

impl ControlPlane {
    /// `/admin/...`, each call behind the admin token.
    pub(crate) fn admin_routes(&self) -> Router<ControlPlane> {
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
}
