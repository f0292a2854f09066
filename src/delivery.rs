//! Sends the outbox to the control plane: batches of up to 500 events, retried with
//! backoff until accepted. A batch rejected as malformed (`400`/`422`) is halved until
//! the bad event is alone; that one is set aside in the dead-letter file and the rest
//! go through, so one bad event never blocks those behind it and is never retried in a loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::api::shared::SharedClient;
use crate::api::ApiError;
use crate::outbox::Outbox;
use crate::schedule::backoff_delay;

/// The contract's largest batch.
pub const MAX_BATCH: usize = 500;

/// Runs `work` on the outbox on the blocking pool: the outbox reads and fsyncs, and its
/// lock may be held by the sessions thread meanwhile; neither may stall the runtime.
async fn with_outbox<T: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    work: impl FnOnce(&mut Outbox) -> T + Send + 'static,
) -> Option<T> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || {
        let mut outbox = outbox.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut outbox)
    })
    .await
    .ok()
}

/// Runs until dropped: wakes on `wake` (new events) and after backoff.
pub async fn deliver(client: Arc<SharedClient>, outbox: Arc<Mutex<Outbox>>, wake: Arc<Notify>) {
    let mut failures = 0u32;
    let mut batch_size = MAX_BATCH;
    loop {
        let Some(batch) = with_outbox(&outbox, move |o| o.read(batch_size)).await else {
            return;
        };
        let batch = match batch {
            Ok(batch) if batch.events.is_empty() => {
                wake.notified().await;
                continue;
            }
            Ok(batch) => batch,
            Err(e) => {
                warn!("{e}");
                failures += 1;
                tokio::time::sleep(backoff_delay(
                    failures,
                    Duration::from_secs(60),
                    None,
                    fastrand::f64(),
                ))
                .await;
                continue;
            }
        };
        let result = match client.get() {
            Ok(api) => api.post_events(&batch.events).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                failures = 0;
                batch_size = MAX_BATCH;
                debug!(events = batch.events.len(), "events accepted");
                if let Some(Err(e)) = with_outbox(&outbox, move |o| o.ack(&batch)).await {
                    warn!("{e}");
                }
            }
            Err(ApiError::Rejected { status, message }) => {
                if batch.events.len() > 1 {
                    batch_size = batch.events.len() / 2;
                } else {
                    let reason = format!("{status}: {message}");
                    let set_aside = with_outbox(&outbox, move |o| o.dead_letter(&batch, &reason));
                    if let Some(Err(e)) = set_aside.await {
                        warn!("{e}");
                    }
                    batch_size = MAX_BATCH;
                }
            }
            Err(e) => {
                failures += 1;
                let delay = backoff_delay(
                    failures,
                    client.config().backoff_max,
                    e.retry_after(),
                    fastrand::f64(),
                );
                let pending = with_outbox(&outbox, |o| o.pending()).await.unwrap_or(0);
                warn!(
                    pending,
                    retry_in_ms = delay.as_millis() as u64,
                    "sending session events failed: {e}"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}
