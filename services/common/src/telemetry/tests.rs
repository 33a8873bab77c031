//! The telemetry modules' tests: what a span, a line and an export show.

use super::*;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::EnvFilter;

use crate::hex::push_hex;
use crate::settings::{Env, SettingsError};

use tracing::Instrument as _;

fn env(pairs: &[(&str, &str)]) -> Result<Tracing, SettingsError> {
    Tracing::from_env(&Env::pairs(pairs))
}

#[test]
fn tracing_exports_to_localhost_unless_told_otherwise() {
    assert_eq!(
        env(&[]),
        Ok(Tracing::Otlp {
            endpoint: "http://localhost:4318/v1/traces".into()
        })
    );
    assert_eq!(
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/")]),
        Ok(Tracing::Otlp {
            endpoint: "http://jaeger:4318/v1/traces".into()
        })
    );
    assert_eq!(
        env(&[("OTEL_TRACES_EXPORTER", "none")]),
        Ok(Tracing::IdsOnly)
    );
    assert_eq!(env(&[("OTEL_SDK_DISABLED", "true")]), Ok(Tracing::Off));
}

/// An exporter whose exports fail while `down` is set.
#[derive(Debug, Default)]
struct Flaky {
    down: std::sync::Arc<AtomicBool>,
}

impl SpanExporter for Flaky {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        if self.down.load(Ordering::Relaxed) {
            Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "connection refused".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_collector_that_is_away_is_reported_once_and_its_return_once() {
    let captured = crate::logging::tests::Captured::default();
    let subscriber = logs_only_subscriber("api", EnvFilter::new("info"), captured.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let flaky = Flaky::default();
    let down = flaky.down.clone();
    let exporter = ReportOnce::new(flaky, "http://jaeger:4318/v1/traces".into());
    down.store(true, Ordering::Relaxed);
    for _ in 0..50 {
        assert!(exporter.export(Vec::new()).await.is_err());
    }
    down.store(false, Ordering::Relaxed);
    for _ in 0..5 {
        assert!(exporter.export(Vec::new()).await.is_ok());
    }
    down.store(true, Ordering::Relaxed);
    assert!(exporter.export(Vec::new()).await.is_err());
    let text = captured.text();
    let messages: Vec<String> = text
        .lines()
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            format!("{} {}", line["level"], line["message"])
        })
        .collect();
    let failure = "\"WARN\" \"cannot export traces; spans are dropped until the collector answers (reported once)\"";
    assert_eq!(
        messages,
        [failure, "\"INFO\" \"exporting traces again\"", failure],
        "{text}"
    );
    assert!(
        text.contains("http://jaeger:4318/v1/traces"),
        "the line names where"
    );
}

#[test]
fn ids_are_written_in_hex_as_the_sdk_formats_them() {
    for trace_id in [1u128, 0x0af7651916cd43dd8448eb211c80319c, u128::MAX] {
        let id = opentelemetry::TraceId::from(trace_id);
        let mut text = String::new();
        push_hex(&mut text, &id.to_bytes());
        assert_eq!(text, id.to_string());
    }
    let span_id = opentelemetry::SpanId::from(0x00f067aa0ba902b7u64);
    let mut text = String::new();
    push_hex(&mut text, &span_id.to_bytes());
    assert_eq!(text, "00f067aa0ba902b7");
}

#[test]
fn a_traceparent_goes_out_as_it_came_in() {
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, || {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::info_span!("server");
        set_parent(&span, incoming);
        let outgoing = traceparent(&span).expect("a traceparent");
        let parts: Vec<&str> = outgoing.split('-').collect();
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
        assert_ne!(parts[2], "00f067aa0ba902b7", "a span of its own");
        assert_eq!(parts[3], "01", "sampled, as the caller said");
        let orphan = tracing::info_span!("orphan");
        set_parent(&orphan, "garbage");
        let own = traceparent(&orphan).expect("a trace of its own");
        assert!(!own.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    });
    assert_eq!(traceparent(&tracing::Span::none()), None, "tracing off");
}

#[test]
fn with_tracing_on_the_libraries_trace_spans_still_cost_nothing() {
    use tracing::Subscriber as _;
    let provider = SdkTracerProvider::builder().build();
    let subscriber = traced_subscriber(
        "api",
        EnvFilter::new("info"),
        provider.tracer("api"),
        std::io::sink,
    );
    // Without a hint, `trace_span!` and `debug!` everywhere would be
    // judged at runtime rather than by the level check.
    assert_eq!(
        subscriber.max_level_hint(),
        Some(tracing::level_filters::LevelFilter::INFO)
    );
    tracing::subscriber::with_default(subscriber, || {
        let hyper = tracing::trace_span!(target: "hyper::proto::h1", "parse_headers");
        assert!(hyper.is_disabled(), "a library's trace span is not opened");
        let ours = tracing::info_span!(target: "pixelflow_api", "http request");
        assert!(!ours.is_disabled(), "our spans are");
        assert!(traceparent(&ours).is_some(), "and traced");
    });
}

/// Keeps what a simple processor exports.
#[derive(Debug, Clone, Default)]
struct Kept(std::sync::Arc<std::sync::Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batch);
        Ok(())
    }
}

