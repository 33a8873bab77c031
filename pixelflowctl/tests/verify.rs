//! `pixelflowctl verify` against the services run as processes (PostgreSQL
//! and tansu from tests/deps), and against a broken exporter. Prometheus
//! and Grafana are not running here: their checks must show as skipped.

use pixelflow_e2e::{Service, Stack};
use serde_json::Value;
use tokio::process::Command;

struct Running {
    _logs: tempfile::TempDir,
    services: Vec<Service>,
    urls: Vec<(String, String)>,
}

async fn start() -> Running {
    let stack = Stack::fresh("verify-secret-0123456789").await;
    let logs = tempfile::tempdir().expect("tempdir");
    let services = vec![
        stack.auth(logs.path()),
        stack.api(logs.path()),
        stack.worker(logs.path()),
    ];
    let http = reqwest::Client::new();
    for s in &services {
        s.ready(&http).await;
    }
    let urls = services
        .iter()
        .map(|s| (s.name.to_string(), format!("{}/metrics", s.base)))
        .collect();
    Running {
        _logs: logs,
        services,
        urls,
    }
}

async fn verify(targets: &[(String, String)], extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
    command.args([
        "--output",
        "json",
        "verify",
        "--prometheus",
        "http://127.0.0.1:9",
        "--grafana",
        "http://127.0.0.1:9",
    ]);
    for (service, url) in targets {
        command.args(["--target", &format!("{service}={url}")]);
    }
    let output = command
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (
        output.status.code(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn outcome<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["check"].as_str().is_some_and(|n| n.contains(check)))
        .collect()
}

#[tokio::test]
async fn verify_passes_on_the_services_run_as_processes_with_exact_deltas() {
    let running = start().await;
    let (code, report, stderr) = verify(&running.urls, &[]).await;
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let registrations = outcome(&report, "flow: auth_registrations_total");
    assert_eq!(registrations[0]["outcome"], "pass");
    assert_eq!(registrations[0]["exact"], true);
    for skipped in ["target", "health", "panel queries"] {
        let rows = outcome(&report, skipped);
        assert!(
            rows.iter().all(|c| c["outcome"] == "skip") || rows.is_empty(),
            "{skipped}: {rows:?}"
        );
    }
    assert!(
        report
            .as_array()
            .expect("rows")
            .iter()
            .any(|c| c["service"] == "grafana" && c["outcome"] == "skip"),
        "Grafana checks show as skipped"
    );
    drop(running.services);
}

#[tokio::test]
async fn a_stopped_service_means_verify_could_not_run() {
    let mut running = start().await;
    let worker = running.services.pop().expect("worker");
    let (status, _) = worker.terminate().await;
    assert!(status.success());
    let (code, _, stderr) = verify(&running.urls, &["--no-flow"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot scrape worker at"), "{stderr}");
}

/// Serves `text` as /metrics on a free port; returns its URL.
async fn exporter(text: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(text.clone())),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_broken_exporter_fails_with_the_metric_named() {
    let running = start().await;
    let worker_url = &running.urls[2].1;
    let good = reqwest::get(worker_url.as_str())
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let cases = [
        (
            "a missing metric",
            good.replace(
                "worker_kafka_consumption_errors_total",
                "worker_other_total",
            ),
            "worker_kafka_consumption_errors_total is missing",
        ),
        (
            "a wrong type",
            good.replace(
                "# TYPE worker_active_processing_tasks gauge",
                "# TYPE worker_active_processing_tasks counter",
            ),
            "worker_active_processing_tasks has type counter, expected gauge",
        ),
        (
            "a missing label",
            good.replace(
                "worker_tasks_processed_total{status=\"success\"}",
                "worker_tasks_processed_total{outcome=\"success\"}",
            ),
            "lacks label status",
        ),
        (
            "a broken histogram",
            good.replace(
                "worker_task_processing_duration_seconds_count 0",
                "worker_task_processing_duration_seconds_count 7",
            ),
            "+Inf bucket is 0 but worker_task_processing_duration_seconds_count is 7",
        ),
    ];
    for (what, text, message) in cases {
        assert_ne!(text, good, "{what}: the fixture did not change");
        let mut targets = running.urls.clone();
        targets[2].1 = exporter(text).await;
        let (code, report, stderr) = verify(&targets, &["--no-flow"]).await;
        assert_eq!(code, Some(1), "{what}: {stderr}");
        let failed: Vec<&str> = report
            .as_array()
            .expect("rows")
            .iter()
            .filter(|c| c["outcome"] == "fail")
            .filter_map(|c| c["actual"].as_str())
            .collect();
        assert!(
            failed.iter().any(|f| f.contains(message)),
            "{what}: expected {message:?} among {failed:?}"
        );
    }
}
