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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::sync::watch;

pub mod access;
pub mod account;
mod admin;
mod faults;
mod instance_api;
mod known_hosts;
mod state;

pub use access::{AdminTokenError, InvalidHostName};
pub use faults::Fault;
pub(crate) use instance_api::error;
pub use instance_api::{
    check_files, check_host_keys, validate_batch, validate_event, validate_status,
};
use instance_api::{get_keys, post_sessions, put_status};
pub(crate) use known_hosts::known_hosts_response;
pub(crate) use state::Inner;
pub use state::{fingerprint, Key, NewKey, Stats};

/// Longest long-poll wait the contract allows.
pub const MAX_WAIT_SECONDS: u64 = 300;
/// Most events one `POST .../ssh-sessions` may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 500;

/// The control plane, shared between its HTTP handlers and in-process callers.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// The admin token, the host names browsers may use, the source of key ids.
    access: Arc<Mutex<access::Access>>,
    /// Bumped at every change of the key set; long-polls wait on it.
    pub(crate) changed: watch::Sender<u64>,
}

impl Default for ControlPlane {
    fn default() -> Self {
        Self::new()
    }
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

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn access(&self) -> MutexGuard<'_, access::Access> {
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
}

/// A control plane being served on loopback (see [`ControlPlane::serve_on_loopback`]).
pub struct LoopbackServer {
    /// `http://127.0.0.1:PORT`, the agent's `base_url`.
    pub url: String,
    /// The runtime serving it; a caller may spawn its own tasks on it too.
    pub runtime: tokio::runtime::Runtime,
}
