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
pub use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::logging::JsonLogs;
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

/// The crates whose spans are traced: ours, at info and above, not the
/// libraries' internals.
fn traced_crates() -> Targets {
    Targets::new()
        .with_target("pixelflow_common", tracing::Level::INFO)
        .with_target("pixelflow_auth", tracing::Level::INFO)
        .with_target("pixelflow_api", tracing::Level::INFO)
        .with_target("pixelflow_worker", tracing::Level::INFO)
}

/// The one filter of the whole subscriber: events as `LOG_LEVEL` says, and
/// spans only where someone reads them, i.e. our crates' spans when tracing
/// is on, and none when it is off (log lines need spans only for their
/// trace ids). A single global filter rather than one per layer: per-layer
/// filters make every span's enter, exit and close look the span up once
/// more per filtered layer, and would keep spans alive for the log layer
/// that nothing reads.
///
/// The level hint matters as much as the verdicts: the subscriber's hint
/// is the level check every `trace_span!` and `debug!` in the libraries
/// meets first, before any callsite is registered or judged.
struct Selection {
    events: EnvFilter,
    /// Our crates' spans, when tracing is on.
    traced: Option<Targets>,
    /// Whether `LOG_LEVEL` has span directives (`target[span]=level`):
    /// then it decides about spans too, and hears of the ones it enabled.
    span_directives: bool,
}

impl Selection {
    fn new(events: EnvFilter, traced: bool) -> Self {
        Self {
            span_directives: events.to_string().contains('['),
            events,
            traced: traced.then(traced_crates),
        }
    }

    /// The verdict on a span callsite, when `LOG_LEVEL` is not to decide
    /// it: traced spans are on, others off unless span directives exist.
    fn span_verdict(&self, meta: &Metadata<'_>) -> Option<bool> {
        let traced = self
            .traced
            .as_ref()
            .is_some_and(|targets| targets.would_enable(meta.target(), meta.level()));
        if traced {
            Some(true)
        } else if self.span_directives {
            None
        } else {
            Some(false)
        }
    }
}

impl<S> Layer<S> for Selection
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if !meta.is_span() {
            return Layer::<S>::register_callsite(&self.events, meta);
        }
        match self.span_verdict(meta) {
            Some(true) => Interest::always(),
            Some(false) => Interest::never(),
            None => Layer::<S>::register_callsite(&self.events, meta),
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        let verdict = meta.is_span().then(|| self.span_verdict(meta)).flatten();
        verdict.unwrap_or_else(|| Layer::enabled(&self.events, meta, ctx))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let events = Layer::<S>::max_level_hint(&self.events);
        match self.traced {
            Some(_) => events.map(|level| level.max(LevelFilter::INFO)),
            None => events,
        }
    }

    // EnvFilter follows the spans its span directives name; without any,
    // telling it costs a lock per span entered for nothing.
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if self.span_directives {
            self.events.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if self.span_directives {
            self.events.on_record(id, values, ctx);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.events.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.events.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.events.on_close(id, ctx);
        }
    }
}

/// The OpenTelemetry layer, told of spans only: log lines already join
/// their trace through `trace_id`, and copying each into its span as a
/// span event would export every line twice (the tracing bench measured
/// that cost).
struct SpansOnly<L> {
    layer: L,
    leaves: LeafTracer,
}

/// The tracer [`Leaf`] spans are made with, found through the subscriber
/// like tracing-opentelemetry's own `WithContext`: whoever installed the
/// traced subscriber (a service, or a test with its own provider) gets its
/// leaves, and with tracing off there is none.
struct LeafTracer(opentelemetry_sdk::trace::SdkTracer);

impl<S, L> Layer<S> for SpansOnly<L>
where
    S: tracing::Subscriber,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.layer.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.layer.on_layer(subscriber);
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        self.layer.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        self.layer.on_record(id, values, ctx);
    }

    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        self.layer.on_follows_from(span, follows, ctx);
    }

    // Not told of enters and exits. With context activation and busy/idle
    // timings off (`traced_subscriber` turns them off, as they need these
    // calls), all it does there is note the time of every exit, to end the
    // span at its last one: a lookup and a clock read at every poll of a
    // request's future. Untold, it ends a
    // span when the span closes, which for ours is the same moment: each
    // closes as the work it times returns (checked by
    // `an_entered_span_ends_when_it_closes`).

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        self.layer.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &tracing::span::Id, new: &tracing::span::Id, ctx: Context<'_, S>) {
        self.layer.on_id_change(old, new, ctx);
    }

    /// `Span::context()` and `set_parent` find the OpenTelemetry layer by
    /// downcasting the subscriber: the wrapper must let them through.
    /// [`Leaf`] finds its tracer the same way.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == std::any::TypeId::of::<LeafTracer>() {
            Some(&self.leaves as *const LeafTracer as *const ())
        } else {
            // SAFETY: forwarded as is; the inner layer answers for its own
            // type ids.
            unsafe { self.layer.downcast_raw(id) }
        }
    }
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
    traced_subscriber(service, filter, provider.tracer(service), std::io::stdout)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// What [`init`] installs when tracing is off: the JSON lines alone,
/// filtered by `filter` (`LOG_LEVEL`), and no spans.
/// Public, like [`traced_subscriber`], for `examples/span_cost.rs`.
pub fn logs_only_subscriber<W>(
    service: &'static str,
    filter: EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(JsonLogs::new(service, writer))
        .with(Selection::new(filter, false))
}

