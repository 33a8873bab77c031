//! api's metrics: RED plus tasks and Kafka publishing.

use pixelflow_common::http_metrics::HttpMetrics;
use pixelflow_common::metrics::register;
use prometheus::{Gauge, IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct ApiMetrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub tasks_created: IntCounter,
    pub tasks_retrieved: IntCounter,
    pub kafka_published: IntCounter,
    pub kafka_publish_errors: IntCounter,
    pub outbox_pending: IntGauge,
    /// Bytes of images (originals and thumbnails) the tasks hold.
    pub stored_bytes: IntGauge,
    /// The fullest user's share of the storage quota, capped at 1.
    pub fullest_user: Gauge,
}

impl ApiMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        Ok(Self {
            http: HttpMetrics::new("api", &registry)?,
            tasks_created: register(
                &registry,
                IntCounter::new("api_tasks_created_total", "Image tasks created by uploads.")?,
            )?,
            tasks_retrieved: register(
                &registry,
                IntCounter::new(
                    "api_tasks_retrieved_total",
                    "Successful reads of tasks: listings, single tasks and results.",
                )?,
            )?,
            kafka_published: register(
                &registry,
                IntCounter::new(
                    "api_kafka_messages_published_total",
                    "Task events acknowledged by Kafka.",
                )?,
            )?,
            kafka_publish_errors: register(
                &registry,
                IntCounter::new(
                    "api_kafka_publish_errors_total",
                    "Failed attempts to publish a task event; the event is retried from the outbox.",
                )?,
            )?,
            outbox_pending: register(
                &registry,
                IntGauge::new(
                    "api_outbox_pending_messages",
                    "Task events stored but not yet acknowledged by Kafka.",
                )?,
            )?,
            stored_bytes: register(
                &registry,
                IntGauge::new(
                    "api_stored_image_bytes",
                    "Bytes of images (originals and thumbnails) all tasks hold.",
                )?,
            )?,
            fullest_user: register(
                &registry,
                Gauge::new(
                    "api_user_storage_quota_max_ratio",
                    "The largest share of USER_STORAGE_QUOTA_BYTES one user's tasks hold (0 to 1).",
                )?,
            )?,
            registry,
        })
    }
}
