//! Traces and logs together: `tracing` spans become OpenTelemetry spans,
//! exported over OTLP/HTTP (protobuf), and every JSON log line written
//! inside a span carries that span's `trace_id` and `span_id`.
//!
//! Configured by the standard variables, read by the SDK itself:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`) or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME` (default: the service's name), `OTEL_TRACES_SAMPLER`
//! and `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`. Read here:
//! `OTEL_SDK_DISABLED=true` turns tracing off altogether (no ids in logs, no
//! `traceparent` answered), `OTEL_TRACES_EXPORTER=none` keeps the ids but
//! exports nothing, and `OTEL_EXPORTER_OTLP_PROTOCOL` must be
//! `http/protobuf` (the only protocol built in: no gRPC stack).
//!
//! Exporting never touches a request: spans queue for the SDK's batch
//! processor, which exports from its own thread and drops spans when its
//! queue is full. A collector that cannot be reached is reported once, at
//! the first failed export, and again only after exports worked in between.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::logging::{JsonLines, NoSpanFields, SpansAndFilteredEvents};
use crate::settings::{Env, SettingsError};

/// The W3C trace-context header, on HTTP requests and answers and on Kafka
/// records.
pub const TRACEPARENT: &str = "traceparent";

/// Whether and where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracing {
    /// `OTEL_SDK_DISABLED=true`: no spans, no ids.
    Off,
    /// `OTEL_TRACES_EXPORTER=none`: ids in logs and headers, nothing exported.
    IdsOnly,
    /// Export over OTLP/HTTP to the endpoint the SDK reads from `OTEL_*`.
    Otlp { endpoint: String },
}

impl Tracing {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        if env.or("OTEL_SDK_DISABLED", false)? {
            return Ok(Tracing::Off);
        }
        match env.raw("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(Tracing::IdsOnly),
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "OTEL_TRACES_EXPORTER",
                    value: other.into(),
                    reason: "expected otlp or none".into(),
                })
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env.raw(name) {
                if protocol != "http/protobuf" {
                    return Err(SettingsError::Invalid {
                        name,
                        value: protocol,
                        reason: "only http/protobuf is built in (the OTLP/HTTP port, 4318)".into(),
                    });
                }
                break;
            }
        }
        // Where the SDK will send spans, for the one report of a failure.
        let endpoint = env
            .raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| {
                env.raw("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
            })
            .unwrap_or_else(|| "http://localhost:4318/v1/traces".into());
        Ok(Tracing::Otlp { endpoint })
    }
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] exports what
/// is still queued.
#[must_use = "dropping Telemetry stops exporting spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued, waiting at most a few seconds (a
    /// collector that is away must not hold up a stop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(3));
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What becomes OpenTelemetry data: the spans of our crates, not the
/// libraries' internals, and no events. Log lines already join their trace
/// through `trace_id`; copying each into its span as a span event would
/// export every line twice (the tracing bench measured that cost).
///
/// The level hint matters as much as the filter: a filter without one
/// makes the whole subscriber's hint "any level", and every `trace_span!`
/// and `debug!` in the libraries is then judged at runtime instead of by
/// the level check, and a library's trace span is opened for the log
/// layer. (The bench measured no change from the hint: the libraries here
/// open few spans. It keeps one that does from costing every request.)
fn traced_spans<S>() -> impl tracing_subscriber::layer::Filter<S> {
    let ours = Targets::new()
        .with_target("pixelflow_common", tracing::Level::INFO)
        .with_target("pixelflow_auth", tracing::Level::INFO)
        .with_target("pixelflow_api", tracing::Level::INFO)
        .with_target("pixelflow_worker", tracing::Level::INFO);
    let spans = tracing_subscriber::filter::filter_fn(|meta| meta.is_span())
        .with_max_level_hint(tracing::Level::INFO);
    ours.and(spans)
}

