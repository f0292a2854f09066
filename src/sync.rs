//! The fetch task: follows the account key list and hands validated key sets to the
//! main loop. It never touches a file; a failed or malformed fetch only reports an error,
//! so the keys in force stay as they were.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use std::sync::Arc;

use crate::api::shared::SharedClient;
use crate::api::{ApiClient, ApiError, KeyListAnswer};
use crate::keys::{KeyListError, KeySet};
use crate::schedule::{Next, Outcome, Schedule};

/// A validated key list and its ETag.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub key_set: KeySet,
    pub etag: Option<String>,
}

/// What the fetch task reports to the main loop.
#[derive(Debug)]
pub enum SyncEvent {
    Fetched(Fetched),
    Failed(String),
}

/// Why one fetch gave no key set.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("key list rejected whole: {0}")]
    List(#[from] KeyListError),
    #[error("the server answered 304 to a request without If-None-Match")]
    UnexpectedNotModified,
}

/// One full fetch (no ETag, no wait), validated.
pub async fn fetch_full(client: &ApiClient) -> Result<Fetched, SyncError> {
    match client.fetch_keys(None, Duration::ZERO).await? {
        KeyListAnswer::Modified { list, etag } => Ok(Fetched {
            key_set: KeySet::from_list(&list)?,
            etag,
        }),
        KeyListAnswer::NotModified => Err(SyncError::UnexpectedNotModified),
    }
}

/// Follows the key list until the receiver goes away: a full fetch first, then long-poll
/// (or polling) with the ETag, backing off on errors. A client that cannot be built (a
/// missing or bad token file) is retried with backoff instead of stopping the agent.
pub async fn follow(shared: Arc<SharedClient>, events: mpsc::Sender<SyncEvent>) {
    let config = shared.config();
    let mut schedule = Schedule::new(config.long_poll, config.poll_interval, config.backoff_max);
    let mut client: Option<Arc<ApiClient>> = None;
    let mut etag: Option<String> = None;
    let mut last_set: Option<KeySet> = None;
    let mut next = Next {
        delay: Duration::ZERO,
        wait: Duration::ZERO,
    };
    loop {
        tokio::time::sleep(next.delay).await;
        if client.is_none() {
            match shared.get() {
                Ok(built) => client = Some(built),
                Err(error) => {
                    if events
                        .send(SyncEvent::Failed(error.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    next = schedule.next(Outcome::Failed { retry_after: None }, fastrand::f64());
                    continue;
                }
            }
        }
        let Some(api) = client.as_ref() else { continue };
        let started = Instant::now();
        let (outcome, event) = match api.fetch_keys(etag.as_deref(), next.wait).await {
            Ok(KeyListAnswer::Modified {
                list,
                etag: new_etag,
            }) => match KeySet::from_list(&list) {
                Ok(key_set) => {
                    let unchanged = last_set.as_ref() == Some(&key_set);
                    let outcome = if new_etag.is_none() || unchanged {
                        // No ETag to wait on, or a "change" that changed nothing: do not
                        // ask again at once, or a misbehaving server makes a hot loop.
                        Outcome::NotModified {
                            held: started.elapsed(),
                        }
                    } else {
                        Outcome::Changed
                    };
                    etag = new_etag.clone();
                    last_set = Some(key_set.clone());
                    (
                        outcome,
                        Some(SyncEvent::Fetched(Fetched {
                            key_set,
                            etag: new_etag,
                        })),
                    )
                }
                Err(error) => (
                    Outcome::Failed { retry_after: None },
                    Some(SyncEvent::Failed(SyncError::from(error).to_string())),
                ),
            },
            Ok(KeyListAnswer::NotModified) if etag.is_none() => (
                Outcome::Failed { retry_after: None },
                Some(SyncEvent::Failed(
                    SyncError::UnexpectedNotModified.to_string(),
                )),
            ),
            Ok(KeyListAnswer::NotModified) => (
                Outcome::NotModified {
                    held: started.elapsed(),
                },
                None,
            ),
            Err(error) => {
                let retry_after = error.retry_after();
                (
                    Outcome::Failed { retry_after },
                    Some(SyncEvent::Failed(error.to_string())),
                )
            }
        };
        if let Some(event) = event {
            if events.send(event).await.is_err() {
                return;
            }
        }
        next = schedule.next(outcome, fastrand::f64());
        if matches!(outcome, Outcome::Failed { .. }) {
            tracing::debug!(
                delay_ms = next.delay.as_millis() as u64,
                failures = schedule.failures(),
                "backing off"
            );
        }
    }
}
