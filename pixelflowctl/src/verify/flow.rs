//! The flow: a fresh user registers, fails a login, logs in, uploads a
//! generated image and waits for it to be processed; then every counter it
//! touched must have moved by what it did. Deltas equal to the flow's are
//! exact; larger ones pass as lower bounds (other traffic on the stack),
//! and the report says which.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::exposition::Exposition;
use super::report::{Check, Outcome};

pub struct Targets {
    pub auth: String,
    pub api: String,
}

/// What the flow did, for the delta checks.
pub struct Done {
    pub polls: u32,
}

fn base(metrics_url: &str) -> String {
    metrics_url
        .trim_end_matches('/')
        .trim_end_matches("/metrics")
        .to_string()
}

impl Targets {
    pub fn from_urls(urls: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let get = |s: &str| {
            urls.get(s)
                .map(|u| base(u))
                .with_context(|| format!("the flow needs a target for {s}"))
        };
        Ok(Self {
            auth: get("auth")?,
            api: get("api")?,
        })
    }
}

fn png(width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .context("cannot encode the test image")?;
    Ok(out.into_inner())
}

async fn expect_status(
    response: reqwest::Response,
    status: u16,
    what: &str,
) -> anyhow::Result<Value> {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if got != status {
        bail!("{what}: expected HTTP {status}, got {got}: {body}");
    }
    Ok(body)
}

