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

mod export;
mod leaf;
pub mod levers;
mod propagation;
mod settings;
mod subscriber;

pub use opentelemetry::KeyValue;

/// Where it always was; it lives with the logs it is made of.
pub use crate::logging::logs_only_subscriber;
pub use export::ReportOnce;
pub use leaf::{db_span, Leaf, Timed, TimedBy};
pub use propagation::{set_parent, started, traceparent};
pub use settings::Tracing;
pub use subscriber::{init, traced_subscriber, traced_subscriber_with, Telemetry};

/// The W3C trace-context header, on HTTP requests and answers and on Kafka
/// records.
pub const TRACEPARENT: &str = "traceparent";

#[cfg(test)]
mod tests;