/// A provider exporting every span, as it ends, into the `Kept`.
fn kept_spans() -> (Kept, SdkTracerProvider) {
    let kept = Kept::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(kept.clone())
        .build();
    (kept, provider)
}

/// The services' traced subscriber at `info`, lines to nowhere, spans
/// into the `Kept` (while the provider lives).
fn traced_into_kept() -> (
    Kept,
    SdkTracerProvider,
    impl tracing::Subscriber + Send + Sync + 'static,
) {
    let (kept, provider) = kept_spans();
    let subscriber = traced_subscriber(
        "api",
        EnvFilter::new("info"),
        provider.tracer("api"),
        std::io::sink,
    );
    (kept, provider, subscriber)
}

fn lines(captured: &crate::logging::tests::Captured) -> Vec<serde_json::Value> {
    captured
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn a_warning_inside_a_traced_span_carries_its_ids_whatever_log_level_says() {
    let captured = crate::logging::tests::Captured::default();
    let (kept, provider) = kept_spans();
    let subscriber = traced_subscriber(
        "api",
        EnvFilter::new("warn"),
        provider.tracer("api"),
        captured.clone(),
    );
    let traceparent = tracing::subscriber::with_default(subscriber, || {
        let span = started(tracing::info_span!(target: "pixelflow_api", "http request"));
        let _in = span.enter();
        tracing::info!(target: "pixelflow_api", "not at warn: not written");
        tracing::warn!(target: "pixelflow_api", task_id = "t-1", "slow");
        traceparent(&span).expect("traced")
    });
    let lines = lines(&captured);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(lines[0]["message"], "slow");
    assert_eq!(lines[0]["task_id"], "t-1");
    assert_eq!(lines[0]["trace_id"], parts[1]);
    assert_eq!(lines[0]["span_id"], parts[2]);
    let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(spans.len(), 1, "the span is exported");
    assert!(
        spans[0].events.is_empty(),
        "log lines are not copied into the span: {:?}",
        spans[0].events
    );
}

#[tokio::test]
async fn a_timed_span_ends_with_its_future_and_lines_meanwhile_keep_the_enclosing_ids() {
    let captured = crate::logging::tests::Captured::default();
    let (kept, provider) = kept_spans();
    let _default = tracing::subscriber::set_default(traced_subscriber(
        "api",
        EnvFilter::new("info"),
        provider.tracer("api"),
        captured.clone(),
    ));
    let server = started(tracing::info_span!(target: "pixelflow_api", "http request"));
    // As in a handler: the statement's span is made while the server
    // span is entered, which makes it the parent.
    let answer = async {
        async {
            tokio::task::yield_now().await;
            tracing::info!(target: "pixelflow_api", "during the statement");
            42
        }
        .timed_by(db_span("SELECT tasks"))
        .await
    }
    .instrument(server.clone())
    .await;
    assert_eq!(answer, 42);
    let exported = || kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let spans = exported();
    assert_eq!(spans.len(), 1, "the statement's span ended with it");
    let server_id = traceparent(&server).expect("traced");
    let server_span_id = server_id.split('-').nth(2).expect("span id");
    assert_eq!(spans[0].name, "SELECT tasks");
    assert_eq!(spans[0].parent_span_id.to_string(), server_span_id);
    let lines = lines(&captured);
    assert_eq!(lines[0]["span_id"], server_span_id, "{lines:?}");
    drop(server);
    assert_eq!(exported().len(), 2);
}

#[test]
fn a_leaf_is_a_client_span_under_the_current_span_that_its_traceparent_names() {
    use opentelemetry::trace::SpanKind;
    let (kept, _provider, subscriber) = traced_into_kept();
    let (server, outgoing) = tracing::subscriber::with_default(subscriber, || {
        let server = started(tracing::info_span!(target: "pixelflow_api", "http request"));
        let _in = server.enter();
        let mut call = Leaf::client(
            "GET auth /validate",
            [KeyValue::new("http.request.method", "GET")],
        );
        let outgoing = call.traceparent().expect("traced");
        call.set_attribute(KeyValue::new("http.response.status_code", 200i64));
        drop(call);
        (traceparent(&server).expect("traced"), outgoing)
    });
    let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let [call, _server] = spans.as_slice() else {
        panic!("the leaf ends first, then the server span: {spans:?}")
    };
    let server: Vec<&str> = server.split('-').collect();
    let outgoing: Vec<&str> = outgoing.split('-').collect();
    assert_eq!(call.name, "GET auth /validate");
    assert_eq!(call.span_kind, SpanKind::Client);
    assert_eq!(
        call.parent_span_id.to_string(),
        server[2],
        "under the server span"
    );
    assert_eq!(call.span_context.trace_id().to_string(), server[1]);
    assert_eq!(outgoing[1], server[1], "the callee joins the same trace");
    assert_eq!(
        outgoing[2],
        call.span_context.span_id().to_string(),
        "under the leaf"
    );
    let attributes: Vec<String> = call
        .attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    assert_eq!(
        attributes,
        ["http.request.method=GET", "http.response.status_code=200"]
    );
}

#[test]
fn a_leaf_outside_any_span_starts_a_trace_and_with_tracing_off_is_nothing() {
    let (kept, _provider, subscriber) = traced_into_kept();
    tracing::subscriber::with_default(subscriber, || drop(db_span("SELECT 1")));
    let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent_span_id, opentelemetry::SpanId::INVALID);

    let off = logs_only_subscriber("api", EnvFilter::new("info"), std::io::sink);
    tracing::subscriber::with_default(off, || {
        let server = started(tracing::info_span!(target: "pixelflow_api", "http request"));
        let _in = server.enter();
        assert_eq!(db_span("SELECT 1").traceparent(), None);
    });
}

