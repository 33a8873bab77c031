//! RED metrics and the request log for an axum service.
//!
//! [`HttpMetrics::layer`] wraps a service's router: every request except
//! `GET /metrics` increments `<prefix>_requests_total{method,endpoint,status}`
//! and observes `<prefix>_request_duration_seconds{method,endpoint}`, and is
//! logged once as a JSON line at a level chosen by its status. `endpoint` is
//! the route template (`/api/tasks/{id}`), never the raw path, and `method`
//! one of the standard methods or `OTHER`, so neither ids nor invented
//! methods (hyper accepts any token: `curl -X M1`, `-X M2`, …) can blow up
//! the series count.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tracing::Instrument;

use crate::metrics::{register, LATENCY_BUCKETS};

/// The `endpoint` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label of a request whose method is not one of RFC 9110's
/// (plus PATCH).
pub const OTHER_METHOD: &str = "OTHER";

/// The `method` label: a fixed set, whatever the client sends.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER_METHOD,
    }
}

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers `<prefix>_requests_total` and
    /// `<prefix>_request_duration_seconds` in `registry`.
    pub fn new(prefix: &str, registry: &Registry) -> prometheus::Result<Self> {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    format!("{prefix}_requests_total"),
                    "HTTP requests handled, by method, route template and status code.",
                ),
                &["method", "endpoint", "status"],
            )?,
        )?;
        let duration = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    format!("{prefix}_request_duration_seconds"),
                    "Time to handle an HTTP request, by method and route template.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method", "endpoint"],
            )?,
        )?;
        Ok(Self { requests, duration })
    }

    /// Wraps `router` so each request is measured and logged.
    pub fn layer(self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self, track))
    }
}

async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    if endpoint == "/metrics" {
        return next.run(req).await;
    }
    let method = method_label(req.method());
    // The raw path and method go to the log (useful when debugging one
    // request), never into a label.
    // Both are the client's, of any length: clipped, their length kept.
    let path = crate::logging::clip(req.uri().path());
    let raw_method = (method == OTHER_METHOD).then(|| crate::logging::clip(req.method().as_str()));
    // Healthchecks probe every few seconds; successful probes would drown
    // the log at info, and their spans the traces.
    let probe = endpoint == "/health" || endpoint == "/ready";
    let (span, traceparent) = if probe {
        (tracing::Span::none(), None)
    } else {
        server_span(method, &endpoint, req.headers())
    };
    let start = Instant::now();
    // The request timeout of crate::server, enforced here so that a 408 is
    // measured and logged like every other answer.
    let deadline = req.extensions().get::<crate::server::Deadline>().copied();
    let handled = next.run(req).instrument(span.clone());
    let mut response = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.at, handled)
            .await
            .unwrap_or_else(|_| crate::server::timed_out(deadline)),
        None => handled.await,
    };
    let elapsed = start.elapsed();
    let status = response.status();

    metrics
        .requests
        .with_label_values(&[method, &endpoint, status.as_str()])
        .inc();
    metrics
        .duration
        .with_label_values(&[method, &endpoint])
        .observe(elapsed.as_secs_f64());

    // The client learns the trace its request started (or joined).
    if let Some(value) = traceparent.and_then(|v| axum::http::HeaderValue::try_from(v).ok()) {
        response
            .headers_mut()
            .insert(crate::telemetry::TRACEPARENT, value);
    }
    let _in_span = span.enter();
    // As i64: tracing-opentelemetry turns unsigned values into strings,
    // and the semantic conventions make the status code an int.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let status = status.as_u16();
    // A probe's 503 is its answer "not ready", not a failure of the
    // request: the readiness check logs which dependency, once per outage.
    if probe && (status < 400 || status == 503) {
        tracing::debug!(%method, %path, %endpoint, status, duration_ms, "request handled");
    } else if status >= 500 {
        tracing::error!(%method, %path, %endpoint, status, duration_ms, "request failed");
    } else if status >= 400 {
        tracing::warn!(%method, ?raw_method, %path, %endpoint, status, duration_ms, "request rejected");
    } else {
        tracing::info!(%method, %path, %endpoint, status, duration_ms, "request handled");
    }
    response
}

