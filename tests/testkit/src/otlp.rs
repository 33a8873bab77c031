//! A test OTLP/HTTP receiver: decodes what the services export with the
//! OpenTelemetry proto messages (real protobuf, as a collector reads it)
//! and keeps every span for the test to look at.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// One span as the receiver decoded it. Ids are lowercase hex, as in a
/// `traceparent` and in the services' logs; `parent_span_id` is empty for a
/// root span.
#[derive(Debug, Clone)]
pub struct RecordedSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Every attribute as text, whatever its OTLP type.
    pub attributes: BTreeMap<String, String>,
    /// The attributes sent as OTLP ints (a status code must be one, per
    /// the semantic conventions, not the text "200").
    pub int_attributes: BTreeMap<String, i64>,
}

type Spans = Arc<Mutex<Vec<RecordedSpan>>>;

/// The receiver, on a free loopback port; stops when dropped.
pub struct OtlpReceiver {
    /// For `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter adds `/v1/traces`).
    pub endpoint: String,
    spans: Spans,
    counted: Arc<std::sync::atomic::AtomicU64>,
    traces: Traces,
    server: tokio::task::JoinHandle<()>,
}

/// Per trace id: its spans so far, and its root span's name once seen.
type Traces = Arc<Mutex<HashMap<Vec<u8>, TraceTally>>>;

#[derive(Default)]
struct TraceTally {
    root: Option<String>,
    spans: u64,
}

#[derive(Clone)]
struct Shared {
    spans: Spans,
    /// Spans decoded, kept or not.
    counted: Arc<std::sync::atomic::AtomicU64>,
    /// Whether decoded spans are kept for [`OtlpReceiver::spans`].
    keep: bool,
    /// Counting receivers tally spans per trace ([`OtlpReceiver::counts`]).
    traces: Traces,
}

impl OtlpReceiver {
    /// A receiver that keeps every span it decodes, for tests.
    pub async fn start() -> Self {
        Self::serve(true).await
    }

    /// A receiver that decodes every export, as a collector does, and only
    /// counts the spans ([`OtlpReceiver::counted`]), for benches: keeping
    /// hundreds of thousands of spans is the test's bookkeeping, not a
    /// collector's work.
    pub async fn counting() -> Self {
        Self::serve(false).await
    }

    /// Spans decoded so far.
    pub fn counted(&self) -> u64 {
        self.counted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// For benches, from a counting receiver: `{"spans": N, "traces":
    /// {ROOT: {"traces": T, "spans": S}}}`, the spans of the traces whose
    /// root span is named ROOT (`"GET /api/tasks"`), so that spans per
    /// request is `S / T` whatever else the run traced. Traces whose root
    /// never arrived are under `""`.
    pub fn counts(&self) -> serde_json::Value {
        let traces = self.traces.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_root: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for tally in traces.values() {
            let entry = by_root
                .entry(tally.root.as_deref().unwrap_or(""))
                .or_default();
            entry.0 += 1;
            entry.1 += tally.spans;
        }
        let by_root: serde_json::Map<String, serde_json::Value> = by_root
            .into_iter()
            .map(|(root, (traces, spans))| {
                (
                    root.to_string(),
                    serde_json::json!({ "traces": traces, "spans": spans }),
                )
            })
            .collect();
        serde_json::json!({ "spans": self.counted(), "traces": by_root })
    }

    async fn serve(keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let address = listener.local_addr().expect("receiver address");
        let shared = Shared {
            spans: Spans::default(),
            counted: Arc::default(),
            keep,
            traces: Traces::default(),
        };
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{address}"),
            spans: shared.spans,
            counted: shared.counted,
            traces: shared.traces,
            server,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<RecordedSpan> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<RecordedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Waits until `done` holds for the spans of `trace_id`.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        done: impl Fn(&[RecordedSpan]) -> bool,
    ) -> Vec<RecordedSpan> {
        crate::eventually(
            &format!("trace {trace_id} to be exported"),
            timeout,
            || async {
                let spans = self.trace(trace_id);
                done(&spans).then_some(spans)
            },
        )
        .await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn export(State(shared): State<Shared>, body: Bytes) -> axum::response::Response {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let count: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    shared
        .counted
        .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
    if !shared.keep {
        let mut traces = shared.traces.lock().unwrap_or_else(|p| p.into_inner());
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            let tally = traces.entry(span.trace_id.clone()).or_default();
            tally.spans += 1;
            if span.parent_span_id.is_empty() {
                tally.root = Some(span.name.clone());
            }
        }
    }
    let mut decoded = Vec::new();
    for resource_spans in request.resource_spans.into_iter().filter(|_| shared.keep) {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| attribute(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                decoded.push(RecordedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|kv| Some((kv.key.clone(), text(kv)?)))
                        .collect(),
                    int_attributes: span
                        .attributes
                        .iter()
                        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            AnyValue::IntValue(i) => Some((kv.key.clone(), *i)),
                            _ => None,
                        })
                        .collect(),
                });
            }
        }
    }
    shared
        .spans
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(decoded);
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(text)
}

fn text(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        AnyValue::BoolValue(b) => Some(b.to_string()),
        AnyValue::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
