//! worker against real PostgreSQL and a real Kafka-protocol broker: tasks
//! are stored the way api stores them, events are produced to a topic of
//! the test's own.

use std::time::Duration;

use pixelflow_common::settings::Env;
use pixelflow_testkit::{eventually, Exposition};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn metrics(&self) -> Exposition {
        pixelflow_testkit::scrape(&format!("{}/metrics", self.base)).await
    }

    /// Stops the worker at once, as a crash would: the events in flight are
    /// dropped where they stand and no offset is committed on the way out.
    async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    /// Graceful shutdown, as on SIGTERM; returns once the worker has left.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .await
            .expect("join")
            .expect("worker exits cleanly");
    }
}

struct Fixture {
    database_url: String,
    topic: String,
    group: String,
    pool: PgPool,
    producer: FutureProducer,
}

impl Fixture {
    async fn new() -> Self {
        let database_url = pixelflow_testkit::fresh_database().await;
        let pool = PgPool::connect(&database_url).await.expect("db");
        // The worker runs the shared tasks migrations itself; run them here
        // too so tasks can be stored before any worker starts.
        pixelflow_worker::migrator()
            .run(&pool)
            .await
            .expect("migrations");
        Self {
            database_url,
            topic: pixelflow_testkit::unique("image-tasks-"),
            group: pixelflow_testkit::unique("workers-"),
            pool,
            producer: pixelflow_common::kafka::client_config(&pixelflow_testkit::kafka_brokers())
                .create()
                .expect("producer"),
        }
    }

    async fn start_worker(&self) -> Running {
        self.start_worker_with(&[]).await
    }

    async fn start_worker_with(&self, extra: &[(&str, &str)]) -> Running {
        let brokers = pixelflow_testkit::kafka_brokers();
        let mut pairs = vec![
            ("HOST", "127.0.0.1"),
            ("METRICS_PORT", "0"),
            ("DATABASE_URL", &self.database_url),
            ("KAFKA_BROKERS", &brokers),
            ("KAFKA_TOPIC", &self.topic),
            ("KAFKA_GROUP_ID", &self.group),
            ("RETRY_INTERVAL_MS", "100"),
        ];
        pairs.extend_from_slice(extra);
        let env = Env::pairs(&pairs);
        let worker = pixelflow_worker::Worker::build(
            pixelflow_worker::Settings::from_env(&env).expect("settings"),
        )
        .await
        .expect("worker builds");
        let base = format!("http://{}", worker.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        Running { base, stop, handle }
    }

    /// Stores a PENDING task as api does.
    async fn store_task(&self, image: &[u8]) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO tasks (id, user_id, status, content_type, width, height, image) \
             VALUES ($1, $2, 'PENDING', 'image/png', 1, 1, $3)",
        )
        .bind(id)
        .bind(Uuid::new_v4())
        .bind(image)
        .execute(&self.pool)
        .await
        .expect("insert task");
        id
    }

    /// A task stored and its event published, as an upload does.
    async fn submit(&self, image: &[u8]) -> Uuid {
        let task = self.store_task(image).await;
        self.publish(task).await;
        task
    }

    async fn publish(&self, task_id: Uuid) {
        let event = pixelflow_common::kafka::TaskCreated {
            task_id,
            user_id: Uuid::new_v4(),
            content_type: "image/png".into(),
            created_at: chrono::Utc::now(),
        };
        let payload = serde_json::to_string(&event).expect("json");
        self.publish_raw(&task_id.to_string(), payload.as_bytes())
            .await;
    }

    async fn publish_raw(&self, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("publish");
    }

    async fn status(&self, task_id: Uuid) -> (String, Option<String>, Option<Vec<u8>>) {
        sqlx::query_as("SELECT status, error, result FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_one(&self.pool)
            .await
            .expect("task")
    }

    async fn settled(&self, task_id: Uuid) -> (String, Option<String>, Option<Vec<u8>>) {
        eventually(
            &format!("task {task_id} to settle"),
            Duration::from_secs(60),
            || async {
                let row = self.status(task_id).await;
                matches!(row.0.as_str(), "COMPLETED" | "FAILED").then_some(row)
            },
        )
        .await
    }
}

