//! The services as processes under faults, with exact outcomes: a worker
//! killed mid-task, a task that kills every worker that takes it, a killed
//! worker's partitions taken over by another.
//!
//! Workers run as static group members (`KAFKA_GROUP_INSTANCE_ID`), as in
//! the compose stack: a restarted worker takes its partitions back at once,
//! without waiting for the broker to evict its dead predecessor.

use std::time::Duration;

use pixelflow_e2e::{Service, Stack};
use pixelflow_testkit::{eventually, ApiClient, TaskStatus};
use serde_json::{json, Value};

const SECRET: &str = "faults-secret-0123456789-0123456789abcdef";

/// A fresh user of the stack's api.
async fn client(auth: &Service, api: &Service) -> ApiClient {
    ApiClient::register(&reqwest::Client::new(), &auth.base, &api.base).await
}

/// Waits until the worker is processing a task.
async fn busy(worker: &Service) {
    eventually(
        "the worker to be processing",
        Duration::from_secs(60),
        || async {
            let m = worker.metrics().await;
            (m.value_or_zero("worker_active_processing_tasks", &[]) >= 1.0).then_some(())
        },
    )
    .await;
}

/// Waits until the worker's claim of `task` for attempt `attempt` is
/// stored: the worker holds that task (being busy, it might hold another).
async fn claimed(stack: &Stack, task: &str, attempt: i32) {
    let pool = sqlx::PgPool::connect(&stack.database_url)
        .await
        .expect("database");
    eventually(
        &format!("attempt {attempt} at task {task} to be claimed"),
        Duration::from_secs(60),
        || async {
            let attempts: Option<i32> =
                sqlx::query_scalar("SELECT attempts FROM tasks WHERE id = $1::uuid")
                    .bind(task)
                    .fetch_optional(&pool)
                    .await
                    .expect("attempts");
            (attempts == Some(attempt)).then_some(())
        },
    )
    .await;
    pool.close().await;
}

