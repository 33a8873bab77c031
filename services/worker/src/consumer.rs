//! The consume loop: one event at a time, offset committed only once the
//! task's outcome is stored (at-least-once delivery; repeats are no-ops).

use std::sync::Arc;
use std::time::Duration;

use pixelflow_common::kafka::TaskCreated;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::Instrument;

use crate::metrics::WorkerMetrics;
use crate::store;
use crate::thumbnail::{self, Limits};

pub struct TaskConsumer {
    pub consumer: StreamConsumer,
    pub pool: PgPool,
    pub metrics: WorkerMetrics,
    pub limits: Arc<Limits>,
    pub retry_interval: Duration,
    /// Claims a task may have; the next one marks it FAILED.
    pub max_attempts: i32,
    /// `ORIGINAL_RETENTION_SECONDS=0`: the original goes as the outcome
    /// is stored (api's sweep drops the others later).
    pub drop_originals: bool,
}

/// A consumer in `group` that commits by hand. With `instance_id`, a static
/// member (`group.instance.id`): a worker restarted under the same id
/// takes its partitions back at once instead of waiting for the broker to
/// evict its dead predecessor (which the stand-in broker never does).
pub fn consumer(
    brokers: &str,
    group: &str,
    instance_id: Option<&str>,
) -> rdkafka::error::KafkaResult<StreamConsumer> {
    let mut config = pixelflow_common::kafka::client_config(brokers);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    if let Some(id) = instance_id {
        config.set("group.instance.id", id);
    }
    config.create()
}

/// The span of one event's processing: a child of api's publication
/// through the record's `traceparent` header, so the upload's trace goes on
/// here.
fn process_span(message: &BorrowedMessage<'_>, event: &TaskCreated) -> tracing::Span {
    let span = tracing::info_span!(
        "task process",
        otel.name = format!("{} process", message.topic()),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = message.topic(),
        messaging.operation.type = "process",
        messaging.kafka.offset = message.offset(),
        task_id = %event.task_id,
    );
    let traceparent = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == pixelflow_common::telemetry::TRACEPARENT)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    });
    if let Some(parent) = traceparent {
        pixelflow_common::telemetry::set_parent(&span, parent);
    }
    pixelflow_common::telemetry::started(span)
}

/// Decrements the active-tasks gauge however processing ends.
struct Active<'a>(&'a prometheus::IntGauge);

