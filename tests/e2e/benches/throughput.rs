//! Tasks per second end to end on the Docker stack, on the path a user
//! takes (`pixelflowctl up --without grafana --without jaeger`): uploads
//! from several users at once, from the first upload sent to the last task
//! COMPLETED. Three configurations, each brought up in turn on the same
//! project: the worker at `WORKER_CONCURRENCY=1` (the baseline: one task at
//! a time, as before), at its default (the CPUs its container may use), and
//! the default with `--scale worker=2`. Images: photographs made by the
//! test kit as JPEG (1 and 16 MP) and PNG (1 MP), and a 16 MP noise JPEG
//! (9.9 MB, the image of the first measurement). 16 MP PNGs and
//! 64 MP images exceed api's upload limit (10 MiB): their cost is in the
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

/// A JPEG of noise: nearly incompressible, the costliest to decode.
fn noise_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 0x2545_F491u32;
    let image = image::RgbImage::from_fn(width, height, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let [a, b, c, _] = seed.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&image)
        .expect("jpeg");
    out
}

/// Uploads `tasks` copies of `body` from users of at most 10 tasks each
/// (the active-task limit is 20), all at once; the tasks per second from
/// the first upload to the last task COMPLETED.
async fn run(auth: &str, api: &str, body: &[u8], content_type: &str, tasks: usize) -> f64 {
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for _ in 0..tasks.div_ceil(10) {
        users.push(ApiClient::register(&http, auth, api).await);
    }
    let started = Instant::now();
    let uploads = users.iter().enumerate().flat_map(|(u, user)| {
        let count = 10.min(tasks - u * 10);
        (0..count).map(move |_| async move {
            let uploaded = user.try_upload(content_type, body.to_vec()).await;
            (user, uploaded.id())
        })
    });
    let ids = futures::future::join_all(uploads).await;
    for (user, id) in &ids {
        let task = user.settled(id, Duration::from_secs(600)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
    tasks as f64 / started.elapsed().as_secs_f64()
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
        ("noise JPEG 16 MP", "image/jpeg", noise_jpeg(4000, 4000)),
    ];
    let up = ["up", "--without", "grafana", "--without", "jaeger"];
    let configurations: [(&str, &[(&str, &str)], &[&str]); 3] = [
        ("concurrency 1", &[("WORKER_CONCURRENCY", "1")], &[]),
        ("default", &[], &[]),
        ("default, 2 replicas", &[], &["--scale", "worker=2"]),
    ];
    let mut results: Vec<Vec<f64>> = Vec::new();
    for (name, envs, extra) in configurations {
        eprintln!("== {name}: up");
        let args: Vec<&str> = up.iter().copied().chain(extra.iter().copied()).collect();
        ctl(&ports, &args, envs);
        // Warm: connections, the topic, the worker's first allocations.
        run(&auth, &api, &images[0].2, images[0].1, 4).await;
        let mut row = Vec::new();
        for (image, content_type, body) in &images {
            let rate = run(&auth, &api, body, content_type, tasks).await;
            eprintln!("   {image}: {rate:.2} tasks/s");
            row.push(rate);
        }
        results.push(row);
    }
    ctl(&ports, &["down", "-v"], &[]);
    println!(
        "\n{:<18} {:>8} {:>14} {:>10} {:>14} {:>10}",
        "image", "bytes", "c=1 tasks/s", "default", "default/c=1", "2 repl."
    );
    for (i, (image, _, body)) in images.iter().enumerate() {
        println!(
            "{:<18} {:>8} {:>14.2} {:>10.2} {:>14.2} {:>10.2}",
            image,
            body.len(),
            results[0][i],
            results[1][i],
            results[1][i] / results[0][i],
            results[2][i],
        );
    }
    println!("\n{tasks} tasks per image; 2 replicas: the default concurrency in each, on the same 2 cores.");
}
