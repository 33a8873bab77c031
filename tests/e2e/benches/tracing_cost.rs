//! What tracing costs api: authenticated `GET /api/tasks` (api's server
//! span, its call to auth and auth's server span, the database statement)
//! on four auth+api pairs, release builds, each on a database of its own:
//! - exporting every span over OTLP/HTTP to the test receiver, running as a
//!   process of its own as a collector would (`otlp_receiver`);
//! - ids only (`OTEL_TRACES_EXPORTER=none`): spans and ids, no export;
//! - off (`OTEL_SDK_DISABLED=true`): tracing off, no spans at all;
//! - off again: a second tracing-off pair, configured exactly like the
//!   first. Its ratio to off is the bench's own noise floor (an A/A
//!   control): two identical pairs differ by a few percent on this
//!   machine, so a ratio closer to the target than that is not a verdict.
//!
//! Rounds alternate the four, in a rotating order, so the machine's drift
//! hits all alike. They run in blocks (BENCH_BLOCKS, default 3), each on
//! freshly started pairs and databases: a pair keeps whatever offset it
//! started with (the A/A control has sat 4% from 1.000 for a whole run),
//! and new pairs per block spread those offsets over all four. Each
//! round's throughput is divided by the same round's
//! baseline, the mean of the two tracing-off pairs (either alone has been
//! a few percent off the other, on both sides, over whole runs), and the
//! median of those ratios is the figure (with the p99 of each, the median
//! over rounds). The A/A figure is "off again" over "off", round by round.
//!
//! Each median comes with a distribution-free 95% interval (order
//! statistics of the rounds; 6 rounds at least). The verdict on the target
//! (exporting >= 0.9x of off) is "met" only when the whole interval is at
//! or above it, "not met" when it is all below, and "undecided" otherwise:
//! one run's median alone has moved by more than the gap to the target.
//!
//! Each pair's CPU time per request (auth's and api's, from /proc, over
//! the measured rounds) is reported too: far steadier than throughput on
//! this machine (the A/A pair agrees with off to a few percent), it says
//! which process the cost is in.
//!
//! Run: `tests/bench-tracing`. Knobs: BENCH_SECONDS (per measurement,
//! default 2), BENCH_CONCURRENCY (default 16), BENCH_ROUNDS (default 15),
//! BENCH_BLOCKS (default 3).

use std::process::Stdio;
use std::time::Duration;

use pixelflow_e2e::load::{knob, load, median, median_interval, ms, Stats, Verdict};
use pixelflow_e2e::{binary, Service, Stack};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// auth and api on a database of their own, with `env` on both.
struct Pair {
    _logs: tempfile::TempDir,
    auth: Service,
    api: Service,
    bearer: String,
}

impl Pair {
    async fn start(http: &reqwest::Client, env: &[(&'static str, String)]) -> Self {
        let stack = Stack::fresh("bench-secret-0123456789-0123456789abcdef").await;
        let logs = tempfile::tempdir().expect("tempdir");
        let auth = stack.auth_with(logs.path(), env);
        let api = stack.api_with(logs.path(), env);
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

    async fn load(&self, http: &reqwest::Client, concurrency: usize, duration: Duration) -> Stats {
        let url = format!("{}/api/tasks", self.api.base);
        load(http, &url, Some(&self.bearer), concurrency, duration).await
    }
}

/// The receiver process and its endpoint; it prints its span count when
/// its stdin closes.
async fn receiver() -> (
    tokio::process::Child,
    tokio::io::BufReader<tokio::process::ChildStderr>,
    String,
) {
    let mut child = tokio::process::Command::new(binary("otlp_receiver"))
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
    (child, out, endpoint)
}

/// How a pair traces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exporting,
    IdsOnly,
    Off,
}

impl Mode {
    fn env(self, endpoint: &str) -> Vec<(&'static str, String)> {
        match self {
            Mode::Exporting => vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string())],
            Mode::IdsOnly => vec![("OTEL_TRACES_EXPORTER", "none".to_string())],
            Mode::Off => vec![("OTEL_SDK_DISABLED", "true".to_string())],
        }
    }
}

/// The four pairs, in this order everywhere below (`results[i]`).
const PAIRS: [(&str, Mode); 4] = [
    ("exporting", Mode::Exporting),
    ("ids only", Mode::IdsOnly),
    ("off", Mode::Off),
    ("off again", Mode::Off),
];

/// The target for exporting against tracing off.
const TARGET: f64 = 0.9;
/// Of the interval around each median ratio.
const CONFIDENCE: f64 = 0.95;

