//! Faults an operator (or a test) arms on the agents' endpoints: slow answers, 5xx, 429,
//! garbage, oversized and dropped bodies, for a number of requests or until cleared.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::error;
use crate::instance_api::with_etag;
use crate::ControlPlane;

/// A fault the key list endpoint (and the other agent endpoints) will show.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Wait this long before answering normally.
    Slow { ms: u64 },
    /// Answer with this status (5xx) and an error body.
    ServerError { status: u16 },
    /// `429 Too Many Requests` with `Retry-After`.
    TooManyRequests { retry_after: u64 },
    /// `200` with a body that is not JSON of the contract's shape.
    Garbage,
    /// `200` with a body of this many bytes; `chunked` leaves out Content-Length.
    Oversized { bytes: usize, chunked: bool },
    /// Send headers, then drop the connection mid-body.
    Drop,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ArmedFault {
    pub(crate) fault: Fault,
    /// Requests left to hit; `None`: until cleared.
    pub(crate) remaining: Option<u64>,
}

impl ControlPlane {
    /// Arms a fault for the next `count` agent requests (`None`: until cleared).
    pub fn set_fault(&self, fault: Fault, count: Option<u64>) {
        self.lock().fault = Some(ArmedFault {
            fault,
            remaining: count,
        });
    }

    pub fn clear_fault(&self) {
        self.lock().fault = None;
    }

    /// Takes one shot of the armed fault, if any.
    fn take_fault(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let armed = inner.fault.as_mut()?;
        let fault = armed.fault.clone();
        match &mut armed.remaining {
            Some(0) => {
                inner.fault = None;
                return None;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    inner.fault = None;
                }
            }
            None => {}
        }
        Some(fault)
    }

    /// Applies a fault: `Ok(())` to go on normally (after a slow wait), `Err` to answer it.
    pub(crate) async fn fault_response(&self) -> Result<(), Response> {
        let Some(fault) = self.take_fault() else {
            return Ok(());
        };
        match fault {
            Fault::Slow { ms } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
            Fault::ServerError { status } => Err(error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
            )),
            Fault::TooManyRequests { retry_after } => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                Err(response)
            }
            Fault::Garbage => Err(with_etag(
                StatusCode::OK,
                "\"garbage\"",
                Body::from("{\"version\": \"v9\", \"keys\": [{\"id\": 7"),
            )),
            Fault::Oversized { bytes, chunked } => {
                let body = if chunked {
                    let chunk = vec![b' '; 64 * 1024];
                    let chunks = bytes.div_ceil(chunk.len());
                    Body::from_stream(futures_util::stream::iter(
                        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                    ))
                } else {
                    Body::from(vec![b' '; bytes])
                };
                Err(with_etag(StatusCode::OK, "\"huge\"", body))
            }
            Fault::Drop => {
                let stream = futures_util::stream::iter([
                    Ok(b"{\"version\":".to_vec()),
                    Err(std::io::Error::other("connection dropped by fault switch")),
                ]);
                Err(with_etag(
                    StatusCode::OK,
                    "\"dropped\"",
                    Body::from_stream(stream),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_run_out_after_their_count() {
        let cp = ControlPlane::new();
        cp.set_fault(Fault::Garbage, Some(2));
        assert!(cp.take_fault().is_some());
        assert!(cp.take_fault().is_some());
        assert!(cp.take_fault().is_none());
    }
}
