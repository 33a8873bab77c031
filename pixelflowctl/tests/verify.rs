//! `pixelflowctl verify` against the services run as processes (PostgreSQL
//! and tansu from tests/deps), through the binary: against broken
//! exporters, a proxy that counts twice or moves an error counter, a
//! Prometheus that does not answer, and a test server answering as Grafana
//! does. Each false pass verify once gave is a test here.

use pixelflow_e2e::{Service, Stack};
use serde_json::Value;
use tokio::process::Command;

struct Running {
    _logs: tempfile::TempDir,
    services: Vec<Service>,
    urls: Vec<(String, String)>,
}

impl Running {
    /// The worker's exposition as it is now: the text the faulty exporters
    /// below are made from.
    async fn worker_exposition(&self) -> String {
        reqwest::get(self.urls[2].1.as_str())
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }
}

async fn start() -> Running {
    start_with(&[]).await
}

/// The three services with `env` on top of the stack's settings.
async fn start_with(env: &[(&'static str, String)]) -> Running {
    let stack = Stack::fresh("verify-secret-0123456789-0123456789abcdef").await;
    let logs = tempfile::tempdir().expect("tempdir");
    let services = vec![
        stack.auth_with(logs.path(), env),
        stack.api_with(logs.path(), env),
        stack.worker_with(logs.path(), env),
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
    verify_in(targets, extra, concat!(env!("CARGO_MANIFEST_DIR"), "/..")).await
}

/// verify run from `folder`.
async fn verify_in(
    targets: &[(String, String)],
    extra: &[&str],
    folder: &str,
) -> (Option<i32>, Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
    command
        .current_dir(folder)
        .args(["--output", "json", "verify"]);
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
    let flow_rows = outcome(&report, "flow: ");
    assert!(flow_rows.len() >= 15, "{flow_rows:?}");
    for row in flow_rows {
        assert_eq!(row["outcome"], "pass", "{row}");
        assert_eq!(row["exact"], true, "every delta is exact: {row}");
    }
    // Not named with --target: said so, as the user's choice.
    for component in ["prometheus", "dashboards", "grafana", "jaeger"] {
        let rows: Vec<&Value> = report
            .as_array()
            .expect("rows")
            .iter()
            .filter(|c| c["service"] == component)
            .collect();
        assert_eq!(rows.len(), 1, "{component}: {rows:?}");
        assert_eq!(rows[0]["outcome"], "skip");
        assert!(
            rows[0]["actual"]
                .as_str()
                .is_some_and(|a| a.contains("not named")),
            "{rows:?}"
        );
    }
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
    exporter_answering(text, "text/plain; version=0.0.4", std::time::Duration::ZERO).await
}

/// Serves `text` as /metrics with `content_type`, after `delay`.
async fn exporter_answering(
    text: String,
    content_type: &'static str,
    delay: std::time::Duration,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = text.clone();
            async move {
                // The slowness under test, not a wait for something.
                tokio::time::sleep(delay).await;
                ([("content-type", content_type)], text)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The failed rows of a report, as (check, actual).
fn failures(report: &Value) -> Vec<(&str, &str)> {
    report
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["outcome"] == "fail")
        .filter_map(|c| Some((c["check"].as_str()?, c["actual"].as_str()?)))
        .collect()
}

#[tokio::test]
async fn an_answer_prometheus_would_refuse_or_misread_fails_with_the_fault_named() {
    let running = start().await;
    let good = running.worker_exposition().await;
    let millis = rewrite_sample(
        &good,
        "worker_task_processing_duration_seconds_bucket",
        |l| {
            let Some((head, rest)) = l.split_once("le=\"") else {
                return l.to_string();
            };
            let (bound, tail) = rest.split_once('"').expect("a closed le");
            match bound.parse::<f64>() {
                Ok(b) => format!("{head}le=\"{}\"{tail}", b * 1000.0),
                Err(_) => l.to_string(),
            }
        },
    );
    let unlisted = format!("{good}# HELP worker_extra_seconds Extra.\n# TYPE worker_extra_seconds histogram\nworker_extra_seconds_bucket{{le=\"1\"}} 3\nworker_extra_seconds_bucket{{le=\"+Inf\"}} 2\nworker_extra_seconds_sum 1\nworker_extra_seconds_count 2\n");
    let twice = format!("{good}worker_kafka_messages_consumed_total 0\n");
    let ms = std::time::Duration::ZERO;
    let cases = [
        (
            "an answer that is not the text format",
            exporter_answering(good.clone(), "application/json", ms).await,
            "served as the Prometheus text format",
            "application/json",
        ),
        (
            "seconds buckets in milliseconds",
            exporter(millis).await,
            "every family's values fit its name",
            "milliseconds",
        ),
        (
            "a broken histogram the spec does not list",
            exporter(unlisted).await,
            "families outside the spec are well formed",
            "worker_extra_seconds: bucket counts decrease",
        ),
        (
            "a series given twice",
            exporter(twice).await,
            "Prometheus reads every line as meant",
            "the same series twice",
        ),
    ];
    for (what, url, check, message) in cases {
        let mut targets = running.urls.clone();
        targets[2].1 = url;
        let (code, report, stderr) = verify(&targets, &["--no-flow"]).await;
        assert_eq!(code, Some(1), "{what}: {stderr}\n{report:#}");
        let failed = failures(&report);
        assert!(
            failed
                .iter()
                .any(|(c, actual)| *c == check && actual.contains(message)),
            "{what}: expected {check:?} failing with {message:?} among {failed:?}"
        );
        assert!(
            failed.iter().all(|(c, _)| *c == check),
            "{what}: only that fault fails: {failed:?}"
        );
    }

    // An answer slower than the project's scrape_timeout: Prometheus marks
    // the target down, whatever the text says.
    let project = tempfile::tempdir().expect("tempdir");
    let compose = project.path().join("compose");
    std::fs::create_dir_all(compose.join("prometheus")).expect("mkdir");
    std::fs::write(compose.join("docker-compose.yml"), "services: {}\n").expect("write");
    std::fs::write(
        compose.join("prometheus/prometheus.yml"),
        "global:\n  scrape_interval: 15s\n  scrape_timeout: 1s\n",
    )
    .expect("write");
    std::fs::write(compose.join("prometheus/alerts.yml"), "groups: []\n").expect("write");
    let mut targets = running.urls.clone();
    targets[2].1 = exporter_answering(
        good.clone(),
        "text/plain; version=0.0.4",
        std::time::Duration::from_millis(1500),
    )
    .await;
    let file = compose.join("docker-compose.yml");
    let file = file.to_str().expect("a UTF-8 path");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
    command.args(["--file", file, "--output", "json", "verify", "--no-flow"]);
    for (service, url) in &targets {
        command.args(["--target", &format!("{service}={url}")]);
    }
    let output = command.output().await.expect("runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let failed = failures(&report);
    assert!(
        matches!(failed.as_slice(), [("answers within Prometheus' scrape_timeout", took)] if took.starts_with("in 1.")),
        "{report:#}"
    );
    drop(running.services);
}

#[tokio::test]
async fn a_flow_whose_histograms_or_counters_prometheus_would_misread_fails() {
    let running = start().await;
    fn in_millis(text: &str, _: usize) -> String {
        rewrite_sample(text, "auth_request_duration_seconds_sum", |l| {
            scaled(l, 1000.0, 0.0)
        })
    }
    fn stuck_sum(text: &str, _: usize) -> String {
        rewrite_sample(text, "auth_request_duration_seconds_sum", |l| {
            scaled(l, 0.0, 1.0)
        })
    }
    fn going_down(text: &str, scrape: usize) -> String {
        rewrite_sample(text, "auth_requests_total{endpoint=\"/register\"", |l| {
            scaled(l, 1.0, -(scrape as f64) * 2.0)
        })
    }
    type Rewrite = fn(&str, usize) -> String;
    let cases: [(&str, Rewrite, &str); 3] = [
        (
            "observed in milliseconds",
            in_millis,
            "milliseconds observed as seconds",
        ),
        (
            "a _sum that does not move",
            stuck_sum,
            "_sum must move with it",
        ),
        (
            "a counter that goes down",
            going_down,
            "Prometheus reads that as a restart",
        ),
    ];
    for (what, rewrite, message) in cases {
        let mut targets = running.urls.clone();
        let auth = proxy(running.services[0].base.clone(), rewrite).await;
        targets[0].1 = format!("{auth}/metrics");
        let (code, report, stderr) = verify(&targets, &[]).await;
        assert_eq!(code, Some(1), "{what}: {stderr}\n{report:#}");
        let failed = failures(&report);
        assert!(
            failed.iter().any(|(c, actual)| *c
                == "histograms and counters over the flow read as meant"
                && actual.contains(message)),
            "{what}: expected {message:?} among {failed:?}"
        );
    }
    drop(running.services);
}

#[tokio::test]
async fn a_broken_exporter_fails_with_the_metric_named() {
    let running = start().await;
    let good = running.worker_exposition().await;
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
        (
            "a documented label value missing",
            good.replace("worker_tasks_processed_total{status=\"failure\"} 0\n", ""),
            "lacks status=\"failure\"",
        ),
    ];
    for (what, text, message) in cases {
        assert_ne!(text, good, "{what}: the fixture did not change");
        let mut targets = running.urls.clone();
        targets[2].1 = exporter(text).await;
        let (code, report, stderr) = verify(&targets, &["--no-flow"]).await;
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert_eq!(
            rows_of(&report, "flow")
                .iter()
                .map(|r| (r["outcome"].as_str(), r["actual"].as_str()))
                .collect::<Vec<_>>(),
            [(
                Some("skip"),
                Some("skipped: --no-flow (no exact deltas checked)")
            )],
            "{what}: the flow not run is in the report"
        );
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

fn rows_of<'a>(report: &'a Value, component: &str) -> Vec<&'a Value> {
    report
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["service"] == component)
        .collect()
}

#[tokio::test]
async fn a_prometheus_that_does_not_answer_fails_unless_skipped() {
    let running = start().await;
    let (code, report, stderr) = verify(
        &running.urls,
        &["--no-flow", "--prometheus", "http://127.0.0.1:9"],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    let prometheus = rows_of(&report, "prometheus");
    assert_eq!(prometheus[0]["outcome"], "fail", "{prometheus:?}");
    assert!(
        prometheus[0]["actual"]
            .as_str()
            .is_some_and(|a| a.contains("not reachable")),
        "{prometheus:?}"
    );
    assert!(
        prometheus[0]["expected"]
            .as_str()
            .is_some_and(|e| e.contains("http://127.0.0.1:9/api/v1/targets")),
        "the URL is named: {prometheus:?}"
    );
    let dashboards = rows_of(&report, "dashboards");
    assert_eq!(dashboards[0]["outcome"], "fail", "{dashboards:?}");

    let (code, report, stderr) = verify(
        &running.urls,
        &[
            "--no-flow",
            "--prometheus",
            "http://127.0.0.1:9",
            "--skip",
            "prometheus",
            "--skip",
            "dashboards",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let prometheus = rows_of(&report, "prometheus");
    assert_eq!(prometheus[0]["outcome"], "skip");
    assert_eq!(prometheus[0]["actual"], "skipped: --skip prometheus");
}

/// A server answering `/api/v1/targets` as Prometheus does before its
/// first scrape of each target ("unknown") until `scraped` is set, then as
/// after it ("up"). Each answer is announced on the returned channel.
/// Nothing else is served.
async fn prometheus_before_its_first_scrape() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let scraped = Arc::new(AtomicBool::new(false));
    let (asked, asks) = tokio::sync::mpsc::unbounded_channel();
    let flag = scraped.clone();
    let app = axum::Router::new().route(
        "/api/v1/targets",
        axum::routing::get(move || {
            let health = if flag.load(Ordering::SeqCst) { "up" } else { "unknown" };
            let _ = asked.send(());
            let targets: Vec<Value> = ["auth", "api", "worker"]
                .iter()
                .map(|job| serde_json::json!({"labels": {"job": job}, "health": health, "lastError": ""}))
                .collect();
            std::future::ready(axum::Json(serde_json::json!({
                "status": "success",
                "data": {"activeTargets": targets, "droppedTargets": []}
            })))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, asks, scraped)
}

#[tokio::test]
async fn the_flow_waits_until_prometheus_has_scraped_every_target_once() {
    // Right after `up`, Prometheus may not have scraped yet. A flow run
    // then is in the series' first samples, which no rate() counts, and
    // the dashboards' panels stay empty: verify waits for the first scrape.
    let running = start().await;
    let (prometheus, mut asks, scraped) = prometheus_before_its_first_scrape().await;
    let urls = running.urls.clone();
    let run = tokio::spawn(async move { verify(&urls, &["--prometheus", &prometheus]).await });
    for _ in 0..2 {
        asks.recv()
            .await
            .expect("verify asks Prometheus for its targets");
    }
    let auth = running.services[0].metrics().await;
    assert_eq!(
        auth.value("auth_registrations_total", &[]),
        Some(0.0),
        "the flow started before Prometheus had scraped"
    );
    scraped.store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, report, stderr) = run.await.expect("verify finished");
    let waited = outcome(&report, "every target scraped before the flow");
    assert_eq!(waited.len(), 1, "{stderr}\n{report:#}");
    assert_eq!(waited[0]["outcome"], "pass", "{report:#}");
    assert_eq!(waited[0]["actual"], "3 targets scraped");
    let registered = outcome(&report, "flow: auth_registrations_total");
    assert_eq!(registered[0]["outcome"], "pass", "{report:#}");
    assert_eq!(
        running.services[0]
            .metrics()
            .await
            .value("auth_registrations_total", &[]),
        Some(1.0),
        "the flow ran once Prometheus had scraped"
    );
}

/// Forwards every request to `upstream`; `/metrics` answers pass through
/// `rewrite` with the number of the scrape (0, 1, …).
async fn proxy(upstream: String, rewrite: fn(&str, usize) -> String) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (http, upstream, scrapes) = (http.clone(), upstream.clone(), scrapes.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 20 << 20)
                .await
                .unwrap_or_default();
            let mut forward =
                http.request(parts.method.clone(), format!("{upstream}{}", parts.uri));
            for (name, value) in &parts.headers {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            let answer = forward.body(body).send().await.expect("upstream answers");
            let status = answer.status();
            let text = answer.text().await.unwrap_or_default();
            let text = if parts.uri.path() == "/metrics" {
                rewrite(&text, scrapes.fetch_add(1, Ordering::SeqCst))
            } else {
                text
            };
            let content_type = if parts.uri.path() == "/metrics" {
                "text/plain; version=0.0.4"
            } else {
                "application/json"
            };
            let mut response = axum::response::Response::new(axum::body::Body::from(text));
            *response.status_mut() = status;
            response.headers_mut().insert(
                "content-type",
                axum::http::HeaderValue::from_static(content_type),
            );
            response
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The exposition with `change` applied to the sample lines starting with
/// `prefix`.
fn rewrite_sample(text: &str, prefix: &str, change: impl Fn(&str) -> String) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(prefix) {
                change(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `line`'s sample value times `factor`, plus `add`.
fn scaled(line: &str, factor: f64, add: f64) -> String {
    match line.rsplit_once(' ') {
        Some((series, value)) => match value.parse::<f64>() {
            Ok(v) => format!("{series} {}", v * factor + add),
            Err(_) => line.to_string(),
        },
        None => line.to_string(),
    }
}

#[tokio::test]
async fn a_counter_that_counts_twice_fails_its_exact_delta() {
    let running = start().await;
    fn twice(text: &str, _: usize) -> String {
        rewrite_sample(text, "auth_registrations_total ", |l| scaled(l, 2.0, 0.0))
    }
    let mut targets = running.urls.clone();
    let auth = proxy(running.services[0].base.clone(), twice).await;
    targets[0].1 = format!("{auth}/metrics");
    let (code, report, stderr) = verify(&targets, &[]).await;
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    let row = outcome(&report, "flow: auth_registrations_total");
    assert_eq!(row[0]["outcome"], "fail", "{row:?}");
    assert_eq!(
        (row[0]["expected"].as_str(), row[0]["actual"].as_str()),
        (Some("+1"), Some("+2"))
    );
}

#[tokio::test]
async fn an_error_counter_that_moves_during_the_flow_fails() {
    let running = start().await;
    fn moving(text: &str, scrape: usize) -> String {
        rewrite_sample(text, "api_kafka_publish_errors_total ", |l| {
            scaled(l, 1.0, scrape as f64)
        })
    }
    let mut targets = running.urls.clone();
    let api = proxy(running.services[1].base.clone(), moving).await;
    targets[1].1 = format!("{api}/metrics");
    let (code, report, stderr) = verify(&targets, &[]).await;
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    let row = outcome(&report, "flow: api_kafka_publish_errors_total");
    assert_eq!(row[0]["outcome"], "fail", "{row:?}");
    assert_eq!(row[0]["expected"], "+0");
}

/// What a Grafana test server answers.
#[derive(Clone, Copy, PartialEq)]
enum Grafana {
    Healthy,
    Unauthorized,
    Unavailable,
    NoDatasource,
    NoDashboard,
}

/// A server answering as Grafana's HTTP API does (documented JSON), for
/// the project's dashboards; returns its base URL.
async fn grafana(mode: Grafana) -> String {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let dashboards: Vec<Value> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards"))
            .expect("dashboards")
            .flatten()
            // The dashboards, not the kustomization that makes ConfigMaps
            // of them.
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| {
                serde_json::from_str(&std::fs::read_to_string(e.path()).expect("read"))
                    .expect("JSON")
            })
            .collect();
    let app = axum::Router::new()
        .route(
            "/api/health",
            axum::routing::get(move || async move {
                match mode {
                    Grafana::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"database": "failing", "version": "11.1.0"}))),
                    _ => (StatusCode::OK, Json(serde_json::json!({"commit": "x", "database": "ok", "version": "11.1.0"}))),
                }
            }),
        )
        .route(
            "/api/datasources/uid/{uid}/health",
            axum::routing::get(move || async move {
                match mode {
                    Grafana::Unauthorized => (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"message": "Unauthorized"}))),
                    Grafana::NoDatasource => (StatusCode::NOT_FOUND, Json(serde_json::json!({"message": "Data source not found"}))),
                    _ => (StatusCode::OK, Json(serde_json::json!({"message": "Successfully queried the Prometheus API.", "status": "OK"}))),
                }
            }),
        )
        .route(
            "/api/datasources/uid/{uid}",
            axum::routing::get(move |axum::extract::Path(uid): axum::extract::Path<String>| async move {
                let kind = if uid == "pixelflow-jaeger" { "jaeger" } else { "prometheus" };
                match mode {
                    Grafana::Unauthorized => (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"message": "Unauthorized"}))),
                    Grafana::NoDatasource => (StatusCode::NOT_FOUND, Json(serde_json::json!({"message": "Data source not found"}))),
                    _ => (StatusCode::OK, Json(serde_json::json!({"uid": uid, "type": kind, "access": "proxy"}))),
                }
            }),
        )
        .route(
            "/api/dashboards/uid/{uid}",
            axum::routing::get(move |axum::extract::Path(uid): axum::extract::Path<String>| {
                let dashboards = dashboards.clone();
                async move {
                    let found = dashboards.iter().find(|d| d["uid"] == uid.as_str()).cloned();
                    match (mode, found) {
                        (Grafana::Unauthorized, _) => (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"message": "Unauthorized"}))).into_response(),
                        (Grafana::NoDashboard, _) | (_, None) => (StatusCode::NOT_FOUND, Json(serde_json::json!({"message": "Dashboard not found"}))).into_response(),
                        (_, Some(d)) => Json(serde_json::json!({"dashboard": d, "meta": {"provisioned": true}})).into_response(),
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn grafana_is_judged_by_what_it_answers() {
    let running = start().await;
    let worker = [running.urls[2].clone()];
    let cases = [
        (Grafana::Healthy, None),
        (Grafana::Unauthorized, Some("authentication failed")),
        (Grafana::Unavailable, Some("HTTP 503")),
        (
            Grafana::NoDatasource,
            Some("datasource not provisioned (HTTP 404)"),
        ),
        (
            Grafana::NoDashboard,
            Some("dashboard not provisioned (HTTP 404)"),
        ),
    ];
    for (mode, failure) in cases {
        let url = grafana(mode).await;
        let (code, report, stderr) = verify(&worker, &["--no-flow", "--grafana", &url]).await;
        let rows = rows_of(&report, "grafana");
        match failure {
            None => {
                assert_eq!(code, Some(0), "{stderr}\n{report:#}");
                // health, the two datasources, and each of the four
                // dashboards.
                assert_eq!(rows.len(), 7, "{rows:?}");
                assert!(rows.iter().all(|r| r["outcome"] == "pass"), "{rows:?}");
            }
            Some(message) => {
                assert_eq!(code, Some(1), "{stderr}\n{report:#}");
                assert!(
                    rows.iter().any(|r| r["outcome"] == "fail"
                        && r["actual"].as_str().is_some_and(|a| a.contains(message))),
                    "{message}: {rows:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn verify_finds_the_projects_dashboards_from_any_folder() {
    let running = start().await;
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let url = grafana(Grafana::Healthy).await;
    let (code, report, stderr) = verify_in(
        &[running.urls[2].clone()],
        &["--no-flow", "--grafana", &url],
        elsewhere.path().to_str().expect("utf-8"),
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    let provisioned = outcome(&report, "provisioned (");
    assert_eq!(
        provisioned.len(),
        4,
        "every dashboard of the project: {report:#}"
    );
}

#[derive(Clone, Copy, Debug)]
enum Jaeger {
    /// Every span the services exported.
    Complete,
    /// The trace as if the worker's spans never arrived.
    WithoutWorker,
    /// 404 for every trace, as Jaeger answers an unknown id.
    NoTrace,
}

/// A server answering as Jaeger's query API does (`GET /api/traces/{id}`,
/// Jaeger's JSON), from the spans the services really exported to
/// `receiver`; returns its base URL.
async fn jaeger(mode: Jaeger, receiver: std::sync::Arc<pixelflow_testkit::OtlpReceiver>) -> String {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/api/traces/{id}",
        axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<String>| {
            let receiver = receiver.clone();
            async move {
                let spans: Vec<_> = receiver
                    .trace(&id)
                    .into_iter()
                    .filter(|s| !matches!(mode, Jaeger::WithoutWorker) || s.service != "worker")
                    .collect();
                if matches!(mode, Jaeger::NoTrace) || spans.is_empty() {
                    let body = serde_json::json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]});
                    return (StatusCode::NOT_FOUND, Json(body)).into_response();
                }
                let services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                let process = |service: &str| format!("p{}", services.iter().position(|s| s == service).unwrap_or(0) + 1);
                let kind = |k: i32| ["unspecified", "internal", "server", "client", "producer", "consumer"].get(k as usize).copied().unwrap_or("internal");
                let spans: Vec<Value> = spans
                    .iter()
                    .map(|s| serde_json::json!({
                        "traceID": s.trace_id,
                        "spanID": s.span_id,
                        "flags": 1,
                        "operationName": s.name,
                        "references": if s.parent_span_id.is_empty() { vec![] } else { vec![serde_json::json!({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_span_id})] },
                        "startTime": 0,
                        "duration": 0,
                        "tags": [{"key": "span.kind", "type": "string", "value": kind(s.kind)}],
                        "logs": [],
                        "processID": process(&s.service),
                        "warnings": null,
                    }))
                    .collect();
                let processes: serde_json::Map<String, Value> = services
                    .iter()
                    .map(|s| (process(s), serde_json::json!({"serviceName": s, "tags": []})))
                    .collect();
                Json(serde_json::json!({
                    "data": [{"traceID": id, "spans": spans, "processes": processes, "warnings": null}],
                    "total": 0, "limit": 0, "offset": 0, "errors": null
                }))
                .into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn jaeger_is_judged_by_the_trace_of_the_flow() {
    let receiver = std::sync::Arc::new(pixelflow_testkit::OtlpReceiver::start().await);
    let running = start_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ])
    .await;
    let cases = [
        (Jaeger::Complete, None),
        (Jaeger::WithoutWorker, Some(("spans from worker", "none"))),
        (
            Jaeger::NoTrace,
            Some(("the flow's trace is stored", "HTTP 404")),
        ),
    ];
    for (mode, failure) in cases {
        let url = jaeger(mode, receiver.clone()).await;
        let (code, report, stderr) =
            verify(&running.urls, &["--jaeger", &url, "--trace-timeout", "5s"]).await;
        let rows = rows_of(&report, "jaeger");
        match failure {
            None => {
                assert_eq!(code, Some(0), "{mode:?}: {stderr}\n{report:#}");
                // stored, three services, one tree, two hops.
                assert_eq!(rows.len(), 7, "{rows:?}");
                assert!(rows.iter().all(|r| r["outcome"] == "pass"), "{rows:?}");
            }
            Some((check, actual)) => {
                assert_eq!(code, Some(1), "{mode:?}: {stderr}\n{report:#}");
                assert!(
                    rows.iter().any(|r| r["outcome"] == "fail"
                        && r["check"] == check
                        && r["actual"].as_str().is_some_and(|a| a.contains(actual))),
                    "{mode:?}: {rows:?}"
                );
                // Everything else verify checks still passed.
                let other_failures: Vec<&Value> = report
                    .as_array()
                    .expect("rows")
                    .iter()
                    .filter(|r| r["outcome"] == "fail" && r["service"] != "jaeger")
                    .collect();
                assert!(other_failures.is_empty(), "{other_failures:?}");
            }
        }
    }
    // Unreachable Jaeger fails, unless the user skips it.
    let closed = format!("http://127.0.0.1:{}", pixelflow_testkit::free_port());
    // With --no-flow too: there is no trace to ask for, but Jaeger must answer.
    for extra in [&["--no-flow"][..], &[]] {
        let mut args = vec!["--jaeger", closed.as_str()];
        args.extend_from_slice(extra);
        let (code, report, _) = verify(&running.urls, &args).await;
        assert_eq!(code, Some(1), "{extra:?}: {report:#}");
        assert!(
            rows_of(&report, "jaeger")
                .iter()
                .any(|r| r["outcome"] == "fail"
                    && r["actual"]
                        .as_str()
                        .is_some_and(|a| a.contains("not reachable"))),
            "{extra:?}: {report:#}"
        );
    }
    let (code, report, _) = verify(&running.urls, &["--jaeger", &closed, "--skip", "jaeger"]).await;
    assert_eq!(code, Some(0), "{report:#}");
    drop(running.services);
}
