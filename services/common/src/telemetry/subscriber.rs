//! The subscriber `init` installs: JSON lines, the one filter, and with
//! tracing on the OpenTelemetry layer told of spans only; and the provider
//! whose batch processor exports them.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::export::ReportOnce;
use super::levers::Defaults;
use super::settings::Tracing;
use crate::filter::Selection;
use crate::logging::{logs_only_subscriber, JsonLogs};

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

    /// Exports every span queued so far and waits for the export to end.
    /// For measurements that must not carry one phase's exports into the
    /// next (`examples/trace_path.rs` in api).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
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

/// The OpenTelemetry layer, told of spans only: log lines already join
/// their trace through `trace_id`, and copying each into its span as a
/// span event would export every line twice (the tracing bench measured
/// that cost).
///
/// [`Defaults`] can put the events back, and the enters and exits that
/// busy/idle time and context activation need, to measure what they cost.
struct SpansOnly<L> {
    layer: L,
    leaves: LeafTracer,
    restored: Defaults,
}

/// The tracer [`Leaf`] spans are made with, found through the subscriber
/// like tracing-opentelemetry's own `WithContext`: whoever installed the
/// traced subscriber (a service, or a test with its own provider) gets its
/// leaves, and with tracing off there is none.
pub(super) struct LeafTracer(pub(super) opentelemetry_sdk::trace::SdkTracer);

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
    // `an_entered_span_ends_when_it_closes`). Told only when `restored`
    // puts back busy/idle time or context activation, which need them;
    // likewise events, only when it puts back span events.
    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if self.restored.enters_and_exits() {
            self.layer.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if self.restored.enters_and_exits() {
            self.layer.on_exit(id, ctx);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if self.restored.events {
            self.layer.on_event(event, ctx);
        }
    }

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
    let restored = Defaults::from_process_env()?;
    traced_subscriber_with(
        service,
        filter,
        provider.tracer(service),
        std::io::stdout,
        restored,
    )
    .try_init()
    .map_err(|e| e.to_string())?;
    Ok(Telemetry {
        provider: Some(provider),
    })
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
    traced_subscriber_with(service, filter, tracer, writer, Defaults::default())
}

/// [`traced_subscriber`] with some of tracing-opentelemetry's defaults
/// `restored` ([`Defaults`]), to measure what each change from them saves.
pub fn traced_subscriber_with<W>(
    service: &'static str,
    filter: EnvFilter,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    writer: W,
    restored: Defaults,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let leaves = LeafTracer(tracer.clone());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Per-span extras that cost an allocation each and say little
        // here: source location, thread, target.
        .with_location(restored.location)
        .with_target(restored.target)
        .with_threads(restored.threads)
        // Both need the layer to hear of enters and exits, which
        // `SpansOnly` keeps from it: busy/idle time would read all idle,
        // and a span's parent would be looked up in an OpenTelemetry
        // "current" context nothing sets. Off, the parent is tracing's
        // current span. Spans that log are started by [`started`], which
        // gives their lines the ids.
        .with_tracked_inactivity(restored.inactivity)
        .with_context_activation(restored.context);
    let mut selection = Selection::new(filter, true);
    if restored.library {
        selection = selection.with_library_spans();
    }
    tracing_subscriber::registry()
        .with(JsonLogs::new(service, writer))
        .with(SpansOnly {
            layer: spans,
            leaves,
            restored,
        })
        .with(selection)
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
