//! `pixelflowctl dev` against a real Docker engine, in a copy of the
//! workspace where the test edits as a developer would: an edit to api
//! reloads api alone (every container id unchanged), one to common all
//! three; a compile error keeps the old build serving; a build that exits
//! at start is reported with its logs and the loop survives; a worker
//! reloaded with a task in hand completes it once; a build that breaks a
//! metric fails the verify printed after its reload; Ctrl-C leaves the
//! stack running; and a second `up --images host` after an edit recreates
//! only the edited service.
//!
//! Needs: a Docker engine, the stand-in images and `cargo build --bins`
//! (tests/run and .ci/run provide them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pixelflow_testkit::{free_port, png_plain, ApiClient, TaskStatus};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

mod support;
use support::docker;

/// The workspace, copied where the test may edit it, with the build output
/// hard-linked (every dependency already built; the copy's own crates are
/// rebuilt once, in its own target folder, touching nothing of the real
/// one).
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn copy() -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = tempfile::tempdir().expect("tempdir");
        pixelflow_testkit::copy_workspace(&source, dir.path());
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| source.join("target"));
        // Hard links: cargo replaces what it rebuilds (new files), so the
        // real target folder's files are never written through them.
        let linked = std::process::Command::new("cp")
            .arg("-al")
            .arg(&target)
            .arg(dir.path().join("target"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            linked,
            "cannot hard-link {} into the copy",
            target.display()
        );
        // Each target folder has its own build lock.
        let _ = std::process::Command::new("find")
            .arg(dir.path().join("target"))
            .args(["-name", ".cargo-lock", "-delete"])
            .status();
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Replaces `from` with `to` in `file` (which must hold it).
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.path(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    }
}

/// One dev loop and the stack it runs, with the test's own project name,
/// image tag and host ports; taken down whatever happens.
struct Dev {
    workspace: Workspace,
    project: String,
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event received so far, in order.
    seen: Vec<Value>,
}

