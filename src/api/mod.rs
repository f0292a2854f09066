//! The control plane's HTTP API (contract v1): authentication, timeouts, the response
//! size limit and the status codes' meaning. The key list GET lives here; the calls of
//! later features (session events, agent status) join it.

pub mod model;
pub mod shared;
pub mod token;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER, USER_AGENT,
};
use reqwest::{StatusCode, Url};

use crate::config::{is_loopback, ApiConfig};
use model::KeyList;
use token::{Token, TokenError};

/// A failed call. None of these changes the keys in force.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("cannot read CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("request failed: {0}")]
    Transport(String),
    #[error("request timed out")]
    Timeout,
    #[error("the token was refused ({0}): it is invalid or revoked")]
    Unauthorized(StatusCode),
    #[error("the control plane does not know this instance (404)")]
    UnknownInstance,
    #[error("the control plane is busy ({status}){}", retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    Throttled {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("unexpected answer {0}")]
    Status(StatusCode),
    #[error("response larger than {0} bytes, rejected whole")]
    TooLarge(usize),
    #[error("malformed response: {0}")]
    Malformed(String),
    /// `400`/`422`: the control plane says the request itself is malformed.
    #[error("request rejected as malformed ({status}): {message}")]
    Rejected { status: StatusCode, message: String },
}

