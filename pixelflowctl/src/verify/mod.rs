//! `pixelflowctl verify`: a [`Plan`] decided first, then one stage each:
//! before the flow (Prometheus has scraped every target once), the flow
//! with its settling (pixelflow-verify's), the services' scrapes, then one
//! module per further component (Prometheus, the dashboards, Grafana,
//! Jaeger), and the report. A component that is part of the run and does
//! not answer fails; only the user can skip one.

mod dashboards;
mod grafana;
mod jaeger;
pub mod plan;
pub(crate) mod prometheus;

// The service checks, the flow and the report are pixelflow-verify's, shared
// with the services' own tests and the end-to-end tests.
pub use pixelflow_verify::spec;
use pixelflow_verify::{checks, exposition, flow, report, scrape, sense};

pub use grafana::Grafana;
pub use plan::{Checked, Component, Hints, Plan};
pub use prometheus::Promised;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use crate::printer::{Output, Printer};
use pixelflow_verify::{ScrapeError, Scrapes};
pub(crate) use report::{Check, Outcome};

/// verify could not run at all: a target did not answer, the spec is bad.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CouldNotRun(pub String);

/// How a run ended, counted from its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Verdict {
    fn of(checks: &[Check]) -> Self {
        let (passed, failed, skipped) = report::counts(checks);
        Self {
            passed,
            failed,
            skipped,
        }
    }

    pub fn all_passed(self) -> bool {
        self.failed == 0
    }
}

/// What the flow left for the trace check.
enum FlowTrace {
    NotRun,
    Failed,
    /// The trace id api answered the upload with, if any.
    Done(Option<String>),
}

/// A client that waits `timeout` for each answer.
fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")
}

/// How long a scrape may take before it fails as not answering: beyond
/// Prometheus' own `scrape_timeout`, so that a slow answer is measured and
/// judged (Prometheus marks the target down), not lost.
fn patience(scrape_timeout: Duration) -> Duration {
    scrape_timeout + Duration::from_secs(5)
}

