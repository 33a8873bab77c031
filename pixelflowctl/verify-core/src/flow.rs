//! The flow: a fresh user registers, fails a login, logs in, uploads a
//! generated image and waits for it to be processed; then every series the
//! spec's `[[flow.deltas]]` name must have moved by exactly what the flow
//! did (error counters by nothing), unless the spec marks a delta as a
//! lower bound and says why; the report says which.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::exposition::Exposition;
use crate::report::Check;
use crate::scrape::{scrape_all, ScrapeError, Scrapes};
use crate::spec::{DeltaSpec, Spec};

/// How long the worker may take to count a completed task: it counts just
/// after storing the result, which the flow has already seen.
const SETTLE: Duration = Duration::from_secs(10);

/// What running the flow showed: the scrapes around it and its rows.
pub struct Observation {
    pub before: Scrapes,
    pub after: Scrapes,
    /// From the start of the scrape before to the end of the scrape after:
    /// no observation made during the flow can be longer.
    pub window: Duration,
    /// What the flow did, or why it failed.
    pub outcome: anyhow::Result<Done>,
    /// The exact deltas, how every histogram and counter moved, and
    /// whether the worker settled; or the flow's failure.
    pub checks: Vec<Check>,
}

/// Scrapes, runs the flow, waits until the worker has counted its task and
/// is idle again (part of the flow's contract: the deltas are read once it
/// settled), scrapes again, and checks what moved.
pub async fn observe(
    http: &reqwest::Client,
    urls: &BTreeMap<String, String>,
    targets: &Targets,
    spec: &Spec,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> Result<Observation, ScrapeError> {
    let started = Instant::now();
    let before = scrape_all(http, urls).await?;
    let outcome = run(http, targets, timeout, progress).await;
    let mut checks = Vec::new();
    let after = match &outcome {
        Ok(done) => {
            progress("waiting for the worker's counters");
            let (after, settled) = settle(http, urls, &before).await?;
            checks.extend(settled);
            checks.extend(self::checks(spec, &before, &after, done));
            after
        }
        Err(e) => {
            checks.push(Check::new(
                "flow",
                "register, login, upload, process",
                "the task COMPLETED",
                format!("{e:#}"),
                false,
            ));
            scrape_all(http, urls).await?
        }
    };
    let window = started.elapsed();
    for (service, now) in &after {
        if let Some(was) = before.get(service) {
            checks.push(crate::sense::flow_row(
                service,
                &was.exposition,
                &now.exposition,
                window,
            ));
        }
    }
    Ok(Observation {
        before,
        after,
        window,
        outcome,
        checks,
    })
}

/// Scrapes until the worker has counted one more success and holds no
/// task, at most [`SETTLE`]; a worker that does not settle is a row.
async fn settle(
    http: &reqwest::Client,
    urls: &BTreeMap<String, String>,
    before: &Scrapes,
) -> Result<(Scrapes, Option<Check>), ScrapeError> {
    let started = Instant::now();
    let successes = |scrapes: &Scrapes| {
        scrapes
            .get("worker")
            .and_then(|w| {
                w.exposition
                    .value("worker_tasks_processed_total", &[("status", "success")])
            })
            .unwrap_or(0.0)
    };
    loop {
        let after = scrape_all(http, urls).await?;
        let idle = after
            .get("worker")
            .and_then(|w| w.exposition.value("worker_active_processing_tasks", &[]))
            == Some(0.0);
        if !urls.contains_key("worker") || (successes(&after) > successes(before) && idle) {
            return Ok((after, None));
        }
        if started.elapsed() > SETTLE {
            let row = Check::new(
                "worker",
                "flow: the worker counted the task",
                format!("counted and idle within {SETTLE:?}"),
                format!("not after waiting {SETTLE:?}"),
                false,
            );
            return Ok((after, Some(row)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct Targets {
    pub auth: String,
    pub api: String,
}

/// What the flow did, for the delta checks.
pub struct Done {
    /// Reads of the task until it completed.
    pub polls: u32,
    /// The task the flow uploaded, COMPLETED.
    pub task_id: String,
    /// The flow user's password and token, for callers that look further
    /// (the end-to-end test fetches the thumbnail and checks that no log
    /// holds either).
    pub password: String,
    pub token: String,
    /// The trace of the upload, from the `traceparent` api answered with;
    /// `None` when api sent none (tracing off).
    pub trace_id: Option<String>,
}

/// The trace id of a W3C `traceparent` value (`00-<trace>-<span>-<flags>`).
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
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

/// A PNG of a gradient, `width`×`height`: what the flow uploads.
pub fn png(width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    encode(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    }))
}

/// A PNG in one colour: megapixels in a small upload, for a task that
/// keeps the worker busy for seconds (7000×7000 is about 30 KB).
pub fn png_plain(width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    encode(image::RgbImage::from_pixel(
        width,
        height,
        image::Rgb([40, 120, 200]),
    ))
}

fn encode(image: image::RgbImage) -> anyhow::Result<Vec<u8>> {
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

/// A user of its own for a run: an email and a password no other run has.
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl Credentials {
    /// `{prefix}-<nanoseconds>@example.com`, and a password to match.
    pub fn fresh(prefix: &str) -> Self {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            email: format!("{prefix}-{nonce:x}@example.com"),
            password: format!("{prefix}-{nonce:x}-password"),
        }
    }

    fn body(&self) -> Value {
        json!({"email": self.email, "password": self.password})
    }

    /// Registers the user with auth at `auth`: 201, or an error naming
    /// what it answered.
    pub async fn register(&self, http: &reqwest::Client, auth: &str) -> anyhow::Result<()> {
        let answer = http
            .post(format!("{auth}/register"))
            .json(&self.body())
            .send()
            .await
            .context("register: no answer")?;
        expect_status(answer, 201, "register").await.map(drop)
    }

    /// Logs the user in; its token.
    pub async fn login(&self, http: &reqwest::Client, auth: &str) -> anyhow::Result<String> {
        let answer = http
            .post(format!("{auth}/login"))
            .json(&self.body())
            .send()
            .await
            .context("login: no answer")?;
        let login = expect_status(answer, 200, "login").await?;
        login["token"]
            .as_str()
            .map(str::to_string)
            .context("login answered no token")
    }
}

/// Runs the flow; returns what it did.
pub async fn run(
    http: &reqwest::Client,
    targets: &Targets,
    timeout: Duration,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Done> {
    let user = Credentials::fresh("verify");
    let auth = &targets.auth;
    progress("registering a user");
    let send = |r: reqwest::RequestBuilder, what: &'static str| async move {
        r.send().await.with_context(|| format!("{what}: no answer"))
    };
    user.register(http, auth).await?;
    progress("logging in");
    expect_status(
        send(
            http.post(format!("{auth}/login"))
                .json(&json!({"email": user.email, "password": "not-the-password"})),
            "failed login",
        )
        .await?,
        401,
        "failed login",
    )
    .await?;
    let token = user.login(http, auth).await?;
    let password = user.password;
    let bearer = format!("Bearer {token}");
    progress("uploading an image");
    let uploaded = send(
        http.post(format!("{}/api/upload", targets.api))
            .header("Authorization", &bearer)
            .header("Content-Type", "image/png")
            .body(png(320, 240)?),
        "upload",
    )
    .await?;
    let trace_id = uploaded
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id_of);
    let task = expect_status(uploaded, 201, "upload").await?;
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
    Ok(Done {
        polls,
        task_id: id,
        password,
        token,
        trace_id,
    })
}

#[cfg(test)]
mod trace_id_tests {
    use super::trace_id_of;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_nonsense_gives_none() {
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(trace_id_of("00-abc-def-01"), None);
    }
}

/// A delta check: exact unless the spec gives a reason for a lower bound.
fn delta(spec: &DeltaSpec, before: &Exposition, after: &Exposition, polls: u32) -> Check {
    let labels: Vec<(&str, &str)> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let check = if shown.is_empty() {
        format!("flow: {}", spec.series)
    } else {
        format!("flow: {}{{{}}}", spec.series, shown.join(","))
    };
    let expected = spec.expected(polls);
    // A labelled series appears with its first event: absent is 0. That
    // the family itself is exposed is the family checks' business.
    let was = before.sum(&spec.series, &labels).unwrap_or(0.0);
    let is = after.sum(&spec.series, &labels).unwrap_or(0.0);
    let moved = is - was;
    let mut c = match &spec.at_least {
        None => Check::new(
            &spec.service,
            check,
            format!("+{expected}"),
            format!("+{moved}"),
            moved == expected,
        ),
        Some(reason) => Check::new(
            &spec.service,
            check,
            format!("at least +{expected} ({reason})"),
            format!("+{moved}"),
            moved >= expected,
        ),
    };
    c.exact = Some(spec.at_least.is_none());
    c
}

/// The delta checks over scrapes before and after the flow.
pub fn checks(spec: &Spec, before: &Scrapes, after: &Scrapes, done: &Done) -> Vec<Check> {
    let mut out = Vec::new();
    for d in &spec.flow.deltas {
        match (before.get(&d.service), after.get(&d.service)) {
            (Some(b), Some(a)) => out.push(delta(d, &b.exposition, &a.exposition, done.polls)),
            _ => out.push(Check::new(
                &d.service,
                format!("flow: {}", d.series),
                "a scrape before and after the flow",
                "no scrape of this service",
                false,
            )),
        }
    }
    if let Some(a) = after.get("worker") {
        let active = a.exposition.value("worker_active_processing_tasks", &[]);
        let mut idle = Check::new(
            "worker",
            "flow: worker_active_processing_tasks back to 0",
            "0",
            active.map_or("missing".into(), |v| v.to_string()),
            active == Some(0.0),
        );
        idle.exact = Some(true);
        out.push(idle);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::Outcome;

    fn exposition(registrations: u32, errors: u32) -> Exposition {
        Exposition::parse(&format!("# HELP r_total R.\n# TYPE r_total counter\nr_total {registrations}\n# HELP e_total E.\n# TYPE e_total counter\ne_total{{status=\"500\"}} {errors}\ne_total{{status=\"503\"}} 1\ne_total{{status=\"200\"}} 7\n"))
    }

    fn spec(
        series: &str,
        labels: &[(&str, &str)],
        count: f64,
        at_least: Option<&str>,
    ) -> DeltaSpec {
        DeltaSpec {
            service: "auth".into(),
            series: series.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            count,
            per_poll: 0.0,
            at_least: at_least.map(str::to_string),
        }
    }

    #[test]
    fn a_delta_passes_only_when_exact() {
        let exact = spec("r_total", &[], 1.0, None);
        let before = exposition(5, 0);
        let c = delta(&exact, &before, &exposition(6, 0), 0);
        assert_eq!((c.outcome, c.exact), (Outcome::Pass, Some(true)));
        // A counter that counts every event twice.
        let c = delta(&exact, &before, &exposition(7, 0), 0);
        assert_eq!(c.outcome, Outcome::Fail);
        assert_eq!((c.expected.as_str(), c.actual.as_str()), ("+1", "+2"));
        let c = delta(&exact, &before, &exposition(5, 0), 0);
        assert_eq!(c.outcome, Outcome::Fail);
    }

    #[test]
    fn a_lower_bound_says_so_and_why() {
        let bound = spec("r_total", &[], 1.0, Some("other clients"));
        let c = delta(&bound, &exposition(5, 0), &exposition(8, 0), 0);
        assert_eq!((c.outcome, c.exact), (Outcome::Pass, Some(false)));
        assert_eq!(c.expected, "at least +1 (other clients)");
    }

    #[test]
    fn an_error_counter_that_moves_fails_summed_over_a_prefix() {
        let none = spec("e_total", &[("status", "5*")], 0.0, None);
        let c = delta(&none, &exposition(5, 0), &exposition(5, 0), 0);
        assert_eq!(c.outcome, Outcome::Pass);
        let c = delta(&none, &exposition(5, 0), &exposition(5, 2), 0);
        assert_eq!((c.outcome, c.actual.as_str()), (Outcome::Fail, "+2"));
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
