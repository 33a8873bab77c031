//! `pixelflowctl verify`: typed expectations on every service's metrics, a
//! real flow with exact deltas, Prometheus, the dashboards and Grafana.

mod checks;
mod exposition;
mod flow;
mod report;
mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::printer::{Output, Printer};
use exposition::Exposition;
use report::{Check, Outcome};

pub struct Options {
    pub spec: Option<PathBuf>,
    pub targets: Vec<(String, String)>,
    pub flow: bool,
    pub flow_timeout: Duration,
    pub prometheus: String,
    pub grafana: String,
    pub dashboards: PathBuf,
    pub junit: Option<PathBuf>,
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

async fn scrape_all(
    http: &reqwest::Client,
    urls: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Exposition>, CouldNotRun> {
    let mut out = BTreeMap::new();
    for (service, url) in urls {
        let text = async { http.get(url).send().await?.error_for_status()?.text().await }
            .await
            .map_err(|e| CouldNotRun(format!("cannot scrape {service} at {url}: {e}")))?;
        out.insert(service.clone(), Exposition::parse(&text));
    }
    Ok(out)
}

/// Runs every check; returns whether all passed.
pub async fn run(options: Options, printer: &Printer) -> anyhow::Result<bool> {
    let text = match &options.spec {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CouldNotRun(format!("cannot read {}: {e}", path.display())))?,
        None => spec::EMBEDDED.to_string(),
    };
    let spec =
        spec::Spec::parse(&text).map_err(|e| CouldNotRun(format!("the spec is invalid: {e}")))?;
    let mut urls: BTreeMap<String, String> = spec
        .services
        .iter()
        .map(|(n, s)| (n.clone(), s.url.clone()))
        .collect();
    for (service, url) in &options.targets {
        if !urls.contains_key(service) {
            return Err(CouldNotRun(format!(
                "--target {service}: the spec has no such service (it has {})",
                urls.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        urls.insert(service.clone(), url.clone());
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let bar = printer.spinner("scraping".into());
    let before = scrape_all(&http, &urls).await?;
    let mut checks = Vec::new();
    let after = if options.flow {
        let targets = flow::Targets::from_urls(&urls)?;
        match flow::run(&http, &targets, options.flow_timeout, &|m: &str| {
            bar.set_message(m.to_string())
        })
        .await
        {
            Ok(done) => {
                // The worker counts its success just after storing it.
                bar.set_message("waiting for the worker's counters");
                let deadline = Instant::now() + Duration::from_secs(10);
                let after = loop {
                    let after = scrape_all(&http, &urls).await?;
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
                    if (moved(&after) > moved(&before) && idle) || Instant::now() > deadline {
                        break after;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                checks.extend(flow::checks(&before, &after, &done));
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
                scrape_all(&http, &urls).await?
            }
        }
    } else {
        before
    };
    for (service, s) in &spec.services {
        if let Some(e) = after.get(service) {
            checks.extend(checks::run(service, s, e));
        }
    }
    bar.set_message("asking Prometheus");
    checks.extend(prometheus_checks(&http, &options.prometheus, &spec).await);
    checks.extend(dashboard_checks(&http, &options.prometheus, &options.dashboards).await);
    checks.extend(grafana_checks(&http, &options.grafana, &options.dashboards).await);
    bar.finish_and_clear();

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

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body)
}

async fn query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Result<Vec<Value>, String> {
    let url =
        reqwest::Url::parse_with_params(&format!("{prometheus}/api/v1/query"), &[("query", expr)])
            .map_err(|e| e.to_string())?;
    let body = get_json(http, url.as_str()).await?;
    if body["status"] != "success" {
        return Err(body["error"].as_str().unwrap_or("query failed").to_string());
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn prometheus_checks(
    http: &reqwest::Client,
    prometheus: &str,
    spec: &spec::Spec,
) -> Vec<Check> {
    // A target is "unknown" until its first scrape, and a family appears by
    // the next scrape: wait at most one interval (15 s) plus a margin.
    let deadline = Instant::now() + Duration::from_secs(20);
    let targets = loop {
        let targets = match get_json(http, &format!("{prometheus}/api/v1/targets")).await {
            Ok(t) => t["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            Err(_) => {
                return vec![Check::skip(
                    "prometheus",
                    "scrape targets and families",
                    format!("Prometheus not reachable at {prometheus}"),
                )]
            }
        };
        let pending = targets.is_empty() || targets.iter().any(|t| t["health"] == "unknown");
        if !pending || Instant::now() > deadline {
            break targets;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut out = Vec::new();
    for t in targets {
        let job = t["labels"]["job"].as_str().unwrap_or("?").to_string();
        let health = t["health"].as_str().unwrap_or("unknown").to_string();
        let error = t["lastError"].as_str().unwrap_or_default();
        out.push(Check::new(
            "prometheus",
            format!("target {job} up"),
            "up",
            if error.is_empty() {
                health.clone()
            } else {
                format!("{health}: {error}")
            },
            health == "up",
        ));
    }
    for metric in spec.services.values().flat_map(|s| &s.metrics) {
        let series = if metric.kind == spec::Kind::Histogram {
            format!("{}_count", metric.name)
        } else {
            metric.name.clone()
        };
        let found = loop {
            let result = query(http, prometheus, &format!("count({series})")).await;
            match result {
                Ok(r) if !r.is_empty() => break Ok(()),
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Ok(_) => break Err("absent".to_string()),
                Err(e) => break Err(e),
            }
        };
        out.push(Check::new(
            "prometheus",
            format!("{} in Prometheus", metric.name),
            "present",
            found.clone().err().unwrap_or_else(|| "present".into()),
            found.is_ok(),
        ));
    }
    out
}

/// Panel queries of every dashboard, as (dashboard file, panel title, expr).
fn panel_queries(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(dashboard) = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
        else {
            out.push((name, "(file)".into(), String::new()));
            continue;
        };
        for panel in dashboard["panels"].as_array().cloned().unwrap_or_default() {
            let title = panel["title"].as_str().unwrap_or("untitled").to_string();
            for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                if let Some(expr) = target["expr"].as_str() {
                    let series = target["legendFormat"]
                        .as_str()
                        .or(target["refId"].as_str())
                        .unwrap_or("?");
                    out.push((
                        name.clone(),
                        format!("{title} [{series}]"),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    out
}

async fn dashboard_checks(
    http: &reqwest::Client,
    prometheus: &str,
    dir: &std::path::Path,
) -> Vec<Check> {
    let queries = panel_queries(dir);
    if queries.is_empty() {
        return vec![Check::skip(
            "dashboards",
            "panel queries",
            format!("no dashboards in {}", dir.display()),
        )];
    }
    if get_json(http, &format!("{prometheus}/api/v1/status/buildinfo"))
        .await
        .is_err()
    {
        return vec![Check::skip(
            "dashboards",
            "panel queries",
            format!("Prometheus not reachable at {prometheus}"),
        )];
    }
    // rate() needs two scrapes in its window: on a stack that just came up
    // a panel may have no data for up to two scrape intervals.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut out = Vec::new();
    for (file, title, expr) in queries {
        let check = format!("{file}: {title}");
        if expr.is_empty() {
            out.push(Check::new(
                "dashboards",
                check,
                "valid JSON",
                "unreadable",
                false,
            ));
            continue;
        }
        let result = loop {
            match query(http, prometheus, &expr).await {
                Ok(r) if r.is_empty() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                other => break other,
            }
        };
        out.push(match result {
            Ok(r) if r.is_empty() => Check::new(
                "dashboards",
                check,
                "data",
                format!("no data for {expr}"),
                false,
            ),
            Ok(r) => Check::new(
                "dashboards",
                check,
                "data",
                format!("{} series", r.len()),
                true,
            ),
            Err(e) => Check::new(
                "dashboards",
                check,
                "a valid query",
                format!("{expr}: {e}"),
                false,
            ),
        });
    }
    out
}

async fn grafana_checks(
    http: &reqwest::Client,
    grafana: &str,
    dir: &std::path::Path,
) -> Vec<Check> {
    if get_json(http, &format!("{grafana}/api/health"))
        .await
        .is_err()
    {
        return ["health", "Prometheus datasource", "dashboards provisioned"]
            .into_iter()
            .map(|c| Check::skip("grafana", c, format!("Grafana not reachable at {grafana}")))
            .collect();
    }
    let authed = |path: &str| {
        http.get(format!("{grafana}{path}"))
            .basic_auth("admin", Some("admin"))
            .send()
    };
    let mut out = vec![Check::new("grafana", "health", "ok", "ok", true)];
    let ds = authed("/api/datasources/uid/pixelflow-prometheus")
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    out.push(Check::new(
        "grafana",
        "Prometheus datasource",
        "uid pixelflow-prometheus",
        if ds { "present" } else { "absent" },
        ds,
    ));
    let uids: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
        .filter_map(|d| d["uid"].as_str().map(str::to_string))
        .collect();
    for uid in uids {
        let ok = authed(&format!("/api/dashboards/uid/{uid}"))
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        out.push(Check::new(
            "grafana",
            format!("dashboard {uid} provisioned"),
            "present",
            if ok { "present" } else { "absent" },
            ok,
        ));
    }
    out
}