async fn counter_reaches(worker: &Running, name: &str, labels: &[(&str, &str)], value: f64) {
    eventually(
        &format!("{name}{labels:?} = {value}"),
        Duration::from_secs(60),
        || async { (worker.metrics().await.value_or_zero(name, labels) == value).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_task_becomes_a_png_thumbnail_that_fits_256_keeping_its_aspect_ratio() {
    let fx = Fixture::new().await;
    let worker = fx.start_worker().await;
    let task = fx.submit(&pixelflow_testkit::png(1000, 500)).await;

    let (status, error, result) = fx.settled(task).await;
    assert_eq!(status, "COMPLETED", "{error:?}");
    let thumbnail =
        image::load_from_memory_with_format(&result.expect("result"), image::ImageFormat::Png)
            .expect("the result is a PNG");
    assert_eq!((thumbnail.width(), thumbnail.height()), (256, 128));

    counter_reaches(
        &worker,
        "worker_tasks_processed_total",
        &[("status", "success")],
        1.0,
    )
    .await;
    let metrics = worker.metrics().await;
    assert_eq!(
        metrics.value_or_zero("worker_tasks_processed_total", &[("status", "failure")]),
        0.0
    );
    assert_eq!(
        metrics.value_or_zero("worker_kafka_messages_consumed_total", &[]),
        1.0
    );
    assert_eq!(
        metrics.value_or_zero("worker_task_processing_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        metrics.value("worker_active_processing_tasks", &[]),
        Some(0.0)
    );
    worker.stop().await;
}

#[tokio::test]
async fn an_undecodable_image_fails_the_task_with_its_reason() {
    let fx = Fixture::new().await;
    let worker = fx.start_worker().await;
    let mut broken = pixelflow_testkit::png(64, 64);
    broken.truncate(70);
    let task = fx.submit(&broken).await;

    let (status, error, result) = fx.settled(task).await;
    assert_eq!(status, "FAILED");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("cannot decode image")),
        "{error:?}"
    );
    assert!(result.is_none());
    counter_reaches(
        &worker,
        "worker_tasks_processed_total",
        &[("status", "failure")],
        1.0,
    )
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_and_the_worker_carries_on() {
    let fx = Fixture::new().await;
    let worker = fx.start_worker().await;
    let bomb = fx
        .store_task(&pixelflow_testkit::png_claiming(100_000, 100_000))
        .await;
    let fine = fx.store_task(&pixelflow_testkit::png(300, 300)).await;
    fx.publish(bomb).await;
    fx.publish(fine).await;

    let (status, error, _) = fx.settled(bomb).await;
    assert_eq!(status, "FAILED");
    assert!(
        error.as_deref().is_some_and(|e| e.contains("limit")),
        "{error:?}"
    );
    assert_eq!(fx.settled(fine).await.0, "COMPLETED");
    worker.stop().await;
}

#[tokio::test]
async fn handling_the_same_event_twice_is_harmless() {
    let fx = Fixture::new().await;
    let worker = fx.start_worker().await;
    let task = fx.submit(&pixelflow_testkit::png(40, 40)).await;
    fx.settled(task).await;
    let (_, _, first_result) = fx.status(task).await;
    fx.publish(task).await;

    counter_reaches(&worker, "worker_kafka_messages_consumed_total", &[], 2.0).await;
    let metrics = worker.metrics().await;
    assert_eq!(
        metrics.value_or_zero("worker_tasks_processed_total", &[("status", "success")]),
        1.0
    );
    let (status, _, result) = fx.status(task).await;
    assert_eq!(status, "COMPLETED");
    assert_eq!(result, first_result);
    worker.stop().await;
}

#[tokio::test]
async fn an_unreadable_event_is_counted_and_skipped() {
    let fx = Fixture::new().await;
    let worker = fx.start_worker().await;
    fx.publish_raw("junk", b"{not json").await;
    let task = fx.submit(&pixelflow_testkit::png(20, 20)).await;
    assert_eq!(fx.settled(task).await.0, "COMPLETED");
    counter_reaches(&worker, "worker_kafka_consumption_errors_total", &[], 1.0).await;
    worker.stop().await;
}

#[tokio::test]
async fn offsets_are_committed_so_a_restarted_worker_does_not_redo_work() {
    let fx = Fixture::new().await;
    let first = fx.start_worker().await;
    let done = fx.submit(&pixelflow_testkit::png(20, 20)).await;
    fx.settled(done).await;
    first.stop().await;

    let second = fx.start_worker().await;
    let next = fx.submit(&pixelflow_testkit::png(20, 20)).await;
    assert_eq!(fx.settled(next).await.0, "COMPLETED");
    counter_reaches(
        &second,
        "worker_tasks_processed_total",
        &[("status", "success")],
        1.0,
    )
    .await;
    assert_eq!(
        second
            .metrics()
            .await
            .value_or_zero("worker_kafka_messages_consumed_total", &[]),
        1.0,
        "the restarted worker received the already-committed event again"
    );
    second.stop().await;
}

#[tokio::test]
async fn the_exposition_meets_every_expectation_of_the_embedded_spec() {
    let fx = Fixture::new().await;
    let worker = fx.start_worker().await;
    let metrics = worker.metrics().await;
    // The families, types, HELP, labels and documented label values of
    // verify.toml, the file `pixelflowctl verify` checks the stack with.
    pixelflow_testkit::assert_meets_spec("worker", &metrics);
    pixelflow_testkit::assert_promtool_clean(&metrics.text).await;
    let ready = reqwest::get(format!("{}/ready", worker.base))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    worker.stop().await;
}

#[tokio::test]
async fn a_store_that_fails_three_times_is_retried_alone_and_the_task_completes_with_one_attempt() {
    let fx = Fixture::new().await;
    // The database refuses the first three stores of a thumbnail: a
    // sequence, not a table, counts them (its increments survive the
    // failing statements' rollback).
    sqlx::raw_sql(
        "CREATE SEQUENCE store_failures;
         CREATE FUNCTION fail_three_stores() RETURNS trigger AS $$
         BEGIN
           IF nextval('store_failures') <= 3 THEN
             RAISE EXCEPTION 'injected store failure';
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER fail_three_stores BEFORE UPDATE ON tasks
           FOR EACH ROW WHEN (NEW.status = 'COMPLETED') EXECUTE FUNCTION fail_three_stores();",
    )
    .execute(&fx.pool)
    .await
    .expect("the trigger");
    let worker = fx.start_worker().await;
    let task = fx.submit(&pixelflow_testkit::png(300, 200)).await;
    let (status, error, _) = fx.settled(task).await;
    assert_eq!(status, "COMPLETED", "{error:?}");
    let (attempts, image, stored): (i32, Option<Vec<u8>>, i64) =
        sqlx::query_as("SELECT attempts, image, stored_bytes FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_one(&fx.pool)
            .await
            .expect("task");
    assert_eq!(attempts, 1, "a failed store does not claim the task again");
    let failures: i64 = sqlx::query_scalar("SELECT last_value FROM store_failures")
        .fetch_one(&fx.pool)
        .await
        .expect("sequence");
    assert_eq!(failures, 4, "three refused stores and the one that worked");
    assert!(
        image.is_none(),
        "the original goes with the stored thumbnail"
    );
    assert!(stored > 0, "stored_bytes counts the thumbnail");
    counter_reaches(
        &worker,
        "worker_tasks_processed_total",
        &[("status", "success")],
        1.0,
    )
    .await;
    worker.stop().await;
}

async fn attempts(fx: &Fixture, task: Uuid) -> i32 {
    sqlx::query_scalar("SELECT attempts FROM tasks WHERE id = $1")
        .bind(task)
        .fetch_one(&fx.pool)
        .await
        .expect("attempts")
}

#[tokio::test]
async fn a_worker_crashing_with_several_tasks_in_flight_redelivers_the_unfinished_ones_and_counts_each_once(
) {
    let fx = Fixture::new().await;
    // Stores of the held tasks fail while they are held: their processing
    // stays in flight (retrying) for as long as the test wants.
    let stores = pixelflow_testkit::HeldStores::install(&fx.pool).await;
    // One partition: the offsets' order is the order of submission.
    let settings = [("WORKER_CONCURRENCY", "3"), ("KAFKA_TOPIC_PARTITIONS", "1")];
    let worker = fx.start_worker_with(&settings).await;
    let image = pixelflow_testkit::png(300, 200);
    let before = [fx.submit(&image).await, fx.submit(&image).await];
    for task in before {
        assert_eq!(fx.settled(task).await.0, "COMPLETED");
    }
    // Three held and one free among them: the free one finishes while the
    // first held one is still in flight, so no offset past that may be
    // committed.
    let mut held = Vec::new();
    let mut free = None;
    for n in 0..4 {
        let task = fx.store_task(&image).await;
        if n == 1 {
            free = Some(task);
        } else {
            stores.hold(Some(task)).await;
            held.push(task);
        }
        fx.publish(task).await;
    }
    let free = free.expect("the free task");
    assert_eq!(fx.settled(free).await.0, "COMPLETED");
    eventually(
        "three tasks in flight at once",
        Duration::from_secs(30),
        || async {
            let m = worker.metrics().await;
            (m.value_or_zero("worker_active_processing_tasks", &[]) == 3.0).then_some(())
        },
    )
    .await;
    for &task in &held {
        assert_eq!(fx.status(task).await.0, "PROCESSING");
    }
    worker.crash().await;

    stores.release().await;
    let worker = fx.start_worker_with(&settings).await;
    for &task in &held {
        assert_eq!(fx.settled(task).await.0, "COMPLETED");
        assert_eq!(attempts(&fx, task).await, 2, "claimed once by each worker");
    }
    // Redelivered from the first unfinished offset: the three held tasks
    // and the free one after the first of them, none before.
    counter_reaches(&worker, "worker_kafka_messages_consumed_total", &[], 4.0).await;
    counter_reaches(
        &worker,
        "worker_tasks_processed_total",
        &[("status", "success")],
        3.0,
    )
    .await;
    let m = worker.metrics().await;
    assert_eq!(
        m.value_or_zero("worker_kafka_messages_consumed_total", &[]),
        4.0
    );
    assert_eq!(
        m.value_or_zero("worker_tasks_processed_total", &[("status", "success")]),
        3.0,
        "the free task, done before the crash, is not counted again"
    );
    assert_eq!(attempts(&fx, free).await, 1);
    for task in before {
        assert_eq!(attempts(&fx, task).await, 1);
    }
    worker.stop().await;
}
