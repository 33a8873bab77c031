//! One traced request path, in one process, for counting its instructions
//! (`tests/trace-budget` runs this under `valgrind --tool=callgrind`).
//!
//! auth and api run in-process on a current-thread runtime, on a fresh
//! database, under the subscriber the services install (`telemetry::init`),
//! and answer `requests` authenticated `GET /api/tasks`: api's server span,
//! its call to auth, auth's server span and the statement, and a log line
//! from each server. With `export`, spans go over OTLP/HTTP to a receiver
//! that runs as a child process, so that the collector's decoding is not
//! counted; `ids` keeps ids and exports nothing; `off` is tracing off.
//!
//! Only the measured phase is counted: it starts in [`measured_begin`] and
//! ends in [`measured_end`], which callgrind is told to zero and dump at
//! (`--zero-before`, `--dump-before`). Setup (migrations, the password hash
//! of the one login, warm-up) stays outside. The phase ends with a flush,
//! so the export of every span it made is counted, and none from before.
//!
//! Prints one JSON line on stderr: mode, requests, and the spans and traces
//! the receiver decoded. Stdout has the services' log lines.
//!
//! Usage: `trace_path off|ids|export REQUESTS`. Needs the test PostgreSQL
//! and broker (`tests/deps`).

use std::process::Stdio;

use anyhow::{bail, Context};
use pixelflow_common::settings::Env;
use pixelflow_common::telemetry::{self, Tracing};
use tokio::io::AsyncBufReadExt;

const SECRET: &str = "trace-path-secret-0123456789-0123456789";
const WARM_UP: usize = 20;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the runtime")?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--receive"] => runtime.block_on(receive()),
        [mode, requests] => {
            let requests: usize = requests
                .parse()
                .with_context(|| format!("REQUESTS: {requests:?} is not a count"))?;
            runtime.block_on(run(mode, requests))
        }
        _ => bail!("usage: trace_path off|ids|export REQUESTS"),
    }
}

/// The child: a counting OTLP receiver. Prints its endpoint on stdout, and
/// its counts when stdin closes.
async fn receive() -> anyhow::Result<()> {
    let receiver = pixelflow_testkit::OtlpReceiver::counting().await;
    println!("{}", receiver.endpoint);
    tokio::task::spawn_blocking(|| {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
    })
    .await??;
    println!("{}", receiver.counts());
    Ok(())
}

async fn run(mode: &str, requests: usize) -> anyhow::Result<()> {
    let mut receiver = None;
    let tracing = match mode {
        "off" => Tracing::Off,
        "ids" => Tracing::IdsOnly,
        "export" => {
            let mut child = tokio::process::Command::new(std::env::current_exe()?)
                .arg("--receive")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start the receiver")?;
            let mut out = tokio::io::BufReader::new(child.stdout.take().context("stdout")?);
            let mut endpoint = String::new();
            out.read_line(&mut endpoint).await?;
            let endpoint = endpoint.trim().to_string();
            // The SDK reads where to send from the environment, as in the
            // services; set before any thread but this one exists.
            std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
            receiver = Some((child, out));
            Tracing::Otlp {
                endpoint: format!("{endpoint}/v1/traces"),
            }
        }
        other => bail!("mode {other:?}: expected off, ids or export"),
    };
    let telemetry = telemetry::init("api", "info", &tracing).map_err(anyhow::Error::msg)?;

    let database_url = pixelflow_testkit::fresh_database().await;
    let auth =
        pixelflow_auth::Application::build(pixelflow_auth::Settings::from_env(&Env::pairs(&[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("DATABASE_URL", &database_url),
            ("JWT_SECRET", SECRET),
        ]))?)
        .await?;
    let auth_url = format!("http://{}", auth.local_addr());
    tokio::spawn(auth.run(std::future::pending()));
    let brokers = pixelflow_testkit::kafka_brokers();
    let api =
        pixelflow_api::Application::build(pixelflow_api::Settings::from_env(&Env::pairs(&[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("DATABASE_URL", &database_url),
            ("KAFKA_BROKERS", &brokers),
            ("AUTH_SERVICE_URL", &auth_url),
            // Nothing is uploaded: the relay's timer would only add work
            // that grows with the run's length, not with its requests.
            ("OUTBOX_POLL_INTERVAL_MS", "3600000"),
        ]))?)
        .await?;
    let url = format!("http://{}/api/tasks", api.local_addr());
    tokio::spawn(api.run(std::future::pending()));

    let http = reqwest::Client::new();
    let (bearer, _) = pixelflow_testkit::new_user(&http, &auth_url).await;
    let get = || async {
        let answer = http
            .get(&url)
            .header("Authorization", &bearer)
            .send()
            .await
            .context("GET /api/tasks")?;
        anyhow::ensure!(
            answer.status().is_success(),
            "GET /api/tasks: {}",
            answer.status()
        );
        answer.bytes().await.context("GET /api/tasks body")
    };
    for _ in 0..WARM_UP {
        get().await?;
    }
    telemetry.flush();

    measured_begin();
    for _ in 0..requests {
        get().await?;
    }
    telemetry.flush();
    measured_end();

    telemetry.shutdown();
    let counts = match receiver.take() {
        Some((mut child, mut out)) => {
            drop(child.stdin.take());
            let mut line = String::new();
            out.read_line(&mut line).await?;
            child.wait().await?;
            serde_json::from_str(&line).context("the receiver's counts")?
        }
        None => serde_json::Value::Null,
    };
    eprintln!(
        "{}",
        serde_json::json!({ "mode": mode, "requests": requests, "warm_up": WARM_UP, "received": counts })
    );
    Ok(())
}

/// Where callgrind zeroes its counts (`--zero-before=*measured_begin*`).
#[inline(never)]
fn measured_begin() {
    // Bodies that differ, or the two functions are folded into one.
    std::hint::black_box("measured_begin");
}

/// Where callgrind dumps them (`--dump-before=*measured_end*`).
#[inline(never)]
fn measured_end() {
    std::hint::black_box("measured_end");
}
