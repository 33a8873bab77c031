//! The container lifecycle on small compose files of the tests' own, against
//! a real Docker engine: what `down` may touch, containers made by Debian's
//! docker-compose 1.29, and image ids that do not move when nothing changed.
//!
//! Needs: a Docker engine, the stand-in images, docker-compose, and
//! `cargo build --bins` (tests/run and .ci/run provide them).

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

mod support;
use support::{docker, exists};

const BASE: &str = "pixelflow-standin/base:bookworm";

/// A compose file in a folder of its own, and the project it runs as.
struct Project {
    _dir: tempfile::TempDir,
    file: PathBuf,
    name: Option<String>,
    /// Docker objects the test made itself: (kind, name), removed at the end.
    extra: Vec<(&'static str, String)>,
}

impl Project {
    /// `compose` is the file's text; `name` the COMPOSE_PROJECT_NAME, or
    /// none to let the folder's name decide.
    fn new(compose: &str, name: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // A folder name of the test's own: with no project name set, the
        // project is named after it.
        let folder = dir.path().join(format!("pffolder{}", std::process::id()));
        std::fs::create_dir(&folder).expect("mkdir");
        let file = folder.join("docker-compose.yml");
        std::fs::write(&file, compose).expect("write");
        Self {
            _dir: dir,
            file,
            name,
            extra: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.file.parent().expect("folder")
    }

    fn pixelflowctl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
        command
            .arg("--file")
            .arg(&self.file)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("COMPOSE_PROJECT_NAME")
            .kill_on_drop(true);
        if let Some(name) = &self.name {
            command.env("COMPOSE_PROJECT_NAME", name);
        }
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        support::succeeded(
            &mut self.pixelflowctl(args),
            &format!("pixelflowctl {args:?}"),
        )
        .await
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let mut down = std::process::Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
        down.arg("--file")
            .arg(&self.file)
            .args(["down", "-v", "--force"])
            .env_remove("COMPOSE_PROJECT_NAME");
        if let Some(name) = &self.name {
            down.env("COMPOSE_PROJECT_NAME", name);
        }
        let _ = down.output();
        support::remove_all(&self.extra);
    }
}

fn sleeper(extra: &str) -> String {
    format!(
        "version: \"3.9\"\nservices:\n  app:\n    image: {BASE}\n    command: [\"sleep\", \"600\"]\n    stop_grace_period: 1s\n    volumes: [\"data:/data\"]\n{extra}volumes:\n  data:\n"
    )
}

#[tokio::test]
async fn down_removes_only_the_declared_services_and_volumes_of_its_project() {
    let name = format!("pfown{}", std::process::id());
    let mut project = Project::new(&sleeper(""), Some(name.clone()));
    project.run(&["up", "--timeout", "60s"]).await;

    // Bystanders whose names share the project's prefix: a container of a
    // service the file does not declare (with the project's labels), a
    // volume the file does not declare (with the project's label), and a
    // container of another project whose name starts the same.
    let label = format!("com.docker.compose.project={name}");
    let undeclared = format!("{name}-extra-1");
    docker(&[
        "run",
        "-d",
        "--name",
        &undeclared,
        "--label",
        &label,
        "--label",
        "com.docker.compose.service=extra",
        BASE,
        "sleep",
        "600",
    ])
    .await;
    project.extra.push(("container", undeclared.clone()));
    let volume = format!("{name}_extra");
    docker(&["volume", "create", "--label", &label, &volume]).await;
    project.extra.push(("volume", volume.clone()));
    let other = format!("{name}x-app-1");
    docker(&[
        "run",
        "-d",
        "--name",
        &other,
        "--label",
        &format!("com.docker.compose.project={name}x"),
        "--label",
        "com.docker.compose.service=app",
        BASE,
        "sleep",
        "600",
    ])
    .await;
    project.extra.push(("container", other.clone()));

    project.run(&["down", "-v"]).await;
    assert!(
        !exists("container", &format!("{name}-app-1")).await,
        "its container stays"
    );
    assert!(
        !exists("volume", &format!("{name}_data")).await,
        "its volume stays"
    );
    assert!(
        exists("container", &undeclared).await,
        "down removed an undeclared service's container"
    );
    assert!(
        exists("volume", &volume).await,
        "down -v removed an undeclared volume"
    );
    assert!(
        exists("container", &other).await,
        "down removed another project's container"
    );
}

#[tokio::test]
async fn down_v_refuses_a_project_named_after_its_folder_unless_forced() {
    let project = Project::new(&sleeper(""), None);
    let output = project
        .pixelflowctl(&["down", "-v"])
        .output()
        .await
        .expect("runs");
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("folder's name") && message.contains("--force"),
        "{message}"
    );
    // Named by the folder, but forced: it goes ahead.
    project.run(&["down", "-v", "--force"]).await;
}

