//! Tasks per second end to end on the Docker stack, on the path a user
//! takes (`pixelflowctl up --without grafana --without jaeger`): uploads
//! from several users at once, from the first upload sent to the last task
//! COMPLETED, and the worker alone: the same uploads made while the
//! worker is paused (`docker pause`), timed from its unpausing to the last
//! task COMPLETED. Three configurations, each brought up in turn on the same
//! project: the worker at `WORKER_CONCURRENCY=1` (the baseline: one task at
//! a time, as before), at its default (the CPUs its container may use), and
//! the default with `--scale worker=2`. Images: photographs made by the
//! test kit as JPEG (1 and 16 MP) and PNG (1 MP). 16 MP PNGs and 64 MP
//! images exceed api's upload limit (10 MiB): their cost is in the
//! thumbnail bench.
//!
//! Run: `tests/bench-throughput`. Knobs: BENCH_TASKS (per image and
//! configuration, default 40).

use std::time::{Duration, Instant};

use pixelflow_e2e::load::knob;
use pixelflow_testkit::{ApiClient, TaskStatus};

const PROJECT: &str = "pfthroughput";

fn ctl(ports: &[(&str, u16)], args: &[&str], envs: &[(&str, &str)]) {
    let status = std::process::Command::new(
        env!("CARGO_MANIFEST_DIR").to_string() + "/../../target/debug/pixelflowctl",
    )
    .args(["-q"])
    .args(args)
    .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    .env("COMPOSE_PROJECT_NAME", PROJECT)
    .envs(ports.iter().map(|(k, v)| (*k, v.to_string())))
    .envs(envs.iter().copied())
    .status()
    .expect("pixelflowctl (cargo build -p pixelflowctl)");
    assert!(status.success(), "pixelflowctl {args:?} failed");
}

/// The project's worker containers.
fn workers() -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={PROJECT}"))
        .args(["--filter", "label=com.docker.compose.service=worker"])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn docker_each(verb: &str, containers: &[String]) {
    let status = std::process::Command::new("docker")
        .arg(verb)
        .args(containers)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("docker CLI");
    assert!(status.success(), "docker {verb}");
}

/// CPU time so far of the project's containers, by service (cgroup v1's
/// cpuacct, as these machines have; empty where it cannot be read).
fn cpu_by_service() -> std::collections::BTreeMap<String, Duration> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=com.docker.compose.project={PROJECT}"))
        .args([
            "--format",
            "{{.ID}} {{.Label \"com.docker.compose.service\"}}",
        ])
        .output()
        .expect("docker CLI");
    let mut cpu = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((id, service)) = line.split_once(' ') else {
            continue;
        };
        let used =
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
        if let Some(ns) = used {
            *cpu.entry(service.to_string()).or_insert(Duration::ZERO) += Duration::from_nanos(ns);
        }
    }
    cpu
}

/// Waits until every one of `containers` is healthy again.
async fn healthy_again(containers: &[String]) {
    for _ in 0..120 {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Health.Status}}"])
            .args(containers)
            .output()
            .expect("docker CLI");
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .all(|h| h == "healthy")
        {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the workers are not healthy 2 minutes after their unpausing");
}

/// How a run is timed.
#[derive(Clone, Copy, PartialEq)]
enum Timed {
    /// From the first upload sent to the last task COMPLETED: api,
    /// PostgreSQL and the worker together.
    EndToEnd,
    /// The worker alone: every task uploaded while the worker is paused,
    /// then from its unpausing to the last task COMPLETED.
    Drain,
}

