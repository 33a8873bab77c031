//! `pixelflowctl verify`: typed expectations on every service's metrics, a
//! real flow with exact deltas, then one module per further component
//! (Prometheus, the dashboards, Grafana), each a list of checks. A
//! component that is part of the run and does not answer fails; only the
//! user can skip one.

mod dashboards;
mod grafana;
mod jaeger;
mod prometheus;

// The service checks, the flow and the report are pixelflow-verify's, shared
// with the services' own tests and the end-to-end tests.
pub use pixelflow_verify::spec;
use pixelflow_verify::{checks, exposition, flow, report};

pub use grafana::Grafana;
pub use prometheus::Promised;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::printer::{Output, Printer};
use exposition::Exposition;
pub(crate) use report::{Check, Outcome};

pub struct Options {
    pub spec: spec::Spec,
    /// Where each service's metrics are, for the services to check: all of
    /// the spec's on a stack, the named ones with `--target`.
    pub targets: BTreeMap<String, String>,
    pub flow: bool,
    pub flow_timeout: Duration,
    pub prometheus: Component<String>,
    /// What the project's Prometheus configuration promises.
    pub promised: prometheus::Promised,
    pub dashboards: Component<PathBuf>,
    pub grafana: Component<Grafana>,
    /// Jaeger's base URL (query API and UI).
    pub jaeger: Component<String>,
    /// How long Jaeger may take to hold the flow's whole trace.
    pub trace_timeout: Duration,
    pub junit: Option<PathBuf>,
    /// By component or service, what to do about its container that is
    /// not running: added to a component's failing rows (how to leave it
    /// out) and to a service's failed scrape (bring the stack up).
    pub hints: BTreeMap<String, String>,
}

/// What the flow left for the trace check.
enum FlowTrace {
    NotRun,
    Failed,
    /// The trace id api answered the upload with, if any.
    Done(Option<String>),
}

/// Whether a component is checked, and where, or why not.
#[derive(Debug, Clone)]
pub enum Component<T> {
    Check(T),
    /// The user asked to skip it (the text says how).
    Skipped(String),
    /// Not part of this run (the text says why): a stack without it, or
    /// `--target` naming only services.
    Absent(String),
}

impl<T> Component<T> {
    /// The rows for a component that is not checked.
    fn rows(&self, name: &str) -> Option<Check> {
        match self {
            Component::Check(_) => None,
            Component::Skipped(why) => Some(Check::skip(name, "all checks", why.clone())),
            Component::Absent(why) => Some(Check::skip(name, "all checks", why.clone())),
        }
    }
}

/// verify could not run at all: a target did not answer, the spec is bad.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CouldNotRun(pub String);

pub fn parse_target(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(s, u)| (s.to_string(), u.to_string()))
        .filter(|(s, u)| !s.is_empty() && u.starts_with("http"))
        .ok_or_else(|| format!("--target {text:?}: expected SERVICE=http://host:port/metrics"))
}

/// Scrapes every service at once. A failure adds the service's hint, if
/// `hints` has one (its container is not running).
async fn scrape_all(
    http: &reqwest::Client,
    urls: &BTreeMap<String, String>,
    hints: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Exposition>, CouldNotRun> {
    let scrapes = futures::future::join_all(urls.iter().map(|(service, url)| async move {
        let text = async { http.get(url).send().await?.error_for_status()?.text().await }
            .await
            .map_err(|e| {
                let hint = hints
                    .get(service)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                CouldNotRun(format!("cannot scrape {service} at {url}: {e}{hint}"))
            })?;
        Ok::<_, CouldNotRun>((service.clone(), Exposition::parse(&text)))
    }))
    .await;
    scrapes.into_iter().collect()
}

/// One series and its current value, for `pixelflowctl metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesValue {
    pub service: String,
    pub series: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: f64,
}

