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

use opentelemetry::trace::{SpanId, TraceId};
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
    /// written inside a traced span. Written straight into one buffer
    /// rather than built as a `serde_json::Map` and serialized: every
    /// request logs a line, and the map cost ~35 allocations and a
    /// rehash per line (in the span_cost example, a line costs a quarter
    /// of what it did).
    fn line(&self, event: &Event<'_>, ids: Option<(TraceId, SpanId)>) -> Vec<u8> {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Vec::with_capacity(192 + fields.rest.len());
        line.extend_from_slice(b"{\"timestamp\":");
        json(
            &mut line,
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        line.extend_from_slice(b",\"level\":");
        json(&mut line, meta.level().as_str());
        line.extend_from_slice(b",\"service\":");
        json(&mut line, self.service);
        line.extend_from_slice(b",\"message\":");
        match &fields.message {
            Some(message) => line.extend_from_slice(message),
            None => line.extend_from_slice(b"\"\""),
        }
        line.extend_from_slice(b",\"target\":");
        json(&mut line, meta.target());
        if let Some((trace_id, span_id)) = ids {
            line.extend_from_slice(b",\"trace_id\":\"");
            crate::hex::extend_hex(&mut line, &trace_id.to_bytes());
            line.extend_from_slice(b"\",\"span_id\":\"");
            crate::hex::extend_hex(&mut line, &span_id.to_bytes());
            line.push(b'"');
        }
        line.extend_from_slice(&fields.rest);
        line.extend_from_slice(b"}\n");
        line
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
            .write_all(&line);
    }
}

/// The trace and span id of `span`, if it is traced. Spans of crates that
/// are not traced have no OpenTelemetry data; their traced ancestor speaks
/// for them.
fn trace_ids<R: for<'a> LookupSpan<'a>>(span: &SpanRef<'_, R>) -> Option<(TraceId, SpanId)> {
    let extensions = span.extensions();
    let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
    let trace_id = data.trace_id()?;
    let span_id = data.span_id()?;
    (trace_id != TraceId::INVALID).then_some((trace_id, span_id))
}

/// The keys every line sets itself: an event field of the same name is
/// left out, so a field can never pass for the line's own.
const OWN_KEYS: [&str; 6] = [
    "timestamp",
    "level",
    "service",
    "target",
    "trace_id",
    "span_id",
];