/// Uploads `tasks` copies of `body` from users of at most 10 tasks each
/// (the active-task limit is 20), all at once; the tasks per second.
async fn run(
    auth: &str,
    api: &str,
    body: &[u8],
    content_type: &str,
    tasks: usize,
    timed: Timed,
) -> f64 {
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for _ in 0..tasks.div_ceil(10) {
        users.push(ApiClient::register(&http, auth, api).await);
    }
    let paused = workers();
    if timed == Timed::Drain {
        docker_each("pause", &paused);
    }
    let mut cpu_before = cpu_by_service();
    let mut started = Instant::now();
    let uploads = users.iter().enumerate().flat_map(|(u, user)| {
        let count = 10.min(tasks - u * 10);
        (0..count).map(move |_| async move {
            // api holds at most UPLOAD_BYTES_IN_FLIGHT of bodies at once and
            // answers 503 with Retry-After beyond: a client waits and sends
            // again, as this one does (sooner than the 1 s it is told, to
            // keep the worker fed).
            loop {
                let uploaded = user.try_upload(content_type, body.to_vec()).await;
                if uploaded.status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    break (user, uploaded.id());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let ids = futures::future::join_all(uploads).await;
    if timed == Timed::Drain {
        cpu_before = cpu_by_service();
        started = Instant::now();
        docker_each("unpause", &paused);
    }
    for (user, id) in &ids {
        let task = user.settled(id, Duration::from_secs(600)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
    let rate = tasks as f64 / started.elapsed().as_secs_f64();
    // Where the time went: CPU per task of each container, over the run.
    let spent: Vec<String> = cpu_by_service()
        .into_iter()
        .map(|(service, after)| {
            let before = cpu_before.get(&service).copied().unwrap_or_default();
            let per_task = after.saturating_sub(before).as_secs_f64() * 1000.0 / tasks as f64;
            format!("{service} {per_task:.1}")
        })
        .collect();
    eprintln!("     CPU ms per task: {}", spent.join(", "));
    if timed == Timed::Drain {
        // Healthchecks fail while a container is paused: the next `up`
        // would stop at a worker still reported unhealthy.
        healthy_again(&paused).await;
    }
    rate
}

/// One way to run the stack: the worker's environment and `up`'s flags.
struct Configuration {
    name: &'static str,
    envs: &'static [(&'static str, &'static str)],
    extra: &'static [&'static str],
}

#[tokio::main]
async fn main() {
    let tasks = knob("BENCH_TASKS", 40) as usize;
    let ports: Vec<(&str, u16)> = pixelflow_testkit::PORT_VARIABLES
        .into_iter()
        .map(|name| (name, pixelflow_testkit::free_port()))
        .collect();
    let port = |name: &str| {
        ports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .expect("port")
    };
    let (auth, api) = (
        format!("http://127.0.0.1:{}", port("AUTH_PORT")),
        format!("http://127.0.0.1:{}", port("API_PORT")),
    );
    let images: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "photo JPEG 1 MP",
            "image/jpeg",
            pixelflow_testkit::photo_jpeg(1152, 864),
        ),
        (
            "photo JPEG 16 MP",
            "image/jpeg",
            pixelflow_testkit::photo_jpeg(4608, 3456),
        ),
        (
            "photo PNG 1 MP",
            "image/png",
            pixelflow_testkit::photo_png(1152, 864),
        ),
    ];
    let up = ["up", "--without", "grafana", "--without", "jaeger"];
    let configurations = [
        Configuration {
            name: "concurrency 1",
            envs: &[("WORKER_CONCURRENCY", "1")],
            extra: &[],
        },
        Configuration {
            name: "default",
            envs: &[],
            extra: &[],
        },
        Configuration {
            name: "default, 2 replicas",
            envs: &[],
            extra: &["--scale", "worker=2"],
        },
    ];
    let mut results: Vec<Vec<f64>> = Vec::new();
    for Configuration { name, envs, extra } in configurations {
        eprintln!("== {name}: up");
        let args: Vec<&str> = up.iter().copied().chain(extra.iter().copied()).collect();
        ctl(&ports, &args, envs);
        // Warm: connections, the topic, the worker's first allocations.
        run(&auth, &api, &images[0].2, images[0].1, 4, Timed::EndToEnd).await;
        let mut row = Vec::new();
        for (image, content_type, body) in &images {
            for timed in [Timed::EndToEnd, Timed::Drain] {
                let rate = run(&auth, &api, body, content_type, tasks, timed).await;
                let how = if timed == Timed::Drain {
                    "worker alone"
                } else {
                    "end to end"
                };
                eprintln!("   {image}, {how}: {rate:.2} tasks/s");
                row.push(rate);
            }
        }
        results.push(row);
    }
    ctl(&ports, &["down", "-v"], &[]);
    println!(
        "\n{:<18} {:<13} {:>8} {:>12} {:>10} {:>12} {:>10} {:>12}",
        "image",
        "timed",
        "bytes",
        "c=1 tasks/s",
        "default",
        "default/c=1",
        "2 repl.",
        "2 repl./c=1"
    );
    for (i, (image, _, body)) in images.iter().enumerate() {
        for (j, how) in ["end to end", "worker alone"].into_iter().enumerate() {
            let k = 2 * i + j;
            println!(
                "{:<18} {:<13} {:>8} {:>12.2} {:>10.2} {:>12.2} {:>10.2} {:>12.2}",
                image,
                how,
                body.len(),
                results[0][k],
                results[1][k],
                results[1][k] / results[0][k],
                results[2][k],
                results[2][k] / results[0][k],
            );
        }
    }
    println!("\n{tasks} tasks per image; 2 replicas: the default concurrency in each, on the same 2 cores.");
}
