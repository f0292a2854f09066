//! When the daemon tells the service manager it is READY (pure; its deadline is tested on
//! tokio's paused clock).
//!
//! READY once a key set is in force and its files have answered: the cached set at
//! start-up, else the first fetch. Without either (control plane unreachable, nothing
//! cached), READY anyway at [`READY_AT_THE_LATEST`], so sshd, ordered after the agent, is
//! never held up for long.

use tokio::time::Instant;

pub use crate::service::READY_AT_THE_LATEST;

/// Why READY was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// A key set is in force and its files answered.
    KeySet,
    /// The deadline passed with no key set.
    Deadline,
}

/// READY, once.
#[derive(Debug)]
pub struct Readiness {
    deadline: Instant,
    ready: bool,
}

impl Readiness {
    /// Started now: the deadline runs from here.
    pub fn new(now: Instant) -> Readiness {
        Readiness {
            deadline: now + READY_AT_THE_LATEST,
            ready: false,
        }
    }

    /// After an event: READY when a set is in force and no fresh write is out.
    pub fn after_event(&mut self, applied: bool, settling: bool) -> Option<Ready> {
        if self.ready || !applied || settling {
            return None;
        }
        self.ready = true;
        Some(Ready::KeySet)
    }

    /// The deadline to wait for; `None` once READY was sent.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.ready).then_some(self.deadline)
    }

    /// At the deadline: READY without a key set, if not sent yet.
    pub fn at_deadline(&mut self, now: Instant) -> Option<Ready> {
        if self.ready || now < self.deadline {
            return None;
        }
        self.ready = true;
        Some(Ready::Deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn without_a_key_set_ready_comes_at_the_deadline_and_only_then() {
        let mut readiness = Readiness::new(Instant::now());
        assert_eq!(readiness.after_event(false, false), None);
        assert_eq!(
            readiness.deadline(),
            Some(Instant::now() + READY_AT_THE_LATEST)
        );
        tokio::time::advance(READY_AT_THE_LATEST - Duration::from_millis(1)).await;
        assert_eq!(readiness.at_deadline(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(readiness.at_deadline(Instant::now()), Some(Ready::Deadline));
        assert_eq!(readiness.deadline(), None, "once");
        assert_eq!(readiness.after_event(true, false), None, "once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_set_is_ready_once_its_files_answered_and_the_deadline_is_off() {
        let mut readiness = Readiness::new(Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            readiness.after_event(true, true),
            None,
            "files still being written"
        );
        assert_eq!(readiness.after_event(true, false), Some(Ready::KeySet));
        tokio::time::advance(READY_AT_THE_LATEST).await;
        assert_eq!(readiness.at_deadline(Instant::now()), None);
        assert_eq!(readiness.deadline(), None);
    }
}