impl ApiError {
    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Answer to a key list request.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyListAnswer {
    /// `200`: the key set (not yet validated) and its ETag.
    Modified { list: KeyList, etag: Option<String> },
    /// `304`: unchanged.
    NotModified,
}

/// A client of one instance's API.
pub struct ApiClient {
    http: reqwest::Client,
    key_list_url: Url,
    sessions_url: Url,
    status_url: Url,
    token: Token,
    max_response_bytes: usize,
    read_timeout: Duration,
}

/// Extra time a long-poll may take beyond its `wait` before it counts as timed out.
pub const LONG_POLL_MARGIN: Duration = Duration::from_secs(15);

impl ApiClient {
    /// Builds a client from validated configuration. The token file is read (and its
    /// permissions checked) here, and again whenever the server refuses the token.
    pub fn new(config: &ApiConfig) -> Result<ApiClient, ApiError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!is_loopback(&config.base_url))
            .pool_max_idle_per_host(1)
            .default_headers(default_headers());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| ApiError::CaFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ApiError::CaFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(ApiError::CaFile {
                    path: path.clone(),
                    message: "no PEM certificate in it".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        if config.base_url.scheme() == "http" {
            // Plain HTTP on loopback (development, tests): no TLS roots to load, so a
            // system without a CA store still works.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| ApiError::Setup(error_chain(&e)))?;
        Ok(ApiClient {
            http,
            key_list_url: endpoint(&config.base_url, &config.instance_id, "ssh-keys")?,
            sessions_url: endpoint(&config.base_url, &config.instance_id, "ssh-sessions")?,
            status_url: endpoint(&config.base_url, &config.instance_id, "agent-status")?,
            token: Token::load(&config.token)?,
            max_response_bytes: config.max_response_bytes,
            read_timeout: config.request_timeout,
        })
    }

    /// `GET .../ssh-keys`: a full fetch without `etag`, a conditional one with it, and a
    /// long-poll when `wait` is not zero.
    pub async fn fetch_keys(
        &self,
        etag: Option<&str>,
        wait: Duration,
    ) -> Result<KeyListAnswer, ApiError> {
        let mut url = self.key_list_url.clone();
        if !wait.is_zero() {
            url.query_pairs_mut()
                .append_pair("wait", &wait.as_secs().to_string());
        }
        let mut request = self
            .http
            .get(url)
            .timeout(
                wait + self.read_timeout
                    + if wait.is_zero() {
                        Duration::ZERO
                    } else {
                        LONG_POLL_MARGIN
                    },
            )
            .header(AUTHORIZATION, self.token.header_value()?);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        match status {
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| v.len() <= 256)
                    .map(str::to_owned);
                let body = self.read_body(response).await?;
                let list: KeyList = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::Malformed(e.to_string()))?;
                Ok(KeyListAnswer::Modified { list, etag })
            }
            StatusCode::NOT_MODIFIED => Ok(KeyListAnswer::NotModified),
            _ => Err(self.status_error(response)),
        }
    }

    /// `POST .../ssh-sessions` (at most 500 events): `Ok` once accepted (`202`).
    pub async fn post_events(&self, events: &[model::SessionEvent]) -> Result<(), ApiError> {
        let body = serde_json::to_vec(&model::EventBatch { events })
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        self.send_json(
            self.http.post(self.sessions_url.clone()),
            body,
            StatusCode::ACCEPTED,
        )
        .await
    }

    /// `PUT .../agent-status`: `Ok` on `204`.
    pub async fn put_status(&self, status: &impl serde::Serialize) -> Result<(), ApiError> {
        let body = serde_json::to_vec(status).map_err(|e| ApiError::Setup(e.to_string()))?;
        self.send_json(
            self.http.put(self.status_url.clone()),
            body,
            StatusCode::NO_CONTENT,
        )
        .await
    }

    async fn send_json(
        &self,
        request: reqwest::RequestBuilder,
        body: Vec<u8>,
        success: StatusCode,
    ) -> Result<(), ApiError> {
        let response = request
            .timeout(self.read_timeout)
            .header(AUTHORIZATION, self.token.header_value()?)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status == success || (status.is_success() && success != StatusCode::NO_CONTENT) {
            // The body (e.g. {"accepted": n}) is read and dropped, bounded like any other.
            let _ = self.read_body(response).await;
            return Ok(());
        }
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY {
            let body = self.read_body(response).await.unwrap_or_default();
            let message: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(ApiError::Rejected { status, message });
        }
        Err(self.status_error(response))
    }

    fn status_error(&self, response: reqwest::Response) -> ApiError {
        let status = response.status();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.token.invalidate();
                ApiError::Unauthorized(status)
            }
            StatusCode::NOT_FOUND => ApiError::UnknownInstance,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                ApiError::Throttled {
                    status,
                    retry_after: response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs),
                }
            }
            _ => ApiError::Status(status),
        }
    }

    /// Reads a body, each read bounded by the read timeout, the whole by the size limit.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
        let limit = self.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(ApiError::TooLarge(limit));
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        loop {
            let chunk = tokio::time::timeout(self.read_timeout, response.chunk())
                .await
                .map_err(|_| ApiError::Timeout)?
                .map_err(transport_error)?;
            let Some(chunk) = chunk else { return Ok(body) };
            if body.len() + chunk.len() > limit {
                return Err(ApiError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
    }
}

fn transport_error(error: reqwest::Error) -> ApiError {
    if error.is_timeout() {
        return ApiError::Timeout;
    }
    // The URL holds nothing secret, but strip it anyway: errors stay short.
    ApiError::Transport(error_chain(&error.without_url()))
}

/// An error and all its sources, one after the other.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn default_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("pictor-agent/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// `{base}/v1/instances/{instance_id}/{what}`, keeping any path prefix of the base URL.
pub fn endpoint(base: &Url, instance_id: &str, what: &str) -> Result<Url, ApiError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| ApiError::Setup(format!("base URL {base} cannot carry a path")))?
        .pop_if_empty()
        .extend(["v1", "instances", instance_id, what]);
    Ok(url)
}

fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path() {
        let base = Url::parse("https://api.example/pictor/").expect("url");
        let url = endpoint(&base, "inst_1", "ssh-keys").expect("endpoint");
        assert_eq!(
            url.as_str(),
            "https://api.example/pictor/v1/instances/inst_1/ssh-keys"
        );
        let bare = Url::parse("http://127.0.0.1:9").expect("url");
        assert_eq!(
            endpoint(&bare, "i", "agent-status")
                .expect("endpoint")
                .as_str(),
            "http://127.0.0.1:9/v1/instances/i/agent-status"
        );
    }
}
