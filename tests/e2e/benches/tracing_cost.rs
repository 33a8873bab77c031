//! What tracing costs api and auth, at a fixed request rate.
//!
//! Authenticated `GET /api/tasks` (api's server span, its call to auth,
//! auth's server span, the statement) on auth+api pairs, release builds,
//! each pair on a database of its own, in these variants:
//! - off (`OTEL_SDK_DISABLED=true`), and "off again", configured alike: the
//!   bench's own noise floor (an A/A control). The baseline of each run is
//!   the mean of the two;
//! - ids only (`OTEL_TRACES_EXPORTER=none`): spans and ids, no export;
//! - exporting every span over OTLP/HTTP to a receiver process of its own,
//!   as a collector would (`otlp_receiver`; its CPU is not counted);
//! - optional variants of exporting, each changing one thing: a layer
//!   setting put back to tracing-opentelemetry's default
//!   (`BENCH_LEVERS=location,threads,...` or `all`; see
//!   `pixelflow_common::telemetry::levers`), the batch processor's batch
//!   size (`BENCH_BATCH_SIZES=64,2048`), or another build's binaries
//!   (`BENCH_OTHER_BUILD=DIR`: off, ids only and exporting of that build,
//!   against its own "off").
//!
//! The load is open loop: requests leave on a fixed schedule whatever the
//! answers do, and latency runs from the scheduled time, so a slow answer
//! cannot hide the requests it held up. The rate is `BENCH_LOAD` (default
//! 0.5) of tracing-off capacity, measured first with a closed loop on an
//! "off" pair, or `BENCH_RATE` requests per second.
//!
//! Figures per variant, each the median over runs with a distribution-free
//! 95% interval (order statistics; 6 runs at least):
//! - CPU per request of api and auth together, from each process's own
//!   CPU time (`/proc/PID/stat`), and its ratio to the same run's baseline;
//! - p50 and p99 latency, and p99's ratio to the baseline;
//! - the cost per span in µs: the CPU per request above the baseline,
//!   divided by the spans per request the receiver decoded (the spans of
//!   the traces whose root is `GET /api/tasks`, over those traces).
//!
//! Runs interleave the variants in a rotating order, so the machine's
//! drift hits all alike, and come in blocks (`BENCH_BLOCKS`, default 2),
//! each on freshly started pairs: a pair keeps whatever offset it started
//! with, and new pairs per block spread those offsets over all variants.
//!
//! Targets (issue 27): exporting adds at most 10% CPU per request and at
//! most 5% p99 against tracing off. "met" only when the whole interval of
//! the median ratio is at or under the target, "not met" when all of it is
//! above, "undecided" otherwise.
//!
//! Run: `tests/bench-tracing`. Knobs: BENCH_RUNS (default 7), BENCH_SECONDS
//! (per variant and run, default 5), BENCH_LOAD, BENCH_RATE, BENCH_BLOCKS,
//! BENCH_LEVERS, BENCH_BATCH_SIZES, BENCH_OTHER_BUILD.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pixelflow_e2e::load::{knob, load, median, median_interval, ms, open_loop, Stats, Verdict};
use pixelflow_e2e::{Service, Stack};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// Exporting adds at most this much CPU per request (a ratio to off).
const CPU_TARGET: f64 = 1.10;
/// And at most this much to p99.
const P99_TARGET: f64 = 1.05;
/// Of the interval around each median.
const CONFIDENCE: f64 = 0.95;
/// The root span of the measured request's trace.
const ROOT: &str = "GET /api/tasks";

/// One way of running the pair.
struct Variant {
    name: String,
    env: Vec<(&'static str, String)>,
    /// Another build's binaries, when not this one's.
    build: Option<PathBuf>,
    /// Its receiver, when it exports: one per variant, so that its spans
    /// per request are its own.
    receiver: Option<Receiver>,
}

impl Variant {
    fn new(name: impl Into<String>, env: Vec<(&'static str, String)>) -> Self {
        Self {
            name: name.into(),
            env,
            build: None,
            receiver: None,
        }
    }

    fn off() -> Vec<(&'static str, String)> {
        vec![("OTEL_SDK_DISABLED", "true".into())]
    }

    async fn exporting(name: impl Into<String>, mut env: Vec<(&'static str, String)>) -> Self {
        let receiver = Receiver::start().await;
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()));
        Self {
            receiver: Some(receiver),
            ..Self::new(name, env)
        }
    }

