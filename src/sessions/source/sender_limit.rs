//! How much each sender (by the kernel's uid) may have forwarded from the syslog socket
//! to the agent's stderr (pure): a token bucket per uid, so a user flooding `logger`
//! loses their own lines and nobody else's, and what was dropped is counted. Time comes
//! in as an argument (a monotonic offset).

use std::collections::HashMap;
use std::time::Duration;

/// Lines a second each uid may send on average.
pub const RATE: u32 = 200;
/// Lines a uid may send at once.
pub const BURST: u32 = 1000;
/// Most uids followed at once: past it, the fullest buckets are forgotten (a full
/// bucket is what a new one starts as, so nothing is lost by forgetting it).
const MAX_SENDERS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// The buckets, and what each uid had dropped since the last [`SenderLimits::take_dropped`].
#[derive(Debug, Default)]
pub struct SenderLimits {
    buckets: HashMap<u32, Bucket>,
    dropped: HashMap<u32, u64>,
}

impl SenderLimits {
    /// True when `uid` may have one more line forwarded at `now`.
    pub fn admit(&mut self, uid: u32, now: Duration) -> bool {
        if self.buckets.len() >= MAX_SENDERS && !self.buckets.contains_key(&uid) {
            self.buckets.retain(|_, b| {
                refill(b, now);
                b.tokens < f64::from(BURST)
            });
            if self.buckets.len() >= MAX_SENDERS {
                // Thousands of uids sending at once (only root can make them): start over.
                self.buckets.clear();
            }
        }
        let bucket = self.buckets.entry(uid).or_insert(Bucket {
            tokens: f64::from(BURST),
            at: now,
        });
        refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            *self.dropped.entry(uid).or_default() += 1;
            false
        }
    }

    /// What was dropped, per uid, since the last call (sorted by uid).
    pub fn take_dropped(&mut self) -> Vec<(u32, u64)> {
        let mut dropped: Vec<(u32, u64)> = self.dropped.drain().collect();
        dropped.sort_unstable();
        dropped
    }
}

fn refill(bucket: &mut Bucket, now: Duration) {
    let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * f64::from(RATE)).min(f64::from(BURST));
    bucket.at = now.max(bucket.at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_user_loses_their_own_lines_only() {
        let mut limits = SenderLimits::default();
        let t0 = Duration::from_secs(100);
        let admitted = (0..5000).filter(|_| limits.admit(1000, t0)).count();
        assert_eq!(admitted, BURST as usize);
        assert!(limits.admit(0, t0), "root's lines still pass");
        assert!(limits.admit(1001, t0), "another user's still pass");
        assert_eq!(limits.take_dropped(), [(1000, 4000)]);
        assert!(limits.take_dropped().is_empty(), "counted once");
        // A second later, RATE more.
        let later = t0 + Duration::from_secs(1);
        let admitted = (0..5000).filter(|_| limits.admit(1000, later)).count();
        assert_eq!(admitted, RATE as usize);
        // A clock that went backwards takes nothing away and gives nothing.
        assert!(!limits.admit(1000, t0));
    }

    #[test]
    fn many_senders_are_bounded() {
        let mut limits = SenderLimits::default();
        let t = Duration::from_secs(1);
        for uid in 0..(MAX_SENDERS as u32 * 2) {
            assert!(limits.admit(uid, t));
        }
        assert!(limits.buckets.len() <= MAX_SENDERS);
    }
}
