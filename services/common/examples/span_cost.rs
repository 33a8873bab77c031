//! What the services' subscriber costs per request, in one process, with
//! nothing else competing: the spans of an api request (server span,
//! client span with its `traceparent`, a database span, a log line inside
//! the server span) under the subscriber `telemetry::init` installs, with
//! tracing off, with ids only and exporting (to an exporter that drops
//! batches, so only the services' side is measured). The three alternate
//! in one run; the figures are the best of the rounds and their ratio to
//! off.
//!
//! Run: `cargo run --release -p pixelflow-common --example span_cost`.

use std::time::Instant;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use pixelflow_common::telemetry::{
    db_span, logs_only_subscriber, traced_subscriber, traceparent, KeyValue, Leaf,
};
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;

/// Takes every batch and drops it.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

/// The spans and the log line of one authenticated `GET /api/tasks`, as
/// `http_metrics::track`, `AuthClient::validate` and `tasks::list` make
/// them.
fn request() {
    let server = tracing::info_span!(target: "pixelflow_common",
        "http request",
        otel.name = format!("{} {}", "GET", "/api/tasks"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "GET",
        http.route = "/api/tasks",
        http.response.status_code = tracing::field::Empty,
    );
    // Starts the span; the answer's header.
    let answer = traceparent(&server);
    // A handler's future is polled a few times: each poll enters the span.
    for _ in 0..3 {
        let _polled = server.enter();
    }
    {
        let _polled = server.enter();
        // The call to auth and the statement: leaf spans, never entered.
        let mut client = Leaf::client(
            "GET auth /validate",
            [KeyValue::new("http.request.method", "GET")],
        );
        std::hint::black_box(client.traceparent());
        client.set_attribute(KeyValue::new("http.response.status_code", 200i64));
        drop(client);
        drop(db_span("SELECT tasks"));
    }
    std::hint::black_box(answer);
    let _in_span = server.enter();
    server.record("http.response.status_code", 200i64);
    tracing::info!(
        method = "GET",
        path = "/api/tasks",
        endpoint = "/api/tasks",
        status = 200,
        duration_ms = 1.5,
        "request handled"
    );
}

/// The subscriber `telemetry::init` installs, logging to nowhere.
fn subscriber(mode: &str) -> (Dispatch, Option<SdkTracerProvider>) {
    let filter = EnvFilter::new("info");
    let provider = match mode {
        "off" => {
            let off = logs_only_subscriber("api", filter, std::io::sink);
            return (Dispatch::new(off), None);
        }
        "ids only" => SdkTracerProvider::builder().build(),
        _ => SdkTracerProvider::builder()
            .with_batch_exporter(Discard)
            .build(),
    };
    let traced = traced_subscriber("api", filter, provider.tracer("api"), std::io::sink);
    (Dispatch::new(traced), Some(provider))
}

fn main() {
    let modes = ["off", "ids only", "exporting"];
    let subscribers: Vec<_> = modes.iter().map(|mode| subscriber(mode)).collect();
    let requests = 50_000;
    let rounds = 10;
    let mut best = [f64::MAX; 3];
    for _ in 0..rounds {
        for (i, (dispatch, _provider)) in subscribers.iter().enumerate() {
            tracing::dispatcher::with_default(dispatch, || {
                for _ in 0..2_000 {
                    request();
                }
                let start = Instant::now();
                for _ in 0..requests {
                    request();
                }
                let per_request = start.elapsed().as_nanos() as f64 / requests as f64;
                best[i] = best[i].min(per_request);
            });
        }
    }
    for (mode, ns) in modes.iter().zip(best) {
        println!(
            "{mode:<10} {ns:>6.0} ns per request  {:.2}x the time of off (best of {rounds} rounds)",
            ns / best[0]
        );
    }
}
