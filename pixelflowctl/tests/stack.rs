//! pixelflowctl against a real Docker engine, on the path a user takes: the
//! README's `pixelflowctl up --without grafana --without jaeger` with no image variables and
//! no `--images` flag. The engine builds the services' images from
//! services/Dockerfile in the official Rust image and pulls nothing: on
//! this machine the official names are stand-ins tagged locally by
//! compose/standins/build (the only change from a machine with a registry).
//!
//! up → a second up changes nothing → a changed setting recreates one
//! service → ps → logs → `restart worker` while `logs -f worker` runs and
//! while a task is being processed: the task completes → `logs --task` and
//! `logs --trace` (all services, Grafana and Jaeger left out) → verify → the worker killed mid-task and
//! the broker stopped for 30 s through the Docker API: nothing lost or
//! counted twice → `down` while a task is being processed, `up` again: the
//! task completes → `down -v` removes the project's objects and nothing
//! else.
//!
//! Project name and host ports are the test's own, so it runs beside a
//! user's stack. Whatever happens, the stack is taken down at the end.

use std::process::{Output, Stdio};
use std::time::Duration;

use pixelflow_testkit::{eventually, free_port, png, png_plain};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod support;
use support::docker;

const SERVICES: [&str; 7] = [
    "postgres",
    "kafka",
    "auth",
    "api",
    "worker",
    "alertmanager",
    "prometheus",
];

/// Official names the compose file and services/Dockerfile use by default.
const OFFICIAL: [&str; 6] = [
    "postgres:15",
    "apache/kafka:3.8.0",
    "prom/prometheus:v2.53.0",
    "prom/alertmanager:v0.27.0",
    "debian:bookworm-slim",
    "rust:1-bookworm",
];

struct Stack {
    project: String,
    ports: Vec<(&'static str, u16)>,
    /// Containers and volumes the test made itself, removed at the end.
    bystanders: Vec<(&'static str, String)>,
}

impl Stack {
    fn new() -> Self {
        let project = format!("pftest{}", std::process::id());
        let ports = [
            "AUTH_PORT",
            "API_PORT",
            "WORKER_PORT",
            "PROMETHEUS_PORT",
            "ALERTMANAGER_PORT",
            "GRAFANA_PORT",
            "JAEGER_UI_PORT",
            "JAEGER_OTLP_GRPC_PORT",
            "JAEGER_OTLP_HTTP_PORT",
            "POSTGRES_PORT",
            "KAFKA_HOST_PORT",
        ]
        .into_iter()
        .map(|name| (name, free_port()))
        .collect();
        Self {
            project,
            ports,
            bystanders: Vec::new(),
        }
    }

    fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .expect("known port")
    }

    fn url(&self, port: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(port))
    }

    /// pixelflowctl as a user runs it from the repository root, with only
    /// the project name and host ports of its own. Image variables a
    /// developer may have exported are cleared: this is the default path.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
        command
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("NO_COLOR", "1")
            .envs(self.ports.iter().map(|(k, v)| (*k, v.to_string())))
            .kill_on_drop(true);
        for variable in [
            "POSTGRES_IMAGE",
            "KAFKA_IMAGE",
            "PROMETHEUS_IMAGE",
            "ALERTMANAGER_IMAGE",
            "GRAFANA_IMAGE",
            "RUNTIME_IMAGE",
            "RUST_IMAGE",
            "PIXELFLOW_IMAGE_PREFIX",
            "PIXELFLOW_TAG",
            "PIXELFLOW_IMAGES",
        ] {
            command.env_remove(variable);
        }
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        let output = self
            .command(args)
            .output()
            .await
            .expect("pixelflowctl runs");
        assert!(
            output.status.success(),
            "pixelflowctl {args:?} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Stack {
    /// The id of the project's container for `service`.
    async fn container(&self, service: &str) -> String {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .await
    }
}

impl Drop for Stack {
    /// Takes the stack and the test's bystanders away, passed or failed.
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pixelflowctl"))
            .args(["down", "-v"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .output();
        support::remove_all(&self.bystanders);
    }
}

/// A client of the stack's api as a user: registered, logged in.
struct User {
    http: reqwest::Client,
    api: String,
    bearer: String,
}

impl User {
    async fn new(stack: &Stack) -> Self {
        let http = reqwest::Client::new();
        let (bearer, _) = pixelflow_testkit::new_user(&http, &stack.url("AUTH_PORT")).await;
        Self {
            http,
            api: stack.url("API_PORT"),
            bearer,
        }
    }

