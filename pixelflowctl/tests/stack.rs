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

use pixelflow_testkit::{
    eventually, free_port, png, png_plain, ApiClient, BrokerSwitch, TaskStatus,
};
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
        let ports = pixelflow_testkit::PORT_VARIABLES
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
        support::succeeded(&mut self.command(args), &format!("pixelflowctl {args:?}")).await
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

impl Stack {
    /// A user of the stack's api: registered, logged in.
    async fn user(&self) -> ApiClient {
        ApiClient::register(
            &reqwest::Client::new(),
            &self.url("AUTH_PORT"),
            &self.url("API_PORT"),
        )
        .await
    }

    async fn counter(&self, port: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        pixelflow_testkit::scrape(&format!("{}/metrics", self.url(port)))
            .await
            .value_or_zero(name, labels)
    }
}

/// The stack's broker container, stopped and started through Docker for
/// the outage every suite runs.
struct Kafka(String);

impl BrokerSwitch for Kafka {
    async fn off(&mut self) {
        docker(&["stop", &self.0]).await;
    }

    async fn on(&mut self) {
        docker(&["start", &self.0]).await;
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
    up_builds_the_stack_and_verify_passes_straight_after(&stack).await;
    a_second_up_changes_nothing_and_a_setting_recreates_its_service(&stack).await;
    ps_shows_each_service_where_it_answers(&stack).await;
    logs_are_rendered_and_filtered_by_each_components_level(&stack).await;
    let user = stack.user().await;
    let (task_id, traceparent) =
        a_restart_finishes_the_task_in_hand_and_logs_follow_it(&stack, &user).await;
    logs_gather_one_task_or_one_trace_from_every_service(&stack, &task_id, &traceparent).await;
    verify_on_the_stack_fails_what_does_not_answer_unless_skipped(&stack).await;
    faults_on_the_docker_stack(&stack, &user).await;
    drills_prove_their_alerts_fire_and_resolve_and_lose_nothing(&stack, &bystander).await;
    a_stopped_service_is_named_with_how_to_start_it_alone(&stack).await;
    down_with_a_task_in_hand_and_up_again_complete_it(&stack, &user).await;
    // Last before `down -v`: the partitions of the replicas scaled away
    // wait for their sessions to time out (session.timeout.ms, 45 s) before
    // the others take them over.
    three_worker_replicas_share_the_work_and_verify_sums_them(&stack, &user).await;
    down_v_removes_the_projects_objects_and_nothing_else(&stack, &bystander).await;
}

/// The worker's rows of `ps --output json`, by replica number.
async fn worker_rows(stack: &Stack) -> Vec<Value> {
    let ps = stack.run(&["--output", "json", "ps", "worker"]).await;
    let rows: Value = serde_json::from_slice(&ps.stdout).expect("ps --output json is JSON");
    let mut rows: Vec<Value> = rows.as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|r| r["replica"].as_u64());
    rows
}

/// Each worker replica's count of `name`, scraped where `ps` says it answers.
async fn per_replica(rows: &[Value], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let mut counts = Vec::new();
    for row in rows {
        let url = row["urls"][0].as_str().expect("a replica's URL");
        counts.push(
            pixelflow_testkit::scrape(&format!("{url}/metrics"))
                .await
                .value_or_zero(name, labels),
        );
    }
    counts
}