    /// Whether it is a baseline run ("off" of its build).
    fn is_off(&self) -> bool {
        self.env
            .iter()
            .any(|(k, v)| *k == "OTEL_SDK_DISABLED" && v == "true")
    }
}

/// The receiver process: prints its endpoint, and its counts when its
/// stdin closes.
struct Receiver {
    child: tokio::process::Child,
    out: tokio::io::BufReader<tokio::process::ChildStderr>,
    endpoint: String,
}

impl Receiver {
    async fn start() -> Self {
        let mut child = tokio::process::Command::new(pixelflow_e2e::binary("otlp_receiver"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("otlp_receiver");
        let mut out = tokio::io::BufReader::new(child.stderr.take().expect("receiver stderr"));
        let mut line = String::new();
        out.read_line(&mut line).await.expect("endpoint");
        let endpoint: Value = serde_json::from_str(&line).expect("endpoint JSON");
        let endpoint = endpoint["endpoint"].as_str().expect("endpoint").to_string();
        Self {
            child,
            out,
            endpoint,
        }
    }

    /// Spans and traces of the measured request: (traces, spans).
    async fn finish(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line).await.expect("counts");
        let counts: Value = serde_json::from_str(&line).expect("counts JSON");
        let of_root = &counts["traces"][ROOT];
        (
            of_root["traces"].as_u64().unwrap_or(0),
            of_root["spans"].as_u64().unwrap_or(0),
        )
    }
}

/// auth and api on a database of their own.
struct Pair {
    _logs: tempfile::TempDir,
    auth: Service,
    api: Service,
    bearer: String,
}

impl Pair {
    async fn start(http: &reqwest::Client, variant: &Variant) -> Self {
        let mut stack = Stack::fresh("bench-secret-0123456789-0123456789abcdef").await;
        stack.bin_dir = variant.build.clone();
        let logs = tempfile::tempdir().expect("tempdir");
        let auth = stack.auth_with(logs.path(), &variant.env);
        let api = stack.api_with(logs.path(), &variant.env);
        for service in [&auth, &api] {
            service.ready(http).await;
        }
        let (bearer, _) = pixelflow_testkit::new_user(http, &auth.base).await;
        pixelflow_e2e::upload_some(http, &api, &bearer, 5).await;
        Self {
            _logs: logs,
            auth,
            api,
            bearer,
        }
    }

    fn url(&self) -> String {
        format!("{}/api/tasks", self.api.base)
    }

    fn cpu(&self) -> (Duration, Duration) {
        (self.api.cpu_time(), self.auth.cpu_time())
    }
}

/// One variant's run: its load's figures and the CPU api and auth used.
struct Run {
    stats: Stats,
    api: Duration,
    auth: Duration,
}

impl Run {
    /// CPU per answered request, api and auth together, in µs.
    fn cpu_us(&self) -> f64 {
        (self.api + self.auth).as_secs_f64() * 1e6 / self.stats.requests().max(1) as f64
    }

    fn p99_ms(&self) -> f64 {
        ms(self.stats.percentile(0.99))
    }
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

async fn variants() -> Vec<Variant> {
    let mut variants = vec![
        Variant::new("off", Variant::off()),
        Variant::new("off again", Variant::off()),
        Variant::new("ids only", vec![("OTEL_TRACES_EXPORTER", "none".into())]),
        Variant::exporting("exporting", Vec::new()).await,
    ];
    for lever in env_list("BENCH_LEVERS") {
        let env = vec![(pixelflow_common::telemetry::levers::VARIABLE, lever.clone())];
        variants.push(
            Variant::exporting(format!("exporting, {lever} as the library's default"), env).await,
        );
    }
    for size in env_list("BENCH_BATCH_SIZES") {
        let queue = size.parse::<u64>().unwrap_or(0).max(2048).to_string();
        let env = vec![
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", size.clone()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", queue),
        ];
        variants.push(Variant::exporting(format!("exporting, batches of {size}"), env).await);
    }
    if let Ok(dir) = std::env::var("BENCH_OTHER_BUILD") {
        let dir = PathBuf::from(dir);
        let label = dir.display().to_string();
        let mut off = Variant::new(format!("off [{label}]"), Variant::off());
        off.build = Some(dir.clone());
        let mut ids = Variant::new(
            format!("ids only [{label}]"),
            vec![("OTEL_TRACES_EXPORTER", "none".into())],
        );
        ids.build = Some(dir.clone());
        let mut exporting = Variant::exporting(format!("exporting [{label}]"), Vec::new()).await;
        exporting.build = Some(dir);
        variants.extend([off, ids, exporting]);
    }
    variants
}

fn shown(interval: Option<(f64, f64)>) -> String {
    match interval {
        Some((low, high)) => format!("{low:.3}-{high:.3}"),
        None => "n/a".into(),
    }
}

#[tokio::main]
async fn main() {
    let runs = (knob("BENCH_RUNS", 7) as usize).max(1);
    let seconds = Duration::from_secs(knob("BENCH_SECONDS", 5));
    let blocks = (knob("BENCH_BLOCKS", 2) as usize).clamp(1, runs);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let mut variants = variants().await;
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    eprintln!("variants: {}", names.join("; "));

    // The rate: half of what a tracing-off pair takes, unless given.
    let rate = match std::env::var("BENCH_RATE")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
    {
        Some(rate) => rate,
        None => {
            let pair = Pair::start(&http, &variants[0]).await;
            load(
                &http,
                &pair.url(),
                Some(&pair.bearer),
                16,
                Duration::from_secs(1),
            )
            .await;
            let capacity = load(
                &http,
                &pair.url(),
                Some(&pair.bearer),
                16,
                Duration::from_secs(4),
            )
            .await
            .rps();
            let fraction = std::env::var("BENCH_LOAD")
                .ok()
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.3);
            eprintln!("tracing-off capacity {capacity:.0} req/s (closed loop, 16 clients); rate {fraction} of it");
            (capacity * fraction).round()
        }
    };
    eprintln!(
        "open loop at {rate:.0} req/s, {} s per variant and run, {runs} runs in {blocks} blocks",
        seconds.as_secs()
    );

