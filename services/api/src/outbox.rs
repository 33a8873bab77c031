//! The outbox relay: publishes stored task events to Kafka and deletes them
//! once the broker has acknowledged them.
//!
//! Uploads wake the relay at once; a timer retries what failed. Rows are
//! claimed with `FOR UPDATE SKIP LOCKED`, so several api replicas can relay
//! side by side without publishing one event twice in the normal case. A
//! crash between the broker's ack and the delete republishes an event: the
//! worker treats a repeated event as a no-op.
//!
//! A batch is sent at once (the producer pipelines it), so its rows stay
//! locked for about one acknowledgement, or one `timeout` while the broker
//! is away, not one per row. A producer that reports a fatal error (after
//! which librdkafka never sends again) is replaced by a new one.

use std::sync::Arc;
use std::time::Duration;

use pixelflow_common::outage::Outage;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::ApiMetrics;

const BATCH: i64 = 100;

pub struct Relay {
    /// Tasks PENDING this long with no event waiting get their event again.
    pub redeliver_after: Duration,
    pub pool: PgPool,
    pub producer: FutureProducer,
    pub kafka: pixelflow_common::kafka::KafkaSettings,
    pub timeout: Duration,
    /// `enable.idempotence` of the producer, to build a replacement alike.
    pub idempotent: bool,
    pub poll_interval: Duration,
    pub metrics: ApiMetrics,
    pub wake: Arc<Notify>,
    pub retention: Retention,
}

/// How long finished tasks keep their images, and the quota the storage
/// gauge measures users against.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A finished task's original is dropped this long after it finished.
    pub originals: Duration,
    /// A finished task is deleted this long after it finished.
    pub tasks: Duration,
    pub quota: u64,
}

/// How often the storage gauges are measured: a sum over every user's
/// tasks, so not at every poll; Prometheus scrapes every 15 s.
const STORAGE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Topic(#[from] pixelflow_common::kafka::TopicError),
    #[error("publishing task {task_id} failed: {error}")]
    Publish { task_id: Uuid, error: String },
}

/// A task the sweeper queues again, with the task's own `traceparent`.
#[derive(sqlx::FromRow)]
struct StaleTask {
    id: Uuid,
    user_id: Uuid,
    content_type: String,
    created_at: chrono::DateTime<chrono::Utc>,
    traceparent: Option<String>,
}

/// An event waiting in the outbox.
#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    task_id: Uuid,
    payload: String,
    traceparent: Option<String>,
}

/// Queues `event` in the outbox within `tx`, to be published with
/// `traceparent` as its parent: the one way an event enters it, for a new
/// task and for one queued again.
pub async fn enqueue(
    tx: &mut sqlx::PgConnection,
    event: &pixelflow_common::kafka::TaskCreated,
    traceparent: Option<&str>,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO task_outbox (task_id, payload, traceparent) VALUES ($1, $2, $3)")
        .bind(event.task_id)
        .bind(payload)
        .bind(traceparent)
        .execute(tx)
        .await
        .map(|_| ())
}

/// The span of one event's publication: a child of the upload that stored
/// it (through the outbox row's `traceparent`, whichever api process
/// publishes it), the parent of the worker's processing.
fn publish_span(topic: &str, task_id: Uuid, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "outbox publish",
        otel.name = format!("{topic} publish"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = topic,
        messaging.operation.type = "send",
        task_id = %task_id,
    );
    if let Some(parent) = traceparent {
        pixelflow_common::telemetry::set_parent(&span, parent);
    }
    pixelflow_common::telemetry::started(span)
}

/// A producer that gives up on a message after `timeout`, so a broker
/// outage shows as errors (and retries) rather than an ever-growing queue.
pub fn producer(
    brokers: &str,
    timeout: Duration,
    idempotent: bool,
) -> rdkafka::error::KafkaResult<FutureProducer> {
    pixelflow_common::kafka::client_config(brokers)
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set("enable.idempotence", idempotent.to_string())
        .set("acks", "all")
        .create()
}