/// A failed scrape, with what to do about a container that is not running.
fn could_not_run(error: ScrapeError, hints: &BTreeMap<String, String>) -> CouldNotRun {
    let hint = hints
        .get(&error.service)
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    CouldNotRun(format!("{error}{hint}"))
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
) -> anyhow::Result<Vec<SeriesValue>> {
    let timeout = patience(scrape::DEFAULT_SCRAPE_TIMEOUT);
    let scrapes = scrape::scrape_all(&client(timeout)?, urls)
        .await
        .map_err(|e| could_not_run(e, hints))?;
    let mut out = Vec::new();
    for (service, scrape) in scrapes {
        for (name, family) in &scrape.exposition.families {
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

/// Carries `plan` out; returns the verdict, the report printed.
pub async fn run(plan: Plan, printer: &Printer) -> anyhow::Result<Verdict> {
    for key in plan.targets.keys() {
        let service = pixelflow_verify::scrape::service_of(key);
        if !plan.spec.services.contains_key(service) {
            return Err(CouldNotRun(format!(
                "--target {service}: the spec has no such service (it has {})",
                plan.spec
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
    }
    let http = client(patience(plan.promised.scrape_timeout))?;
    let bar = printer.spinner("scraping".into());
    let mut checks = before_flow(&plan, &http, &bar).await;
    let (after, flow_trace, flow_rows) = the_flow(&plan, &http, &bar).await?;
    checks.extend(flow_rows);
    checks.extend(services(&plan, &after));
    checks.extend(prometheus_stage(&plan, &http, &bar).await);
    checks.extend(dashboards_stage(&plan, &http, &bar).await);
    checks.extend(grafana_stage(&plan, &http, &bar).await);
    checks.extend(jaeger_stage(&plan, &http, &bar, flow_trace).await);
    bar.finish_and_clear();
    add_hints(&mut checks, &plan);
    report(&checks, &plan, printer)
}

/// The services verify checks, as Prometheus' jobs are named for them.
fn checked_jobs(plan: &Plan) -> Vec<String> {
    let mut jobs: Vec<String> = plan
        .targets
        .keys()
        .map(|key| pixelflow_verify::scrape::service_of(key).to_string())
        .collect();
    jobs.dedup();
    jobs
}

/// Before the flow: Prometheus has scraped every target once, so the
/// dashboards' rates see the flow against a sample from before it.
async fn before_flow(plan: &Plan, http: &reqwest::Client, bar: &ProgressBar) -> Vec<Check> {
    match (&plan.flow, &plan.prometheus) {
        (Some(_), Checked::Check(url)) => {
            bar.set_message("waiting for Prometheus to scrape every target once before the flow");
            prometheus::scraped_before_flow(http, url, &plan.promised, &checked_jobs(plan))
                .await
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The flow and its settling, or with `--no-flow` one scrape and a row
/// saying the deltas were not looked at: the scrapes after it, the trace
/// it left, its rows.
async fn the_flow(
    plan: &Plan,
    http: &reqwest::Client,
    bar: &ProgressBar,
) -> anyhow::Result<(Scrapes, FlowTrace, Vec<Check>)> {
    let hints = &plan.hints.services;
    let Some(timeout) = plan.flow else {
        let scrapes = scrape::scrape_all(http, &plan.targets)
            .await
            .map_err(|e| could_not_run(e, hints))?;
        let row = Check::skip(
            "flow",
            "register, login, upload, process",
            "skipped: --no-flow (no exact deltas checked)",
        );
        return Ok((scrapes, FlowTrace::NotRun, vec![row]));
    };
    let targets =
        flow::Targets::from_urls(&plan.targets).map_err(|e| CouldNotRun(format!("{e:#}")))?;
    let observed = flow::observe(http, &plan.targets, &targets, &plan.spec, timeout, &|m| {
        bar.set_message(m.to_string())
    })
    .await
    .map_err(|e| could_not_run(e, hints))?;
    let trace = match &observed.outcome {
        Ok(done) => FlowTrace::Done(done.trace_id.clone()),
        Err(_) => FlowTrace::Failed,
    };
    Ok((observed.after, trace, observed.checks))
}

/// Each service's last scrape against the spec, its HTTP answer as
/// Prometheus judges it, and every family's values against its name.
fn services(plan: &Plan, scrapes: &Scrapes) -> Vec<Check> {
    let mut out = Vec::new();
    for (service, spec) in &plan.spec.services {
        if let Some(scrape) = scrapes.get(service) {
            out.extend(service_rows(
                service,
                spec,
                scrape,
                plan.promised.scrape_timeout,
            ));
        }
    }
    out
}

/// One service's rows from one scrape.
fn service_rows(
    service: &str,
    spec: &spec::ServiceSpec,
    scrape: &pixelflow_verify::Scrape,
    scrape_timeout: Duration,
) -> Vec<Check> {
    let mut out = checks::answer(service, scrape, scrape_timeout);
    if scrape.replicas > 1 {
        // The rows below judge the replicas' sum: say so.
        out.push(Check::new(
            service,
            "every replica scraped, series summed",
            format!("{} replicas", scrape.replicas),
            format!("{} replicas", scrape.replicas),
            true,
        ));
    }
    out.extend(checks::run(service, spec, &scrape.exposition));
    out.push(checks::unlisted(service, spec, &scrape.exposition));
    out.push(sense::families_row(service, &scrape.exposition));
    out
}

/// `verify --no-flow` of one service at `url`, as `dev` runs it after a
/// reload: its rows, or why it could not be scraped.
pub async fn one_service(
    spec: &spec::Spec,
    service: &str,
    url: &str,
    scrape_timeout: Duration,
) -> Result<Vec<Check>, CouldNotRun> {
    let expected = spec
        .services
        .get(service)
        .ok_or_else(|| CouldNotRun(format!("the spec has no service {service}")))?;
    let http = client(patience(scrape_timeout)).map_err(|e| CouldNotRun(format!("{e:#}")))?;
    let scrape = scrape::scrape(&http, service, url)
        .await
        .map_err(|e| CouldNotRun(e.to_string()))?;
    Ok(service_rows(service, expected, &scrape, scrape_timeout))
}

/// The row for a component that is not checked.
fn not_checked<T>(component: Component, checked: &Checked<T>) -> Option<Check> {
    checked
        .not_checked()
        .map(|why| Check::skip(component.name(), "all checks", why))
}

async fn prometheus_stage(plan: &Plan, http: &reqwest::Client, bar: &ProgressBar) -> Vec<Check> {
    match &plan.prometheus {
        Checked::Check(url) => {
            bar.set_message("asking Prometheus");
            prometheus::checks(http, url, &plan.spec, &plan.promised).await
        }
        other => not_checked(Component::Prometheus, other)
            .into_iter()
            .collect(),
    }
}

async fn dashboards_stage(plan: &Plan, http: &reqwest::Client, bar: &ProgressBar) -> Vec<Check> {
    match (&plan.dashboards, &plan.prometheus) {
        (Checked::Check(dir), Checked::Check(url)) => {
            bar.set_message("running the dashboards' queries");
            dashboards::checks(http, url, dir, plan.flow.is_some()).await
        }
        (Checked::Check(_), _) => vec![Check::skip(
            Component::Dashboards.name(),
            "panel queries",
            "Prometheus, which runs them, is not checked",
        )],
        (other, _) => not_checked(Component::Dashboards, other)
            .into_iter()
            .collect(),
    }
}

async fn grafana_stage(plan: &Plan, http: &reqwest::Client, bar: &ProgressBar) -> Vec<Check> {
    let Checked::Check(grafana) = &plan.grafana else {
        return not_checked(Component::Grafana, &plan.grafana)
            .into_iter()
            .collect();
    };
    bar.set_message("asking Grafana");
    // Without the project's dashboards there is nothing to compare
    // Grafana's with: it is checked for what needs none.
    let dashboards = match &plan.dashboards {
        Checked::Check(dir) => Some(dir.as_path()),
        _ => None,
    };
    grafana::checks(http, grafana, dashboards).await
}

async fn jaeger_stage(
    plan: &Plan,
    http: &reqwest::Client,
    bar: &ProgressBar,
    flow: FlowTrace,
) -> Vec<Check> {
    let Checked::Check(url) = &plan.jaeger else {
        return not_checked(Component::Jaeger, &plan.jaeger)
            .into_iter()
            .collect();
    };
    let name = Component::Jaeger.name();
    match flow {
        FlowTrace::Done(Some(trace_id)) => {
            bar.set_message(format!("asking Jaeger for trace {trace_id}"));
            jaeger::checks(http, url, &trace_id, plan.trace_timeout).await
        }
        FlowTrace::Done(None) => vec![Check::new(
            name,
            "the flow's trace is stored",
            "a traceparent header on api's answer to the upload",
            "none: api sent no trace id (is OTEL_SDK_DISABLED set?)",
            false,
        )],
        FlowTrace::Failed => vec![Check::new(
            name,
            "the flow's trace is stored",
            "the trace of a completed flow",
            "no trace to look for: the flow failed",
            false,
        )],
        FlowTrace::NotRun => vec![
            jaeger::answers(http, url).await,
            Check::skip(
                name,
                "the flow's trace",
                "skipped: --no-flow leaves no trace to look for",
            ),
        ],
    }
}

/// A component's failing rows say how to leave it out when its container
/// is not running. A service's rows come from a scrape that worked: its
/// hint is not theirs.
fn add_hints(checks: &mut [Check], plan: &Plan) {
    for (component, hint) in &plan.hints.components {
        for check in checks
            .iter_mut()
            .filter(|c| c.outcome == Outcome::Fail && c.service == component.name())
        {
            check.actual = format!("{}; {hint}", check.actual);
        }
    }
}

/// The report, as a table or JSON, and as JUnit when asked.
fn report(checks: &[Check], plan: &Plan, printer: &Printer) -> anyhow::Result<Verdict> {
    if let Some(path) = &plan.junit {
        std::fs::write(path, report::junit(checks))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match printer.output {
        Output::Json => printer.out(serde_json::to_string_pretty(checks)?),
        Output::Text => printer.out(report::table(checks)),
    }
    Ok(Verdict::of(checks))
}
