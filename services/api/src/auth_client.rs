//! Asking auth whether a bearer token is valid.

use std::time::Duration;

use axum::http::HeaderValue;
use pixelflow_common::telemetry::{KeyValue, Leaf};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// auth answered: the token is not acceptable. The text is auth's.
    #[error("{0}")]
    Unauthorized(String),
    /// auth could not be asked, or answered nonsense.
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct AuthClient {
    http: reqwest::Client,
    /// auth's `/validate` and `/health`, parsed once rather than on every
    /// request.
    validate: reqwest::Url,
    health: reqwest::Url,
}

#[derive(Deserialize)]
struct Validation {
    user_id: Uuid,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl AuthClient {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url = |path: &str| {
            let url = format!("{}{path}", base_url.trim_end_matches('/'));
            reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("auth's URL {url}: {e}"))
        };
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            validate: url("/validate")?,
            health: url("/health")?,
        })
    }

    /// The user the `Authorization` header value belongs to.
    /// The call is a client span whose `traceparent` auth's server span
    /// continues. The span lasts until the answer is read, and is a
    /// [`Leaf`]: nothing is logged inside it.
    pub async fn validate(&self, authorization: &HeaderValue) -> Result<Uuid, AuthError> {
        let mut span = Leaf::client(
            "GET auth /validate",
            [KeyValue::new("http.request.method", "GET")],
        );
        let mut request = self
            .http
            .get(self.validate.clone())
            .header(reqwest::header::AUTHORIZATION, authorization.as_bytes());
        if let Some(traceparent) = span.traceparent() {
            request = request.header(
                reqwest::header::HeaderName::from_static(pixelflow_common::telemetry::TRACEPARENT),
                traceparent,
            );
        }
        let response = request
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(without_url(&e)))?;
        // An int, as the semantic conventions have it.
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(response.status().as_u16()),
        ));
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let reason = response
                .json::<ErrorBody>()
                .await
                .map_or_else(|_| "invalid token".to_string(), |b| b.error);
            return Err(AuthError::Unauthorized(reason));
        }
        if !status.is_success() {
            return Err(AuthError::Unavailable(format!("auth answered {status}")));
        }
        response
            .json::<Validation>()
            .await
            .map(|v| v.user_id)
            .map_err(|e| AuthError::Unavailable(format!("unexpected answer from auth: {e}")))
    }

    /// For `/ready`: auth's own `/health` answers 200.
    pub async fn probe(&self) -> Result<(), String> {
        let response = self
            .http
            .get(self.health.clone())
            .send()
            .await
            .map_err(|e| without_url(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("auth /health answered {}", response.status()))
        }
    }
}

/// reqwest's message, without the URL it appends (which is config, and
/// noise for a client).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused"
    } else {
        "request failed"
    };
    kind.to_string()
}