#[tokio::test]
async fn a_second_checkout_under_the_same_project_name_leaves_the_first_ones_stack_alone() {
    // Two clones share nothing but the project name; the second's up or
    // down -v would otherwise recreate or delete the first one's work.
    let name = format!("pftwin{}", std::process::id());
    let first = Project::new(&sleeper(""), Some(name.clone()));
    first.run(&["up", "--timeout", "60s"]).await;
    let second = Project::new(&sleeper(""), Some(name.clone()));
    let container = format!("{name}-app-1");
    let volume = format!("{name}_data");
    for refused in [&["down", "-v"][..], &["up", "--timeout", "60s"][..]] {
        let output = second.pixelflowctl(refused).output().await.expect("runs");
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{refused:?}: {message}");
        assert!(
            message.contains(&first.dir().display().to_string()) && message.contains("--force"),
            "{refused:?}: {message}"
        );
        assert!(
            exists("container", &container).await,
            "{refused:?} took the container"
        );
        assert!(
            exists("volume", &volume).await,
            "{refused:?} took the volume"
        );
    }
    // Forced, the second checkout acts on the project as on its own.
    second.run(&["down", "-v", "--force"]).await;
    assert!(!exists("container", &container).await);
    assert!(!exists("volume", &volume).await);
}

#[tokio::test]
async fn containers_made_by_docker_compose_1_29_are_found_by_their_labels() {
    let name = format!("pfdc{}", std::process::id());
    let project = Project::new(
        &sleeper("    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n"),
        Some(name.clone()),
    );
    let mut compose = Command::new("docker-compose");
    compose
        .args(["--project-name", &name, "--file"])
        .arg(&project.file)
        .args(["up", "-d"])
        .current_dir(project.dir());
    support::succeeded(
        &mut compose,
        "docker-compose up (Debian's docker-compose 1.29)",
    )
    .await;
    let container = format!("{name}_app_1");
    assert!(
        exists("container", &container).await,
        "docker-compose 1.x names it {container}"
    );

    let ps = project.run(&["--output", "json", "ps"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&ps.stdout).expect("JSON");
    assert_eq!(rows[0]["container"], container.as_str(), "{rows}");
    assert_eq!(rows[0]["state"], "running", "{rows}");

    docker(&[
        "exec",
        &container,
        "sh",
        "-c",
        "echo written-by-app > /proc/1/fd/1",
    ])
    .await;
    let logs = project.run(&["logs", "app"]).await;
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("written-by-app"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );

    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]).await;
    project.run(&["restart", "app"]).await;
    let restarted = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]).await;
    assert_ne!(started, restarted, "restart did not restart {container}");

    project.run(&["down", "-v"]).await;
    assert!(
        !exists("container", &container).await,
        "down left {container}"
    );
    assert!(
        !exists("volume", &format!("{name}_data")).await,
        "down -v left its volume"
    );
}