/// `up --scale worker=3`: numbered replicas, each its own static group
/// member and metrics port, all found by Prometheus; the partitions shared;
/// verify's flow summed over them; a killed replica started again loses
/// nothing and counts nothing twice; a plain `up` scales back to one.
async fn three_worker_replicas_share_the_work_and_verify_sums_them(
    stack: &Stack,
    user: &ApiClient,
) {
    let mut scaled = UP.to_vec();
    scaled.extend(["--scale", "worker=3"]);
    stack.run(&scaled).await;
    let rows = worker_rows(stack).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, number) in rows.iter().zip(1..) {
        assert_eq!(row["replica"], number, "{row}");
        assert_eq!(row["health"], "healthy", "{row}");
        let container = row["container"].as_str().expect("container");
        let hostname = docker(&["inspect", "-f", "{{.Config.Hostname}}", container]).await;
        assert_eq!(hostname.trim(), format!("worker-{number}"));
    }
    // Work for every partition (3): once the group has rebalanced (the
    // replicas answer /ready before the broker has handed them their
    // partitions), each replica gets some. In rounds of 10: a user may have
    // 20 tasks waiting at once.
    let before = per_replica(&rows, "worker_kafka_messages_consumed_total", &[]).await;
    let mut after = before.clone();
    for _ in 0..12 {
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(user.upload(png(64, 48)).await);
        }
        for id in &ids {
            let task = user.settled(id, Duration::from_secs(120)).await;
            assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
        }
        after = per_replica(&rows, "worker_kafka_messages_consumed_total", &[]).await;
        if before.iter().zip(&after).all(|(b, a)| a > b) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for (replica, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a > b,
            "worker-{} consumed nothing: {before:?} → {after:?}",
            replica + 1
        );
    }
    // Prometheus finds every replica on the compose network.
    let prometheus = stack.url("PROMETHEUS_PORT");
    eventually(
        "Prometheus to scrape 3 workers",
        Duration::from_secs(60),
        || async {
            let answer: Value = reqwest::get(format!(
                "{prometheus}/api/v1/query?query=count(up{{job=\"worker\"}}==1)"
            ))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
            (answer["data"]["result"][0]["value"][1] == "3").then_some(())
        },
    )
    .await;
    // verify's flow on the scaled stack: its deltas summed over replicas.
    let verified = stack
        .run(&[
            "--output", "json", "verify", "--skip", "grafana", "--skip", "jaeger",
        ])
        .await;
    let report: Value = serde_json::from_slice(&verified.stdout).expect("verify JSON");
    let rows_of = |check: &str| -> Vec<Value> {
        report
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["check"].as_str().is_some_and(|c| c.contains(check)))
            .cloned()
            .collect()
    };
    let replicas = rows_of("every replica scraped");
    assert_eq!(replicas.len(), 1, "{report}");
    assert!(
        replicas[0]["actual"]
            .as_str()
            .is_some_and(|a| a.contains('3')),
        "{report}"
    );
    // A replica killed with SIGKILL and started again (as its restart
    // policy would): its partition waits for it, under the same static id,
    // and nothing is lost or counted twice.
    let success = [("status", "success")];
    let survivors = per_replica(&rows[..2], "worker_tasks_processed_total", &success).await;
    let third = rows[2]["container"].as_str().expect("worker-3").to_string();
    docker(&["kill", &third]).await;
    let mut ids = Vec::new();
    for _ in 0..9 {
        ids.push(user.upload(png(64, 48)).await);
    }
    docker(&["start", &third]).await;
    for id in &ids {
        let task = user.settled(id, Duration::from_secs(120)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
    let rows = worker_rows(stack).await;
    eventually(
        "every task counted once",
        Duration::from_secs(30),
        || async {
            let now = per_replica(&rows, "worker_tasks_processed_total", &success).await;
            let counted = now[0] - survivors[0] + now[1] - survivors[1] + now[2];
            (counted == 9.0).then_some(())
        },
    )
    .await;
    // The compose file says one: a plain `up` removes the others.
    let up = stack.run(&UP).await;
    let said = String::from_utf8_lossy(&up.stderr).to_string();
    assert!(said.contains("worker-3: removed"), "{said}");
    assert_eq!(worker_rows(stack).await.len(), 1);
}

/// The README's command with default settings.
const UP: [&str; 5] = ["up", "--without", "grafana", "--without", "jaeger"];

/// The README's command, as a user runs it, then verify at once.
async fn up_builds_the_stack_and_verify_passes_straight_after(stack: &Stack) {
    // The README's command, as a user runs it: the engine builds the three
    // services' images from services/Dockerfile when they are missing or
    // their sources changed.
    let up = stack.run(&UP).await;
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
}

/// Nothing changed: nothing is built or recreated; a changed setting
/// recreates the one service it belongs to.
async fn a_second_up_changes_nothing_and_a_setting_recreates_its_service(stack: &Stack) {
    let images: Vec<String> = {
        let mut ids = Vec::new();
        for service in ["auth", "api", "worker"] {
            ids.push(support::image_id(&format!("pixelflow/{service}:dev")).await);
        }
        ids
    };

    // Nothing changed: nothing is built or recreated.
    let again = stack.run(&UP).await;
    let status = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        status.matches("unchanged, healthy").count(),
        SERVICES.len(),
        "a second up recreated something:\n{status}"
    );
    assert!(!status.contains("built pixelflow/"), "{status}");

    // A changed setting recreates the one service it belongs to.
    let changed = stack
        .command(&UP)
        .env("JWT_SECRET", "a-changed-secret-0123456789-0123456789abcdef")
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
    let back = stack.run(&UP).await;
    let status = String::from_utf8_lossy(&back.stderr);
    assert!(status.contains("auth: recreated, healthy"), "{status}");
    for (service, id) in ["auth", "api", "worker"].iter().zip(&images) {
        let now = support::image_id(&format!("pixelflow/{service}:dev")).await;
        assert_eq!(
            &now, id,
            "{service}'s image changed with nothing to rebuild"
        );
    }
}