    // results[variant][run]
    let mut results: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    let mut run = 0;
    for block in 0..blocks {
        let mut pairs = Vec::new();
        for variant in &variants {
            pairs.push(Pair::start(&http, variant).await);
        }
        for pair in &pairs {
            open_loop(
                &http,
                &pair.url(),
                Some(&pair.bearer),
                rate,
                Duration::from_secs(1),
            )
            .await; // warm-up
        }
        let block_runs = runs / blocks + usize::from(block < runs % blocks);
        for _ in 0..block_runs {
            for k in 0..pairs.len() {
                let i = (run + k) % pairs.len();
                let pair = &pairs[i];
                let (api, auth) = pair.cpu();
                let stats = open_loop(&http, &pair.url(), Some(&pair.bearer), rate, seconds).await;
                let (api_after, auth_after) = pair.cpu();
                results[i].push(Run {
                    stats,
                    api: api_after - api,
                    auth: auth_after - auth,
                });
            }
            run += 1;
            eprintln!("run {run} of {runs} done");
        }
        // Ends the pairs with SIGTERM so that the spans they still queue
        // are exported before the counts are read.
        for pair in pairs {
            let _ = pair.api.terminate().await;
            let _ = pair.auth.terminate().await;
        }
    }

    let mut counts = Vec::new();
    for variant in &mut variants {
        counts.push(match variant.receiver.take() {
            Some(receiver) => Some(receiver.finish().await),
            None => None,
        });
    }

    // Each variant's baseline run by run: the "off" variants of its build.
    let baseline_of = |build: &Option<PathBuf>, run: usize, figure: &dyn Fn(&Run) -> f64| {
        let offs: Vec<f64> = variants
            .iter()
            .zip(&results)
            .filter(|(v, _)| v.is_off() && v.build == *build)
            .map(|(_, r)| figure(&r[run]))
            .collect();
        offs.iter().sum::<f64>() / offs.len() as f64
    };

