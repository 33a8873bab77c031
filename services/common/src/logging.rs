//! One JSON object per line on stdout:
//! `{"timestamp":…,"level":"INFO","service":"api","message":…,<fields>}`.
//!
//! tracing-subscriber's own JSON layer nests event fields under `fields` and
//! has no place for a per-process `service`; log pipelines and
//! `pixelflowctl logs` want them flat, so this small formatter writes them.
//!
//! A line written inside a traced span also carries `trace_id` and
//! `span_id` (hex, as Jaeger shows them), so `pixelflowctl logs --trace ID`
//! can gather one trace's lines from every service.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Formats each event as one flat JSON object.
pub struct JsonLines {
    service: &'static str,
}

impl JsonLines {
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("service".into(), Value::String(self.service.into()));
        line.insert(
            "message".into(),
            fields
                .0
                .remove("message")
                .unwrap_or(Value::String(String::new())),
        );
        line.insert("target".into(), Value::String(meta.target().into()));
        if let Some((trace_id, span_id)) = trace_ids(ctx) {
            line.insert("trace_id".into(), Value::String(trace_id));
            line.insert("span_id".into(), Value::String(span_id));
        }
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The trace and span id of the innermost traced span the event is in.
/// Spans of crates that are not traced have no OpenTelemetry data; their
/// traced ancestor speaks for them.
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let current = ctx.lookup_current()?;
    current.scope().find_map(|span| {
        let extensions = span.extensions();
        let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
        let trace_id = data.trace_id()?;
        let span_id = data.span_id()?;
        (trace_id != opentelemetry::TraceId::INVALID)
            .then(|| (trace_id.to_string(), span_id.to_string()))
    })
}

/// The log layer's filter: `LOG_LEVEL` decides which events are written,
/// while every span at info or above stays visible to the formatter, so a
/// line logged at `warn` inside an `info` span still finds the span's trace
/// id. Spans below info (the libraries' `trace_span!`s) stay with
/// `LOG_LEVEL`'s verdict: keeping them all would make the registry open,
/// enter and close any a library opens on a hot path, for nothing.
pub struct SpansAndFilteredEvents {
    events: EnvFilter,
    /// Whether the filter has span directives (`target[span]=level`),
    /// which need to hear of every span; without, telling it costs a lock
    /// per span entered for nothing.
    span_directives: bool,
}

impl SpansAndFilteredEvents {
    pub fn new(events: EnvFilter, span_directives: bool) -> Self {
        Self {
            events,
            span_directives,
        }
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for SpansAndFilteredEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        kept_span(meta) || tracing_subscriber::layer::Filter::enabled(&self.events, meta, cx)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Decided once per callsite, as a global EnvFilter would, rather
        // than at every event.
        if kept_span(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing_subscriber::layer::Filter::<S>::callsite_enabled(&self.events, meta)
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // Spans at info must reach the formatter whatever LOG_LEVEL says.
        tracing_subscriber::layer::Filter::<S>::max_level_hint(&self.events)
            .map(|level| level.max(tracing::level_filters::LevelFilter::INFO))
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if self.span_directives {
            tracing_subscriber::layer::Filter::on_new_span(&self.events, attrs, id, ctx);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if self.span_directives {
            tracing_subscriber::layer::Filter::on_record(&self.events, id, values, ctx);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.span_directives {
            tracing_subscriber::layer::Filter::on_enter(&self.events, id, ctx);
        }
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.span_directives {
            tracing_subscriber::layer::Filter::on_exit(&self.events, id, ctx);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if self.span_directives {
            tracing_subscriber::layer::Filter::on_close(&self.events, id, ctx);
        }
    }
}

/// A span the log layer sees whatever `LOG_LEVEL` says: one at info or
/// above (ours are; traced spans are the ones that carry ids).
fn kept_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= tracing::Level::INFO
}

/// Formats no span fields: [`JsonLines`] writes only the event's own, so
/// the fmt layer need not render every span's fields when it opens.
pub struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), serde_json::json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

/// The default `LOG_LEVEL`: info, without PostgreSQL's notices about
/// migrations that were already applied.
pub const DEFAULT_FILTER: &str = "info,sqlx::postgres::notice=warn";

/// `LOG_LEVEL`, or [`DEFAULT_FILTER`].
pub fn level_from_env(
    env: &crate::settings::Env,
) -> Result<String, crate::settings::SettingsError> {
    env.or("LOG_LEVEL", DEFAULT_FILTER.to_string())
}

/// Installs the JSON logger on stdout, without traces (the services use
/// [`crate::telemetry::init`]). `level` is `LOG_LEVEL`: a level (`info`) or
/// a full filter (`info,sqlx=warn`).
pub fn init(service: &'static str, level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("LOG_LEVEL={level:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(JsonLines::new(service))
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer for tests that keeps what was logged.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&buf).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn events_become_flat_json_lines_with_service_and_context() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines::new("auth"))
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(user_id = "u-1", attempts = 3, "login failed");
        });
        let text = captured.text();
        let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["service"], "auth");
        assert_eq!(line["message"], "login failed");
        assert_eq!(line["user_id"], "u-1");
        assert_eq!(line["attempts"], 3);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