/// Every series of every service whose text (name and labels) contains
/// `pattern`; histograms as their `_count` and `_sum`.
pub async fn series(
    urls: &BTreeMap<String, String>,
    pattern: Option<&str>,
    hints: &BTreeMap<String, String>,
) -> Result<Vec<SeriesValue>, CouldNotRun> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CouldNotRun(e.to_string()))?;
    let scrapes = scrape_all(&http, urls, hints).await?;
    let mut out = Vec::new();
    for (service, exposition) in scrapes {
        for (name, family) in &exposition.families {
            let kind = family.kind.clone().unwrap_or_else(|| "untyped".into());
            let named = |suffix: &str, series: &exposition::Series| {
                let labels: Vec<String> = series
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                if labels.is_empty() {
                    format!("{name}{suffix}")
                } else {
                    format!("{name}{suffix}{{{}}}", labels.join(","))
                }
            };
            let all = family
                .series
                .iter()
                .map(|s| (named("", s), exposition::scalar(&s.value)))
                .chain(
                    family
                        .counts
                        .iter()
                        .map(|s| (named("_count", s), exposition::scalar(&s.value))),
                )
                .chain(
                    family
                        .sums
                        .iter()
                        .map(|s| (named("_sum", s), exposition::scalar(&s.value))),
                );
            for (text, value) in all {
                let (Some(value), true) = (value, pattern.is_none_or(|p| text.contains(p))) else {
                    continue;
                };
                out.push(SeriesValue {
                    service: service.clone(),
                    series: text,
                    kind: kind.clone(),
                    value,
                });
            }
        }
    }
    Ok(out)
}