    let mut report = serde_json::Map::new();
    report.insert(
        "settings".into(),
        json!({ "rate": rate, "seconds": seconds.as_secs(), "runs": runs, "blocks": blocks }),
    );
    let exporting_counts = variants
        .iter()
        .position(|v| v.name == "exporting")
        .and_then(|i| counts[i]);
    let mut verdicts = serde_json::Map::new();
    println!("open loop, {rate:.0} req/s; medians of {runs} runs, 95% intervals in brackets; CPU is api and auth together");
    println!(
        "{:<48} {:>9} {:>22} {:>8} {:>8} {:>22} {:>9} {:>10} {:>10}",
        "variant",
        "CPU µs",
        "CPU / off",
        "p50 ms",
        "p99 ms",
        "p99 / off",
        "spans",
        "µs / span",
        "errors"
    );
    for ((variant, runs_of), received) in variants.iter().zip(&results).zip(&counts) {
        let cpu: Vec<f64> = runs_of.iter().map(Run::cpu_us).collect();
        let cpu_ratios: Vec<f64> = runs_of
            .iter()
            .enumerate()
            .map(|(r, run)| run.cpu_us() / baseline_of(&variant.build, r, &Run::cpu_us))
            .collect();
        let p99_ratios: Vec<f64> = runs_of
            .iter()
            .enumerate()
            .map(|(r, run)| run.p99_ms() / baseline_of(&variant.build, r, &Run::p99_ms))
            .collect();
        let added: Vec<f64> = runs_of
            .iter()
            .enumerate()
            .map(|(r, run)| run.cpu_us() - baseline_of(&variant.build, r, &Run::cpu_us))
            .collect();
        let p50 = median(
            runs_of
                .iter()
                .map(|r| ms(r.stats.percentile(0.5)))
                .collect(),
        );
        let p99 = median(runs_of.iter().map(Run::p99_ms).collect());
        let api_us = median(
            runs_of
                .iter()
                .map(|r| r.api.as_secs_f64() * 1e6 / r.stats.requests().max(1) as f64)
                .collect(),
        );
        let auth_us = median(
            runs_of
                .iter()
                .map(|r| r.auth.as_secs_f64() * 1e6 / r.stats.requests().max(1) as f64)
                .collect(),
        );
        let errors: usize = runs_of.iter().map(|r| r.stats.errors).sum();
        let answered: usize = runs_of.iter().map(|r| r.stats.requests()).sum();
        // Spans per request, from an exporting variant's receiver; the
        // structure is the same without export, so "ids only" uses the
        // main exporting variant's.
        let spans_per_request = received
            .or(if variant.name.starts_with("ids only") {
                exporting_counts
            } else {
                None
            })
            .filter(|(traces, _)| *traces > 0)
            .map(|(traces, spans)| spans as f64 / traces as f64);
        let added_us = median(added.clone());
        let per_span = spans_per_request
            .filter(|_| !variant.is_off())
            .map(|spans| added_us / spans);
        let cpu_ratio = median(cpu_ratios.clone());
        let cpu_interval = median_interval(cpu_ratios.clone(), CONFIDENCE);
        let p99_ratio = median(p99_ratios.clone());
        let p99_interval = median_interval(p99_ratios.clone(), CONFIDENCE);
        println!(
            "{:<48} {:>9.1} {:>22} {:>8.2} {:>8.2} {:>22} {:>9} {:>10} {:>10}",
            variant.name,
            median(cpu.clone()),
            format!("{cpu_ratio:.3} [{}]", shown(cpu_interval)),
            p50,
            p99,
            format!("{p99_ratio:.3} [{}]", shown(p99_interval)),
            spans_per_request.map_or("-".into(), |s| format!("{s:.2}")),
            per_span.map_or("-".into(), |c| format!("{c:.1}")),
            errors,
        );
        if variant.name == "exporting" {
            verdicts.insert(
                "cpu_per_request".into(),
                json!({ "target": CPU_TARGET, "verdict": Verdict::at_most(cpu_interval, CPU_TARGET).as_str() }),
            );
            verdicts.insert(
                "p99".into(),
                json!({ "target": P99_TARGET, "verdict": Verdict::at_most(p99_interval, P99_TARGET).as_str() }),
            );
        }
        report.insert(
            variant.name.clone(),
            json!({
                "cpu_us_per_request": median(cpu.clone()), "cpu_us_rounds": cpu,
                "api_cpu_us_per_request": api_us, "auth_cpu_us_per_request": auth_us,
                "cpu_ratio": cpu_ratio, "cpu_ratio_interval_95": cpu_interval.map(|(l, h)| [l, h]),
                "cpu_ratio_rounds": cpu_ratios,
                "p50_ms": p50, "p99_ms": p99,
                "p99_ratio": p99_ratio, "p99_ratio_interval_95": p99_interval.map(|(l, h)| [l, h]),
                "added_cpu_us_per_request": added_us,
                "spans_per_request": spans_per_request, "cpu_us_per_span": per_span,
                "traces_received": received.map(|(t, _)| t),
                "requests_answered": answered, "errors": errors,
            }),
        );
    }
    println!(
        "targets: exporting CPU per request <= {CPU_TARGET}x of off: {}; p99 <= {P99_TARGET}x: {} (met only if the whole interval is at or under the target, not met only if all of it is above)",
        verdicts["cpu_per_request"]["verdict"], verdicts["p99"]["verdict"],
    );
    println!("noise floor: \"off again\" against the baseline above (configured like \"off\"; its distance from 1.000 is the machine's noise)");
    report.insert("targets".into(), Value::Object(verdicts));
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(report)).expect("JSON")
    );
}
