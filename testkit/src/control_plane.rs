//! The reference control plane served on loopback, and what it recorded for a test.

use std::sync::OnceLock;

use pictor_control_plane::ControlPlane;
use serde_json::Value;

pub const INSTANCE: &str = "inst_test";

pub const TOKEN: &str = "test-token-0123456789";

/// A running reference control plane on loopback, served by its own runtime thread.
pub struct Server {
    pub cp: ControlPlane,
    pub url: String,
    _serving: pictor_control_plane::LoopbackServer,
}

impl Server {
    pub fn start() -> Server {
        let cp = ControlPlane::new();
        cp.register_instance(INSTANCE, TOKEN);
        let serving = cp.serve_on_loopback().expect("serve");
        Server {
            cp,
            url: serving.url.clone(),
            _serving: serving,
        }
    }
}

/// The events the control plane accepted for `user` about logins since this test run
/// began (the journal of this boot may hold the same user's sessions of earlier runs).
pub fn events_for(server: &Server, user: &str) -> Vec<Value> {
    let since = test_run_started();
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    server
        .cp
        .events(INSTANCE)
        .into_iter()
        .filter(|e| e["user"] == user)
        .filter(|e| {
            e["at"]
                .as_str()
                .and_then(|at| time::OffsetDateTime::parse(at, rfc3339).ok())
                .is_some_and(|at| at >= since)
        })
        .collect()
}

/// When the first test of this run that logs in began (a second early, for clocks).
pub fn test_run_started() -> time::OffsetDateTime {
    static STARTED: OnceLock<time::OffsetDateTime> = OnceLock::new();
    *STARTED.get_or_init(|| time::OffsetDateTime::now_utc() - time::Duration::seconds(1))
}

/// The active sessions of the last agent status for `user`, of logins since this test
/// run began.
pub fn active_for(server: &Server, user: &str) -> Vec<Value> {
    let since = test_run_started();
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    server
        .cp
        .status(INSTANCE)
        .and_then(|s| s["active_sessions"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["user"] == user)
        .filter(|s| {
            s["since"]
                .as_str()
                .and_then(|at| time::OffsetDateTime::parse(at, rfc3339).ok())
                .is_some_and(|at| at >= since)
        })
        .collect()
}
