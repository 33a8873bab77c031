//! api's metrics: RED plus tasks and Kafka publishing.

use pixelflow_common::http_metrics::HttpMetrics;
use pixelflow_common::metrics::register;
use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct ApiMetrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub tasks_created: IntCounter,
    pub tasks_retrieved: IntCounter,
    pub kafka_published: IntCounter,
    pub kafka_publish_errors: IntCounter,
    pub outbox_pending: IntGauge,
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
            registry,
        })
    }
}