    async fn upload(&self, image: Vec<u8>) -> String {
        self.upload_traced(image).await.0
    }

    /// Uploads `image`; the task id and the `traceparent` api answered.
    async fn upload_traced(&self, image: Vec<u8>) -> (String, String) {
        let bytes = image.len();
        let response = self
            .http
            .post(format!("{}/api/upload", self.api))
            .header("Authorization", &self.bearer)
            .header("Content-Type", "image/png")
            .body(image)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let traceparent = response
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let task: Value = response.json().await.expect("a JSON answer");
        let id = task["id"]
            .as_str()
            .unwrap_or_else(|| panic!("upload of {bytes} bytes: {status} {task}"))
            .to_string();
        (id, traceparent)
    }

    async fn status(&self, task: &str) -> Option<String> {
        let t: Value = self
            .http
            .get(format!("{}/api/tasks/{task}", self.api))
            .header("Authorization", &self.bearer)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        t["status"].as_str().map(str::to_string)
    }

    async fn counter(&self, url: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        pixelflow_testkit::scrape(&format!("{url}/metrics"))
            .await
            .value_or_zero(name, labels)
    }

    async fn wait_for(&self, task: &str, status: &str, timeout: Duration) {
        eventually(&format!("task {task} to be {status}"), timeout, || async {
            (self.status(task).await.as_deref() == Some(status)).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn the_default_up_builds_runs_and_manages_the_whole_stack_without_losing_work() {
    for image in OFFICIAL {
        let found = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .await
            .expect("docker CLI");
        assert!(
            found.status.success(),
            "{image} missing: on a machine without a registry, run compose/standins/build"
        );
    }
    let mut stack = Stack::new();
    // Another project's container: down must leave it alone. It sleeps for
    // good (removed by the Drop guard): a cold first run on a fresh machine
    // outlasts any fixed sleep.
    let bystander = docker(&[
        "run",
        "-d",
        "--label",
        "com.docker.compose.project=pf-bystander",
        "debian:bookworm-slim",
        "sleep",
        "infinity",
    ])
    .await;
    stack.bystanders.push(("container", bystander.clone()));

    // The README's command, as a user runs it: the engine builds the three
    // services' images from services/Dockerfile when they are missing or
    // their sources changed.
    let up_args = ["up", "--without", "grafana", "--without", "jaeger"];
    let up = stack.run(&up_args).await;
    let table = String::from_utf8_lossy(&up.stdout).to_string();
    for service in SERVICES {
        assert!(
            table
                .lines()
                .any(|l| l.contains(service) && l.contains("healthy")),
            "{service} not healthy after up:\n{table}"
        );
    }
    // What a user runs next, straight away: verify with its flow. Right
    // after up, Prometheus may not have scraped yet; the dashboards'
    // rates must still see the flow.
    let first = stack
        .command(&[
            "--output", "json", "verify", "--skip", "grafana", "--skip", "jaeger",
        ])
        .output()
        .await
        .expect("verify runs");
    let report: Value = serde_json::from_slice(&first.stdout).unwrap_or(Value::Null);
    assert_eq!(
        first.status.code(),
        Some(0),
        "verify straight after up: {report:#}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        report.as_array().is_some_and(|rows| rows
            .iter()
            .any(|c| c["service"] == "dashboards" && c["outcome"] == "pass")),
        "the dashboards were checked: {report:#}"
    );

    let images: Vec<String> = {
        let mut ids = Vec::new();
        for service in ["auth", "api", "worker"] {
            ids.push(
                docker(&[
                    "image",
                    "inspect",
                    "-f",
                    "{{.Id}}",
                    &format!("pixelflow/{service}:dev"),
                ])
                .await,
            );
        }
        ids
    };

    // Nothing changed: nothing is built or recreated.
    let again = stack.run(&up_args).await;
    let status = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        status.matches("unchanged, healthy").count(),
        SERVICES.len(),
        "a second up recreated something:\n{status}"
    );
    assert!(!status.contains("built pixelflow/"), "{status}");

    // A changed setting recreates the one service it belongs to.
    let changed = stack
        .command(&up_args)
        .env("JWT_SECRET", "a-changed-secret-0123456789")
        .output()
        .await
        .expect("up runs");
    let status = String::from_utf8_lossy(&changed.stderr);
    assert!(changed.status.success(), "{status}");
    assert!(status.contains("auth: recreated, healthy"), "{status}");
    assert_eq!(
        status.matches("unchanged, healthy").count(),
        SERVICES.len() - 1,
        "{status}"
    );
    // And back: tokens issued from here on are signed with the default.
    let back = stack.run(&up_args).await;
    let status = String::from_utf8_lossy(&back.stderr);
    assert!(status.contains("auth: recreated, healthy"), "{status}");
    for (service, id) in ["auth", "api", "worker"].iter().zip(&images) {
        let now = docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("pixelflow/{service}:dev"),
        ])
        .await;
        assert_eq!(
            &now, id,
            "{service}'s image changed with nothing to rebuild"
        );
    }

