//! The kernel's boot clock (CLOCK_BOOTTIME) in clock ticks since boot: the clock of a
//! process's start time in `/proc/PID/stat`, so the one every "was this process there
//! before that moment" question is asked in. Start times, when a line was read and when a
//! key left the set are all [`BootTicks`]; the arithmetic is pure, and the two reads of
//! the clock ([`now`], [`from_monotonic_us`]) and of its rate ([`rate`]) are the I/O edge.

use std::num::NonZeroU64;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use serde::{Deserialize, Serialize};

/// A moment on the boot clock, in clock ticks since boot.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BootTicks(u64);

impl BootTicks {
    /// The latest moment there is: "at any time" for a bound that must not refuse.
    pub const MAX: BootTicks = BootTicks(u64::MAX);

    pub const fn new(ticks: u64) -> BootTicks {
        BootTicks(ticks)
    }

    pub const fn ticks(self) -> u64 {
        self.0
    }

    /// `ticks` later, saturating.
    pub const fn plus_ticks(self, ticks: u64) -> BootTicks {
        BootTicks(self.0.saturating_add(ticks))
    }

    /// `span` later, saturating.
    pub fn plus(self, span: Duration, rate: TickRate) -> BootTicks {
        self.plus_ticks(rate.ticks_in(span))
    }

    /// How long after `earlier` this is (zero when it is not after it).
    pub fn since(self, earlier: BootTicks, rate: TickRate) -> Duration {
        rate.duration_of(self.0.saturating_sub(earlier.0))
    }
}

/// The clock's rate: ticks per second (`CLK_TCK`, 100 on every Linux build in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickRate(NonZeroU64);

impl TickRate {
    /// The rate Linux has on every architecture it is built for today.
    pub const USUAL: TickRate = TickRate(NonZeroU64::MIN.saturating_add(99));

    /// `None` for zero ticks per second.
    pub fn per_second(ticks: u64) -> Option<TickRate> {
        NonZeroU64::new(ticks).map(TickRate)
    }

    /// Whole ticks in `span` (rounded down).
    pub fn ticks_in(self, span: Duration) -> u64 {
        let per_second = u128::from(self.0.get());
        let ticks = span.as_nanos() * per_second / 1_000_000_000;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The time `ticks` take.
    pub fn duration_of(self, ticks: u64) -> Duration {
        let per_second = self.0.get();
        let nanos = u128::from(ticks % per_second) * 1_000_000_000 / u128::from(per_second);
        Duration::from_secs(ticks / per_second) + Duration::from_nanos(nanos as u64)
    }
}

/// This system's rate (`sysconf(_SC_CLK_TCK)`; the usual 100 if it cannot be read).
pub fn rate() -> TickRate {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .and_then(TickRate::per_second)
        .unwrap_or(TickRate::USUAL)
}

/// Now, on the boot clock.
pub fn now() -> BootTicks {
    BootTicks(rate().ticks_in(read(ClockId::CLOCK_BOOTTIME)))
}

/// A journal entry's `__MONOTONIC_TIMESTAMP` (CLOCK_MONOTONIC, µs) on the boot clock:
/// the two clocks differ by the time the machine spent suspended, measured now.
pub fn from_monotonic_us(monotonic_us: u64) -> BootTicks {
    let boot = read(ClockId::CLOCK_BOOTTIME);
    let suspended = boot.saturating_sub(read(ClockId::CLOCK_MONOTONIC));
    let at = Duration::from_micros(monotonic_us).saturating_add(suspended);
    BootTicks(rate().ticks_in(at))
}

/// A clock's reading as the time since its zero (zero if it cannot be read, which for
/// these two clocks Linux never refuses).
fn read(clock: ClockId) -> Duration {
    clock_gettime(clock).map_or(Duration::ZERO, Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_durations_convert_both_ways_at_any_rate() {
        let usual = TickRate::USUAL;
        assert_eq!(usual.ticks_in(Duration::from_secs(1)), 100);
        assert_eq!(usual.ticks_in(Duration::from_millis(15)), 1);
        assert_eq!(usual.duration_of(150), Duration::from_millis(1500));
        let fast = TickRate::per_second(1024).expect("nonzero");
        assert_eq!(fast.ticks_in(Duration::from_secs(2)), 2048);
        assert_eq!(fast.duration_of(512), Duration::from_millis(500));
        assert_eq!(TickRate::per_second(0), None);
        assert_eq!(usual.ticks_in(Duration::MAX), u64::MAX);
    }

    #[test]
    fn moments_compare_and_subtract_without_going_below_zero() {
        let rate = TickRate::USUAL;
        let start = BootTicks::new(5_000);
        let later = start.plus(Duration::from_secs(2), rate);
        assert_eq!(later, BootTicks::new(5_200));
        assert!(start < later);
        assert_eq!(later.since(start, rate), Duration::from_secs(2));
        assert_eq!(start.since(later, rate), Duration::ZERO);
        assert_eq!(BootTicks::MAX.plus_ticks(1), BootTicks::MAX);
    }

    #[test]
    fn the_saved_form_is_the_plain_number() {
        let saved = serde_json::to_string(&BootTicks::new(4242)).expect("serialize");
        assert_eq!(saved, "4242");
        let read: BootTicks = serde_json::from_str("4242").expect("deserialize");
        assert_eq!(read, BootTicks::new(4242));
    }

    #[test]
    fn the_clock_moves_forward_at_the_systems_rate() {
        let before = now();
        let rate = rate();
        assert!(rate.ticks_in(Duration::from_secs(1)) > 0);
        assert!(now() >= before);
    }
}