fn shown(interval: Option<(f64, f64)>) -> String {
    match interval {
        Some((low, high)) => format!("{low:.3}-{high:.3}"),
        None => "n/a (fewer than 6 rounds)".into(),
    }
}

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(knob("BENCH_SECONDS", 2));
    let concurrency = knob("BENCH_CONCURRENCY", 16) as usize;
    let rounds = knob("BENCH_ROUNDS", 15) as usize;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");

    let blocks = (knob("BENCH_BLOCKS", 3) as usize).clamp(1, rounds.max(1));

    let (mut receiver, mut receiver_out, endpoint) = receiver().await;
    // results[pair][round], cpu_used[pair] = (auth, api), over all blocks.
    let mut results: Vec<Vec<Stats>> = PAIRS.iter().map(|_| Vec::new()).collect();
    let mut cpu_used = [(Duration::ZERO, Duration::ZERO); PAIRS.len()];
    let mut round = 0;
    for block in 0..blocks {
        // Fresh processes and databases for every block: two pairs
        // configured alike have differed by a few percent for as long as
        // they ran, so one set of pairs would carry its own offsets into
        // every round. The old pairs are killed, so spans still queued in
        // them are not in the receiver's count.
        let mut pairs = Vec::new();
        for (_, mode) in PAIRS {
            pairs.push(Pair::start(&http, &mode.env(&endpoint)).await);
        }
        for pair in &pairs {
            pair.load(&http, concurrency, Duration::from_secs(1)).await; // warm-up
        }
        let cpu_before: Vec<(Duration, Duration)> = pairs
            .iter()
            .map(|p| (p.auth.cpu_time(), p.api.cpu_time()))
            .collect();
        let block_rounds = rounds / blocks + usize::from(block < rounds % blocks);
        for _ in 0..block_rounds {
            for k in 0..pairs.len() {
                let i = (round + k) % pairs.len();
                results[i].push(pairs[i].load(&http, concurrency, seconds).await);
            }
            round += 1;
        }
        for ((used, pair), (auth, api)) in cpu_used.iter_mut().zip(&pairs).zip(&cpu_before) {
            used.0 += pair.auth.cpu_time() - *auth;
            used.1 += pair.api.cpu_time() - *api;
        }
    }
    drop(receiver.stdin.take());
    let mut line = String::new();
    receiver_out.read_line(&mut line).await.expect("span count");
    let spans = serde_json::from_str::<Value>(&line).expect("count JSON")["spans"]
        .as_u64()
        .unwrap_or(0);

    // The baseline of each round: both tracing-off pairs, averaged.
    let baseline: Vec<f64> = results[2]
        .iter()
        .zip(&results[3])
        .map(|(off, again)| (off.rps() + again.rps()) / 2.0)
        .collect();
    let a_a_rounds: Vec<f64> = results[3]
        .iter()
        .zip(&results[2])
        .map(|(again, off)| again.rps() / off.rps())
        .collect();
    let a_a = median(a_a_rounds.clone());
    let a_a_interval = median_interval(a_a_rounds, CONFIDENCE);
    let mut exporting_interval = None;
    let mut report = serde_json::Map::new();
    report.insert(
        "settings".into(),
        json!({ "seconds": seconds.as_secs(), "concurrency": concurrency, "rounds": rounds, "blocks": blocks }),
    );
    for (((name, mode), stats), (auth_cpu, api_cpu)) in PAIRS.iter().zip(&results).zip(&cpu_used) {
        let requests: usize = stats.iter().map(|s| s.requests).sum();
        let per_request = |cpu: &Duration| cpu.as_secs_f64() * 1e6 / requests.max(1) as f64;
        let (api_us, auth_us) = (per_request(api_cpu), per_request(auth_cpu));
        let ratios: Vec<f64> = stats
            .iter()
            .zip(&baseline)
            .map(|(s, base)| s.rps() / base)
            .collect();
        let rps = median(stats.iter().map(Stats::rps).collect());
        let p99 = median(stats.iter().map(|s| ms(s.percentile(0.99))).collect());
        let p50 = median(stats.iter().map(|s| ms(s.percentile(0.50))).collect());
        let errors: usize = stats.iter().map(|s| s.errors).sum();
        let ratio = median(ratios.clone());
        let interval = median_interval(ratios.clone(), CONFIDENCE);
        if *mode == Mode::Exporting {
            exporting_interval = interval;
        }
        report.insert(
            (*name).into(),
            json!({
                "rps_rounds": stats.iter().map(Stats::rps).collect::<Vec<_>>(),
                "ratio_to_baseline_rounds": ratios,
                "rps": rps, "ratio_to_baseline": ratio,
                "ratio_interval_95": interval.map(|(low, high)| [low, high]),
                "p50_ms": p50, "p99_ms": p99, "errors": errors,
                "api_cpu_us_per_request": api_us, "auth_cpu_us_per_request": auth_us,
            }),
        );
        println!(
            "{:<10} {rps:>6.0} req/s  {ratio:.3}x of tracing off (median of {rounds} paired rounds; 95% interval {})  p50 {p50:.2} ms  p99 {p99:.2} ms  {errors} errors  CPU per request: api {api_us:.0} µs, auth {auth_us:.0} µs",
            name,
            shown(interval),
        );
    }
    let verdict = Verdict::of(exporting_interval, TARGET);
    report.insert("spans_received".into(), json!(spans));
    report.insert("a_a_ratio".into(), json!(a_a));
    report.insert(
        "a_a_interval_95".into(),
        json!(a_a_interval.map(|(low, high)| [low, high])),
    );
    report.insert("target".into(), json!(TARGET));
    report.insert("verdict".into(), json!(verdict.as_str()));
    println!("spans received by the OTLP receiver: {spans}");
    println!(
        "baseline: \"off\" and \"off again\", averaged per round; noise floor: \"off again\" / \"off\" = {a_a:.3}, 95% interval {} (configured alike: its distance from 1.000 is what this machine's noise alone gives)",
        shown(a_a_interval),
    );
    println!(
        "target: exporting >= {TARGET}x of tracing off: {} (met only if the whole 95% interval of the median is at or above it, not met only if it is all below)",
        verdict.as_str(),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(report)).expect("JSON")
    );
}