impl Relay {
    /// Runs until `shutdown` turns true, then makes one last round.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut topic_ready = false;
        // Uploads wake the relay too; the sweep is not theirs to run, so it
        // keeps to the poll interval.
        let mut last_sweep: Option<tokio::time::Instant> = None;
        let mut last_storage: Option<tokio::time::Instant> = None;
        // A broker that is down fails every round: logged once per outage.
        let mut topic_outage = Outage::new("Kafka topic not ready", "Kafka topic ready");
        let mut publish_outage = Outage::new(
            "outbox relay round failed; retrying",
            "outbox relay publishing again",
        );
        loop {
            if !topic_ready {
                topic_ready = match self.ensure_topic().await {
                    Ok(()) => {
                        if !topic_outage.worked() {
                            tracing::info!(topic = %self.kafka.topic, "Kafka topic ready");
                        }
                        true
                    }
                    Err(e) => {
                        topic_outage.failed(&e);
                        false
                    }
                };
            }
            if last_sweep.is_none_or(|at| at.elapsed() >= self.poll_interval) {
                last_sweep = Some(tokio::time::Instant::now());
                if let Err(e) = self.sweep().await {
                    tracing::error!(error = %e, "cannot look for tasks whose event was lost");
                }
                self.retain().await;
            }
            if last_storage.is_none_or(|at| at.elapsed() >= STORAGE_EVERY) {
                last_storage = Some(tokio::time::Instant::now());
                self.measure_storage().await;
            }
            if topic_ready {
                match self.drain().await {
                    Ok(()) => {
                        publish_outage.worked();
                    }
                    Err(e) => publish_outage.failed(&e),
                }
            }
            self.refresh_pending().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        // The server has stopped: publish what its last requests stored.
        if topic_ready {
            if let Err(e) = self.drain().await {
                tracing::error!(error = %e, "outbox relay's last round failed; the next start publishes the rest");
            }
            self.refresh_pending().await;
        }
        tracing::info!("outbox relay stopped");
    }

    async fn ensure_topic(&mut self) -> Result<(), RelayError> {
        let ensured = self.kafka.ensure_topic(self.timeout).await;
        if ensured.is_err() && self.pending().await.unwrap_or(0) > 0 {
            // Pending events cannot go out while the topic is unknown:
            // that is a failed publish attempt.
            self.metrics.kafka_publish_errors.inc();
        }
        ensured.map_err(RelayError::from)
    }

    /// Publishes everything pending, batch by batch, stopping at the first
    /// failure (the broker is most likely down; the timer retries).
    async fn drain(&mut self) -> Result<(), RelayError> {
        loop {
            let mut tx = self.pool.begin().await?;
            let rows: Vec<Pending> = sqlx::query_as(
                "SELECT id, task_id, payload, traceparent FROM task_outbox \
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            )
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let sends = rows.iter().map(|row| {
                let (task_id, payload) = (row.task_id, &row.payload);
                let key = task_id.to_string();
                let producer = &self.producer;
                let topic = &self.kafka.topic;
                let timeout = self.timeout;
                let span = publish_span(topic, task_id, row.traceparent.as_deref());
                // The worker continues the trace from the record's headers.
                let headers = pixelflow_common::telemetry::traceparent(&span).map(|value| {
                    OwnedHeaders::new().insert(Header {
                        key: pixelflow_common::telemetry::TRACEPARENT,
                        value: Some(&value),
                    })
                });
                async move {
                    let mut record = FutureRecord::to(topic).key(&key).payload(payload);
                    if let Some(headers) = headers {
                        record = record.headers(headers);
                    }
                    let sent = producer
                        .send(record, Timeout::After(timeout))
                        .await
                        .map(|_| ())
                        .map_err(|(error, _)| error);
                    match &sent {
                        Ok(()) => tracing::info!(%task_id, "task event published"),
                        Err(e) => {
                            tracing::Span::current().record("otel.status_code", "ERROR");
                            tracing::Span::current().record("error.message", e.to_string());
                        }
                    }
                    sent
                }
                .instrument(span)
            });
            let outcomes = futures::future::join_all(sends).await;
            let mut published = Vec::new();
            let mut first_failure = None;
            for (row, outcome) in rows.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => published.push(row.id),
                    Err(error) => {
                        self.metrics.kafka_publish_errors.inc();
                        let error = error.to_string();
                        sqlx::query(
                            "UPDATE task_outbox SET attempts = attempts + 1, last_error = $2 \
                             WHERE id = $1",
                        )
                        .bind(row.id)
                        .bind(&error)
                        .execute(&mut *tx)
                        .await?;
                        first_failure.get_or_insert(RelayError::Publish {
                            task_id: row.task_id,
                            error,
                        });
                    }
                }
            }
            sqlx::query("DELETE FROM task_outbox WHERE id = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.metrics.kafka_published.inc_by(published.len() as u64);
            if let Some(failure) = first_failure {
                self.replace_producer_if_fatal();
                return Err(failure);
            }
        }
    }

