//! Prometheus: every scrape target up and every family of the spec stored.
//! A Prometheus that does not answer fails, naming its URL and the error.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::report::Check;
use super::spec;

const COMPONENT: &str = super::Component::Prometheus.name();

/// What the project's Prometheus configuration promises, checked against
/// the running Prometheus.
#[derive(Debug, Clone)]
pub struct Promised {
    /// `global.scrape_interval` (README promises 15 s).
    pub scrape_interval: String,
    /// `global.scrape_timeout`: a target slower than this is down to
    /// Prometheus (10 s unless the configuration says otherwise).
    pub scrape_timeout: Duration,
    /// The rule groups of `alerts.yml`.
    pub rule_groups: Vec<String>,
    /// Whether the configuration sends alerts to an Alertmanager.
    pub alertmanager: bool,
}

impl Default for Promised {
    fn default() -> Self {
        Self {
            scrape_interval: "15s".into(),
            scrape_timeout: pixelflow_verify::scrape::DEFAULT_SCRAPE_TIMEOUT,
            rule_groups: Vec::new(),
            alertmanager: false,
        }
    }
}

impl Promised {
    /// From `prometheus.yml` and `alerts.yml` in `dir` (the project's
    /// compose/prometheus).
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, String> {
        let read = |name: &str| -> Result<serde_yaml::Value, String> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        };
        let config = read("prometheus.yml")?;
        let alerts = read("alerts.yml")?;
        let scrape_timeout = match config["global"]["scrape_timeout"].as_str() {
            Some(text) => crate::compose::model::duration(text)
                .map_err(|e| format!("prometheus.yml: scrape_timeout: {e}"))?,
            None => pixelflow_verify::scrape::DEFAULT_SCRAPE_TIMEOUT,
        };
        Ok(Self {
            scrape_interval: config["global"]["scrape_interval"]
                .as_str()
                .unwrap_or("1m")
                .to_string(),
            scrape_timeout,
            rule_groups: alerts["groups"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect(),
            alertmanager: !config["alerting"]["alertmanagers"].is_null(),
        })
    }
}

/// GET `url` as JSON; an error names the status and the body.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body)
}