/// Runs every check; returns whether all passed.
pub async fn run(options: Options, printer: &Printer) -> anyhow::Result<bool> {
    let spec = &options.spec;
    for service in options.targets.keys() {
        if !spec.services.contains_key(service) {
            return Err(CouldNotRun(format!(
                "--target {service}: the spec has no such service (it has {})",
                spec.services.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    let urls = options.targets.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let bar = printer.spinner("scraping".into());
    let mut checks = Vec::new();
    if let (true, Component::Check(url)) = (options.flow, &options.prometheus) {
        bar.set_message("waiting for Prometheus to scrape every target once before the flow");
        checks.extend(prometheus::scraped_before_flow(&http, url, &options.promised).await);
    }
    let before = scrape_all(&http, &urls, &options.hints).await?;
    let mut flow_trace = FlowTrace::NotRun;
    let after = if options.flow {
        let targets = flow::Targets::from_urls(&urls)?;
        match flow::run(&http, &targets, options.flow_timeout, &|m: &str| {
            bar.set_message(m.to_string())
        })
        .await
        {
            Ok(done) => {
                flow_trace = FlowTrace::Done(done.trace_id.clone());
                // The worker counts its success just after storing it.
                let wait = Duration::from_secs(10);
                bar.set_message("waiting for the worker's counters");
                let started = Instant::now();
                let after = loop {
                    let after = scrape_all(&http, &urls, &options.hints).await?;
                    let moved = |e: &BTreeMap<String, Exposition>| {
                        e.get("worker")
                            .and_then(|w| {
                                w.value("worker_tasks_processed_total", &[("status", "success")])
                            })
                            .unwrap_or(0.0)
                    };
                    let idle = after
                        .get("worker")
                        .and_then(|w| w.value("worker_active_processing_tasks", &[]))
                        == Some(0.0);
                    if !urls.contains_key("worker") || (moved(&after) > moved(&before) && idle) {
                        break after;
                    }
                    if started.elapsed() > wait {
                        checks.push(Check::new(
                            "worker",
                            "flow: the worker counted the task",
                            format!("counted and idle within {wait:?}"),
                            format!("not after waiting {wait:?}"),
                            false,
                        ));
                        break after;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                checks.extend(flow::checks(spec, &before, &after, &done));
                after
            }
            Err(e) => {
                flow_trace = FlowTrace::Failed;
                checks.push(Check::new(
                    "flow",
                    "register, login, upload, process",
                    "the task COMPLETED",
                    format!("{e:#}"),
                    false,
                ));
                scrape_all(&http, &urls, &options.hints).await?
            }
        }
    } else {
        // Said in the report, so its green does not read as a flow that
        // passed: the exact deltas were not looked at.
        checks.push(Check::skip(
            "flow",
            "register, login, upload, process",
            "skipped: --no-flow (no exact deltas checked)",
        ));
        before
    };
    for (service, s) in &spec.services {
        if let Some(e) = after.get(service) {
            checks.extend(checks::run(service, s, e));
        }
    }
    match &options.prometheus {
        Component::Check(url) => {
            bar.set_message("asking Prometheus");
            checks.extend(prometheus::checks(&http, url, spec, &options.promised).await);
        }
        other => checks.extend(other.rows("prometheus")),
    }
    match (&options.dashboards, &options.prometheus) {
        (Component::Check(dir), Component::Check(url)) => {
            bar.set_message("running the dashboards' queries");
            checks.extend(dashboards::checks(&http, url, dir, options.flow).await);
        }
        (Component::Check(_), _) => checks.push(Check::skip(
            "dashboards",
            "panel queries",
            "Prometheus, which runs them, is not checked",
        )),
        (other, _) => checks.extend(other.rows("dashboards")),
    }
    match (&options.grafana, &options.dashboards) {
        (Component::Check(grafana), Component::Check(dir)) => {
            bar.set_message("asking Grafana");
            checks.extend(grafana::checks(&http, grafana, dir).await);
        }
        (Component::Check(grafana), _) => {
            // Without the project's dashboards there is nothing to compare
            // Grafana's with: check what needs none.
            let dir = std::path::Path::new("");
            checks.extend(
                grafana::checks(&http, grafana, dir)
                    .await
                    .into_iter()
                    .filter(|c| !c.check.starts_with("dashboards provisioned")),
            );
        }
        (other, _) => checks.extend(other.rows("grafana")),
    }
    match (&options.jaeger, flow_trace) {
        (Component::Check(url), FlowTrace::Done(Some(trace_id))) => {
            bar.set_message(format!("asking Jaeger for trace {trace_id}"));
            checks.extend(jaeger::checks(&http, url, &trace_id, options.trace_timeout).await);
        }
        (Component::Check(_), FlowTrace::Done(None)) => checks.push(Check::new(
            "jaeger",
            "the flow's trace is stored",
            "a traceparent header on api's answer to the upload",
            "none: api sent no trace id (is OTEL_SDK_DISABLED set?)",
            false,
        )),
        (Component::Check(_), FlowTrace::Failed) => checks.push(Check::new(
            "jaeger",
            "the flow's trace is stored",
            "the trace of a completed flow",
            "no trace to look for: the flow failed",
            false,
        )),
        (Component::Check(url), FlowTrace::NotRun) => {
            checks.push(jaeger::answers(&http, url).await);
            checks.push(Check::skip(
                "jaeger",
                "the flow's trace",
                "skipped: --no-flow leaves no trace to look for",
            ));
        }
        (other, _) => checks.extend(other.rows("jaeger")),
    }
    bar.finish_and_clear();
    for check in &mut checks {
        // A service's rows come from a scrape that worked: its hint is not
        // theirs.
        if spec.services.contains_key(&check.service) {
            continue;
        }
        if let (Outcome::Fail, Some(hint)) = (check.outcome, options.hints.get(&check.service)) {
            check.actual = format!("{}; {hint}", check.actual);
        }
    }

    if let Some(path) = &options.junit {
        std::fs::write(path, report::junit(&checks))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match printer.output {
        Output::Json => printer.out(serde_json::to_string_pretty(&checks)?),
        Output::Text => printer.out(report::table(&checks)),
    }
    Ok(checks.iter().all(|c| c.outcome != Outcome::Fail))
}
