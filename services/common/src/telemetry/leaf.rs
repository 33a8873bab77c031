//! Leaf spans: one SDK span per statement or call, made without the
//! tracing bridge, and the future wrapper that times one by it.

use opentelemetry::KeyValue;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::traceparent_of;
use super::subscriber::LeafTracer;

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
