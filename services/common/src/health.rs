//! `/health` (the process is alive) and the shape of `/ready` (its
//! dependencies answer).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
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

/// The dependencies whose last readiness check failed. The healthcheck
/// probes every 2 s: a failure is logged when it starts and again when the
/// dependency answers, not at every probe.
static FAILING: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Notes `name`'s outcome; true when it changed (a failure that starts, or
/// one that ends).
fn changed(name: &'static str, failed: bool) -> bool {
    let mut failing = FAILING.lock().unwrap_or_else(|p| p.into_inner());
    if failed {
        failing.insert(name)
    } else {
        failing.remove(name)
    }
}

impl Check {
    /// Runs `probe` with a deadline, so one hung dependency cannot hang the
    /// probe itself.
    pub async fn run<F, E>(name: &'static str, timeout: Duration, probe: F) -> Self
    where
        F: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let outcome = tokio::time::timeout(timeout, probe).await;
        let changed = changed(name, !matches!(outcome, Ok(Ok(()))));
        let error = match outcome {
            Ok(Ok(())) => {
                if changed {
                    tracing::info!(dependency = name, "readiness check passes again");
                }
                None
            }
            Ok(Err(e)) => {
                if changed {
                    tracing::warn!(dependency = name, error = %e, "readiness check failed");
                }
                Some("unavailable".to_string())
            }
            Err(_) => {
                if changed {
                    tracing::warn!(
                        dependency = name,
                        timeout_ms = timeout.as_millis() as u64,
                        "readiness check timed out"
                    );
                }
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
    let (status, body) = answer(&checks);
    (status, Json(body)).into_response()
}

fn answer(checks: &[Check]) -> (StatusCode, serde_json::Value) {
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
    (status, body)
}

/// How long one readiness answer is served again: `/ready` is public, and
/// each real check is a database query (and for api a broker metadata
/// fetch and a call to auth). At most one check runs a second, however
/// often it is asked.
pub const READY_CACHE: Duration = Duration::from_secs(1);

/// The last readiness answer and when it was made. Callers wait for the
/// check in progress rather than start one of their own.
#[derive(Clone, Default)]
pub struct ReadyCache {
    last: std::sync::Arc<
        tokio::sync::Mutex<Option<(tokio::time::Instant, StatusCode, serde_json::Value)>>,
    >,
}

impl ReadyCache {
    /// The cached answer when it is younger than [`READY_CACHE`], else the
    /// answer of `checks`, run now.
    pub async fn answer<F>(&self, checks: F) -> Response
    where
        F: Future<Output = Vec<Check>>,
    {
        let mut last = self.last.lock().await;
        let now = tokio::time::Instant::now();
        if let Some((at, status, body)) = last.as_ref() {
            if now.duration_since(*at) < READY_CACHE {
                return (*status, Json(body.clone())).into_response();
            }
        }
        let (status, body) = answer(&checks.await);
        *last = Some((tokio::time::Instant::now(), status, body.clone()));
        (status, Json(body)).into_response()
    }
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

    #[tokio::test]
    async fn a_failing_dependency_is_logged_when_it_starts_failing_and_when_it_answers_again() {
        let (captured, _default) = crate::logging::tests::Captured::install("api");
        // A name of this test's own: the failing set is the process's.
        let name = "dependency of the logging test";
        let ok = || async { Ok::<(), String>(()) };
        let refused = || async { Err::<(), String>("connection refused".into()) };
        Check::run(name, Duration::from_secs(1), ok()).await;
        for _ in 0..10 {
            let check = Check::run(name, Duration::from_secs(1), refused()).await;
            assert!(!check.ok, "every probe still answers not ready");
        }
        Check::run(name, Duration::from_secs(1), ok()).await;
        Check::run(name, Duration::from_secs(1), ok()).await;
        let lines: Vec<(String, String)> = captured
            .lines()
            .iter()
            .map(|l| (l["level"].to_string(), l["message"].to_string()))
            .collect();
        assert_eq!(
            lines,
            [
                ("\"WARN\"".into(), "\"readiness check failed\"".into()),
                ("\"INFO\"".into(), "\"readiness check passes again\"".into()),
            ],
            "{}",
            captured.text()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_is_checked_at_most_once_a_second_however_often_asked() {
        let cache = ReadyCache::default();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let check = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            vec![
                Check::run("database", Duration::from_secs(1), async {
                    Ok::<(), String>(())
                })
                .await,
            ]
        };
        for _ in 0..50 {
            assert_eq!(cache.answer(check()).await.status(), StatusCode::OK);
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::advance(READY_CACHE).await;
        cache.answer(check()).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
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
