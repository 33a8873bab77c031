//! Load bench for api, with the load generated in this process and the
//! services in their own (release builds):
//! - authenticated `GET /api/tasks`: throughput, p50 and p99;
//! - `GET /metrics` on api after the load: scrape time;
//! - the RED middleware's cost: one route served bare and behind the
//!   middleware, alternated over rounds, as a throughput ratio;
//! - resident memory of each idle service;
//! - the cost of tracing: authenticated `GET /api/tasks` on two auth+api
//!   pairs, one exporting every span to a test OTLP receiver, one with
//!   `OTEL_SDK_DISABLED=true`, alternated over rounds: the throughput
//!   ratio and both p99s.
//!
//! Run: `tests/bench` (builds the release binaries, starts PostgreSQL and
//! tansu, runs this). Knobs: BENCH_SECONDS (per measurement, default 5),
//! BENCH_CONCURRENCY (default 16), BENCH_ROUNDS (default 3).

use std::process::Stdio;
use std::time::{Duration, Instant};

use pixelflow_e2e::{binary, Stack};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

struct Stats {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `concurrency` clients in a closed loop on `url` for `duration`.
async fn load(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, bearer) = (http.clone(), url.to_string(), bearer.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = http.get(&url);
                if let Some(b) = &bearer {
                    request = request.header("Authorization", b);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("load task");
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats.requests = stats.latencies.len();
    stats.latencies.sort();
    stats
}

/// auth and api on a database of their own, with `env` on both.
struct Pair {
    _logs: tempfile::TempDir,
    _auth: pixelflow_e2e::Service,
    api: pixelflow_e2e::Service,
    bearer: String,
}

impl Pair {
    async fn start(http: &reqwest::Client, env: &[(&'static str, String)]) -> Self {
        let stack = Stack::fresh("bench-secret-0123456789").await;
        let logs = tempfile::tempdir().expect("tempdir");
        let auth = stack.auth_with(logs.path(), env);
        let api = stack.api_with(logs.path(), env);
        for service in [&auth, &api] {
            service.ready(http).await;
        }
        let (bearer, _) = pixelflow_testkit::new_user(http, &auth.base).await;
        for _ in 0..5 {
            http.post(format!("{}/api/upload", api.base))
                .header("Authorization", &bearer)
                .header("Content-Type", "image/png")
                .body(pixelflow_testkit::png(64, 64))
                .send()
                .await
                .expect("upload");
        }
        Self {
            _logs: logs,
            _auth: auth,
            api,
            bearer,
        }
    }

    async fn load(&self, http: &reqwest::Client, concurrency: usize, duration: Duration) -> Stats {
        let url = format!("{}/api/tasks", self.api.base);
        load(http, &url, Some(&self.bearer), concurrency, duration).await
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

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
    let stack = Stack::fresh("bench-secret-0123456789").await;
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
    for _ in 0..20 {
        http.post(format!("{}/api/upload", api.base))
            .header("Authorization", &bearer)
            .header("Content-Type", "image/png")
            .body(pixelflow_testkit::png(64, 64))
            .send()
            .await
            .expect("upload");
    }
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

    drop((auth, api, worker));

    // 4. Tracing's cost: the same request on two auth+api pairs, one
    // exporting every span (api's server, client and database spans and
    // auth's), one with tracing off, alternated so drift hits both alike.
    // The receiver runs as a process of its own, as a collector would: its
    // decoding must not slow the load generator's threads.
    let mut receiver = tokio::process::Command::new(binary("otlp_receiver"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("otlp_receiver");
    let mut receiver_out =
        tokio::io::BufReader::new(receiver.stderr.take().expect("receiver stderr"));
    let mut line = String::new();
    receiver_out.read_line(&mut line).await.expect("endpoint");
    let endpoint: Value = serde_json::from_str(&line).expect("endpoint JSON");
    let endpoint = endpoint["endpoint"].as_str().expect("endpoint").to_string();
    let traced_env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
    let ids_env = [("OTEL_TRACES_EXPORTER", "none".to_string())];
    let off_env = [("OTEL_SDK_DISABLED", "true".to_string())];
    let traced = Pair::start(&http, &traced_env).await;
    let ids_only = Pair::start(&http, &ids_env).await;
    let off = Pair::start(&http, &off_env).await;
    let (mut traced_rounds, mut ids_rounds, mut off_rounds) = (Vec::new(), Vec::new(), Vec::new());
    for pair in [&traced, &ids_only, &off] {
        pair.load(&http, concurrency, Duration::from_secs(1)).await; // warm-up
    }
    for _ in 0..rounds {
        traced_rounds.push(traced.load(&http, concurrency, seconds).await);
        ids_rounds.push(ids_only.load(&http, concurrency, seconds).await);
        off_rounds.push(off.load(&http, concurrency, seconds).await);
    }
    // The spans received while the load ran (the pair is killed, not
    // flushed: a few queued spans are not counted).
    drop(traced);
    drop(receiver.stdin.take());
    line.clear();
    receiver_out.read_line(&mut line).await.expect("span count");
    let spans_received = serde_json::from_str::<Value>(&line).expect("count JSON")["spans"]
        .as_u64()
        .unwrap_or(0);
    let rps = |rounds: &[Stats]| median(rounds.iter().map(Stats::rps).collect());
    let p99 = |rounds: &[Stats]| median(rounds.iter().map(|s| ms(s.percentile(0.99))).collect());
    let (traced_rps, ids_rps, off_rps) = (rps(&traced_rounds), rps(&ids_rounds), rps(&off_rounds));
    let (traced_p99, ids_p99, off_p99) = (p99(&traced_rounds), p99(&ids_rounds), p99(&off_rounds));
    let errors: usize = traced_rounds
        .iter()
        .chain(&ids_rounds)
        .chain(&off_rounds)
        .map(|s| s.errors)
        .sum();

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
            "rps": tasks.rps(), "requests": tasks.requests, "errors": tasks.errors,
            "p50_ms": ms(tasks.percentile(0.50)), "p99_ms": ms(tasks.percentile(0.99)),
        },
        "metrics_scrape": {
            "p50_ms": ms(scrapes[scrapes.len() / 2]), "p99_ms": ms(scrapes[scrapes.len() * 99 / 100]),
        },
        "rss_mib_idle": idle_rss.iter().map(|(n, b)| (n.to_string(), json!(mib(*b)))).collect::<serde_json::Map<_, _>>(),
        "tracing": {
            "traced_rps_rounds": traced_rounds.iter().map(Stats::rps).collect::<Vec<_>>(),
            "ids_only_rps_rounds": ids_rounds.iter().map(Stats::rps).collect::<Vec<_>>(),
            "off_rps_rounds": off_rounds.iter().map(Stats::rps).collect::<Vec<_>>(),
            "traced_rps": traced_rps, "ids_only_rps": ids_rps, "off_rps": off_rps,
            "throughput_ratio": traced_rps / off_rps,
            "ids_only_throughput_ratio": ids_rps / off_rps,
            "traced_p99_ms": traced_p99, "ids_only_p99_ms": ids_p99, "off_p99_ms": off_p99,
            "spans_received": spans_received, "errors": errors,
        },
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
    println!(
        "Tracing: GET /api/tasks {traced_rps:.0} req/s exporting vs {off_rps:.0} off = {:.3}x (target >= 0.9); p99 {traced_p99:.2} ms vs {off_p99:.2} ms; {spans_received} spans received, {errors} errors",
        traced_rps / off_rps
    );
    println!(
        "Tracing, ids only (OTEL_TRACES_EXPORTER=none): {ids_rps:.0} req/s = {:.3}x of off; p99 {ids_p99:.2} ms",
        ids_rps / off_rps
    );
    for (name, bytes) in &idle_rss {
        println!("{name} idle RSS: {:.1} MiB (target < 30 MiB)", mib(*bytes));
    }
}
