//! api against real PostgreSQL, a real auth and a real Kafka-protocol broker.

mod support;

use std::time::Duration;

use pixelflow_testkit::{eventually, free_port, Broker};
use reqwest::StatusCode;
use serde_json::Value;
use support::{spawn_api, spawn_api_with, Options};

#[tokio::test]
async fn an_upload_creates_a_pending_task_and_publishes_its_event() {
    let api = spawn_api().await;
    let (bearer, user_id) = api.user().await;
    let (status, task) = api
        .upload(&bearer, "image/png", pixelflow_testkit::png(64, 48))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["status"], "PENDING");
    assert_eq!(
        (task["width"].as_i64(), task["height"].as_i64()),
        (Some(64), Some(48))
    );
    let task_id = task["id"].as_str().expect("id").to_string();
    assert!(task["created_at"].as_str().is_some());

    let events = api.consume(1).await;
    assert_eq!(events[0].0, task_id, "the event is keyed by task id");
    assert_eq!(events[0].1["task_id"], task_id.as_str());
    assert_eq!(events[0].1["user_id"], user_id.as_str());
    assert_eq!(events[0].1["content_type"], "image/png");

    let metrics = api.metrics().await;
    assert_eq!(metrics.value_or_zero("api_tasks_created_total", &[]), 1.0);
    assert_eq!(
        metrics.value_or_zero("api_kafka_messages_published_total", &[]),
        1.0
    );
    assert_eq!(
        metrics.value_or_zero("api_kafka_publish_errors_total", &[]),
        0.0
    );
    assert_eq!(
        metrics.value_or_zero(
            "api_requests_total",
            &[
                ("method", "POST"),
                ("endpoint", "/api/upload"),
                ("status", "201")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn the_topic_is_created_with_three_partitions() {
    let api = spawn_api().await;
    let (bearer, _) = api.user().await;
    api.upload(&bearer, "image/png", pixelflow_testkit::png(8, 8))
        .await;
    api.consume(1).await;
    let brokers = api.brokers.clone();
    let topic = api.topic.clone();
    let partitions = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = pixelflow_common::kafka::client_config(&brokers)
            .create()
            .expect("client");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        metadata.topics()[0].partitions().len()
    })
    .await
    .expect("join");
    assert_eq!(partitions, 3);
}

#[tokio::test]
async fn multipart_uploads_with_an_image_field_are_accepted() {
    let api = spawn_api().await;
    let (bearer, _) = api.user().await;
    let part = reqwest::multipart::Part::bytes(pixelflow_testkit::jpeg(30, 20))
        .file_name("photo.jpg")
        .mime_str("image/jpeg")
        .expect("mime");
    let form = reqwest::multipart::Form::new()
        .text("comment", "ignored")
        .part("image", part);
    let response = api
        .http
        .post(format!("{}/api/upload", api.base))
        .header("Authorization", &bearer)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let task: Value = response.json().await.expect("json");
    assert_eq!(task["content_type"], "image/jpeg");
}

#[tokio::test]
async fn users_see_only_their_own_tasks_newest_first() {
    let api = spawn_api().await;
    let (alice, _) = api.user().await;
    let (bob, _) = api.user().await;
    let (_, first) = api
        .upload(&alice, "image/png", pixelflow_testkit::png(10, 10))
        .await;
    let (_, second) = api
        .upload(&alice, "image/png", pixelflow_testkit::png(12, 12))
        .await;

    let (status, list) = api.get(&alice, "/api/tasks").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            second["id"].as_str().expect("id"),
            first["id"].as_str().expect("id")
        ]
    );

    let (status, list) = api.get(&bob, "/api/tasks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, Value::Array(vec![]));

    let path = format!("/api/tasks/{}", first["id"].as_str().expect("id"));
    let (status, body) = api.get(&bob, &path).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "someone else's task is a 404"
    );
    assert_eq!(body["error"], "no such task");
    let (status, body) = api.get(&alice, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], first["id"]);
    assert!(
        body.get("image").is_none(),
        "image bytes are never in task JSON"
    );

    let metrics = api.metrics().await;
    assert_eq!(
        metrics.value_or_zero(
            "api_requests_total",
            &[
                ("method", "GET"),
                ("endpoint", "/api/tasks/{id}"),
                ("status", "404")
            ]
        ),
        1.0
    );
    assert!(
        !metrics.text.contains(first["id"].as_str().expect("id")),
        "a task id leaked into a label"
    );
}

