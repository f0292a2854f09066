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

/// Runs until dropped: wakes on `wake` (new events) and after backoff.
pub async fn deliver(client: Arc<SharedClient>, outbox: Arc<Mutex<Outbox>>, wake: Arc<Notify>) {
    let mut failures = 0u32;
    let mut batch_size = MAX_BATCH;
    loop {
        let batch = {
            let outbox = outbox.lock().unwrap_or_else(|p| p.into_inner());
            outbox.read(batch_size)
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
        let mut outbox_guard = outbox.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                failures = 0;
                batch_size = MAX_BATCH;
                debug!(events = batch.events.len(), "events accepted");
                if let Err(e) = outbox_guard.ack(&batch) {
                    warn!("{e}");
                }
            }
            Err(ApiError::Rejected { status, message }) => {
                if batch.events.len() > 1 {
                    batch_size = batch.events.len() / 2;
                } else {
                    if let Err(e) =
                        outbox_guard.dead_letter(&batch, &format!("{status}: {message}"))
                    {
                        warn!("{e}");
                    }
                    batch_size = MAX_BATCH;
                }
            }
            Err(e) => {
                drop(outbox_guard);
                failures += 1;
                let delay = backoff_delay(
                    failures,
                    client.config().backoff_max,
                    e.retry_after(),
                    fastrand::f64(),
                );
                warn!(
                    pending = outbox.lock().unwrap_or_else(|p| p.into_inner()).pending(),
                    retry_in_ms = delay.as_millis() as u64,
                    "sending session events failed: {e}"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}
