//! `/health` (the process is alive) and the shape of `/ready` (its
//! dependencies answer).

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// One dependency's answer to a readiness probe.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    /// Runs `probe` with a deadline, so one hung dependency cannot hang the
    /// probe itself.
    pub async fn run<F, E>(name: &'static str, timeout: Duration, probe: F) -> Self
    where
        F: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let error = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {timeout:?}")),
        };
        Self {
            name,
            ok: error.is_none(),
            error,
        }
    }
}

/// 200 when every check passed, 503 otherwise; the body lists each.
pub fn ready_response(checks: Vec<Check>) -> Response {
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks,
    });
    (status, Json(body)).into_response()
}
