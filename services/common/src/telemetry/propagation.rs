//! W3C trace context in and out: the `traceparent` a span hands on, and
//! the remote parent a received one names.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TRACEPARENT;
use crate::hex::push_hex;

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
pub(super) fn traceparent_of(span_context: &opentelemetry::trace::SpanContext) -> String {
    let mut value = String::with_capacity(55);
    value.push_str("00-");
    push_hex(&mut value, &span_context.trace_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &span_context.span_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &[span_context.trace_flags().to_u8()]);
    value
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
