//! worker's metrics: consumption, processing outcomes, latency and the
//! number of tasks in hand.

use pixelflow_common::metrics::{children, register};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub const OUTCOMES: [&str; 2] = ["success", "failure"];

/// `worker_tasks_processed_total{status}`, by outcome.
#[derive(Clone)]
pub struct Processed {
    pub success: IntCounter,
    pub failure: IntCounter,
}

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    pub consumed: IntCounter,
    pub consumption_errors: IntCounter,
    pub processed: Processed,
    pub processing_duration: Histogram,
    pub active: IntGauge,
}

impl WorkerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let processed = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "worker_tasks_processed_total",
                    "Tasks processed, by outcome (failure: the image could not be decoded).",
                ),
                &["status"],
            )?,
        )?;
        let [success, failure] = children(&processed, OUTCOMES);
        let metrics = Self {
            consumed: register(
                &registry,
                IntCounter::new(
                    "worker_kafka_messages_consumed_total",
                    "Messages received from the image-tasks topic.",
                )?,
            )?,
            consumption_errors: register(
                &registry,
                IntCounter::new(
                    "worker_kafka_consumption_errors_total",
                    "Errors receiving, decoding or committing messages.",
                )?,
            )?,
            processed: Processed { success, failure },
            processing_duration: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "worker_task_processing_duration_seconds",
                        "Time from claiming a task to recording its result.",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ]),
                )?,
            )?,
            active: register(
                &registry,
                IntGauge::new(
                    "worker_active_processing_tasks",
                    "Tasks being processed right now.",
                )?,
            )?,
            registry,
        };
        Ok(metrics)
    }
}