/// Packaging host binaries onto a base image the engine has never built on
/// (a fresh machine's case): three builds at once must not make three
/// copies of the shared layer, or a later `up` picks another and recreates.
#[tokio::test]
async fn host_packaging_gives_the_same_image_ids_on_a_base_never_built_on() {
    let name = format!("pfpack{}", std::process::id());
    // A base image no build has used yet: its layer cache is empty.
    let base = format!("pfpack-base:{}", std::process::id());
    let container = docker(&["create", BASE]).await;
    docker(&[
        "commit",
        "--change",
        &format!("LABEL fresh={name}"),
        &container,
        &base,
    ])
    .await;
    docker(&["rm", &container]).await;

    let services: String = ["auth", "api", "worker"]
        .iter()
        .map(|s| {
            format!(
                "  {s}:\n    image: {name}/{s}:dev\n    build: {{ context: ., args: {{ SERVICE: {s} }} }}\n    entrypoint: [\"sleep\", \"600\"]\n    stop_grace_period: 1s\n"
            )
        })
        .collect();
    let mut project = Project::new(&format!("services:\n{services}"), Some(name.clone()));
    project.extra.push(("image", base.clone()));
    for s in ["auth", "api", "worker"] {
        project.extra.push(("image", format!("{name}/{s}:dev")));
    }
    let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"));
    let up = |extra: &'static [&'static str]| {
        let mut command = project.pixelflowctl(&["up", "--images", "host", "--timeout", "60s"]);
        command.args(extra).env("RUNTIME_IMAGE", &base).env(
            "CARGO_TARGET_DIR",
            std::env::var_os("CARGO_TARGET_DIR").map_or(target.clone(), PathBuf::from),
        );
        command
    };
    let ids = || async {
        let mut ids = Vec::new();
        for s in ["auth", "api", "worker"] {
            ids.push(support::image_id(&format!("{name}/{s}:dev")).await);
        }
        ids
    };

    let first = up(&[]).output().await.expect("runs");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = ids().await;
    // --build: package the same binaries again, through the engine.
    let second = up(&["--build"]).output().await.expect("runs");
    let status = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{status}");
    assert_eq!(
        ids().await,
        before,
        "the same binaries gave other image ids:\n{status}"
    );
    assert_eq!(
        status.matches("unchanged, healthy").count(),
        3,
        "a second up recreated something:\n{status}"
    );
}

#[tokio::test]
async fn service_started_waits_for_the_start_and_service_healthy_for_health() {
    let name = format!("pfcond{}", std::process::id());
    // `slow` turns healthy 4 s after it starts; `eager` needs it started,
    // `patient` needs it healthy.
    let compose = format!(
        "services:\n  slow:\n    image: {BASE}\n    command: [\"sh\", \"-c\", \"sleep 4 && touch /tmp/ready && exec sleep 600\"]\n    stop_grace_period: 1s\n    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]\n      interval: 1s\n      retries: 20\n  eager:\n    image: {BASE}\n    command: [\"sleep\", \"600\"]\n    stop_grace_period: 1s\n    depends_on:\n      slow: {{ condition: service_started }}\n  patient:\n    image: {BASE}\n    command: [\"sleep\", \"600\"]\n    stop_grace_period: 1s\n    depends_on:\n      slow: {{ condition: service_healthy }}\n"
    );
    let project = Project::new(&compose, Some(name.clone()));
    project.run(&["up", "--timeout", "60s"]).await;
    let started = |service: &'static str| {
        let container = format!("{name}-{service}-1");
        async move {
            let at = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]).await;
            chrono::DateTime::parse_from_rfc3339(&at).expect("an RFC 3339 time")
        }
    };
    let slow = started("slow").await;
    let eager = (started("eager").await - slow).num_milliseconds();
    let patient = (started("patient").await - slow).num_milliseconds();
    assert!(eager < 3000, "service_started waited {eager} ms for health");
    assert!(
        patient >= 4000,
        "service_healthy started after {patient} ms, before health"
    );
}