    let ps = stack.run(&["--output", "json", "ps"]).await;
    let rows: Value = serde_json::from_slice(&ps.stdout).expect("ps --output json is JSON");
    for service in SERVICES {
        let row = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["service"] == service)
            .expect("a row per service");
        assert_eq!(
            (row["state"].as_str(), row["health"].as_str()),
            (Some("running"), Some("healthy")),
            "{row}"
        );
    }
    // A URL is where a running container answers: api's is its published
    // port; services left out have none, where they would be.
    let row = |service: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["service"] == service))
            .cloned()
            .unwrap_or_else(|| panic!("a row for {service}"))
    };
    let api = row("api");
    let published = api["ports"][0]
        .as_str()
        .and_then(|p| p.split_once("->"))
        .map(|(host, _)| host.to_string())
        .expect("api publishes a port");
    assert_eq!(
        api["urls"],
        serde_json::json!([format!("http://localhost:{published}")]),
        "{api}"
    );
    for left_out in ["grafana", "jaeger"] {
        let row = row(left_out);
        assert_eq!(
            (row["state"].as_str(), row["urls"].as_array().map(Vec::len)),
            (Some("not created"), Some(0)),
            "{row}"
        );
    }

    let logs = stack.run(&["logs", "api", "--tail", "20"]).await;
    let logs = String::from_utf8_lossy(&logs.stdout).to_string();
    assert!(
        logs.lines()
            .any(|l| l.starts_with("api | ") && l.contains(" INFO ")),
        "{logs}"
    );
    assert!(
        !logs.contains("{\""),
        "JSON lines are rendered, not raw:\n{logs}"
    );

    // The level filter reads each component's own format: Prometheus'
    // logfmt info lines go, auth's warning about the published secret stays.
    let warnings = stack.run(&["logs", "--level", "warn"]).await;
    let warnings = String::from_utf8_lossy(&warnings.stdout).to_string();
    assert!(
        warnings
            .lines()
            .any(|l| l.starts_with("auth") && l.contains(" WARN ") && l.contains("JWT_SECRET")),
        "{warnings}"
    );
    assert!(
        !warnings
            .lines()
            .any(|l| l.contains("level=info") || l.contains(" INFO ") || l.contains(" LOG: ")),
        "info lines left out:\n{warnings}"
    );

    // Follow the worker's log across its restart; restart it while it
    // processes a large image: it finishes the task before it stops.
    let mut follower = stack
        .command(&["logs", "-f", "worker"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut followed = BufReader::new(follower.stdout.take().expect("stdout")).lines();

    let user = User::new(&stack).await;
    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, "PROCESSING", Duration::from_secs(60))
        .await;
    let restart = stack.run(&["restart", "worker"]).await;
    assert!(String::from_utf8_lossy(&restart.stdout).contains("worker restarted and healthy in"));
    assert_eq!(
        user.status(&busy).await.as_deref(),
        Some("COMPLETED"),
        "the task in hand when the worker was restarted did not complete"
    );

    let (task_id, traceparent) = user.upload_traced(png(300, 200)).await;
    user.wait_for(&task_id, "COMPLETED", Duration::from_secs(60))
        .await;
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = followed.next_line().await {
            if line.contains("task completed") && line.contains(&task_id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        seen,
        Ok(true),
        "logs -f worker did not show the task completed after the restart"
    );
    let _ = follower.kill().await;

    // One task's lines from every service, in time order.
    let task_logs = stack.run(&["logs", "--task", &task_id]).await;
    let task_logs = String::from_utf8_lossy(&task_logs.stdout).to_string();
    let created = task_logs
        .lines()
        .position(|l| l.starts_with("api ") && l.contains("task created"));
    let completed = task_logs
        .lines()
        .position(|l| l.starts_with("worker ") && l.contains("task completed"));
    assert!(
        matches!((created, completed), (Some(a), Some(w)) if a < w),
        "logs --task shows api's line, then the worker's:\n{task_logs}"
    );
    assert!(
        task_logs.lines().all(|l| l.contains(&task_id)),
        "only that task's lines:\n{task_logs}"
    );

    // The same upload's trace, named by the traceparent api answered: api,
    // auth and worker lines, in time order, each carrying the trace id.
    let trace_id = pixelflow_verify::flow::trace_id_of(&traceparent)
        .unwrap_or_else(|| panic!("api answered the upload with traceparent {traceparent:?}"));
    let trace_logs = stack.run(&["logs", "--trace", &traceparent]).await;
    let trace_logs = String::from_utf8_lossy(&trace_logs.stdout).to_string();
    let position = |service: &str, text: &str| {
        trace_logs
            .lines()
            .position(|l| l.starts_with(&format!("{service} ")) && l.contains(text))
    };
    let validated = position("auth", "/validate");
    let created = position("api", "task created");
    let completed = position("worker", "task completed");
    assert!(
        matches!((validated, created, completed), (Some(v), Some(a), Some(w)) if v < a && a < w),
        "logs --trace shows auth's validation, api's task, the worker's completion:\n{trace_logs}"
    );
    assert!(
        trace_logs.lines().all(|l| l.contains(&trace_id)),
        "only that trace's lines:\n{trace_logs}"
    );

    // verify on the Docker stack as a user runs it: no URLs, the ports
    // found through the Docker API (they are moved here). Grafana belongs
    // to the stack but is not running: a failure unless skipped.
    let unskipped = stack
        .command(&["--output", "json", "verify", "--no-flow"])
        .output()
        .await
        .expect("verify runs");
    let report: Value = serde_json::from_slice(&unskipped.stdout).expect("verify JSON");
    assert_eq!(unskipped.status.code(), Some(1), "{report:#}");
    for component in ["grafana", "jaeger"] {
        assert!(
            report
                .as_array()
                .expect("rows")
                .iter()
                .any(|c| c["service"] == component
                    && c["outcome"] == "fail"
                    && c["actual"]
                        .as_str()
                        .is_some_and(|a| a.contains("not reachable")
                            && a.contains(&format!("--skip {component} leaves it out")))),
            "a {component} that does not answer fails, saying how to leave it out: {report:#}"
        );
    }
    let verified = stack
        .run(&[
            "--output", "json", "verify", "--skip", "grafana", "--skip", "jaeger",
        ])
        .await;
    let report: Value = serde_json::from_slice(&verified.stdout).expect("verify JSON");
    let rows = report.as_array().expect("rows");
    let passed = |component: &str| {
        rows.iter()
            .filter(|c| c["service"] == component && c["outcome"] == "pass")
            .count()
    };
    assert!(
        passed("prometheus") >= 4,
        "Prometheus checks did not run: {report:#}"
    );
    assert!(
        passed("dashboards") >= 4,
        "dashboard checks did not run: {report:#}"
    );
    assert!(
        rows.iter()
            .any(|c| c["service"] == "grafana" && c["actual"] == "skipped: --skip grafana"),
        "{report:#}"
    );

    // Faults injected through the Docker API, with exact outcomes.
    faults_on_the_docker_stack(&stack, &user).await;

    // One service down while the rest runs: verify cannot scrape it, and
    // says which container is not running and how to start only it.
    let worker = stack.container("worker").await;
    docker(&["stop", &worker]).await;
    let without_worker = stack
        .command(&[
            "verify",
            "--no-flow",
            "--skip",
            "grafana",
            "--skip",
            "jaeger",
        ])
        .output()
        .await
        .expect("verify runs");
    docker(&["start", &worker]).await;
    let said = String::from_utf8_lossy(&without_worker.stderr).to_string();
    assert_ne!(without_worker.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "no worker container is running in project {}: start it (pixelflowctl up worker)",
            stack.project
        )),
        "{said}"
    );
    stack.run(&up_args).await;

    // down while the worker processes a task, then up: the task completed
    // (the worker finished it on SIGTERM) and stays so.
    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, "PROCESSING", Duration::from_secs(60))
        .await;
    let down = stack.run(&["down"]).await;
    let removed = String::from_utf8_lossy(&down.stderr).to_string();
    let position = |service: &str| {
        removed
            .find(&format!("{}-{service}-1", stack.project))
            .unwrap_or_else(|| panic!("{service} not removed:\n{removed}"))
    };
    assert!(
        position("worker") < position("kafka"),
        "dependents stop first:\n{removed}"
    );
    assert!(
        position("api") < position("postgres"),
        "dependents stop first:\n{removed}"
    );
    stack.run(&up_args).await;
    assert_eq!(
        user.status(&busy).await.as_deref(),
        Some("COMPLETED"),
        "the task in hand when the stack went down did not complete"
    );

    stack.run(&["down", "-v"]).await;
    let label = format!("label=com.docker.compose.project={}", stack.project);
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &label]).await,
        "",
        "containers left behind"
    );
    assert_eq!(
        docker(&["volume", "ls", "-q", "--filter", &label]).await,
        "",
        "volumes left behind"
    );
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &label]).await,
        "",
        "networks left behind"
    );
    let still = docker(&["inspect", "-f", "{{.State.Running}}", &bystander]).await;
    assert_eq!(still, "true", "down touched another project's container");
}

