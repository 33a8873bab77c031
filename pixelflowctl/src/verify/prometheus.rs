//! Prometheus: every scrape target up and every family of the spec stored.
//! A Prometheus that does not answer fails, naming its URL and the error.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::report::Check;
use super::spec;

const COMPONENT: &str = "prometheus";

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

pub async fn checks(http: &reqwest::Client, prometheus: &str, spec: &spec::Spec) -> Vec<Check> {
    // A target is "unknown" until its first scrape, and a family appears by
    // the next scrape: wait at most one interval (15 s) plus a margin.
    let wait = Duration::from_secs(20);
    let started = Instant::now();
    let targets_url = format!("{prometheus}/api/v1/targets");
    let targets = loop {
        let targets = match get_json(http, &targets_url).await {
            Ok(t) => t["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
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
        let pending = targets.is_empty() || targets.iter().any(|t| t["health"] == "unknown");
        if !pending || started.elapsed() > wait {
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
    for t in targets {
        let job = t["labels"]["job"].as_str().unwrap_or("?").to_string();
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
