//! Following the host key files: a scan at start, then one after every change in the
//! patterns' directories (inotify), gathered for [`SETTLE`]; a new report is published
//! only when it differs. A directory that does not exist yet is looked for again every
//! [`RECHECK`] (and everything rescanned then).
//!
//! **Bounded cost.** Whoever can write a watched directory decides how often it
//! changes. Events only set a flag (they are never queued one by one), and a scan
//! triggered by one starts no sooner than [`SETTLE`] after it and [`rescan_gap`] after
//! the previous scan ended: at least [`MIN_RESCAN`], and longer when a scan is slow, so
//! that scanning takes at most about one part in [`COST_FACTOR`] of a core however busy
//! the directory is.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

use super::scan::{scan, Pattern};
use super::HostKeysReport;

/// Changes closer together than this make one scan (`ssh-keygen -A` writes several files).
pub const SETTLE: Duration = Duration::from_millis(200);
/// How often everything is scanned again without an event, and a missing directory
/// looked for.
pub const RECHECK: Duration = Duration::from_secs(300);

/// The least time between the end of one scan and the start of the next one an event
/// triggers.
pub const MIN_RESCAN: Duration = Duration::from_secs(1);
/// A scan that took `t` is followed by at least `t × COST_FACTOR` of rest.
pub const COST_FACTOR: u32 = 20;
/// New skipped files warned about per scan at most (the rest are counted).
const MAX_WARNINGS: usize = 10;

/// The rest owed after a scan that took `took`: [`MIN_RESCAN`], or `took` ×
/// [`COST_FACTOR`] when longer. Pure.
pub fn rescan_gap(took: Duration) -> Duration {
    took.saturating_mul(COST_FACTOR).max(MIN_RESCAN)
}

/// How long to wait, once an event arrived `since_scan` after the last scan ended
/// (which took `took`), before scanning again: the settle, and whatever rest is still
/// owed. Pure.
pub fn wait_before_rescan(since_scan: Duration, took: Duration) -> Duration {
    SETTLE.max(rescan_gap(took).saturating_sub(since_scan))
}

/// Runs until dropped: publishes each new report on `tx`.
pub async fn run(patterns: Vec<Pattern>, tx: watch::Sender<HostKeysReport>) {
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !matches!(event.kind, EventKind::Access(_)) {
                // One stored permit however many events: nothing queues up.
                signal.notify_one();
            }
        }
    });
    let mut watcher: Option<RecommendedWatcher> = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(
                "cannot watch the host key directories ({e}); they are read every {} s",
                RECHECK.as_secs()
            );
            None
        }
    };
    let dirs: BTreeSet<PathBuf> = patterns.iter().map(|p| p.dir.clone()).collect();
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        if let Some(w) = watcher.as_mut() {
            let missing: Vec<PathBuf> = dirs.difference(&watched).cloned().collect();
            for dir in missing {
                if w.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
                    watched.insert(dir);
                }
            }
        }
        let scanning = patterns.clone();
        let started = Instant::now();
        let report = tokio::task::spawn_blocking(move || scan(&scanning))
            .await
            .unwrap_or_default();
        let scanned = Instant::now();
        let took = scanned - started;
        if *tx.borrow() != report {
            let new: Vec<&String> = report
                .skipped
                .iter()
                .filter(|s| !tx.borrow().skipped.contains(s))
                .collect();
            for skipped in new.iter().take(MAX_WARNINGS) {
                warn!("host key file skipped, never sent: {skipped}");
            }
            if new.len() > MAX_WARNINGS {
                warn!(
                    "{} more host key files skipped, never sent (`pictor-agent host-keys` lists them)",
                    new.len() - MAX_WARNINGS
                );
            }
            info!(
                keys = report.keys.len(),
                "host keys: {}",
                report
                    .keys
                    .iter()
                    .map(|k| format!(
                        "{} {}{}",
                        k.key_type,
                        k.fingerprint,
                        if k.certificate.is_some() {
                            " (certified)"
                        } else {
                            ""
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            tx.send_replace(report);
        }
        tokio::select! {
            () = changed.notified(), if watcher.is_some() => {
                tokio::time::sleep(wait_before_rescan(scanned.elapsed(), took)).await;
            }
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescans_are_settled_spaced_and_slowed_by_their_own_cost() {
        // A quick scan: the settle, and a second at least since the last one ended.
        let quick = Duration::from_millis(2);
        assert_eq!(wait_before_rescan(Duration::ZERO, quick), MIN_RESCAN);
        assert_eq!(
            wait_before_rescan(Duration::from_millis(900), quick),
            SETTLE
        );
        assert_eq!(wait_before_rescan(Duration::from_secs(60), quick), SETTLE);
        // A slow scan (a huge directory): rest twenty times its cost.
        let slow = Duration::from_millis(300);
        assert_eq!(rescan_gap(slow), Duration::from_secs(6));
        assert_eq!(
            wait_before_rescan(Duration::from_secs(1), slow),
            Duration::from_secs(5)
        );
        // Whatever the events, scanning is at most 1/(COST_FACTOR+1) of the time.
        for took in [1u64, 50, 300, 5_000] {
            let took = Duration::from_millis(took);
            let cycle = took + wait_before_rescan(Duration::ZERO, took);
            assert!(took.as_secs_f64() / cycle.as_secs_f64() <= 1.0 / f64::from(COST_FACTOR));
        }
    }
}
