//! End to end: the three binaries as processes, against PostgreSQL and a
//! Kafka-protocol broker. pixelflow-verify's flow (register → login →
//! upload a generated PNG) → the task reaches COMPLETED with a thumbnail
//! within 256×256 → every metric moved by exactly what verify.toml says →
//! SIGTERM stops each service cleanly,
//! and what they logged is JSON with no secrets in it.

use std::collections::BTreeMap;
use std::time::Duration;

use pixelflow_e2e::Stack;
use pixelflow_verify::Outcome;
use serde_json::Value;

const SECRET: &str = "e2e-secret-0123456789-0123456789abcdef";

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
    // The flow `pixelflowctl verify` runs, with its scrapes around it:
    // register, a failed login, login, upload a generated 320×240 PNG, read
    // the task until it is COMPLETED, wait until the worker has counted it.
    // Every delta of verify.toml's [[flow.deltas]], exact unless the spec
    // says why not, error counters at zero: the same checks verify makes.
    let urls: BTreeMap<String, String> = [&auth, &api, &worker]
        .iter()
        .map(|s| (s.name.to_string(), format!("{}/metrics", s.base)))
        .collect();
    let targets = pixelflow_verify::flow::Targets {
        auth: auth.base.clone(),
        api: api.base.clone(),
    };
    let spec = pixelflow_verify::embedded_spec();
    let observed = pixelflow_verify::flow::observe(
        &http,
        &urls,
        &targets,
        &spec,
        Duration::from_secs(60),
        &|_| {},
    )
    .await
    .expect("every service answers its scrape");
    let done = observed.outcome.expect("the flow completes");
    let token = done.token.clone();
    assert!(
        observed.checks.len() > spec.flow.deltas.len(),
        "every delta and the idle worker are checked"
    );
    let wrong: Vec<String> = observed
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .map(|c| format!("{}: expected {}, saw {}", c.check, c.expected, c.actual))
        .collect();
    assert!(wrong.is_empty(), "metrics off:\n{}", wrong.join("\n"));
    for (service, scrape) in &observed.after {
        pixelflow_testkit::assert_meets_spec(service, &scrape.exposition);
    }

    // The thumbnail: within 256×256, the aspect ratio kept.
    let bearer = format!("Bearer {token}");
    let task_url = format!("{}/api/tasks/{}", api.base, done.task_id);
    let completed: Value = http
        .get(&task_url)
        .header("Authorization", &bearer)
        .send()
        .await
        .expect("task")
        .json()
        .await
        .expect("task json");
    assert_eq!(completed["status"], "COMPLETED");
    assert_eq!(completed["result_width"], 256);
    assert_eq!(completed["result_height"], 192);
    let result = http
        .get(format!("{task_url}/result"))
        .header("Authorization", &bearer)
        .send()
        .await
        .expect("result");
    assert_eq!(result.status(), 200);
    assert_eq!(
        result
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let thumbnail = image::load_from_memory(&result.bytes().await.expect("bytes")).expect("PNG");
    assert_eq!((thumbnail.width(), thumbnail.height()), (256, 192));

    // Graceful shutdown and the logs.
    for service in [worker, api, auth] {
        let name = service.name;
        let (status, log) = service.terminate().await;
        assert!(status.success(), "{name} exited with {status} on SIGTERM");
        assert!(!log.contains(&done.password), "{name} logged a password");
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
