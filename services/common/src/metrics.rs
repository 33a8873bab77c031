//! Registering metrics and serving them in the Prometheus text format 0.0.4.
//!
//! Each app instance owns its own [`Registry`] rather than the process-wide
//! default, so tests can run many instances in one process.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};

pub use prometheus;

/// Registers `collector` and hands it back, so a metrics struct can be built
/// in one expression per field.
pub fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

/// The children of `vec` for each of `values` of its one label, resolved
/// once at start-up (and so exported at 0 from then on): the call sites
/// then name a field, never a label value by string.
pub fn children<M, const N: usize>(
    vec: &prometheus::core::MetricVec<M>,
    values: [&str; N],
) -> [M::M; N]
where
    M: prometheus::core::MetricVecBuilder,
{
    values.map(|value| vec.with_label_values(&[value]))
}

/// The latency buckets for every request histogram: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The text exposition of everything in `registry`.
pub fn encode(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// `GET /metrics`.
pub async fn serve(State(registry): State<Registry>) -> Response {
    match encode(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response()
        }
    }
}