/// `ps`: state and health, and a URL only where a container answers.
async fn ps_shows_each_service_where_it_answers(stack: &Stack) {
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
    // By default nothing is published beyond this machine, and every
    // container's log is rotated (the engine's default grows without end).
    let ids = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.project),
    ])
    .await;
    for id in ids.lines() {
        let inspected = docker(&["inspect", id]).await;
        let inspected: Value = serde_json::from_str(&inspected).expect("docker inspect is JSON");
        let host = &inspected[0]["HostConfig"];
        let name = &inspected[0]["Name"];
        let bindings = host["PortBindings"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for binding in bindings
            .values()
            .flat_map(|b| b.as_array().cloned().unwrap_or_default())
        {
            assert_eq!(binding["HostIp"], "127.0.0.1", "{name}: {binding}");
        }
        assert_eq!(
            (
                &host["LogConfig"]["Type"],
                &host["LogConfig"]["Config"]["max-size"]
            ),
            (&Value::from("json-file"), &Value::from("10m")),
            "{name}"
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
        // "127.0.0.1:8080->8080": the bind address, then the host port.
        .and_then(|(host, _)| host.rsplit_once(':'))
        .map(|(_, port)| port.to_string())
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
}

/// `logs`: JSON lines rendered, `--level` read from each component.
async fn logs_are_rendered_and_filtered_by_each_components_level(stack: &Stack) {
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
}

/// `restart worker` while `logs -f worker` runs and while a task is being
/// processed: the task completes, and the log follows the restarted
/// container. Returns a completed task and its upload's `traceparent`.
async fn a_restart_finishes_the_task_in_hand_and_logs_follow_it(
    stack: &Stack,
    user: &ApiClient,
) -> (String, String) {
    // Follow the worker's log across its restart; restart it while it
    // processes a large image: it finishes the task before it stops.
    let mut follower = stack
        .command(&["logs", "-f", "worker"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut followed = BufReader::new(follower.stdout.take().expect("stdout")).lines();

    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, TaskStatus::Processing, Duration::from_secs(60))
        .await;
    let restart = stack.run(&["restart", "worker"]).await;
    assert!(String::from_utf8_lossy(&restart.stdout).contains("worker restarted and healthy in"));
    assert_eq!(
        user.status(&busy).await,
        Some(TaskStatus::Completed),
        "the task in hand when the worker was restarted did not complete"
    );

    let (task_id, traceparent) = user.upload_traced(png(300, 200)).await;
    user.wait_for(&task_id, TaskStatus::Completed, Duration::from_secs(60))
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

    (task_id, traceparent)
}

/// `logs --task` and `logs --trace`: every service's lines, in time order.
async fn logs_gather_one_task_or_one_trace_from_every_service(
    stack: &Stack,
    task_id: &str,
    traceparent: &str,
) {
    // One task's lines from every service, in time order.
    let task_logs = stack.run(&["logs", "--task", task_id]).await;
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
        task_logs.lines().all(|l| l.contains(task_id)),
        "only that task's lines:\n{task_logs}"
    );

    // The same upload's trace, named by the traceparent api answered: api,
    // auth and worker lines, in time order, each carrying the trace id.
    let trace_id = pixelflow_verify::flow::trace_id_of(traceparent)
        .unwrap_or_else(|| panic!("api answered the upload with traceparent {traceparent:?}"));
    let trace_logs = stack.run(&["logs", "--trace", traceparent]).await;
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
}

/// verify as a user runs it on the stack: no URLs, the ports found
/// through the Docker API.
async fn verify_on_the_stack_fails_what_does_not_answer_unless_skipped(stack: &Stack) {
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
}

/// `drill kafka-down` and `drill worker-kill` with `--until firing`: each
/// expected alert pending, firing, held by Alertmanager and resolved, in
/// that order, no other alert firing, no task lost or counted twice, and
/// the stack as it was (the same containers, the worker's restart policy
/// back).
async fn drills_prove_their_alerts_fire_and_resolve_and_lose_nothing(
    stack: &Stack,
    bystander: &str,
) {
    let worker = stack.container("worker").await;
    for (drill, alert) in [
        ("kafka-down", "PixelFlowKafkaPublishErrors{job=\"api\"}"),
        ("worker-kill", "PixelFlowTargetDown{job=\"worker\"}"),
    ] {
        let output = stack
            .command(&["--output", "json", "drill", drill, "--until", "firing"])
            .output()
            .await
            .expect("pixelflowctl runs");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{drill}: not JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let failed: Vec<&Value> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["outcome"] != "pass")
            .collect();
        assert!(failed.is_empty(), "{drill}: {failed:#?}\n{report:#}");
        assert_eq!(output.status.code(), Some(0), "{drill}: {report:#}");
        let seen = &report["timeline"]["alerts"][alert];
        let at = |state: &str| {
            seen[state]
                .as_f64()
                .unwrap_or_else(|| panic!("{drill}: {alert} never {state}: {report:#}"))
        };
        assert!(
            at("pending") <= at("firing")
                && at("firing") <= at("held")
                && at("held") <= at("resolved"),
            "{drill}: {seen}"
        );
        let events: Vec<&str> = report["timeline"]["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["what"].as_str())
            .collect();
        for expected in ["fault:", "first metric movement", "restored:", "recovered:"] {
            assert!(
                events.iter().any(|e| e.starts_with(expected)),
                "{drill}: no {expected:?} in {events:?}"
            );
        }
        println!("drill {drill}: {}", report["timeline"]);
    }
    assert_eq!(
        stack.container("worker").await,
        worker,
        "the same worker container"
    );
    let policy = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}",
        &worker,
    ])
    .await;
    assert_eq!(
        policy, "unless-stopped",
        "the worker's restart policy is back"
    );
    let untouched = docker(&["inspect", "-f", "{{.State.Running}}", bystander]).await;
    assert_eq!(
        untouched, "true",
        "a drill touched another project's container"
    );
}