impl Dev {
    async fn start() -> Self {
        let workspace = Workspace::copy();
        let project = format!("pfdev{}", std::process::id());
        let mut env: Vec<(&'static str, String)> = pixelflow_testkit::PORT_VARIABLES
            .into_iter()
            .map(|name| (name, free_port().to_string()))
            .collect();
        env.push(("COMPOSE_PROJECT_NAME", project.clone()));
        env.push(("PIXELFLOW_TAG", project.clone()));
        env.push(("NO_COLOR", "1".into()));
        let mut dev = Self {
            workspace,
            project,
            env,
            child: None,
            events: mpsc::unbounded_channel().1,
            seen: Vec::new(),
        };
        let mut child = dev
            .command(&[
                "--output",
                "json",
                "dev",
                "--without",
                "grafana",
                "--without",
                "jaeger",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dev starts");
        let (tx, events) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let event = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("dev printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        dev.child = Some(child);
        dev.events = events;
        dev
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
        command
            .args(args)
            .current_dir(self.workspace.dir.path())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CARGO_TARGET_DIR", self.workspace.path("target"))
            .kill_on_drop(true);
        for variable in ["PIXELFLOW_IMAGES", "RUST_IMAGE", "RUNTIME_IMAGE"] {
            command.env_remove(variable);
        }
        command
    }

    fn port(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
            .expect("a port of the test's")
    }

    fn url(&self, port: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(port))
    }

    /// The next event `wanted` accepts, within `within`; the events before
    /// it, for what a test checks did not happen.
    async fn until(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        let (events, seen) = (&mut self.events, &mut self.seen);
        let found = tokio::time::timeout(within, async {
            while let Some(event) = events.recv().await {
                seen.push(event.clone());
                if wanted(&event) {
                    return Some(event);
                }
                before.push(event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => (event, before),
            Ok(None) => panic!("dev ended before {what}; it said: {before:#?}"),
            Err(_) => panic!("no {what} within {within:?}; dev said: {before:#?}"),
        }
    }

    /// Waits for an event `wanted` accepts unless one came already.
    async fn saw(&mut self, what: &str, within: Duration, wanted: impl Fn(&Value) -> bool) {
        if !self.seen.iter().any(&wanted) {
            self.until(what, within, wanted).await;
        }
    }

    /// The `reloaded` or other outcome events of one batch, one per
    /// service in `services`.
    async fn outcomes(&mut self, services: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < services.len() {
            let (event, _) = self
                .until("each service's reload", Duration::from_secs(300), |e| {
                    matches!(e["event"].as_str(), Some("reloaded" | "not_ready"))
                })
                .await;
            out.push(event);
        }
        let mut reloaded: Vec<&str> = out.iter().filter_map(|e| e["service"].as_str()).collect();
        reloaded.sort_unstable();
        assert_eq!(reloaded, services, "{out:#?}");
        out
    }

    /// Every container of the project, by service: its id.
    async fn container_ids(&self) -> Vec<(String, String)> {
        let listed = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
        ])
        .await;
        let mut ids: Vec<(String, String)> = listed
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(service, _)| !service.is_empty())
            .map(|(s, id)| (s.to_string(), id.to_string()))
            .collect();
        ids.sort();
        ids
    }

    /// SIGINT, as Ctrl-C sends it; waits for dev to end.
    async fn interrupt(&mut self) {
        let child = self.child.as_mut().expect("dev runs");
        let pid = child.id().expect("a pid").to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("dev stops on Ctrl-C")
            .expect("wait");
        assert!(status.success(), "dev ended with {status}");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pixelflowctl"))
            .args(["down", "-v"])
            .current_dir(self.workspace.dir.path())
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .output();
        for service in ["auth", "api", "worker"] {
            let _ = std::process::Command::new("docker")
                .args(["rmi", &format!("pixelflow/{service}:{}", self.project)])
                .output();
        }
    }
}

const API_MAIN: &str = "services/api/src/main.rs";

#[tokio::test]
async fn dev_reloads_what_an_edit_touches_and_nothing_else_and_survives_broken_builds() {
    let mut dev = Dev::start().await;
    let (watching, _) = dev
        .until("the stack up and watched", Duration::from_secs(900), |e| {
            e["event"] == "watching"
        })
        .await;
    assert_eq!(
        watching["services"],
        serde_json::json!(["api", "auth", "worker"]),
        "{watching}"
    );
    let before = dev.container_ids().await;

    // api alone, its new start-up line in the stream.
    dev.workspace
        .edit(API_MAIN, "\"api listening\"", "\"api listening, edited\"");
    let reloaded = dev.outcomes(&["api"]).await;
    assert_eq!(reloaded[0]["event"], "reloaded", "{reloaded:#?}");
    assert_eq!(reloaded[0]["trigger"], serde_json::json!([API_MAIN]));
    assert_eq!(reloaded[0]["verify"]["failed"], 0, "{reloaded:#?}");
    for phase in ["build_s", "package_s", "stop_s", "start_s", "ready_s"] {
        assert!(reloaded[0][phase].is_number(), "{phase}: {reloaded:#?}");
    }
    dev.saw("api's new start-up line", Duration::from_secs(30), |e| {
        e["event"] == "log"
            && e["service"] == "api"
            && e["line"]
                .as_str()
                .is_some_and(|l| l.contains("api listening, edited"))
    })
    .await;
    assert_eq!(
        dev.container_ids().await,
        before,
        "a reload replaces the binary, not a container"
    );

    // common: all three, in one build.
    dev.workspace.edit(
        "services/common/src/lib.rs",
        "pub mod db;",
        "// edited\npub mod db;",
    );
    let reloaded = dev.outcomes(&["api", "auth", "worker"]).await;
    assert!(
        reloaded.iter().all(|e| e["event"] == "reloaded"),
        "{reloaded:#?}"
    );

    // A compile error: cargo's error, and the old build keeps serving.
    dev.workspace.edit(
        API_MAIN,
        "async fn main()",
        "fn broken( {}\nasync fn main()",
    );
    let (failed, _) = dev
        .until("the build to fail", Duration::from_secs(300), |e| {
            e["event"] == "build_failed"
        })
        .await;
    assert!(
        failed["output"]
            .as_str()
            .is_some_and(|o| o.contains("error") && o.contains("main.rs")),
        "{failed:#}"
    );
    let health = reqwest::get(format!("{}/health", dev.url("API_PORT")))
        .await
        .expect("api still answers");
    assert_eq!(health.status(), 200);
    dev.workspace.edit(
        API_MAIN,
        "fn broken( {}\nasync fn main()",
        "async fn main()",
    );
    assert_eq!(dev.outcomes(&["api"]).await[0]["event"], "reloaded");

    // A build that exits at start: reported with its exit code and logs,
    // and the next save reloads.
    dev.workspace.edit(
        API_MAIN,
        "async fn main() -> anyhow::Result<()> {",
        "async fn main() -> anyhow::Result<()> {\n    eprintln!(\"exiting on purpose\");\n    std::process::exit(3);",
    );
    let not_ready = dev.outcomes(&["api"]).await;
    assert_eq!(not_ready[0]["event"], "not_ready", "{not_ready:#?}");
    let error = not_ready[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("exit code 3") && error.contains("exiting on purpose"),
        "{error}"
    );
    dev.workspace.edit(
        API_MAIN,
        "\n    eprintln!(\"exiting on purpose\");\n    std::process::exit(3);",
        "",
    );
    assert_eq!(dev.outcomes(&["api"]).await[0]["event"], "reloaded");

    // The worker reloaded with a task in hand: it finishes it first, and
    // the task is completed once.
    let user = ApiClient::register(
        &reqwest::Client::new(),
        &dev.url("AUTH_PORT"),
        &dev.url("API_PORT"),
    )
    .await;
    let busy = user.upload(png_plain(7000, 7000)).await;
    user.wait_for(&busy, TaskStatus::Processing, Duration::from_secs(120))
        .await;
    dev.workspace.edit(
        "services/worker/src/main.rs",
        "tracing::info!(",
        "tracing::info!(edited = true, ",
    );
    let (reloaded, _) = dev
        .until("the worker's reload", Duration::from_secs(300), |e| {
            e["event"] == "reloaded" && e["service"] == "worker"
        })
        .await;
    assert_eq!(reloaded["verify"]["failed"], 0, "{reloaded:#}");
    assert_eq!(user.status(&busy).await, Some(TaskStatus::Completed));
    let completions = dev
        .seen
        .iter()
        .filter(|e| {
            e["event"] == "log"
                && e["line"]
                    .as_str()
                    .is_some_and(|l| l.contains("task completed") && l.contains(&busy))
        })
        .count();
    assert_eq!(completions, 1, "the task in hand completed once");

    // A build that breaks a metric: its reload's verify fails, naming it.
    dev.workspace.edit(
        "services/worker/src/metrics.rs",
        "\"worker_active_processing_tasks\"",
        "\"worker_tasks_in_hand\"",
    );
    let broken = dev.outcomes(&["worker"]).await;
    assert_eq!(broken[0]["event"], "reloaded", "{broken:#?}");
    assert!(
        broken[0]["verify"]["failed"].as_u64() > Some(0)
            && broken[0]["verify"]["failures"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f
                    .as_str()
                    .is_some_and(|f| f.contains("worker_active_processing_tasks is missing")))),
        "{broken:#?}"
    );

    // Ctrl-C: the loop stops, the stack runs on.
    dev.interrupt().await;
    let (stopped, _) = dev
        .until("the loop's end", Duration::from_secs(10), |e| {
            e["event"] == "stopped"
        })
        .await;
    assert_eq!(stopped["down"], false);
    let health = reqwest::get(format!("{}/health", dev.url("AUTH_PORT")))
        .await
        .expect("auth still answers after dev stopped");
    assert_eq!(health.status(), 200);

    // A second `up --images host` after an edit to api recreates api
    // alone. The first brings the images in line with the binaries the
    // loop left (it reloads containers, not images).
    let up_host = [
        "up",
        "--images",
        "host",
        "--without",
        "grafana",
        "--without",
        "jaeger",
    ];
    let up = dev.command(&up_host).output().await.expect("up runs");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    dev.workspace.edit(
        API_MAIN,
        "\"api listening, edited\"",
        "\"api listening again\"",
    );
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "-p",
            "pixelflow-api",
            "-p",
            "pixelflow-auth",
            "-p",
            "pixelflow-worker",
            "--bins",
        ])
        .current_dir(dev.workspace.dir.path())
        .env("CARGO_TARGET_DIR", dev.workspace.path("target"));
    support::succeeded(&mut cargo, "cargo build").await;
    let up = dev.command(&up_host).output().await.expect("up runs");
    let said = String::from_utf8_lossy(&up.stderr).to_string();
    assert!(up.status.success(), "{said}");
    assert!(said.contains("api: recreated, healthy"), "{said}");
    assert_eq!(said.matches("recreated").count(), 1, "only api: {said}");
}
