//! The errors a user meets, each with its message and exit code.

use std::process::Output;

use tokio::process::Command;

fn pixelflowctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixelflowctl"));
    command
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    command
}

/// `text` as a docker-compose.yml in a folder of its own (kept while the
/// `TempDir` lives).
fn compose_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, text).expect("write");
    (dir, file)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn an_unreachable_docker_is_exit_code_3_with_how_to_start_it() {
    let output = pixelflowctl(&["ps"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Docker is not reachable"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("dockerd"), "{}", stderr(&output));
}

/// An engine that answers the version and ping a client starts with, then
/// drops every other request unanswered: Docker gone in the middle of a
/// command. Returns the socket's `DOCKER_HOST` (kept while the `TempDir`
/// lives).
async fn engine_that_dies_after_hello() -> (tempfile::TempDir, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buffer[..n]).to_string();
                    let body = if head.contains("/version ") {
                        r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24"}"#
                    } else if head.contains("/_ping ") {
                        "OK"
                    } else {
                        return; // the engine is gone: no answer, connection closed
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let host = format!("unix://{}", socket.display());
    (dir, host)
}

#[tokio::test]
async fn docker_lost_in_the_middle_of_a_command_is_exit_code_3_naming_what_it_was_doing() {
    let (_engine, host) = engine_that_dies_after_hello().await;
    for command in [&["ps"][..], &["logs", "api"], &["down"]] {
        let output = pixelflowctl(command)
            .env("DOCKER_HOST", &host)
            .output()
            .await
            .expect("runs");
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{command:?}: {said}");
        assert!(
            said.contains("Docker is not reachable (list containers: "),
            "{command:?}: {said}"
        );
    }
}

#[tokio::test]
async fn without_docker_verify_and_metrics_say_whose_ports_they_use() {
    // Ports where nothing answers, so the scrape fails quickly either way.
    let free = || pixelflow_testkit::free_port().to_string();
    for command in ["verify", "metrics"] {
        let output = pixelflowctl(&[command])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("AUTH_PORT", free())
            .env("API_PORT", free())
            .env("WORKER_PORT", free())
            .output()
            .await
            .expect("runs");
        assert!(
            stderr(&output).contains(&format!(
                "{command}: Docker is not reachable; using the ports the compose file publishes"
            )),
            "{}",
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    }
}

#[tokio::test]
async fn a_compose_file_that_cannot_be_read_or_interpolated_says_why_once() {
    let (dir, file) =
        compose_file("services:\n  a:\n    image: \"${PF_TEST_UNSET_IMAGE:?must be set}\"\n");
    let missing = dir.path().join("missing.yml");
    for (path, why) in [
        (&file, "required variable PF_TEST_UNSET_IMAGE is missing"),
        (&missing, "No such file or directory"),
    ] {
        let output = pixelflowctl(&["--file", path.to_str().expect("utf-8"), "ps"])
            .env_remove("PF_TEST_UNSET_IMAGE")
            .output()
            .await
            .expect("runs");
        let message = stderr(&output);
        assert_ne!(output.status.code(), Some(0), "{message}");
        assert_eq!(message.matches(why).count(), 1, "said once: {message}");
    }
}

#[tokio::test]
async fn a_compose_file_that_does_not_parse_is_exit_code_4_with_its_line() {
    let (_dir, file) = compose_file("services:\n  a:\n    image: [oops\n");
    let output = pixelflowctl(&["--file", file.to_str().expect("utf-8"), "ps"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("docker-compose.yml:"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_unknown_service_lists_the_valid_ones() {
    let output = pixelflowctl(&["logs", "nosuch"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("the services are: alertmanager, api, auth, grafana, jaeger, kafka, postgres, prometheus, worker"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_taken_host_port_is_named_with_its_service_and_the_variable_that_moves_it() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let project = format!("pfport{}", std::process::id());
    let output = pixelflowctl(&["up", "--timeout", "60s", "postgres"])
        .env("COMPOSE_PROJECT_NAME", &project)
        .env("POSTGRES_IMAGE", "pixelflow-standin/postgres:15")
        .env("POSTGRES_PORT", &port)
        .output()
        .await
        .expect("runs");
    let message = stderr(&output);
    let _ = pixelflowctl(&["down", "-v"])
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .await;
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "host port {port} for service postgres is already in use"
        )),
        "{message}"
    );
    // The way on names the variable the compose file reads the port from.
    assert!(
        message.contains("move it with POSTGRES_PORT (for example POSTGRES_PORT="),
        "{message}"
    );
    drop(listener);
}

#[tokio::test]
async fn images_that_cannot_be_pulled_are_named_together_with_the_way_on() {
    let (_dir, file) = compose_file(
        "services:\n  \
           tracer:\n    image: pixelflow-test/no-such-image:tracer\n  \
           board:\n    image: pixelflow-test/no-such-image:board\n  \
           app:\n    image: debian:bookworm-slim\n    command: [sleep, infinity]\n    depends_on: [tracer]\n",
    );
    let output = pixelflowctl(&["--file", file.to_str().expect("utf-8"), "up"])
        .env(
            "COMPOSE_PROJECT_NAME",
            format!("pfpull{}", std::process::id()),
        )
        .output()
        .await
        .expect("runs");
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot pull the image of tracer, board")
            || stderr.contains("cannot pull the image of board, tracer"),
        "both, in one message: {stderr}"
    );
    assert!(
        stderr.contains("pull pixelflow-test/no-such-image:tracer")
            && stderr.contains("pull pixelflow-test/no-such-image:board"),
        "each with its image: {stderr}"
    );
    assert!(stderr.contains("compose/standins/build"), "{stderr}");
    assert!(
        stderr.contains("`up --without tracer --without board` leaves the others out (and app, which depends on them)")
            || stderr.contains("`up --without board --without tracer` leaves the others out (and app, which depends on them)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Docker responded with status code"),
        "each engine error once, not repeated through its source: {stderr}"
    );
}

#[tokio::test]
async fn commands_on_a_stack_that_is_not_up_say_to_bring_it_up() {
    let project = format!("pfnotup{}", std::process::id());
    // Ports nothing listens on: whatever else runs here, these are not it.
    let free = || pixelflow_testkit::free_port().to_string();
    let (auth, api, worker) = (free(), free(), free());
    let run = |args: &'static [&'static str]| {
        let mut command = pixelflowctl(args);
        command
            .env("COMPOSE_PROJECT_NAME", &project)
            .env("AUTH_PORT", &auth)
            .env("API_PORT", &api)
            .env("WORKER_PORT", &worker);
        command
    };
    for (args, code) in [(&["verify", "--no-flow"][..], 2), (&["metrics"][..], 2)] {
        let output = run(args).output().await.expect("runs");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&format!(
                "container is running in project {project}: bring the stack up first (pixelflowctl up)"
            )),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // A drill on a stack that is not up could not run: exit 2, naming
    // what is missing, and nothing touched.
    let output = run(&["drill", "worker-kill"]).output().await.expect("runs");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "auth, api, worker, prometheus, alertmanager not running in project {project}: a drill needs the stack up (pixelflowctl up)"
        )),
        "{}",
        stderr(&output)
    );
    let output = run(&["logs", "api", "worker"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "api, worker have no container in project {project}: bring them up first (pixelflowctl up api worker)"
        )),
        "{}",
        stderr(&output)
    );
}

/// Runs `up` on a one-service compose file in a project of its own, then
/// takes it down; returns the exit code, stderr and how long `up` took.
async fn up_alone(service: &str, prefix: &str) -> (Option<i32>, String, std::time::Duration) {
    let (_dir, file) = compose_file(&format!("services:\n{service}"));
    let project = format!("{prefix}{}", std::process::id());
    let file = file.to_str().expect("utf-8").to_string();
    let started = std::time::Instant::now();
    let output = pixelflowctl(&["--file", &file, "up", "--timeout", "120s"])
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .await
        .expect("runs");
    let waited = started.elapsed();
    let _ = pixelflowctl(&["--file", &file, "down", "-v"])
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .await;
    (output.status.code(), stderr(&output), waited)
}

#[tokio::test]
async fn a_service_that_exits_ends_the_wait_at_once_with_its_last_lines() {
    let (code, message, waited) = up_alone(
        "  broken:\n    image: pixelflow-standin/base:bookworm\n    command: [\"sh\", \"-c\", \"echo boom; exit 3\"]\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n",
        "pfexit",
    )
    .await;
    assert_eq!(code, Some(1), "{message}");
    assert!(message.contains("broken exited with code 3"), "{message}");
    assert!(
        message.contains("boom"),
        "the last log lines are shown: {message}"
    );
    assert!(
        waited < std::time::Duration::from_secs(60),
        "it waited {waited:?} for a dead container"
    );
}

#[tokio::test]
async fn a_service_that_turns_unhealthy_ends_the_wait_with_its_probe_output() {
    let (code, message, waited) = up_alone(
        "  sick:\n    image: pixelflow-standin/base:bookworm\n    command: [\"sleep\", \"600\"]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"echo probe says no; exit 1\"]\n      interval: 1s\n      retries: 1\n",
        "pfsick",
    )
    .await;
    assert_eq!(code, Some(1), "{message}");
    assert!(
        message.contains("sick is unhealthy; last health probe: exit 1: probe says no"),
        "{message}"
    );
    assert!(
        waited < std::time::Duration::from_secs(60),
        "it waited {waited:?} for an unhealthy container"
    );
}

#[tokio::test]
async fn a_service_in_a_crash_loop_stops_up_within_seconds_with_its_exit_code() {
    let (code, message, waited) = up_alone(
        "  looping:\n    image: pixelflow-standin/base:bookworm\n    restart: unless-stopped\n    command: [\"sh\", \"-c\", \"echo crashing now; exit 7\"]\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 30s\n",
        "pfloop",
    )
    .await;
    assert_eq!(code, Some(1), "{message}");
    assert!(
        message.contains("looping keeps crashing") && message.contains("last exit code 7"),
        "{message}"
    );
    assert!(
        message.contains("crashing now"),
        "the last log lines are shown: {message}"
    );
    assert!(
        waited < std::time::Duration::from_secs(30),
        "it waited {waited:?} for a crash loop (the timeout is 120 s)"
    );
}

/// `up` of one service built from `dockerfile` in a folder of its own;
/// returns the exit code and stderr.
async fn build_alone(dockerfile: &str, prefix: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write");
    let file = dir.path().join("docker-compose.yml");
    let project = format!("{prefix}{}", std::process::id());
    std::fs::write(
        &file,
        format!("services:\n  app:\n    image: {project}/app:dev\n    build: .\n"),
    )
    .expect("write");
    let output = pixelflowctl(&["--file", file.to_str().expect("utf-8"), "up"])
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .await
        .expect("runs");
    (output.status.code(), stderr(&output))
}

#[tokio::test]
async fn a_failing_build_step_shows_the_engines_error_and_the_last_build_lines() {
    let (code, message) = build_alone(
        "FROM pixelflow-standin/base:bookworm\nRUN echo compiling-something && echo it-broke >&2 && exit 3\n",
        "pfbuildfail",
    )
    .await;
    assert_eq!(code, Some(1), "{message}");
    assert!(!message.contains("Docker stream error"), "{message}");
    assert!(
        message.contains("build pfbuildfail"),
        "names the build: {message}"
    );
    assert!(
        message.contains("returned a non-zero code: 3"),
        "the engine's own text: {message}"
    );
    assert!(
        message.contains("--- last build output ---") && message.contains("it-broke"),
        "the last lines of the build: {message}"
    );
}

#[tokio::test]
async fn a_buildkit_only_dockerfile_says_so_instead_of_a_stream_error() {
    let (code, message) = build_alone(
        "FROM pixelflow-standin/base:bookworm\nRUN --mount=type=cache,target=/cache true\n",
        "pfbuildkit",
    )
    .await;
    assert_eq!(code, Some(1), "{message}");
    assert!(!message.contains("Docker stream error"), "{message}");
    assert!(
        message.contains("--mount"),
        "the engine's reason: {message}"
    );
}

#[tokio::test]
async fn a_grafana_password_in_the_environment_is_never_printed() {
    // Help shows an option's environment value by default; a secret must
    // not reach a terminal, a screen share or a CI log that way, nor through
    // an error that prints the settings it was given.
    let secret = "hunter2-grafana-password-for-the-test";
    for args in [
        &["verify", "--help"][..],
        &["verify", "--grafana", "not a url"][..],
    ] {
        let output = pixelflowctl(args)
            .env("GRAFANA_PASSWORD", secret)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .await
            .expect("runs");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        assert!(!printed.contains(secret), "{args:?} printed it: {printed}");
        // The option is still named, so a user knows where it is read from.
        if args.contains(&"--help") {
            assert!(printed.contains("GRAFANA_PASSWORD"), "{printed}");
        }
    }
}

#[tokio::test]
async fn drill_list_needs_no_docker_and_names_the_rules_no_drill_exercises() {
    let output = pixelflowctl(&["--output", "json", "drill", "list"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names: Vec<&str> = listed["drills"]
        .as_array()
        .expect("drills")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "kafka-down",
            "worker-kill",
            "postgres-restart",
            "auth-down",
            "worker-stuck"
        ]
    );
    let unexercised = listed["rules_no_drill_exercises"].to_string();
    assert!(
        unexercised.contains("PixelFlowLatencySLO (for 10m)"),
        "{unexercised}"
    );
    assert!(
        !unexercised.contains("PixelFlowTargetDown"),
        "{unexercised}"
    );
    // An unknown drill is a usage error that lists the drills.
    let output = pixelflowctl(&["drill", "nope"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("list, kafka-down, worker-kill"),
        "{}",
        stderr(&output)
    );
}