/// An event's fields as JSON: the message's value apart (it goes first),
/// the others as `,"name":value` in the order they were recorded.
#[derive(Default)]
struct Fields {
    message: Option<Vec<u8>>,
    rest: Vec<u8>,
    /// Names already in `rest`: a name given twice keeps its first value
    /// (a callsite has at most 32 fields).
    seen: [&'static str; 32],
    seen_len: usize,
}

impl Fields {
    /// Where `field`'s value is to be written, after its key; `None` for a
    /// field that is left out.
    fn value_of(&mut self, field: &Field) -> Option<&mut Vec<u8>> {
        let name = field.name();
        if name == "message" {
            let message = self.message.get_or_insert_with(Vec::new);
            message.clear();
            return Some(message);
        }
        let seen = &self.seen[..self.seen_len];
        if OWN_KEYS.contains(&name) || seen.contains(&name) || self.seen_len == self.seen.len() {
            return None;
        }
        self.seen[self.seen_len] = name;
        self.seen_len += 1;
        self.rest.push(b',');
        json(&mut self.rest, name);
        self.rest.push(b':');
        Some(&mut self.rest)
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Not finite: `null`, as JSON has no NaN or infinity.
        if let Some(out) = self.value_of(field) {
            json(out, &value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(out) = self.value_of(field) {
            json(out, &value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(out) = self.value_of(field) {
            json(out, &value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if let Some(out) = self.value_of(field) {
            json(out, &value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(out) = self.value_of(field) {
            json(out, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(out) = self.value_of(field) {
            // Escaped as it is formatted, without a String in between.
            let _ = serde::Serializer::collect_str(
                &mut serde_json::Serializer::new(out),
                &format_args!("{value:?}"),
            );
        }
    }
}

/// Appends `value` as JSON. Only strings, numbers and bools are written
/// here, which always serialize, and into a `Vec`, which cannot fail.
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
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
    logs_only_subscriber(service, filter, std::io::stdout)
        .try_init()
        .map_err(|e| e.to_string())
}

/// The most of a client-controlled string (a path, an origin, a method)
/// a log line carries.
pub const CLIPPED: usize = 200;

/// `text` for a log line: itself when short, else its first [`CLIPPED`]
/// bytes (on a character boundary) and how long it was, so a 64 KiB path
/// costs the log 200 bytes, not 64 KiB.
pub fn clip(text: &str) -> String {
    if text.len() <= CLIPPED {
        return text.to_string();
    }
    let mut end = CLIPPED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// What [`crate::telemetry::init`] installs when tracing is off: the JSON lines alone,
/// filtered by `filter` (`LOG_LEVEL`), and no spans.
/// Public, like [`crate::telemetry::traced_subscriber`], for `examples/span_cost.rs`.
pub fn logs_only_subscriber<W>(
    service: &'static str,
    filter: EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    tracing_subscriber::registry()
        .with(JsonLogs::new(service, writer))
        .with(crate::filter::Selection::new(filter, false))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::Write;

    /// A writer for tests that keeps what was logged.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&buf).into_owned()
        }

        /// A capture of `service`'s lines at info and above, installed as
        /// this thread's subscriber until the guard drops.
        pub(crate) fn install(service: &'static str) -> (Self, tracing::subscriber::DefaultGuard) {
            let captured = Self::default();
            let subscriber =
                logs_only_subscriber(service, EnvFilter::new("info"), captured.clone());
            (captured, tracing::subscriber::set_default(subscriber))
        }

        /// The lines logged so far, each parsed.
        pub(crate) fn lines(&self) -> Vec<Value> {
            self.text()
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect()
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
        let subscriber = logs_only_subscriber("auth", EnvFilter::new("info"), captured.clone());
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

    fn one_line(log: impl FnOnce()) -> Value {
        let captured = Captured::default();
        let subscriber = logs_only_subscriber("api", EnvFilter::new("info"), captured.clone());
        tracing::subscriber::with_default(subscriber, log);
        let text = captured.text();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text:?}"
        );
        serde_json::from_str(text.trim_end()).expect("one JSON line")
    }

    #[test]
    fn quotes_newlines_and_control_characters_are_escaped_in_every_kind_of_field() {
        let odd = "a \"quoted\"\nline\twith \\ and \u{1}";
        let line = one_line(|| {
            tracing::error!(
                error = %odd,
                debugged = ?odd,
                raw = odd,
                "failed: {odd}"
            );
        });
        assert_eq!(line["message"], format!("failed: {odd}"));
        assert_eq!(line["error"], odd);
        assert_eq!(line["debugged"], format!("{odd:?}"));
        assert_eq!(line["raw"], odd);
    }

    #[test]
    fn numbers_and_bools_stay_typed_and_what_json_cannot_hold_is_null() {
        let line = one_line(|| {
            tracing::info!(
                small = -3i64,
                big = u64::MAX,
                ratio = 0.25,
                nan = f64::NAN,
                ok = true,
                "measured"
            );
        });
        assert_eq!(line["small"], -3);
        assert_eq!(line["big"], u64::MAX);
        assert_eq!(line["ratio"], 0.25);
        assert!(line["nan"].is_null());
        assert_eq!(line["ok"], true);
    }

    #[test]
    fn a_field_cannot_pass_for_the_lines_own_keys_and_a_line_without_message_has_an_empty_one() {
        let line = one_line(|| {
            tracing::warn!(
                service = "forged",
                level = "DEBUG",
                timestamp = "never",
                target = "elsewhere",
                trace_id = "0",
                kept = 1
            );
        });
        assert_eq!(line["service"], "api");
        assert_eq!(line["level"], "WARN");
        assert_ne!(line["timestamp"], "never");
        assert_eq!(line["target"], module_path!());
        assert!(line.get("trace_id").is_none(), "tracing is off: {line}");
        assert_eq!(line["message"], "");
        assert_eq!(line["kept"], 1);
    }

    #[test]
    fn a_long_client_string_is_clipped_with_its_length_kept() {
        assert_eq!(super::clip("/api/tasks"), "/api/tasks");
        let long = "é".repeat(5000);
        let clipped = super::clip(&long);
        assert!(clipped.len() < 220, "{}", clipped.len());
        assert!(clipped.ends_with("… (10000 bytes)"), "{clipped}");
    }
}
