//! pixelflowctl against a real Docker engine, with the stand-in images
//! (compose/standins/build) and the services packaged from host binaries:
//! up → ps → logs → restart worker while `logs -f worker` runs → a task
//! uploaded after the restart completes and shows in that same log stream →
//! down -v removes the project's objects and nothing else.
//!
//! Needs: a Docker engine, the stand-in images, and `cargo build --bins`
//! (tests/run and .ci/run provide all three).

use std::process::{Output, Stdio};
use std::time::Duration;

use pixelflow_testkit::{eventually, free_port, png};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const STANDINS: [(&str, &str); 5] = [
    ("ALERTMANAGER_IMAGE", "pixelflow-standin/alertmanager:0"),
    ("POSTGRES_IMAGE", "pixelflow-standin/postgres:15"),
    ("KAFKA_IMAGE", "pixelflow-standin/kafka:tansu"),
    ("PROMETHEUS_IMAGE", "pixelflow-standin/prometheus:2"),
    ("RUNTIME_IMAGE", "pixelflow-standin/base:bookworm"),
];
const SERVICES: [&str; 7] = [
    "postgres",
    "kafka",
    "auth",
    "api",
    "worker",
    "alertmanager",
    "prometheus",
];

struct Stack {
    project: String,
    ports: Vec<(&'static str, u16)>,
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
            "POSTGRES_PORT",
            "KAFKA_HOST_PORT",
        ]
        .into_iter()
        .map(|name| (name, free_port()))
        .collect();
        Self { project, ports }
    }

    fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .expect("known port")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
        command
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("PIXELFLOW_TAG", &self.project)
            .env("NO_COLOR", "1")
            .envs(STANDINS)
            .envs(self.ports.iter().map(|(k, v)| (*k, v.to_string())))
            .kill_on_drop(true);
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

async fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test]
async fn up_ps_logs_restart_and_down_manage_the_whole_stack() {
    for (_, image) in STANDINS {
        let found = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .await
            .expect("docker CLI");
        assert!(
            found.status.success(),
            "stand-in {image} missing: run compose/standins/build"
        );
    }
    let stack = Stack::new();
    // Another project's container: down must leave it alone.
    let bystander = docker(&[
        "run",
        "-d",
        "--label",
        "com.docker.compose.project=pf-bystander",
        "pixelflow-standin/base:bookworm",
        "sleep",
        "600",
    ])
    .await;

    let mut up_args = vec!["up", "--images", "host", "--build", "--timeout", "240s"];
    up_args.extend(SERVICES);
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
    let again = stack
        .run(
            &up_args[..3]
                .iter()
                .chain(SERVICES.iter())
                .copied()
                .collect::<Vec<_>>(),
        )
        .await;
    let status = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        status.matches("unchanged, healthy").count(),
        SERVICES.len(),
        "a second up recreated something:\n{status}"
    );

    // A changed setting recreates the one service it belongs to.
    let mut changed_args = up_args[..3].to_vec();
    changed_args.extend(SERVICES);
    let changed = stack
        .command(&changed_args)
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

    // Follow the worker's log across its restart.
    let mut follower = stack
        .command(&["logs", "-f", "worker"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut followed = BufReader::new(follower.stdout.take().expect("stdout")).lines();

    let restart = stack.run(&["restart", "worker"]).await;
    assert!(String::from_utf8_lossy(&restart.stdout).contains("worker restarted and healthy in"));

    let http = reqwest::Client::new();
    let auth = format!("http://127.0.0.1:{}", stack.port("AUTH_PORT"));
    let api = format!("http://127.0.0.1:{}", stack.port("API_PORT"));
    let (bearer, _) = pixelflow_testkit::new_user(&http, &auth).await;
    let task: Value = http
        .post(format!("{api}/api/upload"))
        .header("Authorization", &bearer)
        .header("Content-Type", "image/png")
        .body(png(300, 200))
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("task");
    let task_id = task["id"].as_str().expect("task id").to_string();
    eventually("the task to complete", Duration::from_secs(60), || {
        let (http, api, bearer, task_id) = (&http, &api, &bearer, &task_id);
        async move {
            let t: Value = http
                .get(format!("{api}/api/tasks/{task_id}"))
                .header("Authorization", bearer)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (t["status"] == "COMPLETED").then_some(())
        }
    })
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

    // verify on the Docker stack, Prometheus included (Grafana is not
    // part of this stack: its checks are skipped).
    let target = |service: &str, port: &str| {
        format!("{service}=http://127.0.0.1:{}/metrics", stack.port(port))
    };
    let verified = stack
        .run(&[
            "--output",
            "json",
            "verify",
            "--target",
            &target("auth", "AUTH_PORT"),
            "--target",
            &target("api", "API_PORT"),
            "--target",
            &target("worker", "WORKER_PORT"),
            "--prometheus",
            &format!("http://127.0.0.1:{}", stack.port("PROMETHEUS_PORT")),
            "--grafana",
            &format!("http://127.0.0.1:{}", stack.port("GRAFANA_PORT")),
        ])
        .await;
    let report: Value = serde_json::from_slice(&verified.stdout).expect("verify JSON");
    let rows = report.as_array().expect("rows");
    let prometheus_passed = rows
        .iter()
        .filter(|c| c["service"] == "prometheus" && c["outcome"] == "pass")
        .count();
    assert!(
        prometheus_passed >= 4,
        "Prometheus checks did not run: {report:#}"
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
    docker(&["rm", "-f", &bystander]).await;
    for service in ["auth", "api", "worker"] {
        docker(&["rmi", &format!("pixelflow/{service}:{}", stack.project)]).await;
    }
}
