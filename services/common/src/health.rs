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

/// One dependency's answer to a readiness probe. `error` says only that it
/// failed or timed out: anyone may call `/ready`, and a raw database or
/// broker error names hosts, users and versions. The raw error goes to the
/// log.
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
            Ok(Err(e)) => {
                tracing::warn!(dependency = name, error = %e, "readiness check failed");
                Some("unavailable".to_string())
            }
            Err(_) => {
                tracing::warn!(
                    dependency = name,
                    timeout_ms = timeout.as_millis() as u64,
                    "readiness check timed out"
                );
                Some(format!("no answer within {timeout:?}"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_check_does_not_hand_its_raw_error_to_the_caller() {
        let check = Check::run("database", Duration::from_secs(1), async {
            Err::<(), _>(
                "password authentication failed for user \"pixelflow\" at db.internal:5432",
            )
        })
        .await;
        assert!(!check.ok);
        assert_eq!(check.error.as_deref(), Some("unavailable"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_ends_at_its_deadline() {
        let check = Check::run(
            "broker",
            Duration::from_secs(2),
            std::future::pending::<Result<(), String>>(),
        )
        .await;
        assert!(!check.ok);
        assert_eq!(check.error.as_deref(), Some("no answer within 2s"));
    }
}