/// An instant query's result vector.
pub async fn query(
    http: &reqwest::Client,
    prometheus: &str,
    expr: &str,
) -> Result<Vec<Value>, String> {
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

/// Prometheus's scrape targets (`/api/v1/targets`, the active ones).
async fn active_targets(http: &reqwest::Client, targets_url: &str) -> Result<Vec<Value>, String> {
    Ok(get_json(http, targets_url).await?["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Whether some target has not been scraped yet: Prometheus calls a target
/// "unknown" until its first scrape.
fn unscraped(targets: &[Value]) -> bool {
    targets.is_empty() || targets.iter().any(|t| t["health"] == "unknown")
}

/// Of `jobs`, those Prometheus has no target for yet: a target found by
/// service discovery (the worker's replicas, by DNS) appears only at the
/// discovery's next refresh.
fn undiscovered<'a>(targets: &[Value], jobs: &'a [String]) -> Vec<&'a str> {
    jobs.iter()
        .map(String::as_str)
        .filter(|job| {
            !targets
                .iter()
                .any(|t| t["labels"]["job"].as_str() == Some(job))
        })
        .collect()
}

/// Waits until Prometheus has scraped every target once: at most one
/// scrape interval and a margin. Run before the flow: a dashboard's
/// `rate()` sees the flow only between a sample from before it and one
/// from after. On a stack that just came up, Prometheus's first scrape may
/// come after the flow; the flow's increase is then in the series' first
/// sample, which no rate counts, and the panels stay empty until the next
/// traffic.
///
/// The row saying whether every target was scraped; when not, it says why
/// the dashboards cannot show the flow. A Prometheus that does not answer
/// gives no row here: the checks after the flow report it.
pub async fn scraped_before_flow(
    http: &reqwest::Client,
    prometheus: &str,
    promised: &Promised,
    jobs: &[String],
) -> Option<Check> {
    // Prometheus writes durations as compose does (`15s`, `1m30s`).
    let interval = crate::compose::model::duration(&promised.scrape_interval)
        .unwrap_or(Duration::from_secs(60));
    // A target discovered late waits for discovery's refresh, then for its
    // first scrape: two intervals at most.
    let within = 2 * interval + Duration::from_secs(5);
    let targets_url = format!("{prometheus}/api/v1/targets");
    let started = Instant::now();
    loop {
        let targets = active_targets(http, &targets_url).await.ok()?;
        let row = |actual: String, passed: bool| {
            Some(Check::new(
                COMPONENT,
                "every target scraped before the flow",
                format!("a first scrape within {within:?}"),
                actual,
                passed,
            ))
        };
        let missing = undiscovered(&targets, jobs);
        if !unscraped(&targets) && missing.is_empty() {
            return row(format!("{} targets scraped", targets.len()), true);
        }
        if started.elapsed() > within {
            let waiting: Vec<&str> = targets
                .iter()
                .filter(|t| t["health"] == "unknown")
                .filter_map(|t| t["labels"]["job"].as_str())
                .chain(missing.iter().copied())
                .collect();
            return row(
                if waiting.is_empty() {
                    "no scrape targets".to_string()
                } else {
                    format!("not scraped yet: {}", waiting.join(", "))
                },
                false,
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn checks(
    http: &reqwest::Client,
    prometheus: &str,
    spec: &spec::Spec,
    promised: &Promised,
) -> Vec<Check> {
    // A target is "unknown" until its first scrape, and a family appears by
    // the next scrape: wait at most one interval (15 s) plus a margin.
    let wait = Duration::from_secs(20);
    let started = Instant::now();
    let targets_url = format!("{prometheus}/api/v1/targets");
    let targets = loop {
        let targets = match active_targets(http, &targets_url).await {
            Ok(t) => t,
            Err(e) => {
                return vec![Check::new(
                    COMPONENT,
                    "scrape targets",
                    format!("an answer from {targets_url}"),
                    format!("not reachable: {e}"),
                    false,
                )]
            }
        };
        if !unscraped(&targets) || started.elapsed() > wait {
            break targets;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut out = Vec::new();
    if targets.is_empty() {
        out.push(Check::new(
            COMPONENT,
            "scrape targets",
            "at least one",
            format!("none after waiting {wait:?}"),
            false,
        ));
    }
    let per_job = |job: &str| {
        targets
            .iter()
            .filter(|t| t["labels"]["job"].as_str() == Some(job))
            .count()
    };
    for t in &targets {
        let job = t["labels"]["job"].as_str().unwrap_or("?");
        // A scaled worker has a target per replica: name each.
        let job = match t["labels"]["instance"].as_str() {
            Some(instance) if per_job(job) > 1 => format!("{job} ({instance})"),
            _ => job.to_string(),
        };
        let health = t["health"].as_str().unwrap_or("unknown").to_string();
        let error = t["lastError"].as_str().unwrap_or_default();
        out.push(Check::new(
            COMPONENT,
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
    out.extend(configuration_checks(http, prometheus, promised).await);
    for metric in spec.services.values().flat_map(|s| &s.metrics) {
        let series = if metric.kind == spec::Kind::Histogram {
            format!("{}_count", metric.name)
        } else {
            metric.name.clone()
        };
        let found = loop {
            match query(http, prometheus, &format!("count({series})")).await {
                Ok(r) if !r.is_empty() => break Ok(()),
                Ok(_) if started.elapsed() < wait => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Ok(_) => break Err(format!("absent after waiting {wait:?}")),
                Err(e) => break Err(e),
            }
        };
        out.push(Check::new(
            COMPONENT,
            format!("{} in Prometheus", metric.name),
            "present",
            found.clone().err().unwrap_or_else(|| "present".into()),
            found.is_ok(),
        ));
    }
    out
}

/// The scrape interval, the rule groups and the Alertmanager, as promised.
async fn configuration_checks(
    http: &reqwest::Client,
    prometheus: &str,
    promised: &Promised,
) -> Vec<Check> {
    let mut out = Vec::new();
    let interval = get_json(http, &format!("{prometheus}/api/v1/status/config"))
        .await
        .and_then(|body| {
            let yaml = body["data"]["yaml"].as_str().unwrap_or_default();
            let config: serde_yaml::Value =
                serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
            Ok(config["global"]["scrape_interval"]
                .as_str()
                .unwrap_or("unset")
                .to_string())
        });
    out.push(Check::new(
        COMPONENT,
        "scrape interval",
        &promised.scrape_interval,
        interval.clone().unwrap_or_else(|e| e),
        interval.as_deref() == Ok(promised.scrape_interval.as_str()),
    ));
    let groups: Result<Vec<String>, String> = get_json(http, &format!("{prometheus}/api/v1/rules"))
        .await
        .map(|body| {
            body["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect()
        });
    for group in &promised.rule_groups {
        let loaded = groups.as_ref().is_ok_and(|g| g.contains(group));
        out.push(Check::new(
            COMPONENT,
            format!("rule group {group} loaded"),
            "loaded",
            match &groups {
                Ok(g) if loaded => format!("loaded ({} groups)", g.len()),
                Ok(g) => format!("not loaded; loaded: {}", g.join(", ")),
                Err(e) => e.clone(),
            },
            loaded,
        ));
    }
    if promised.alertmanager {
        let active = get_json(http, &format!("{prometheus}/api/v1/alertmanagers"))
            .await
            .map(|body| {
                body["data"]["activeAlertmanagers"]
                    .as_array()
                    .map_or(0, Vec::len)
            });
        out.push(Check::new(
            COMPONENT,
            "Alertmanager discovered",
            "at least one active",
            match &active {
                Ok(n) => format!("{n} active"),
                Err(e) => e.clone(),
            },
            matches!(active, Ok(n) if n > 0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_checked_service_without_a_target_yet_is_not_scraped() {
        let targets = vec![
            json!({ "labels": { "job": "auth" }, "health": "up" }),
            json!({ "labels": { "job": "api" }, "health": "up" }),
        ];
        let jobs = ["auth".to_string(), "api".to_string(), "worker".to_string()];
        assert!(!unscraped(&targets));
        assert_eq!(undiscovered(&targets, &jobs), ["worker"]);
        assert!(undiscovered(&targets, &jobs[..2]).is_empty());
    }
}
