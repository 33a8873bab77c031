//! Load bench for api, with the load generated in this process and the
//! services in their own (release builds):
//! - authenticated `GET /api/tasks`: throughput, p50 and p99;
//! - `GET /metrics` on api after the load: scrape time;
//! - the RED middleware's cost: one route served bare and behind the
//!   middleware, alternated over rounds, as a throughput ratio;
//! - resident memory of each idle service.
//!
//! Tracing's cost has a bench of its own (`tracing_cost`).
//!
//! Run: `tests/bench` (builds the release binaries, starts PostgreSQL and
//! tansu, runs this). Knobs: BENCH_SECONDS (per measurement, default 5),
//! BENCH_CONCURRENCY (default 16), BENCH_ROUNDS (default 3).

use std::process::Stdio;
use std::time::{Duration, Instant};

use pixelflow_e2e::load::{knob, load, median, ms};
use pixelflow_e2e::{binary, Stack};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(knob("BENCH_SECONDS", 5));
    let concurrency = knob("BENCH_CONCURRENCY", 16) as usize;
    let rounds = knob("BENCH_ROUNDS", 3);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");

    // 1. The middleware's cost, on the same route, alternating bare and
    // metered so drift in the machine's load hits both alike.
    let mut server = tokio::process::Command::new(binary("red_bench_server"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("red_bench_server");
    let mut first_line = String::new();
    tokio::io::BufReader::new(server.stderr.take().expect("stderr"))
        .read_line(&mut first_line)
        .await
        .expect("ports");
    let ports: Value = serde_json::from_str(&first_line).expect("ports JSON");
    let bare_url = format!("http://127.0.0.1:{}/items/42", ports["bare"]);
    let metered_url = format!("http://127.0.0.1:{}/items/42", ports["metered"]);
    let (mut bare, mut metered) = (Vec::new(), Vec::new());
    load(&http, &bare_url, None, concurrency, Duration::from_secs(1)).await; // warm-up
    load(
        &http,
        &metered_url,
        None,
        concurrency,
        Duration::from_secs(1),
    )
    .await;
    for _ in 0..rounds {
        bare.push(
            load(&http, &bare_url, None, concurrency, seconds)
                .await
                .rps(),
        );
        metered.push(
            load(&http, &metered_url, None, concurrency, seconds)
                .await
                .rps(),
        );
    }
    drop(server);
    let (bare_rps, metered_rps) = (median(bare.clone()), median(metered.clone()));

    // 2. The real stack, as processes.
    let stack = Stack::fresh("bench-secret-0123456789-0123456789abcdef").await;
    let logs = tempfile::tempdir().expect("tempdir");
    let auth = stack.auth(logs.path());
    let api = stack.api(logs.path());
    let worker = stack.worker(logs.path());
    for service in [&auth, &api, &worker] {
        service.ready(&http).await;
    }
    let idle_rss: Vec<(&str, u64)> = [&auth, &api, &worker]
        .iter()
        .map(|s| (s.name, s.rss_bytes()))
        .collect();

    let (bearer, _) = pixelflow_testkit::new_user(&http, &auth.base).await;
    pixelflow_e2e::upload_some(&http, &api, &bearer, 20).await;
    let tasks_url = format!("{}/api/tasks", api.base);
    load(
        &http,
        &tasks_url,
        Some(&bearer),
        concurrency,
        Duration::from_secs(1),
    )
    .await; // warm-up
    let tasks = load(&http, &tasks_url, Some(&bearer), concurrency, seconds).await;

    // 3. Scrape time, with the series the load created.
    let metrics_url = format!("{}/metrics", api.base);
    let mut scrapes = Vec::new();
    for _ in 0..200 {
        let sent = Instant::now();
        let body = http
            .get(&metrics_url)
            .send()
            .await
            .expect("scrape")
            .bytes()
            .await
            .expect("body");
        scrapes.push(sent.elapsed());
        assert!(!body.is_empty());
    }
    scrapes.sort();
    let busy_rss: Vec<(&str, u64)> = [&auth, &api, &worker]
        .iter()
        .map(|s| (s.name, s.rss_bytes()))
        .collect();

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let report = json!({
        "settings": { "seconds": seconds.as_secs(), "concurrency": concurrency, "rounds": rounds },
        "red_middleware": {
            "bare_rps_rounds": bare, "metered_rps_rounds": metered,
            "bare_rps": bare_rps, "metered_rps": metered_rps,
            "throughput_ratio": metered_rps / bare_rps,
            "cost_percent": (1.0 - metered_rps / bare_rps) * 100.0,
        },
        "get_api_tasks": {
            "rps": tasks.rps(), "requests": tasks.requests(), "errors": tasks.errors,
            "p50_ms": ms(tasks.percentile(0.50)), "p99_ms": ms(tasks.percentile(0.99)),
        },
        "metrics_scrape": {
            "p50_ms": ms(scrapes[scrapes.len() / 2]), "p99_ms": ms(scrapes[scrapes.len() * 99 / 100]),
        },
        "rss_mib_idle": idle_rss.iter().map(|(n, b)| (n.to_string(), json!(mib(*b)))).collect::<serde_json::Map<_, _>>(),
        "rss_mib_after_load": busy_rss.iter().map(|(n, b)| (n.to_string(), json!(mib(*b)))).collect::<serde_json::Map<_, _>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
    println!(
        "\nRED middleware: {metered_rps:.0} req/s metered vs {bare_rps:.0} bare = {:.3}x ({:.1}% cost; target <= 10%)",
        metered_rps / bare_rps,
        (1.0 - metered_rps / bare_rps) * 100.0
    );
    println!(
        "GET /api/tasks: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors ({concurrency} clients)",
        tasks.rps(),
        ms(tasks.percentile(0.50)),
        ms(tasks.percentile(0.99)),
        tasks.errors
    );
    println!(
        "GET /metrics: p50 {:.3} ms, p99 {:.3} ms (target < 2 ms)",
        ms(scrapes[scrapes.len() / 2]),
        ms(scrapes[scrapes.len() * 99 / 100])
    );
    for (name, bytes) in &idle_rss {
        println!("{name} idle RSS: {:.1} MiB (target < 30 MiB)", mib(*bytes));
    }
}