/// What [`init`] installs when tracing is on: JSON lines to `writer`
/// filtered by `filter` (`LOG_LEVEL`), and `tracer`'s OpenTelemetry layer
/// on our crates' spans.
/// Public for `examples/span_cost.rs`, which measures exactly this.
pub fn traced_subscriber<W>(
    service: &'static str,
    filter: EnvFilter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let leaves = LeafTracer(tracer.clone());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Per-span extras that cost an allocation each and say little
        // here: source location, thread, target.
        .with_location(false)
        .with_target(false)
        .with_threads(false)
        // Both need the layer to hear of enters and exits, which
        // `SpansOnly` keeps from it: busy/idle time would read all idle,
        // and a span's parent would be looked up in an OpenTelemetry
        // "current" context nothing sets. Off, the parent is tracing's
        // current span. Spans that log are started by [`started`], which
        // gives their lines the ids.
        .with_tracked_inactivity(false)
        .with_context_activation(false);
    tracing_subscriber::registry()
        .with(JsonLogs::new(service, writer))
        .with(SpansOnly {
            layer: spans,
            leaves,
        })
        .with(Selection::new(filter, true))
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
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| traceparent_of(span_context))
}

/// `00-<trace id>-<span id>-<flags>`.
fn traceparent_of(span_context: &opentelemetry::trace::SpanContext) -> String {
    let mut value = String::with_capacity(55);
    value.push_str("00-");
    push_hex(&mut value, &span_context.trace_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &span_context.span_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &[span_context.trace_flags().to_u8()]);
    value
}

/// Appends `bytes` as lowercase hex: what `format!("{:032x}")` on a trace
/// id gives, without the formatting machinery, on every request.
fn push_hex(out: &mut String, bytes: &[u8]) {
    out.extend(hex_digits(bytes).map(char::from));
}

/// `bytes` as lowercase hex digits (ASCII), two per byte: for buffers of
/// bytes, like the log lines'.
pub(crate) fn hex_digits(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|byte| {
        [
            DIGITS[usize::from(byte >> 4)],
            DIGITS[usize::from(byte & 0x0f)],
        ]
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
/// carry its ids (spans are not made current on entry; see
/// [`traced_subscriber`]).
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
/// (`INSERT tasks`). Give it the statement's future with
/// [`TimedBy::timed_by`].
pub fn db_span(operation: &'static str) -> Leaf {
    Leaf::client(
        operation,
        [
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", operation),
        ],
    )
}

/// A leaf span: a child of the current `tracing` span, made directly with
/// the OpenTelemetry tracer rather than as a `tracing` span bridged by
/// tracing-opentelemetry. For a span that is never entered and in which
/// our code logs nothing (a statement, a call to another service), the
/// bridge only adds cost: a registry slot, an `OtelData` built field by
/// field (a `String` per attribute), its lookups at start and close. Made
/// here, a leaf is one SDK span with its attributes as given (static
/// strings stay unallocated). It starts when made and ends when dropped.
/// With tracing off it is nothing.
pub struct Leaf(Option<opentelemetry_sdk::trace::Span>);

impl Leaf {
    /// A client span named `name`, with `attributes`, child of the current
    /// span (or a trace of its own outside any).
    pub fn client(name: &'static str, attributes: impl IntoIterator<Item = KeyValue>) -> Self {
        use opentelemetry::trace::{SpanKind, Tracer as _};
        // The parent first, then the tracer: each looks up the subscriber,
        // and a lookup nested in another would find none. With tracing
        // off, the parent is an empty context and there is no tracer.
        let parent = Span::current().context();
        let mut attributes = Some(attributes);
        Leaf(tracing::dispatcher::get_default(|d| {
            let LeafTracer(tracer) = d.downcast_ref::<LeafTracer>()?;
            Some(
                tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Client)
                    .with_attributes(attributes.take()?)
                    .start_with_context(tracer, &parent),
            )
        }))
    }

    /// The `traceparent` value that makes the callee's spans children of
    /// this one; `None` when tracing is off.
    pub fn traceparent(&self) -> Option<String> {
        use opentelemetry::trace::Span as _;
        let span_context = self.0.as_ref()?.span_context();
        span_context
            .is_valid()
            .then(|| traceparent_of(span_context))
    }

    /// Sets one attribute (an answer's status code, once known).
    pub fn set_attribute(&mut self, attribute: KeyValue) {
        use opentelemetry::trace::Span as _;
        if let Some(span) = &mut self.0 {
            span.set_attribute(attribute);
        }
    }
}

/// A future timed by a span it never enters: the span starts when it is
/// made and ends when the future completes (or is dropped).
///
/// For leaf spans around one awaited operation (a statement, a call to
/// another service), in which our code logs nothing: `.instrument(span)`
/// would enter and exit the span at every poll, which costs each time and
/// tells nothing more. Lines logged meanwhile carry the enclosing span's
/// ids.
pub trait TimedBy: std::future::Future + Sized {
    fn timed_by(self, span: Leaf) -> Timed<Self> {
        Timed { future: self, span }
    }
}

impl<F: std::future::Future> TimedBy for F {}

pin_project_lite::pin_project! {
    /// See [`TimedBy`].
    pub struct Timed<F> {
        #[pin]
        future: F,
        span: Leaf,
    }
}

impl<F: std::future::Future> std::future::Future for Timed<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        // Ends the span now rather than when the caller drops this future.
        *this.span = Leaf(None);
        std::task::Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
