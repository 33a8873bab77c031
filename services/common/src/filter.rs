//! Which events and spans the subscriber keeps: the one filter both the
//! logs-only and the traced subscriber install.

use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

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
pub struct Selection {
    events: EnvFilter,
    /// Our crates' spans, when tracing is on.
    traced: Option<Targets>,
    /// Whether `LOG_LEVEL` has span directives (`target[span]=level`):
    /// then it decides about spans too, and hears of the ones it enabled.
    span_directives: bool,
}

impl Selection {
    pub fn new(events: EnvFilter, traced: bool) -> Self {
        Self {
            span_directives: events.to_string().contains('['),
            events,
            traced: traced.then(traced_crates),
        }
    }

    /// Libraries' spans traced too, at `info` and above, as a subscriber
    /// without [`traced_crates`] would: only to measure what leaving them
    /// out saves (`telemetry::levers`).
    pub fn with_library_spans(mut self) -> Self {
        if self.traced.is_some() {
            self.traced = Some(Targets::new().with_default(tracing::Level::INFO));
        }
        self
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