/// The worker killed (SIGKILL) while processing, then started: the task
/// completes once. The broker stopped for 30 s while uploads continue,
/// then started: every upload answered 201, the outbox drains, every task
/// completes once.
async fn faults_on_the_docker_stack(stack: &Stack, user: &User) {
    let (api, worker) = (stack.url("API_PORT"), stack.url("WORKER_PORT"));
    let success = [("status", "success")];

    let container = stack.container("worker").await;
    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, "PROCESSING", Duration::from_secs(60))
        .await;
    docker(&["kill", "--signal", "KILL", &container]).await;
    // The restart policy may have started it already; start is then a
    // no-op.
    docker(&["start", &container]).await;
    user.wait_for(&busy, "COMPLETED", Duration::from_secs(120))
        .await;
    eventually(
        "the new worker to count the task",
        Duration::from_secs(10),
        || async {
            (user
                .counter(&worker, "worker_tasks_processed_total", &success)
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        user.counter(&worker, "worker_tasks_processed_total", &success)
            .await,
        1.0,
        "the killed worker's task, counted once by its successor"
    );

    const DURING_OUTAGE: usize = 10;
    let published_before = user
        .counter(&api, "api_kafka_messages_published_total", &[])
        .await;
    let succeeded_before = user
        .counter(&worker, "worker_tasks_processed_total", &success)
        .await;
    let kafka = stack.container("kafka").await;
    docker(&["stop", &kafka]).await;
    let outage = std::time::Instant::now();
    let mut tasks = Vec::new();
    let mut pending_seen = 0.0_f64;
    for _ in 0..DURING_OUTAGE {
        tasks.push(user.upload(png(64, 48)).await);
        pending_seen =
            pending_seen.max(user.counter(&api, "api_outbox_pending_messages", &[]).await);
        // Pacing, not waiting: the uploads are spread over the outage.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(outage.elapsed() >= Duration::from_secs(30));
    assert!(pending_seen >= 1.0, "the outbox gauge rose: {pending_seen}");
    docker(&["start", &kafka]).await;
    for task in &tasks {
        user.wait_for(task, "COMPLETED", Duration::from_secs(180))
            .await;
    }
    eventually("the outbox to drain", Duration::from_secs(30), || async {
        (user.counter(&api, "api_outbox_pending_messages", &[]).await == 0.0).then_some(())
    })
    .await;
    let moved = |before: f64, after: f64| after - before;
    assert_eq!(
        moved(
            published_before,
            user.counter(&api, "api_kafka_messages_published_total", &[])
                .await
        ),
        DURING_OUTAGE as f64,
        "each event acknowledged once"
    );
    eventually("every success counted", Duration::from_secs(10), || async {
        (moved(
            succeeded_before,
            user.counter(&worker, "worker_tasks_processed_total", &success)
                .await,
        ) >= DURING_OUTAGE as f64)
            .then_some(())
    })
    .await;
    assert_eq!(
        moved(
            succeeded_before,
            user.counter(&worker, "worker_tasks_processed_total", &success)
                .await
        ),
        DURING_OUTAGE as f64,
        "each task counted once"
    );
}