impl<'a> Active<'a> {
    fn start(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum Handled {
    /// Stored (or nothing to do): commit the offset.
    Done,
    /// Shutdown came while the database was failing: leave the offset, the
    /// next consumer gets the event again.
    Abandoned,
}

impl TaskConsumer {
    /// Consumes until `shutdown` turns true. The event in hand is finished
    /// and committed first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut outage = pixelflow_common::outage::Outage::new(
            "cannot receive from Kafka",
            "receiving from Kafka again",
        );
        loop {
            let received = tokio::select! {
                m = self.consumer.recv() => m,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            match received {
                Ok(message) => {
                    outage.worked();
                    if let Handled::Done = self.handle(&message, &mut shutdown).await {
                        self.commit(&message);
                    }
                }
                Err(e) => {
                    self.metrics.consumption_errors.inc();
                    outage.failed(&e);
                    if self.pause(&mut shutdown).await {
                        break;
                    }
                }
            }
        }
        tracing::info!("consumer stopped");
    }

    /// Waits out the retry interval; true when shutdown came meanwhile.
    async fn pause(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.retry_interval) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        }
    }

    fn commit(&self, message: &BorrowedMessage<'_>) {
        // Async: a synchronous commit blocks the runtime thread for as long
        // as the broker is away, and health, metrics and SIGTERM with it. A
        // commit lost to an outage means one redelivery, which changes
        // nothing (the task is no longer PENDING or PROCESSING).
        if let Err(e) = self.consumer.commit_message(message, CommitMode::Async) {
            self.metrics.consumption_errors.inc();
            tracing::error!(error = %e, partition = message.partition(), offset = message.offset(), "cannot commit offset");
        }
    }

    async fn handle(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Handled {
        self.metrics.consumed.inc();
        let event = match message.payload().map(serde_json::from_slice::<TaskCreated>) {
            Some(Ok(event)) => event,
            other => {
                // A message we cannot read will not become readable: skip it
                // (commit) rather than block the partition forever.
                self.metrics.consumption_errors.inc();
                let error = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "empty message".into(),
                };
                tracing::error!(%error, partition = message.partition(), offset = message.offset(), "undecodable event skipped");
                return Handled::Done;
            }
        };
        let span = process_span(message, &event);
        self.process(&event, shutdown).instrument(span).await
    }

    /// Retries `step` (a statement) until it works, waiting the retry
    /// interval between tries; `None` when shutdown came meanwhile. Only
    /// the failed step is tried again: a failed store never claims the
    /// task again, so an attempt counts a start of processing.
    async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        task_id: uuid::Uuid,
        shutdown: &mut watch::Receiver<bool>,
        mut step: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        loop {
            match step().await {
                Ok(value) => return Some(value),
                Err(e) => {
                    tracing::error!(%task_id, error = %e, "cannot {what}; retrying");
                    if self.pause(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn process(&self, event: &TaskCreated, shutdown: &mut watch::Receiver<bool>) -> Handled {
        let task_id = event.task_id;
        let pool = &self.pool;
        let drop_original = self.drop_originals;
        let Some(claimed) = self
            .retrying("claim the task", task_id, shutdown, || {
                store::claim(pool, task_id)
            })
            .await
        else {
            return Handled::Abandoned;
        };
        let Some(store::Claimed { image, attempts }) = claimed else {
            tracing::info!(%task_id, "task already processed or unknown; event skipped");
            return Handled::Done;
        };
        // Every earlier claim ended with the worker gone before it recorded
        // an outcome: this image kills workers. Give up on it rather than
        // on the partition behind it.
        let image = match image {
            Some(image) if attempts <= self.max_attempts => image,
            Some(_) => {
                let reason = format!(
                    "gave up after {} attempts: the worker stopped while processing it each time",
                    attempts - 1
                );
                let handled = self.give_up(event, &reason, shutdown).await;
                tracing::error!(%task_id, user_id = %event.user_id, attempts = attempts - 1, "task failed: it stopped the worker every time");
                return handled;
            }
            None => {
                let reason = "the original image is gone".to_string();
                let handled = self.give_up(event, &reason, shutdown).await;
                tracing::error!(%task_id, user_id = %event.user_id, "task failed: its original image is gone");
                return handled;
            }
        };
        let _active = Active::start(&self.metrics.active);
        let timer = self.metrics.processing_duration.start_timer();
        let limits = self.limits.clone();
        // The blocking thread has no span of its own: carry the task's.
        let span = tracing::Span::current();
        let outcome =
            tokio::task::spawn_blocking(move || span.in_scope(|| thumbnail::make(&image, &limits)))
                .await
                .unwrap_or_else(|e| Err(format!("image processing crashed: {e}")));
        let stored = match &outcome {
            Ok(thumbnail) => {
                self.retrying("store the thumbnail", task_id, shutdown, || {
                    store::complete(pool, task_id, thumbnail, drop_original)
                })
                .await
            }
            Err(reason) => {
                self.retrying("record the failure", task_id, shutdown, || {
                    store::fail(pool, task_id, reason, drop_original)
                })
                .await
            }
        };
        timer.observe_duration();
        let Some(stored) = stored else {
            return Handled::Abandoned;
        };
        match outcome {
            Ok(thumbnail) if stored => {
                self.metrics.processed.success.inc();
                tracing::info!(%task_id, user_id = %event.user_id, width = thumbnail.width, height = thumbnail.height, attempts, "task completed");
            }
            Ok(_) => {
                tracing::info!(%task_id, "task completed by another delivery meanwhile; not counted again")
            }
            Err(reason) if stored => {
                self.metrics.processed.failure.inc();
                // The image is the client's fault, not the system's.
                tracing::warn!(%task_id, user_id = %event.user_id, error = %reason, "task failed");
            }
            Err(_) => {}
        }
        Handled::Done
    }

    /// Marks the task FAILED with `reason` without processing it, counted
    /// once.
    async fn give_up(
        &self,
        event: &TaskCreated,
        reason: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Handled {
        let (pool, task_id) = (&self.pool, event.task_id);
        let failed = self
            .retrying("record the failure", task_id, shutdown, || {
                store::fail(pool, task_id, reason, self.drop_originals)
            })
            .await;
        match failed {
            None => Handled::Abandoned,
            Some(marked) => {
                if marked {
                    self.metrics.processed.failure.inc();
                }
                Handled::Done
            }
        }
    }

    pub fn subscribe(&self, topic: &str) -> rdkafka::error::KafkaResult<()> {
        self.consumer.subscribe(&[topic])
    }
}