/// Runs the flow; returns what it did.
pub async fn run(
    http: &reqwest::Client,
    targets: &Targets,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Done> {
    let nonce = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let email = format!("verify-{nonce}@example.com");
    let password = format!("verify-{nonce}-password");
    let auth = &targets.auth;
    progress("registering a user");
    let send = |r: reqwest::RequestBuilder, what: &'static str| async move {
        r.send().await.with_context(|| format!("{what}: no answer"))
    };
    expect_status(
        send(
            http.post(format!("{auth}/register"))
                .json(&json!({"email": email, "password": password})),
            "register",
        )
        .await?,
        201,
        "register",
    )
    .await?;
    progress("logging in");
    expect_status(
        send(
            http.post(format!("{auth}/login"))
                .json(&json!({"email": email, "password": "not-the-password"})),
            "failed login",
        )
        .await?,
        401,
        "failed login",
    )
    .await?;
    let login = expect_status(
        send(
            http.post(format!("{auth}/login"))
                .json(&json!({"email": email, "password": password})),
            "login",
        )
        .await?,
        200,
        "login",
    )
    .await?;
    let bearer = format!(
        "Bearer {}",
        login["token"].as_str().context("login answered no token")?
    );
    progress("uploading an image");
    let task = expect_status(
        send(
            http.post(format!("{}/api/upload", targets.api))
                .header("Authorization", &bearer)
                .header("Content-Type", "image/png")
                .body(png(320, 240)?),
            "upload",
        )
        .await?,
        201,
        "upload",
    )
    .await?;
    let id = task["id"]
        .as_str()
        .context("upload answered no task id")?
        .to_string();
    let started = Instant::now();
    let mut polls = 0;
    loop {
        progress(&format!("waiting for task {id}"));
        polls += 1;
        let task = expect_status(
            send(
                http.get(format!("{}/api/tasks/{id}", targets.api))
                    .header("Authorization", &bearer),
                "task",
            )
            .await?,
            200,
            "task",
        )
        .await?;
        match task["status"].as_str() {
            Some("COMPLETED") => break,
            Some("FAILED") => bail!("task {id} FAILED: {}", task["error"]),
            _ if started.elapsed() > timeout => bail!(
                "task {id} not COMPLETED within {timeout:?} (status {})",
                task["status"]
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(Done { polls })
}

/// A delta check: `expected` exactly passes as exact, more passes as a
/// lower bound, less fails.
fn delta(
    service: &str,
    check: String,
    before: &Exposition,
    after: &Exposition,
    name: &str,
    labels: &[(&str, &str)],
    expected: f64,
) -> Check {
    let moved =
        after.value(name, labels).unwrap_or(0.0) - before.value(name, labels).unwrap_or(0.0);
    let mut c = Check::new(
        service,
        check,
        format!("+{expected}"),
        format!("+{moved}"),
        moved >= expected,
    );
    if c.outcome == Outcome::Pass {
        c.exact = Some(moved == expected);
    }
    c
}

/// (service, series, labels, how much the flow moves it).
type Expected<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], f64);

/// The delta checks over scrapes before and after the flow.
pub fn checks(
    before: &BTreeMap<String, Exposition>,
    after: &BTreeMap<String, Exposition>,
    done: &Done,
) -> Vec<Check> {
    let mut out = Vec::new();
    let polls = f64::from(done.polls);
    let table: Vec<Expected> = vec![
        ("auth", "auth_registrations_total", &[], 1.0),
        ("auth", "auth_logins_total", &[("status", "failure")], 1.0),
        ("auth", "auth_logins_total", &[("status", "success")], 1.0),
        // api asks auth once per authenticated request: the upload and
        // each poll.
        (
            "auth",
            "auth_token_validations_total",
            &[("status", "valid")],
            1.0 + polls,
        ),
        (
            "auth",
            "auth_request_duration_seconds_count",
            &[("method", "POST"), ("endpoint", "/register")],
            1.0,
        ),
        (
            "auth",
            "auth_request_duration_seconds_count",
            &[("method", "POST"), ("endpoint", "/login")],
            2.0,
        ),
        ("api", "api_tasks_created_total", &[], 1.0),
        ("api", "api_kafka_messages_published_total", &[], 1.0),
        (
            "api",
            "api_request_duration_seconds_count",
            &[("method", "POST"), ("endpoint", "/api/upload")],
            1.0,
        ),
        (
            "api",
            "api_request_duration_seconds_count",
            &[("method", "GET"), ("endpoint", "/api/tasks/{id}")],
            polls,
        ),
        (
            "worker",
            "worker_tasks_processed_total",
            &[("status", "success")],
            1.0,
        ),
        ("worker", "worker_kafka_messages_consumed_total", &[], 1.0),
    ];
    for (service, name, labels, expected) in table {
        let (Some(b), Some(a)) = (before.get(service), after.get(service)) else {
            out.push(Check::skip(
                service,
                format!("flow: {name}"),
                "no scrape of this service",
            ));
            continue;
        };
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let check = if shown.is_empty() {
            format!("flow: {name}")
        } else {
            format!("flow: {name}{{{}}}", shown.join(","))
        };
        out.push(delta(service, check, b, a, name, labels, expected));
    }
    if let Some(a) = after.get("worker") {
        let active = a.value("worker_active_processing_tasks", &[]);
        out.push(Check::new(
            "worker",
            "flow: worker_active_processing_tasks back to 0",
            "0",
            active.map_or("missing".into(), |v| v.to_string()),
            active == Some(0.0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registrations: u32) -> Exposition {
        Exposition::parse(&format!("# HELP auth_registrations_total R.\n# TYPE auth_registrations_total counter\nauth_registrations_total {registrations}\n"))
    }

    #[test]
    fn equal_deltas_are_exact_larger_ones_lower_bounds_smaller_ones_failures() {
        let before = exposition(5);
        let exact = delta(
            "auth",
            "r".into(),
            &before,
            &exposition(6),
            "auth_registrations_total",
            &[],
            1.0,
        );
        assert_eq!((exact.outcome, exact.exact), (Outcome::Pass, Some(true)));
        let more = delta(
            "auth",
            "r".into(),
            &before,
            &exposition(8),
            "auth_registrations_total",
            &[],
            1.0,
        );
        assert_eq!((more.outcome, more.exact), (Outcome::Pass, Some(false)));
        let less = delta(
            "auth",
            "r".into(),
            &before,
            &exposition(5),
            "auth_registrations_total",
            &[],
            1.0,
        );
        assert_eq!(less.outcome, Outcome::Fail);
        assert_eq!((less.expected.as_str(), less.actual.as_str()), ("+1", "+0"));
    }

    #[test]
    fn flow_targets_come_from_the_scrape_urls() {
        let urls = BTreeMap::from([
            (
                "auth".to_string(),
                "http://127.0.0.1:50051/metrics".to_string(),
            ),
            (
                "api".to_string(),
                "http://127.0.0.1:8080/metrics".to_string(),
            ),
        ]);
        let t = Targets::from_urls(&urls).expect("targets");
        assert_eq!(
            (t.auth.as_str(), t.api.as_str()),
            ("http://127.0.0.1:50051", "http://127.0.0.1:8080")
        );
    }
}