/// The server span of one request, started: named for its route template,
/// a child of the caller's span when the request carries a `traceparent`.
/// With the `traceparent` that names it (`None` when tracing is off),
/// computed once, as starting it computes the same ids.
fn server_span(
    method: &str,
    endpoint: &str,
    headers: &axum::http::HeaderMap,
) -> (tracing::Span, Option<String>) {
    let span = tracing::info_span!(
        "http request",
        otel.name = format!("{method} {endpoint}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = endpoint,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = headers
        .get(crate::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
    {
        crate::telemetry::set_parent(&span, parent);
    }
    // Starts the span, like `telemetry::started`.
    let traceparent = crate::telemetry::traceparent(&span);
    (span, traceparent)
}

/// `/health`, `/metrics` and the JSON fallbacks every service has.
/// Each service adds its own `/ready`, since what it depends on differs.
pub fn standard_routes(router: Router, registry: Registry) -> Router {
    router
        .route("/health", axum::routing::get(crate::health::health))
        .route(
            "/metrics",
            axum::routing::get(crate::metrics::serve).with_state(registry),
        )
        .fallback(crate::error::not_found)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app(registry: &Registry) -> Router {
        let router = Router::new().route("/items/{id}", get(|| async { "item" }));
        let router = standard_routes(router, registry.clone());
        HttpMetrics::new("test", registry)
            .expect("metrics register")
            .layer(router)
    }

    async fn call(app: &Router, method: &str, uri: &str) -> u16 {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        app.clone()
            .oneshot(req)
            .await
            .expect("infallible")
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn requests_are_labelled_by_route_template_not_raw_path() {
        let registry = Registry::new();
        let app = app(&registry);
        assert_eq!(call(&app, "GET", "/items/1").await, 200);
        assert_eq!(call(&app, "GET", "/items/2").await, 200);
        let text = crate::metrics::encode(&registry).expect("encode");
        assert!(
            text.contains(
                r#"test_requests_total{endpoint="/items/{id}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("/items/1"), "{text}");
    }

    #[tokio::test]
    async fn unknown_paths_share_one_label_and_get_a_json_404() {
        let registry = Registry::new();
        let app = app(&registry);
        assert_eq!(call(&app, "GET", "/nope/123").await, 404);
        let text = crate::metrics::encode(&registry).expect("encode");
        assert!(
            text.contains(
                r#"test_requests_total{endpoint="unmatched",method="GET",status="404"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn scrapes_of_metrics_are_not_counted() {
        let registry = Registry::new();
        let app = app(&registry);
        assert_eq!(call(&app, "GET", "/metrics").await, 200);
        assert_eq!(call(&app, "GET", "/metrics").await, 200);
        let text = crate::metrics::encode(&registry).expect("encode");
        assert!(!text.contains("/metrics"), "{text}");
    }

    #[tokio::test]
    async fn a_thousand_invented_methods_add_no_series() {
        let registry = Registry::new();
        let app = app(&registry);
        assert_eq!(call(&app, "M0", "/items/1").await, 405);
        assert_eq!(call(&app, "M0", "/nope").await, 404);
        let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
        let before = series(&crate::metrics::encode(&registry).expect("encode"));
        for i in 1..1000 {
            call(&app, &format!("M{i}"), "/items/1").await;
            call(&app, &format!("M{i}"), "/nope").await;
        }
        let text = crate::metrics::encode(&registry).expect("encode");
        assert_eq!(series(&text), before, "{text}");
        assert!(
            text.contains(
                r#"test_requests_total{endpoint="unmatched",method="OTHER",status="404"} 1000"#
            ),
            "{text}"
        );
        assert!(!text.contains("M999"), "{text}");
    }

    #[tokio::test]
    async fn a_not_ready_probe_is_no_error_line_and_other_503s_are() {
        let (captured, _default) = crate::logging::tests::Captured::install("test");
        let registry = Registry::new();
        let unavailable = || async { axum::http::StatusCode::SERVICE_UNAVAILABLE };
        let router = Router::new()
            .route("/ready", get(unavailable))
            .route("/items/{id}", get(unavailable));
        let app = HttpMetrics::new("test", &registry)
            .expect("metrics register")
            .layer(router);
        assert_eq!(call(&app, "GET", "/ready").await, 503);
        assert_eq!(call(&app, "GET", "/items/1").await, 503);
        let text = captured.text();
        let errors: Vec<serde_json::Value> = captured
            .lines()
            .into_iter()
            .filter(|l| l["level"] == "ERROR")
            .collect();
        assert_eq!(errors.len(), 1, "{text}");
        assert_eq!(errors[0]["endpoint"], "/items/{id}", "{text}");
    }

    #[tokio::test]
    async fn a_wrong_method_is_a_405() {
        let registry = Registry::new();
        let app = app(&registry);
        assert_eq!(call(&app, "DELETE", "/health").await, 405);
    }
}