fn static_member() -> [(&'static str, String); 1] {
    [("KAFKA_GROUP_INSTANCE_ID", "worker-under-test".to_string())]
}

/// A PNG that takes the worker seconds to thumbnail: time to kill it.
fn slow_png() -> Vec<u8> {
    pixelflow_testkit::png_plain(8000, 8000)
}

#[tokio::test]
async fn a_worker_killed_mid_task_is_replaced_and_the_task_completes_once() {
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let worker = stack.worker_with(logs.path(), &static_member());
    let http = reqwest::Client::new();
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    let client = client(&auth, &api).await;
    let id = client.upload(slow_png()).await;
    busy(&worker).await;
    assert_eq!(client.status(&id).await, Some(TaskStatus::Processing));
    worker.kill().await;

    let worker = stack.worker_with(logs.path(), &static_member());
    worker.ready(&http).await;
    let task = client.settled(&id, Duration::from_secs(120)).await;
    assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    // The new worker counted it exactly once (it starts from zero; the
    // killed one never recorded an outcome).
    let succeeded = |m: &pixelflow_testkit::Exposition| {
        m.value_or_zero("worker_tasks_processed_total", &[("status", "success")])
    };
    eventually(
        "the success to be counted",
        Duration::from_secs(10),
        || async { (succeeded(&worker.metrics().await) >= 1.0).then_some(()) },
    )
    .await;
    let m = worker.metrics().await;
    assert_eq!(succeeded(&m), 1.0);
    assert_eq!(
        m.value_or_zero("worker_tasks_processed_total", &[("status", "failure")]),
        0.0
    );
    assert_eq!(m.value("worker_active_processing_tasks", &[]), Some(0.0));
}

#[tokio::test]
async fn a_worker_killed_with_several_tasks_in_flight_loses_none_and_counts_none_twice() {
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let settings = [
        ("KAFKA_GROUP_INSTANCE_ID", "worker-under-test".to_string()),
        ("WORKER_CONCURRENCY", "3".to_string()),
    ];
    let worker = stack.worker_with(logs.path(), &settings);
    let http = reqwest::Client::new();
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    // While everything is held, the database refuses every thumbnail's
    // store: the worker keeps those tasks in flight, retrying, for as long
    // as the test wants.
    let pool = sqlx::PgPool::connect(&stack.database_url)
        .await
        .expect("database");
    let stores = pixelflow_testkit::HeldStores::install(&pool).await;
    stores.hold(None).await;
    let client = client(&auth, &api).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(client.upload(pixelflow_testkit::png(300, 200)).await);
    }
    eventually(
        "three tasks in flight at once",
        Duration::from_secs(60),
        || async {
            let m = worker.metrics().await;
            (m.value_or_zero("worker_active_processing_tasks", &[]) == 3.0).then_some(())
        },
    )
    .await;
    worker.kill().await;
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE attempts = 1")
        .fetch_one(&pool)
        .await
        .expect("claims");
    assert_eq!(claimed, 3, "the worker took no more than its concurrency");

    stores.release().await;
    let worker = stack.worker_with(logs.path(), &settings);
    worker.ready(&http).await;
    for id in &ids {
        let task = client.settled(id, Duration::from_secs(120)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
    let succeeded = |m: &pixelflow_testkit::Exposition| {
        m.value_or_zero("worker_tasks_processed_total", &[("status", "success")])
    };
    eventually(
        "five successes counted",
        Duration::from_secs(10),
        || async { (succeeded(&worker.metrics().await) >= 5.0).then_some(()) },
    )
    .await;
    // The killed worker stored nothing, so the new one did all five, once
    // each: the three it had in flight again (a second claim), the two it
    // never took once.
    assert_eq!(succeeded(&worker.metrics().await), 5.0);
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM tasks ORDER BY attempts")
        .fetch_all(&pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, [1, 1, 2, 2, 2]);
    pool.close().await;
}

#[tokio::test]
async fn a_task_that_kills_every_worker_ends_failed_and_the_tasks_behind_it_complete() {
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let settings = [
        ("KAFKA_GROUP_INSTANCE_ID", "worker-under-test".to_string()),
        ("MAX_TASK_ATTEMPTS", "2".to_string()),
    ];
    let mut worker = stack.worker_with(logs.path(), &settings);
    let http = reqwest::Client::new();
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    let client = client(&auth, &api).await;
    let poison = client.upload(slow_png()).await;
    busy(&worker).await;
    let behind = [
        client.upload(pixelflow_testkit::png(64, 48)).await,
        client.upload(pixelflow_testkit::png(64, 48)).await,
    ];
    // Two attempts, each ended by the worker dying mid-way (SIGKILL stands
    // in for whatever this image does to it). Each kill waits for that
    // attempt's claim: a restarted worker may take a task behind the
    // poison first, and being busy with that one says nothing.
    for attempt in 1..=2 {
        claimed(&stack, &poison, attempt).await;
        assert_eq!(
            client.status(&poison).await,
            Some(TaskStatus::Processing),
            "attempt {attempt}"
        );
        worker.kill().await;
        worker = stack.worker_with(logs.path(), &settings);
        worker.ready(&http).await;
    }
    let task = client.settled(&poison, Duration::from_secs(120)).await;
    assert_eq!(task.status, TaskStatus::Failed, "{}", task.json);
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("gave up after 2 attempts")),
        "{}",
        task.json
    );
    for id in &behind {
        let task = client.settled(id, Duration::from_secs(120)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
}

#[tokio::test]
async fn a_thirty_second_broker_outage_loses_no_upload_and_every_task_completes_once() {
    let mut broker = pixelflow_testkit::Broker::start(pixelflow_testkit::free_port()).await;
    let mut stack = Stack::fresh(SECRET).await;
    stack.brokers = broker.address();
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    // As compose runs it: the stand-in broker breaks for good when an
    // idempotent producer reconnects with batches in flight (with "true"
    // here, an outage upload was still not COMPLETED after 180 s).
    let api = stack.api_with(
        logs.path(),
        &[
            ("KAFKA_ENABLE_IDEMPOTENCE", "false".into()),
            ("KAFKA_MESSAGE_TIMEOUT_MS", "2000".into()),
        ],
    );
    let worker = stack.worker_with(logs.path(), &static_member());
    let http = reqwest::Client::new();
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    let client = client(&auth, &api).await;
    let first = client.upload(pixelflow_testkit::png(64, 48)).await;
    let first = client.settled(&first, Duration::from_secs(60)).await;
    assert_eq!(first.status, TaskStatus::Completed, "{}", first.json);

    pixelflow_testkit::broker_outage_loses_nothing(
        &mut broker,
        &client,
        &format!("{}/metrics", api.base),
        &format!("{}/metrics", worker.base),
    )
    .await;
    // The outage is in the logs once per service, not once per retry (a
    // retry a second made about 30 ERROR lines each), and so is its end.
    for (service, failing, again) in [
        (
            "worker",
            "cannot receive from Kafka",
            "receiving from Kafka again",
        ),
        (
            "api",
            "outbox relay round failed; retrying",
            "outbox relay publishing again",
        ),
    ] {
        let log = std::fs::read_to_string(logs.path().join(format!("{service}.log")))
            .expect("service log");
        let count = |message: &str| {
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["message"] == message)
                .count()
        };
        assert_eq!(
            (count(failing), count(again)),
            (1, 1),
            "{service}: {failing:?} and {again:?} once each:\n{log}"
        );
    }
    broker.stop().await;
}

/// What `/ready` answers, with its body.
async fn readiness(http: &reqwest::Client, service: &Service) -> (u16, Value) {
    let response = http
        .get(format!("{}/ready", service.base))
        .send()
        .await
        .expect("ready answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_postgres_restart_gets_json_503s_meanwhile_and_every_service_recovers_by_itself() {
    let database = pixelflow_testkit::PrivatePostgres::start().await;
    let mut stack = Stack::fresh(SECRET).await;
    stack.database_url = database.url();
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let worker = stack.worker_with(logs.path(), &static_member());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    let client = client(&auth, &api).await;
    let first = client.upload(pixelflow_testkit::png(64, 48)).await;
    assert_eq!(
        client.settled(&first, Duration::from_secs(60)).await.status,
        TaskStatus::Completed
    );

    database.stop().await;
    // Each request is answered, a JSON 503 with Retry-After, well within
    // the client's 15 s timeout: none hangs.
    let requests = [
        (
            "login",
            http.post(format!("{}/login", auth.base))
                .json(&json!({"email": "someone@example.com", "password": "x"})),
        ),
        (
            "upload",
            http.post(format!("{}/api/upload", api.base))
                .header("Authorization", &client.bearer)
                .header("Content-Type", "image/png")
                .body(pixelflow_testkit::png(64, 48)),
        ),
        (
            "list",
            http.get(format!("{}/api/tasks", api.base))
                .header("Authorization", &client.bearer),
        ),
    ];
    for (what, request) in requests {
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), 503, "{what}");
        assert!(response.headers().contains_key("retry-after"), "{what}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(
            body["error"], "database unavailable; try again shortly",
            "{what}"
        );
    }
    for service in [&auth, &api, &worker] {
        let (status, body) = readiness(&http, service).await;
        assert_eq!(status, 503, "{}: {body}", service.name);
        let text = body.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains("Connection refused"),
            "{} /ready hands out the raw error: {text}",
            service.name
        );
    }

    database.up().await;
    for service in [&auth, &api, &worker] {
        eventually(
            &format!("{} to be ready again", service.name),
            Duration::from_secs(60),
            || async { (readiness(&http, service).await.0 == 200).then_some(()) },
        )
        .await;
    }
    let after = client.upload(pixelflow_testkit::png(64, 48)).await;
    assert_eq!(
        client.settled(&after, Duration::from_secs(60)).await.status,
        TaskStatus::Completed
    );
}