/// One service down while the rest runs: verify cannot scrape it, and
/// says which container is not running and how to start only it.
async fn a_stopped_service_is_named_with_how_to_start_it_alone(stack: &Stack) {
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
    stack.run(&UP).await;
}

/// `down` while the worker processes a task, then `up`: the task
/// completed (the worker finished it on SIGTERM) and stays so.
async fn down_with_a_task_in_hand_and_up_again_complete_it(stack: &Stack, user: &ApiClient) {
    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, TaskStatus::Processing, Duration::from_secs(60))
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
    stack.run(&UP).await;
    assert_eq!(
        user.status(&busy).await,
        Some(TaskStatus::Completed),
        "the task in hand when the stack went down did not complete"
    );
}

/// `down -v` removes the project's containers, volumes and networks, and
/// leaves another project's container running.
async fn down_v_removes_the_projects_objects_and_nothing_else(stack: &Stack, bystander: &str) {
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
    let still = docker(&["inspect", "-f", "{{.State.Running}}", bystander]).await;
    assert_eq!(still, "true", "down touched another project's container");
}

/// The worker killed (SIGKILL) while processing, then started: the task
/// completes once. The broker stopped for 30 s while uploads continue,
/// then started: the outage every suite runs (every upload answered 201,
/// the outbox drains, every task completes once).
async fn faults_on_the_docker_stack(stack: &Stack, user: &ApiClient) {
    let success = [("status", "success")];
    let container = stack.container("worker").await;
    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, TaskStatus::Processing, Duration::from_secs(60))
        .await;
    docker(&["kill", "--signal", "KILL", &container]).await;
    // The restart policy may have started it already; start is then a
    // no-op.
    docker(&["start", &container]).await;
    user.wait_for(&busy, TaskStatus::Completed, Duration::from_secs(120))
        .await;
    let counted = || stack.counter("WORKER_PORT", "worker_tasks_processed_total", &success);
    eventually(
        "the new worker to count the task",
        Duration::from_secs(10),
        || async { (counted().await >= 1.0).then_some(()) },
    )
    .await;
    assert_eq!(
        counted().await,
        1.0,
        "the killed worker's task, counted once by its successor"
    );

    let mut kafka = Kafka(stack.container("kafka").await);
    pixelflow_testkit::broker_outage_loses_nothing(
        &mut kafka,
        user,
        &format!("{}/metrics", stack.url("API_PORT")),
        &format!("{}/metrics", stack.url("WORKER_PORT")),
    )
    .await;
}
