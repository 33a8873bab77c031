//! The consume loop: up to `concurrency` events in flight, each offset
//! committed only once its task's outcome is stored and every earlier
//! offset of its partition is too (at-least-once delivery; repeats are
//! no-ops).

use std::sync::Arc;
use std::time::Duration;

use pixelflow_common::kafka::TaskCreated;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::budget::DecodeBudget;
use crate::metrics::WorkerMetrics;
use crate::offsets::{Offsets, Partition};
use crate::store;
use crate::thumbnail::{self, Limits};

pub struct TaskConsumer {
    pub consumer: StreamConsumer,
    /// Events processed at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    pub processor: Arc<Processor>,
}

/// What processing one event needs, shared by the events in flight.
pub struct Processor {
    pub pool: PgPool,
    pub metrics: WorkerMetrics,
    pub limits: Arc<Limits>,
    pub retry_interval: Duration,
    /// Claims a task may have; the next one marks it FAILED.
    pub max_attempts: i32,
    /// `ORIGINAL_RETENTION_SECONDS=0`: the original goes as the outcome
    /// is stored (api's sweep drops the others later).
    pub drop_originals: bool,
    /// Decoded pixels held at once, over all events in flight.
    pub decode_budget: DecodeBudget,
}

/// A consumer in `group` that commits by hand. With `instance_id`, a static
/// member (`group.instance.id`): a worker restarted under the same id
/// takes its partitions back at once instead of waiting for the broker to
/// evict its dead predecessor (after `session.timeout.ms`, 45 s).
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
fn process_span(message: &OwnedMessage, event: &TaskCreated) -> tracing::Span {
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

/// What the consume loop woke up for.
enum Next {
    Finished(Result<(Partition, i64, Handled), tokio::task::JoinError>),
    Received(rdkafka::error::KafkaResult<OwnedMessage>),
}

enum Handled {
    /// Stored (or nothing to do): commit the offset.
    Done,
    /// Shutdown came while the database was failing: leave the offset, the
    /// next consumer gets the event again.
    Abandoned,
}

impl TaskConsumer {
    /// Consumes until `shutdown` turns true. The events in hand are
    /// finished and committed first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut outage = pixelflow_common::outage::Outage::new(
            "cannot receive from Kafka",
            "receiving from Kafka again",
        );
        let mut offsets = Offsets::default();
        let mut running: JoinSet<(Partition, i64, Handled)> = JoinSet::new();
        loop {
            // Nothing is received beyond the concurrency: the rest waits in
            // the broker (or librdkafka's queue), not in this process.
            let next = tokio::select! {
                Some(joined) = running.join_next(), if !running.is_empty() => Next::Finished(joined),
                received = self.consumer.recv(), if running.len() < self.concurrency => {
                    Next::Received(received.map(|message| message.detach()))
                }
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            match next {
                Next::Finished(joined) => self.finished(joined, &mut offsets),
                Next::Received(Ok(message)) => {
                    outage.worked();
                    let partition = (message.topic().to_string(), message.partition());
                    let offset = message.offset();
                    offsets.started(partition.clone(), offset);
                    let processor = self.processor.clone();
                    let mut shutdown = shutdown.clone();
                    running.spawn(async move {
                        let handled = processor.handle(&message, &mut shutdown).await;
                        (partition, offset, handled)
                    });
                }
                Next::Received(Err(e)) => {
                    self.processor.metrics.consumption_errors.inc();
                    outage.failed(&e);
                    if self.processor.pause(&mut shutdown).await {
                        break;
                    }
                }
            }
        }
        while let Some(joined) = running.join_next().await {
            self.finished(joined, &mut offsets);
        }
        tracing::info!("consumer stopped");
    }

    fn finished(
        &self,
        joined: Result<(Partition, i64, Handled), tokio::task::JoinError>,
        offsets: &mut Offsets,
    ) {
        match joined {
            Ok((partition, offset, Handled::Done)) => {
                if let Some(next) = offsets.finished(&partition, offset) {
                    self.commit(&partition, next);
                }
            }
            // Left in flight: its partition commits nothing past it, so
            // the next consumer gets it again.
            Ok((_, _, Handled::Abandoned)) => {}
            Err(e) => {
                // A panic outside the image code (which has its own guard):
                // the offset stays uncommitted, as for a crash.
                self.processor.metrics.consumption_errors.inc();
                tracing::error!(error = %e, "processing an event crashed; its offset stays uncommitted");
            }
        }
    }

    /// Commits `next` as the partition's next offset to read.
    fn commit(&self, (topic, partition): &Partition, next: i64) {
        // Async: a synchronous commit blocks the runtime thread for as long
        // as the broker is away, and health, metrics and SIGTERM with it. A
        // commit lost to an outage means redeliveries, which change nothing
        // (the tasks are no longer PENDING or PROCESSING).
        let mut list = TopicPartitionList::new();
        let committed = list
            .add_partition_offset(topic, *partition, Offset::Offset(next))
            .and_then(|()| self.consumer.commit(&list, CommitMode::Async));
        if let Err(e) = committed {
            self.processor.metrics.consumption_errors.inc();
            tracing::error!(error = %e, partition, offset = next, "cannot commit offset");
        }
    }

    pub fn subscribe(&self, topic: &str) -> rdkafka::error::KafkaResult<()> {
        self.consumer.subscribe(&[topic])
    }
}

impl Processor {
    /// Waits out the retry interval; true when shutdown came meanwhile.
    async fn pause(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.retry_interval) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        }
    }

    async fn handle(
        &self,
        message: &OwnedMessage,
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
        // Room for the decoded pixels first: waits while larger images in
        // flight hold the budget. An unreadable header costs nothing here;
        // `make` says why.
        let cost = thumbnail::decode_cost(&image, &limits).unwrap_or(0);
        let _room = self.decode_budget.reserve(cost).await;
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
}