#[test]
fn an_entered_span_ends_when_it_closes() {
    let (kept, _provider, subscriber) = traced_into_kept();
    let (started, after_last_exit) = tracing::subscriber::with_default(subscriber, || {
        let started = std::time::SystemTime::now();
        let span = tracing::info_span!(target: "pixelflow_api", "http request");
        span.in_scope(|| tracing::info!(target: "pixelflow_api", "request handled"));
        let after_last_exit = std::time::SystemTime::now();
        drop(span);
        (started, after_last_exit)
    });
    let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].start_time >= started);
    assert!(
        spans[0].end_time >= after_last_exit,
        "the span ends at its close, not at its last exit"
    );
}

#[test]
fn with_tracing_off_no_span_is_opened_and_lines_carry_no_ids() {
    let captured = crate::logging::tests::Captured::default();
    let subscriber = logs_only_subscriber("api", EnvFilter::new("info"), captured.clone());
    tracing::subscriber::with_default(subscriber, || {
        let span = started(tracing::info_span!(target: "pixelflow_api", "http request"));
        assert!(span.is_disabled(), "no one reads it");
        let _in = span.enter();
        tracing::info!(target: "pixelflow_api", "handled");
        assert_eq!(traceparent(&span), None);
    });
    let lines = lines(&captured);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "handled");
    assert!(lines[0].get("trace_id").is_none(), "{:?}", lines[0]);
}

#[test]
fn span_directives_in_log_level_still_open_the_spans_they_name() {
    let captured = crate::logging::tests::Captured::default();
    let subscriber = logs_only_subscriber(
        "api",
        EnvFilter::new("warn,[resize]=debug"),
        captured.clone(),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!(target: "pixelflow_worker", "outside: not written");
        let span = tracing::info_span!(target: "pixelflow_worker", "resize");
        let _in = span.enter();
        tracing::debug!(target: "pixelflow_worker", "inside resize");
    });
    let messages: Vec<_> = lines(&captured)
        .into_iter()
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(messages, ["inside resize"]);
}

#[test]
fn a_protocol_that_is_not_built_in_is_refused_by_name() {
    let error = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
    assert!(
        error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
        "{error}"
    );
    assert!(error.to_string().contains("http/protobuf"), "{error}");
}

/// The span one info line was logged in, under the traced subscriber with
/// `restored` put back to the library's defaults.
fn span_with(restored: super::levers::Defaults) -> SpanData {
    let (kept, provider) = kept_spans();
    let subscriber = super::traced_subscriber_with(
        "api",
        EnvFilter::new("info"),
        provider.tracer("api"),
        std::io::sink,
        restored,
    );
    tracing::subscriber::with_default(subscriber, || {
        let span = started(tracing::info_span!(target: "pixelflow_api", "http request"));
        let _in = span.enter();
        tracing::info!(target: "pixelflow_api", "inside");
    });
    let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    spans[0].clone()
}

fn has_attribute(span: &SpanData, key: &str) -> bool {
    span.attributes.iter().any(|kv| kv.key.as_str() == key)
}

#[test]
fn each_restored_default_reaches_the_layer_and_the_tuned_subscriber_has_none() {
    use super::levers::Defaults;
    let none = Defaults::default();
    // What each restored default adds to the span, as the library names it.
    let added = [
        (
            Defaults {
                location: true,
                ..none
            },
            "code.file.path",
        ),
        (
            Defaults {
                threads: true,
                ..none
            },
            "thread.id",
        ),
        (
            Defaults {
                target: true,
                ..none
            },
            "target",
        ),
        (
            Defaults {
                inactivity: true,
                ..none
            },
            "busy_ns",
        ),
    ];
    let tuned = span_with(none);
    assert!(tuned.events.is_empty());
    for (restored, key) in added {
        assert!(
            !has_attribute(&tuned, key),
            "{key} in {:?}",
            tuned.attributes
        );
        let span = span_with(restored);
        assert!(
            has_attribute(&span, key),
            "{restored}: no {key} in {:?}",
            span.attributes
        );
    }
    let with_events = span_with(Defaults {
        events: true,
        ..none
    });
    assert_eq!(
        with_events.events.len(),
        1,
        "the line, copied into its span"
    );
}