/// Installs the JSON logger on stdout (`level` is `LOG_LEVEL`) and, unless
/// `tracing` is [`Tracing::Off`], the OpenTelemetry layer.
pub fn init(service: &'static str, level: &str, tracing: &Tracing) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("LOG_LEVEL={level:?}: {e}"))?;
    let Some(provider) = provider(service, tracing)? else {
        logs_only_subscriber(service, filter, std::io::stdout)
            .try_init()
            .map_err(|e| e.to_string())?;
        return Ok(Telemetry { provider: None });
    };
    traced_subscriber(
        service,
        filter,
        level.contains('['),
        provider.tracer(service),
        std::io::stdout,
    )
    .try_init()
    .map_err(|e| e.to_string())?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The JSON lines of `service`, written to `writer`.
fn json_logs<S, W>(
    service: &'static str,
    writer: W,
) -> tracing_subscriber::fmt::Layer<S, NoSpanFields, JsonLines, W>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(JsonLines::new(service))
        .fmt_fields(NoSpanFields)
        .with_writer(writer)
}

/// What [`init`] installs when tracing is off: the JSON lines alone,
/// filtered by `filter` (`LOG_LEVEL`), as before tracing existed.
/// Public, like [`traced_subscriber`], for `examples/span_cost.rs`.
pub fn logs_only_subscriber<W>(
    service: &'static str,
    filter: EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry().with(json_logs(service, writer).with_filter(filter))
}

/// What [`init`] installs when tracing is on: JSON lines to `writer`
/// filtered by `filter` (`LOG_LEVEL`; `span_directives` when it has
/// `target[span]=level` directives), and `tracer`'s OpenTelemetry layer.
/// Public for `examples/span_cost.rs`, which measures exactly this.
pub fn traced_subscriber<W>(
    service: &'static str,
    filter: EnvFilter,
    span_directives: bool,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Per-span extras that cost an allocation each and say little
        // here: source location, thread, target, busy/idle time.
        .with_location(false)
        .with_target(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Nothing here reads the "current" OpenTelemetry context; making
        // each span current at every poll of its future costs on every
        // enter and exit. Spans that log are started by [`started`], which
        // gives their lines the ids.
        .with_context_activation(false)
        .with_filter(traced_spans());
    tracing_subscriber::registry()
        .with(
            json_logs(service, writer)
                .with_filter(SpansAndFilteredEvents::new(filter, span_directives)),
        )
        .with(spans)
}

fn provider(service: &'static str, tracing: &Tracing) -> Result<Option<SdkTracerProvider>, String> {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service);
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    match tracing {
        Tracing::Off => Ok(None),
        Tracing::IdsOnly => Ok(Some(builder.build())),
        Tracing::Otlp { endpoint } => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| format!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
            Ok(Some(
                builder
                    .with_batch_exporter(ReportOnce::new(exporter, endpoint.clone()))
                    .build(),
            ))
        }
    }
}

/// An exporter that logs the first failure of a run of failures, and the
/// recovery after it: a collector that is away costs one log line, not one
/// per batch.
#[derive(Debug)]
pub struct ReportOnce<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
}

impl<E> ReportOnce<E> {
    pub fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %e,
                        spans,
                        "cannot export traces; spans are dropped until the collector answers (reported once)"
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "exporting traces again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The `traceparent` value that makes the receiver's spans children of
/// `span`; `None` when tracing is off. Written directly (W3C trace
/// context, version 00): this runs on every request.
pub fn traceparent(span: &Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// A carrier holding one `traceparent`, without building a map.
struct OneHeader<'a>(&'a str);

impl opentelemetry::propagation::Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Starts `span`'s OpenTelemetry span now, so the lines logged inside it
/// carry its ids (spans are not made current on entry; see [`init`]).
/// After [`set_parent`], if that is called.
pub fn started(span: Span) -> Span {
    let _ = span.context();
    span
}

/// Makes `span` a child of the remote span `traceparent` names. Call it
/// before the span is first entered; a malformed value is ignored (the
/// span starts a trace of its own).
pub fn set_parent(span: &Span, traceparent: &str) {
    let parent = TraceContextPropagator::new().extract(&OneHeader(traceparent));
    let _ = span.set_parent(parent);
}

/// A span for one database statement: `operation` names it
/// (`INSERT tasks`).
pub fn db_span(operation: &'static str) -> Span {
    started(tracing::info_span!(
        "db",
        otel.name = operation,
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::JsonLines;

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
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines::new("api"))
            .with_writer(captured.clone())
            .finish();
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
            false,
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

    #[test]
    fn a_protocol_that_is_not_built_in_is_refused_by_name() {
        let error = env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{error}"
        );
        assert!(error.to_string().contains("http/protobuf"), "{error}");
    }
}
