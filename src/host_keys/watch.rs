//! Following the host key files: a scan at start, then one after every change in the
//! patterns' directories (inotify), gathered for [`SETTLE`]; a new report is published
//! only when it differs. A directory that does not exist yet is looked for again every
//! [`RECHECK`] (and everything rescanned then).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::scan::{scan, Pattern};
use super::HostKeysReport;

/// Changes closer together than this make one scan (`ssh-keygen -A` writes several files).
pub const SETTLE: Duration = Duration::from_millis(200);
/// How often everything is scanned again without an event, and a missing directory
/// looked for.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Runs until dropped: publishes each new report on `tx`.
pub async fn run(patterns: Vec<Pattern>, tx: watch::Sender<HostKeysReport>) {
    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !matches!(event.kind, EventKind::Access(_)) {
                let _ = events_tx.send(());
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
        let report = tokio::task::spawn_blocking(move || scan(&scanning))
            .await
            .unwrap_or_default();
        if *tx.borrow() != report {
            for skipped in report
                .skipped
                .iter()
                .filter(|s| !tx.borrow().skipped.contains(s))
            {
                warn!("host key file skipped, never sent: {skipped}");
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
            event = events.recv(), if watcher.is_some() => {
                if event.is_none() {
                    // The watcher is gone: keep rescanning on the timer alone.
                    watcher = None;
                }
                tokio::time::sleep(SETTLE).await;
                while events.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}
