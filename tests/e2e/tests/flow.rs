//! End to end: the three binaries as processes, against PostgreSQL and a
//! Kafka-protocol broker. register → login → upload a generated PNG → the
//! task reaches COMPLETED with a thumbnail within 256×256 → every metric
//! moved by exactly what the flow did → SIGTERM stops each service cleanly,
//! and what they logged is JSON with no secrets in it.

use std::time::Duration;

use pixelflow_e2e::Stack;
use pixelflow_testkit::{eventually, Metrics};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const SECRET: &str = "e2e-secret-0123456789";

#[tokio::test]
async fn a_registered_user_uploads_an_image_and_gets_a_thumbnail_with_every_metric_accounted_for() {
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let worker = stack.worker(logs.path());
    let http = reqwest::Client::new();
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    let before = (
        auth.metrics().await,
        api.metrics().await,
        worker.metrics().await,
    );

    // The flow.
    let email = format!("{}@example.com", pixelflow_testkit::unique("e2e-"));
    let registered = http
        .post(format!("{}/register", auth.base))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    let failed = http
        .post(format!("{}/login", auth.base))
        .json(&json!({ "email": email, "password": "not the password" }))
        .send()
        .await
        .expect("failed login");
    assert_eq!(failed.status(), 401);
    let login: Value = http
        .post(format!("{}/login", auth.base))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let token = login["token"].as_str().expect("token").to_string();
    let bearer = format!("Bearer {token}");

    let uploaded = http
        .post(format!("{}/api/upload", api.base))
        .header("Authorization", &bearer)
        .header("Content-Type", "image/png")
        .body(pixelflow_testkit::png(800, 600))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 201);
    let task: Value = uploaded.json().await.expect("task json");
    let task_id = task["id"].as_str().expect("id").to_string();
    assert_eq!(task["status"], "PENDING");

    // Every api call below is validated by auth once; count them.
    let mut validations = 1;
    let mut polls = 0;
    let task_url = format!("{}/api/tasks/{task_id}", api.base);
    let completed: Value = eventually("the task to complete", Duration::from_secs(60), || {
        validations += 1;
        polls += 1;
        let (http, url, bearer) = (&http, &task_url, &bearer);
        async move {
            let task: Value = http
                .get(url)
                .header("Authorization", bearer)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            assert_ne!(task["status"], "FAILED", "{task}");
            (task["status"] == "COMPLETED").then_some(task)
        }
    })
    .await;
    assert_eq!(completed["result_width"], 256);
    assert_eq!(completed["result_height"], 192);

    let result = http
        .get(format!("{task_url}/result"))
        .header("Authorization", &bearer)
        .send()
        .await
        .expect("result");
    validations += 1;
    assert_eq!(result.status(), 200);
    assert_eq!(
        result
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let thumbnail = image::load_from_memory(&result.bytes().await.expect("bytes")).expect("PNG");
    assert!(thumbnail.width() <= 256 && thumbnail.height() <= 256);
    assert_eq!((thumbnail.width(), thumbnail.height()), (256, 192));

    // The worker counts its success just after storing it; wait for that
    // rather than race it.
    eventually(
        "the worker to count its success",
        Duration::from_secs(10),
        || async {
            let m = worker.metrics().await;
            (m.value("worker_tasks_processed_total", &[("status", "success")])
                > before
                    .2
                    .value("worker_tasks_processed_total", &[("status", "success")]))
            .then_some(())
        },
    )
    .await;
    let after = (
        auth.metrics().await,
        api.metrics().await,
        worker.metrics().await,
    );
    let delta = |m: (&Metrics, &Metrics), name: &str, labels: &[(&str, &str)]| {
        m.1.value(name, labels) - m.0.value(name, labels)
    };
    let auth_m = (&before.0, &after.0);
    let api_m = (&before.1, &after.1);
    let worker_m = (&before.2, &after.2);
    let expectations: Vec<(&str, f64, f64)> = vec![
        (
            "auth_registrations_total",
            delta(auth_m, "auth_registrations_total", &[]),
            1.0,
        ),
        (
            "auth_logins_total{success}",
            delta(auth_m, "auth_logins_total", &[("status", "success")]),
            1.0,
        ),
        (
            "auth_logins_total{failure}",
            delta(auth_m, "auth_logins_total", &[("status", "failure")]),
            1.0,
        ),
        (
            "auth_token_validations_total{valid}",
            delta(
                auth_m,
                "auth_token_validations_total",
                &[("status", "valid")],
            ),
            f64::from(validations),
        ),
        (
            "auth_token_validations_total{invalid}",
            delta(
                auth_m,
                "auth_token_validations_total",
                &[("status", "invalid")],
            ),
            0.0,
        ),
        (
            "auth_request_duration_seconds_count{POST /login}",
            delta(
                auth_m,
                "auth_request_duration_seconds_count",
                &[("method", "POST"), ("endpoint", "/login")],
            ),
            2.0,
        ),
        (
            "auth_requests_total{GET /validate 200}",
            delta(
                auth_m,
                "auth_requests_total",
                &[
                    ("method", "GET"),
                    ("endpoint", "/validate"),
                    ("status", "200"),
                ],
            ),
            f64::from(validations),
        ),
        (
            "api_tasks_created_total",
            delta(api_m, "api_tasks_created_total", &[]),
            1.0,
        ),
        (
            "api_kafka_messages_published_total",
            delta(api_m, "api_kafka_messages_published_total", &[]),
            1.0,
        ),
        (
            "api_kafka_publish_errors_total",
            delta(api_m, "api_kafka_publish_errors_total", &[]),
            0.0,
        ),
        (
            "api_tasks_retrieved_total",
            delta(api_m, "api_tasks_retrieved_total", &[]),
            f64::from(polls) + 1.0,
        ),
        (
            "api_request_duration_seconds_count{POST /api/upload}",
            delta(
                api_m,
                "api_request_duration_seconds_count",
                &[("method", "POST"), ("endpoint", "/api/upload")],
            ),
            1.0,
        ),
        (
            "api_requests_total{GET /api/tasks/{id} 200}",
            delta(
                api_m,
                "api_requests_total",
                &[
                    ("method", "GET"),
                    ("endpoint", "/api/tasks/{id}"),
                    ("status", "200"),
                ],
            ),
            f64::from(polls),
        ),
        (
            "worker_kafka_messages_consumed_total",
            delta(worker_m, "worker_kafka_messages_consumed_total", &[]),
            1.0,
        ),
        (
            "worker_tasks_processed_total{success}",
            delta(
                worker_m,
                "worker_tasks_processed_total",
                &[("status", "success")],
            ),
            1.0,
        ),
        (
            "worker_tasks_processed_total{failure}",
            delta(
                worker_m,
                "worker_tasks_processed_total",
                &[("status", "failure")],
            ),
            0.0,
        ),
        (
            "worker_task_processing_duration_seconds_count",
            delta(
                worker_m,
                "worker_task_processing_duration_seconds_count",
                &[],
            ),
            1.0,
        ),
    ];
    let wrong: Vec<String> = expectations
        .iter()
        .filter(|(_, actual, expected)| actual != expected)
        .map(|(name, actual, expected)| format!("{name}: moved by {actual}, expected {expected}"))
        .collect();
    assert!(wrong.is_empty(), "metrics off:\n{}", wrong.join("\n"));
    assert_eq!(
        after.2.get("worker_active_processing_tasks", &[]),
        Some(0.0)
    );

    // Graceful shutdown and the logs.
    for service in [worker, api, auth] {
        let name = service.name;
        let (status, log) = service.terminate().await;
        assert!(status.success(), "{name} exited with {status} on SIGTERM");
        assert!(!log.contains(PASSWORD), "{name} logged a password");
        assert!(!log.contains(&token), "{name} logged a token");
        assert!(!log.contains(SECRET), "{name} logged the JWT secret");
        let lines: Vec<Value> = log
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{name} logged a non-JSON line ({e}): {l}"))
            })
            .collect();
        for line in &lines {
            assert_eq!(line["service"], name, "{line}");
            for field in ["timestamp", "level", "message"] {
                assert!(line.get(field).is_some(), "{name}: no {field} in {line}");
            }
        }
        let has = |message: &str, field: &str| {
            lines
                .iter()
                .any(|l| l["message"] == message && l.get(field).is_some())
        };
        match name {
            "auth" => assert!(has("user registered", "user_id"), "{log}"),
            "api" => assert!(
                has("task created", "task_id") && has("request handled", "duration_ms"),
                "{log}"
            ),
            _ => assert!(has("task completed", "task_id"), "{log}"),
        }
        assert!(
            lines
                .iter()
                .any(|l| l["message"] == format!("{name} stopped")),
            "{name} did not log a clean stop:\n{log}"
        );
        let warn_lines = lines.iter().filter(|l| l["level"] == "WARN").count();
        if name == "auth" {
            assert!(warn_lines >= 1, "the failed login is a WARN line");
        }
    }
}
