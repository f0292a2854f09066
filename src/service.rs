//! Talking to the service manager (sd_notify): READY once a key set is in force, STATUS
//! lines that say what the agent is doing, and the watchdog fed from the main loop so a
//! hung loop is restarted. Outside systemd every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// How long start-up waits for a first key set before saying READY anyway: sshd is
/// ordered after the agent and must not be held up by an unreachable control plane.
pub const READY_AT_THE_LATEST: Duration = Duration::from_secs(10);

pub fn ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
}

/// Announces a reload; [`ready`] ends it.
pub fn reloading() {
    let _ = sd_notify::notify(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to feed the watchdog (half its timeout), when the unit has one.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

pub fn feed_watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}