#[tokio::test]
async fn a_result_before_completion_is_a_clear_conflict() {
    let api = spawn_api().await;
    let (bearer, _) = api.user().await;
    let (_, task) = api
        .upload(&bearer, "image/png", pixelflow_testkit::png(10, 10))
        .await;
    let (status, body) = api
        .get(
            &bearer,
            &format!("/api/tasks/{}/result", task["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        "task is PENDING; its result is not ready yet"
    );
}

#[tokio::test]
async fn an_unreachable_auth_is_a_503_with_retry_after_not_a_500() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let api = spawn_api_with(Options {
        auth_url: Some(closed),
        ..Options::default()
    })
    .await;
    let (status, body) = api
        .upload("Bearer whatever", "image/png", pixelflow_testkit::png(4, 4))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["error"],
        "authentication is unavailable, try again later"
    );
    // Like a database outage: the client is told when to try again.
    let tasks = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .bearer_auth("whatever")
        .send()
        .await
        .expect("tasks");
    assert_eq!(tasks.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        tasks
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let ready = api
        .http
        .get(format!("{}/ready", api.base))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_broker_outage_delays_events_but_loses_none() {
    let port = free_port();
    let api = spawn_api_with(Options {
        brokers: format!("127.0.0.1:{port}"),
        extra: vec![("KAFKA_MESSAGE_TIMEOUT_MS", "1000".into())],
        ..Options::default()
    })
    .await;
    let (bearer, _) = api.user().await;
    let (status, task) = api
        .upload(&bearer, "image/png", pixelflow_testkit::png(16, 16))
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "uploads work while the broker is down"
    );
    let task_id = task["id"].as_str().expect("id").to_string();

    eventually(
        "a counted publish failure",
        Duration::from_secs(30),
        || async {
            (api.metrics()
                .await
                .value_or_zero("api_kafka_publish_errors_total", &[])
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let pool = api.pool().await;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM task_outbox WHERE task_id = $1::uuid")
            .bind(&task_id)
            .fetch_one(&pool)
            .await
            .expect("outbox");
    assert_eq!(pending, 1, "the event waits in the outbox");
    // The gauge is refreshed after each relay round, just after the failure
    // is counted.
    eventually(
        "the pending gauge to show it",
        Duration::from_secs(10),
        || async {
            (api.metrics()
                .await
                .value_or_zero("api_outbox_pending_messages", &[])
                == 1.0)
                .then_some(())
        },
    )
    .await;

    let broker = Broker::start(port).await;
    eventually(
        "the event to be published",
        Duration::from_secs(60),
        || async {
            (api.metrics()
                .await
                .value_or_zero("api_kafka_messages_published_total", &[])
                == 1.0)
                .then_some(())
        },
    )
    .await;
    let events = api.consume(1).await;
    assert_eq!(events[0].0, task_id);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM task_outbox")
        .fetch_one(&pool)
        .await
        .expect("outbox");
    assert_eq!(pending, 0);
    broker.stop().await;
}

#[tokio::test]
async fn the_exposition_meets_every_expectation_of_the_embedded_spec() {
    let api = spawn_api().await;
    let (bearer, _) = api.user().await;
    api.get(&bearer, "/api/tasks").await;
    let metrics = api.metrics().await;
    // The families, types, HELP, labels and documented label values of
    // verify.toml, the file `pixelflowctl verify` checks the stack with.
    pixelflow_testkit::assert_meets_spec("api", &metrics);
    pixelflow_testkit::assert_promtool_clean(&metrics.text).await;
    assert_eq!(metrics.value_or_zero("api_tasks_retrieved_total", &[]), 1.0);
}

#[tokio::test]
async fn readiness_reports_database_broker_and_auth() {
    let api = spawn_api().await;
    let response = api
        .http
        .get(format!("{}/ready", api.base))
        .send()
        .await
        .expect("ready");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["database", "kafka", "auth"]);
}

#[tokio::test]
async fn a_user_cannot_queue_more_than_the_active_task_limit_even_all_at_once() {
    let api = spawn_api_with(Options {
        extra: vec![("MAX_ACTIVE_TASKS_PER_USER", "2".into())],
        ..Options::default()
    })
    .await;
    let (bearer, _) = api.user().await;
    // No worker runs: every accepted task stays PENDING.
    let uploads = (0..6).map(|_| api.upload(&bearer, "image/png", pixelflow_testkit::png(8, 8)));
    let answers = futures::future::join_all(uploads).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((created, refused.len()), (2, 4), "{answers:?}");
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("still waiting or processing")),
        "{}",
        refused[0]
    );
    // Another user is not held back by this one.
    let (other, _) = api.user().await;
    let (status, _) = api
        .upload(&other, "image/png", pixelflow_testkit::png(8, 8))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