/// As with Kafka: a killed member keeps its partitions only until its
/// session times out (`session.timeout.ms`, 45 s); then the group
/// rebalances and the live member takes them over. (The stand-in broker
/// kept them for the dead member forever until
/// compose/standins/tansu-broker-0.6.0-groups.patch.)
#[tokio::test]
async fn a_killed_workers_partitions_go_to_the_other_worker_once_its_session_times_out() {
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let other_logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let doomed = stack.worker_with(
        logs.path(),
        &[("KAFKA_GROUP_INSTANCE_ID", "worker-doomed".to_string())],
    );
    let survivor = stack.worker_at(
        pixelflow_testkit::free_port(),
        other_logs.path(),
        &[("KAFKA_GROUP_INSTANCE_ID", "worker-survivor".to_string())],
    );
    let http = reqwest::Client::new();
    for service in [&auth, &api, &doomed, &survivor] {
        service.ready(&http).await;
    }
    let client = client(&auth, &api).await;
    let succeeded = |m: &pixelflow_testkit::Exposition| {
        m.value_or_zero("worker_tasks_processed_total", &[("status", "success")])
    };
    // Both in the group, each with partitions: each has processed a task.
    eventually(
        "both workers to process tasks",
        Duration::from_secs(120),
        || async {
            for _ in 0..3 {
                let id = client.upload(pixelflow_testkit::png(64, 48)).await;
                client.settled(&id, Duration::from_secs(60)).await;
            }
            let doomed_did = succeeded(&doomed.metrics().await);
            let survivor_did = succeeded(&survivor.metrics().await);
            (doomed_did >= 1.0 && survivor_did >= 1.0).then_some(())
        },
    )
    .await;
    let before = succeeded(&survivor.metrics().await);
    doomed.kill().await;

    // Keyed by task id: the odds that none of a dozen lands on the dead
    // member's partitions are at most (2/3)^12, under 1 %.
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(client.upload(pixelflow_testkit::png(64, 48)).await);
    }
    for id in &ids {
        let task = client.settled(id, Duration::from_secs(120)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
    eventually(
        "the survivor to count all twelve",
        Duration::from_secs(10),
        || async { (succeeded(&survivor.metrics().await) - before >= 12.0).then_some(()) },
    )
    .await;
    assert_eq!(succeeded(&survivor.metrics().await) - before, 12.0);
}