    /// After a fatal error librdkafka's producer refuses every send for
    /// good; only a new one can publish again.
    fn replace_producer_if_fatal(&mut self) {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return;
        };
        match producer(&self.kafka.brokers, self.timeout, self.idempotent) {
            Ok(fresh) => {
                tracing::error!(?code, %reason, "Kafka producer hit a fatal error; replaced by a new one");
                self.producer = fresh;
            }
            Err(e) => {
                tracing::error!(?code, %reason, error = %e, "Kafka producer hit a fatal error and cannot be replaced yet")
            }
        }
    }

    /// Queues the event again for every task PENDING longer than
    /// `redeliver_after` with none waiting: its event was published but
    /// never led to processing (lost by the broker, skipped by a worker).
    /// The worker ignores an event for a task no longer PENDING, so a
    /// redelivery that crosses a late original is harmless. Touching
    /// `updated_at` spaces the redeliveries of one task. The new event
    /// carries the task's own `traceparent`: it and the processing it
    /// leads to stay in the upload's trace.
    async fn sweep(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let stale: Vec<StaleTask> = sqlx::query_as(
            "UPDATE tasks SET updated_at = clock_timestamp() \
             WHERE id IN (SELECT t.id FROM tasks t \
               WHERE t.status = 'PENDING' \
                 AND t.updated_at < clock_timestamp() - make_interval(secs => $1) \
                 AND NOT EXISTS (SELECT 1 FROM task_outbox o WHERE o.task_id = t.id) \
               ORDER BY t.updated_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, user_id, content_type, created_at, traceparent",
        )
        .bind(self.redeliver_after.as_secs_f64())
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        for task in stale {
            let event = pixelflow_common::kafka::TaskCreated {
                task_id: task.id,
                user_id: task.user_id,
                content_type: task.content_type,
                created_at: task.created_at,
            };
            enqueue(&mut tx, &event, task.traceparent.as_deref()).await?;
            tracing::warn!(task_id = %task.id, user_id = %task.user_id, "task still PENDING long after its event went out; event queued again");
        }
        tx.commit().await
    }

    /// Drops originals and deletes finished tasks past their retention.
    async fn retain(&self) {
        match crate::tasks::retain(&self.pool, self.retention.originals, self.retention.tasks).await
        {
            Ok((0, 0)) => {}
            Ok((originals, tasks)) => {
                tracing::info!(
                    originals,
                    tasks,
                    "retention: originals dropped, finished tasks deleted"
                )
            }
            Err(e) => tracing::error!(error = %e, "cannot apply the retention"),
        }
    }

    /// The storage gauges: all images stored, and the fullest user's share
    /// of the quota.
    async fn measure_storage(&self) {
        match crate::tasks::storage(&self.pool).await {
            Ok((total, fullest)) => {
                self.metrics.stored_bytes.set(total);
                let quota = self.retention.quota.max(1) as f64;
                self.metrics
                    .fullest_user
                    .set((fullest.max(0) as f64 / quota).min(1.0));
            }
            Err(e) => tracing::error!(error = %e, "cannot measure the images stored"),
        }
    }

    async fn pending(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM task_outbox")
            .fetch_one(&self.pool)
            .await
    }

    async fn refresh_pending(&self) {
        match self.pending().await {
            Ok(n) => self.metrics.outbox_pending.set(n),
            Err(e) => tracing::error!(error = %e, "cannot count pending task events"),
        }
    }
}
