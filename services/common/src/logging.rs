//! One JSON object per line on stdout:
//! `{"timestamp":…,"level":"INFO","service":"api","message":…,<fields>}`.
//!
//! tracing-subscriber's own JSON layer nests event fields under `fields` and
//! has no place for a per-process `service`; log pipelines and
//! `pixelflowctl logs` want them flat, so this small layer writes them.
//!
//! A line written inside a traced span also carries `trace_id` and
//! `span_id` (hex, as Jaeger shows them), so `pixelflowctl logs --trace ID`
//! can gather one trace's lines from every service.

use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::EnvFilter;

/// Writes each event as one flat JSON object on a line of its own.
///
/// A layer of its own rather than a formatter for tracing-subscriber's fmt
/// layer: the fmt layer keeps formatted fields for every span it sees,
/// while these lines need spans only to find the trace they are in, which
/// the layer context answers without the layer hearing of spans at all.
pub struct JsonLogs<W> {
    service: &'static str,
    writer: W,
}

impl<W> JsonLogs<W> {
    pub fn new(service: &'static str, writer: W) -> Self {
        Self { service, writer }
    }

    /// The line for `event`, with `ids` (trace id, span id) when it was
    /// written inside a traced span.
    fn line(&self, event: &Event<'_>, ids: Option<(String, String)>) -> String {
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
        if let Some((trace_id, span_id)) = ids {
            line.insert("trace_id".into(), Value::String(trace_id));
            line.insert("span_id".into(), Value::String(span_id));
        }
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        text
    }
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLogs<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let ids = ctx
            .event_scope(event)
            .and_then(|mut scope| scope.find_map(|span| trace_ids(&span)));
        let line = self.line(event, ids);
        // One write per line, so lines from several threads never mix. A
        // log that cannot be written has nowhere to be reported.
        let _ = self
            .writer
            .make_writer_for(event.metadata())
            .write_all(line.as_bytes());
    }
}

/// The trace and span id of `span`, if it is traced. Spans of crates that
/// are not traced have no OpenTelemetry data; their traced ancestor speaks
/// for them.
fn trace_ids<R: for<'a> LookupSpan<'a>>(span: &SpanRef<'_, R>) -> Option<(String, String)> {
    let extensions = span.extensions();
    let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
    let trace_id = data.trace_id()?;
    let span_id = data.span_id()?;
    (trace_id != opentelemetry::TraceId::INVALID).then(|| {
        let (mut trace, mut span) = (String::with_capacity(32), String::with_capacity(16));
        crate::telemetry::push_hex(&mut trace, &trace_id.to_bytes());
        crate::telemetry::push_hex(&mut span, &span_id.to_bytes());
        (trace, span)
    })
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
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_new(level).map_err(|e| format!("LOG_LEVEL={level:?}: {e}"))?;
    crate::telemetry::logs_only_subscriber(service, filter, std::io::stdout)
        .try_init()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

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
        let subscriber = crate::telemetry::logs_only_subscriber(
            "auth",
            EnvFilter::new("info"),
            captured.clone(),
        );
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
