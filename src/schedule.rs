//! When to ask the control plane next, as a pure function of what the last request did.
//!
//! - Long-poll is the normal mode: after an answer, ask again at once and let the server
//!   hold the request. A `304` that comes back much sooner than the wait means something
//!   between us does not hold requests; then fall back to plain polling so a broken
//!   proxy cannot turn the fleet into a hot loop.
//! - Plain polling (`long_poll_seconds = 0`) asks every `poll_interval`, with ±10 % jitter
//!   so a fleet started together does not stay in step.
//! - On errors: exponential backoff with full jitter (a uniform delay between zero and
//!   `base * 2^failures`, capped), and a server's `Retry-After` as the floor.

use std::time::Duration;

/// First backoff ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What the last request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `200` with a key list (valid or not, see `Failed` for a rejected one).
    Changed,
    /// `304`, after the request was open for `held`.
    NotModified { held: Duration },
    /// Anything else; `retry_after` when the server gave one.
    Failed { retry_after: Option<Duration> },
}

/// The next request: after `delay`, with this long-poll `wait` (zero: plain request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub delay: Duration,
    pub wait: Duration,
}

/// The schedule's memory: the settings and the current run of failures.
#[derive(Debug, Clone)]
pub struct Schedule {
    long_poll: Duration,
    poll_interval: Duration,
    backoff_max: Duration,
    failures: u32,
}

impl Schedule {
    pub fn new(long_poll: Duration, poll_interval: Duration, backoff_max: Duration) -> Schedule {
        Schedule {
            long_poll,
            poll_interval,
            backoff_max,
            failures: 0,
        }
    }

    /// How many requests in a row have failed.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The next request after `outcome`. `random` is uniform in `[0, 1)`: the caller
    /// supplies it, so this stays a pure function.
    pub fn next(&mut self, outcome: Outcome, random: f64) -> Next {
        let random = random.clamp(0.0, 1.0);
        match outcome {
            Outcome::Changed => {
                self.failures = 0;
                if self.long_poll.is_zero() {
                    self.poll(random)
                } else {
                    Next {
                        delay: Duration::ZERO,
                        wait: self.long_poll,
                    }
                }
            }
            Outcome::NotModified { held } => {
                self.failures = 0;
                if self.long_poll.is_zero() {
                    self.poll(random)
                } else if held >= self.long_poll / 2 {
                    Next {
                        delay: Duration::ZERO,
                        wait: self.long_poll,
                    }
                } else {
                    Next {
                        delay: self.jittered_interval(random),
                        wait: self.long_poll,
                    }
                }
            }
            Outcome::Failed { retry_after } => {
                self.failures = self.failures.saturating_add(1);
                Next {
                    delay: backoff_delay(self.failures, self.backoff_max, retry_after, random),
                    wait: self.long_poll,
                }
            }
        }
    }

    fn poll(&self, random: f64) -> Next {
        Next {
            delay: self.jittered_interval(random),
            wait: Duration::ZERO,
        }
    }

    fn jittered_interval(&self, random: f64) -> Duration {
        self.poll_interval.mul_f64(0.9 + 0.2 * random)
    }
}

/// The one exponential backoff: `first × 2^(failures-1)` (`failures` = 1 after the first
/// failure), at most `max`. Callers add their jitter: full jitter for the control plane
/// ([`backoff_delay`]), half for a local file ([`crate::enforce::files::retry_delay`]).
pub fn backoff_ceiling(first: Duration, failures: u32, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    first.saturating_mul(1 << exponent).min(max)
}

/// The delay after the `failures`-th failure in a row: full jitter over
/// `BACKOFF_BASE × 2^(failures-1)` capped at `max`, never less than `retry_after`
/// (itself capped at [`MAX_RETRY_AFTER`]). Shared by every call that retries.
pub fn backoff_delay(
    failures: u32,
    max: Duration,
    retry_after: Option<Duration>,
    random: f64,
) -> Duration {
    let ceiling = backoff_ceiling(BACKOFF_BASE, failures, max);
    let jittered = ceiling.mul_f64(random.clamp(0.0, 1.0));
    jittered.max(retry_after.unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn long_poll() -> Schedule {
        Schedule::new(S(60), S(30), S(300))
    }

    #[test]
    fn long_poll_asks_again_at_once() {
        let mut s = long_poll();
        assert_eq!(
            s.next(Outcome::Changed, 0.5),
            Next {
                delay: S(0),
                wait: S(60)
            }
        );
        assert_eq!(
            s.next(Outcome::NotModified { held: S(60) }, 0.5),
            Next {
                delay: S(0),
                wait: S(60)
            }
        );
    }

    #[test]
    fn early_304_falls_back_to_polling_pace() {
        let mut s = long_poll();
        let next = s.next(
            Outcome::NotModified {
                held: Duration::from_millis(5),
            },
            0.5,
        );
        assert_eq!(next.delay, S(30));
    }

    #[test]
    fn plain_polling_jitters_around_the_interval() {
        let mut s = Schedule::new(S(0), S(30), S(300));
        assert_eq!(
            s.next(Outcome::Changed, 0.0),
            Next {
                delay: S(27),
                wait: S(0)
            }
        );
        assert_eq!(
            s.next(Outcome::NotModified { held: S(0) }, 1.0),
            Next {
                delay: S(33),
                wait: S(0)
            }
        );
    }

    #[test]
    fn backoff_doubles_with_full_jitter_up_to_the_cap() {
        let mut s = long_poll();
        let ceilings: Vec<Duration> = (0..12)
            .map(|_| s.next(Outcome::Failed { retry_after: None }, 1.0).delay)
            .collect();
        assert_eq!(&ceilings[..4], &[S(1), S(2), S(4), S(8)]);
        assert_eq!(ceilings[11], S(300), "capped at backoff_max");
        assert_eq!(
            s.next(Outcome::Failed { retry_after: None }, 0.0).delay,
            S(0),
            "full jitter reaches zero"
        );
        s.next(Outcome::Changed, 0.5);
        assert_eq!(s.failures(), 0);
        assert_eq!(
            s.next(Outcome::Failed { retry_after: None }, 1.0).delay,
            S(1),
            "reset after success"
        );
    }

    #[test]
    fn retry_after_is_a_floor_and_is_capped() {
        let mut s = long_poll();
        assert_eq!(
            s.next(
                Outcome::Failed {
                    retry_after: Some(S(7))
                },
                0.0
            )
            .delay,
            S(7)
        );
        assert_eq!(
            s.next(
                Outcome::Failed {
                    retry_after: Some(S(1_000_000))
                },
                0.0
            )
            .delay,
            MAX_RETRY_AFTER
        );
    }
}
