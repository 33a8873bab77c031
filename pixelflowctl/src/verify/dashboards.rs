//! The dashboards of the project's `dashboards/`: each panel's query must
//! be valid and return data from Prometheus after the flow.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::prometheus::{get_json, query};
use super::report::Check;

const COMPONENT: &str = super::Component::Dashboards.name();

/// A dashboard file: its uid and how many panels it has.
pub struct Dashboard {
    pub file: String,
    pub uid: String,
    pub panels: usize,
}

/// A dashboard file's name and its JSON (or why it is unreadable).
type File = (String, Result<Value, String>);

fn read(dir: &Path) -> Result<Vec<File>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no dashboards (*.json) in {}", dir.display()));
    }
    Ok(files
        .into_iter()
        .map(|file| {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let json = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
            (name, json)
        })
        .collect())
}

/// Every dashboard's uid and panel count.
pub fn load(dir: &Path) -> Result<Vec<Dashboard>, String> {
    read(dir)?
        .into_iter()
        .map(|(file, json)| {
            let json = json.map_err(|e| format!("{file}: {e}"))?;
            let uid = json["uid"]
                .as_str()
                .ok_or_else(|| format!("{file} has no uid"))?
                .to_string();
            let panels = json["panels"].as_array().map_or(0, Vec::len);
            Ok(Dashboard { file, uid, panels })
        })
        .collect()
}

/// Panel queries of every dashboard, as (dashboard file, panel title, expr);
/// an unreadable file is one entry with an empty expr.
fn panel_queries(dir: &Path) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for (name, json) in read(dir)? {
        let Ok(dashboard) = json else {
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
    Ok(out)
}

/// Whether every value of a query's result is NaN (a quantile or a ratio
/// of rates that are all zero): such a panel draws nothing.
fn only_nan(result: &[Value]) -> bool {
    !result.is_empty() && result.iter().all(|series| series["value"][1] == "NaN")
}

/// Runs every panel's query. After the flow (`flow_ran`), each must return
/// numbers: Prometheus is given until its next scrapes (rates need two
/// samples that differ) to see the flow. Without the flow, an idle stack's
/// NaN is what it should show, and is said so.
pub async fn checks(
    http: &reqwest::Client,
    prometheus: &str,
    dir: &Path,
    flow_ran: bool,
) -> Vec<Check> {
    let queries = match panel_queries(dir) {
        Ok(q) => q,
        Err(e) => {
            return vec![Check::new(
                COMPONENT,
                "panel queries",
                "the project's dashboards",
                e,
                false,
            )]
        }
    };
    let buildinfo = format!("{prometheus}/api/v1/status/buildinfo");
    if let Err(e) = get_json(http, &buildinfo).await {
        return vec![Check::new(
            COMPONENT,
            "panel queries",
            format!("Prometheus answering at {prometheus}"),
            format!("not reachable: {e}"),
            false,
        )];
    }
    // rate() needs two scrapes in its window: on a stack that just came up
    // a panel may have no data for up to two scrape intervals.
    let wait = Duration::from_secs(40);
    let started = Instant::now();
    let mut out = Vec::new();
    for (file, title, expr) in queries {
        let check = format!("{file}: {title}");
        if expr.is_empty() {
            out.push(Check::new(
                COMPONENT,
                check,
                "valid JSON",
                "unreadable",
                false,
            ));
            continue;
        }
        let result = loop {
            match query(http, prometheus, &expr).await {
                Ok(r)
                    if (r.is_empty() || (flow_ran && only_nan(&r))) && started.elapsed() < wait =>
                {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                other => break other,
            }
        };
        out.push(match result {
            Ok(r) if r.is_empty() => Check::new(
                COMPONENT,
                check,
                "data",
                format!("no data for {expr} after waiting {wait:?}"),
                false,
            ),
            // A panel whose every value is NaN (a ratio of zero rates)
            // draws nothing, as one with no data does.
            Ok(r) if only_nan(&r) && flow_ran => Check::new(
                COMPONENT,
                check,
                "data",
                format!("only NaN from {expr} after waiting {wait:?}"),
                false,
            ),
            Ok(r) if only_nan(&r) => Check::new(
                COMPONENT,
                check,
                "data",
                format!(
                    "{} series, NaN: no traffic in the window (--no-flow)",
                    r.len()
                ),
                true,
            ),
            Ok(r) => Check::new(
                COMPONENT,
                check,
                "data",
                format!("{} series", r.len()),
                true,
            ),
            Err(e) => Check::new(
                COMPONENT,
                check,
                "a valid query",
                format!("{expr}: {e}"),
                false,
            ),
        });
    }
    out
}
