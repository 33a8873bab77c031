//! Jaeger: the flow's trace, asked of Jaeger's query API
//! (`GET /api/traces/{id}`) by the trace id api answered the upload with.
//! It must hold spans from api, auth and worker in one tree, the worker's
//! processing and auth's validation descending from api's upload.
//!
//! The services export in batches (every 5 s by default), so verify asks
//! again until the trace is complete or its time is up; the last answer is
//! what it judges.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;

use super::report::Check;

const COMPONENT: &str = super::Component::Jaeger.name();

/// The span the flow's upload starts the trace with.
const UPLOAD: (&str, &str) = ("api", "POST /api/upload");
/// auth's server span of the token validation api asks for.
const VALIDATE: (&str, &str) = ("auth", "GET /validate");
/// The services the trace must reach.
const SERVICES: [&str; 3] = ["api", "auth", "worker"];

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Vec<Trace>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trace {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(default)]
    spans: Vec<Span>,
    #[serde(default)]
    processes: BTreeMap<String, Process>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Span {
    #[serde(rename = "spanID")]
    span_id: String,
    operation_name: String,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(rename = "processID", default)]
    process_id: String,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: String,
}

#[derive(Debug, Deserialize)]
struct Tag {
    key: String,
    #[serde(default)]
    value: serde_json::Value,
}

/// What one question to Jaeger gave.
enum Asked {
    Trace(Box<Trace>),
    /// Jaeger answered, without the trace (404, or no data).
    NotFound(String),
    /// No usable answer: not reachable, an error status, not JSON.
    Broken(String),
}

async fn ask(http: &reqwest::Client, url: &str) -> Asked {
    let response = match http.get(url).send().await {
        Ok(r) => r,
        Err(e) => return Asked::Broken(format!("not reachable: {e}")),
    };
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Asked::NotFound("HTTP 404: trace not found".into());
    }
    if !status.is_success() {
        return Asked::Broken(format!("HTTP {}", status.as_u16()));
    }
    match response.json::<Answer>().await {
        Err(e) => Asked::Broken(format!("not Jaeger's trace JSON: {e}")),
        Ok(answer) => match answer.data.and_then(|d| d.into_iter().next()) {
            Some(trace) => Asked::Trace(Box::new(trace)),
            None => Asked::NotFound("HTTP 200 with no trace in data".into()),
        },
    }
}

/// Without a flow there is no trace to look for; Jaeger must still answer
/// its query API (`GET /api/services`).
pub async fn answers(http: &reqwest::Client, base: &str) -> Check {
    let url = format!("{}/api/services", base.trim_end_matches('/'));
    let actual = match http.get(&url).send().await {
        Err(e) => Err(format!("not reachable: {e}")),
        Ok(r) if !r.status().is_success() => Err(format!("HTTP {}", r.status().as_u16())),
        Ok(r) => match r.json::<serde_json::Value>().await {
            Ok(body) if body["data"].is_array() || body["data"].is_null() => {
                Ok(format!("services: {}", body["data"]))
            }
            Ok(_) | Err(_) => Err("not Jaeger's JSON".to_string()),
        },
    };
    Check::new(
        COMPONENT,
        "query API answers",
        format!("service list from {url}"),
        actual.clone().unwrap_or_else(|e| e),
        actual.is_ok(),
    )
}

/// The checks of the flow's trace `trace_id` at Jaeger's `base` URL,
/// waiting up to `wait` for it to be complete.
pub async fn checks(
    http: &reqwest::Client,
    base: &str,
    trace_id: &str,
    wait: Duration,
) -> Vec<Check> {
    let url = format!("{}/api/traces/{trace_id}", base.trim_end_matches('/'));
    let started = Instant::now();
    loop {
        let asked = ask(http, &url).await;
        let judged = match &asked {
            Asked::Broken(why) => {
                // Jaeger itself is the problem: waiting changes nothing.
                return vec![Check::new(
                    COMPONENT,
                    "query API answers",
                    format!("trace JSON from {url}"),
                    why.clone(),
                    false,
                )];
            }
            Asked::NotFound(why) => vec![Check::new(
                COMPONENT,
                "the flow's trace is stored",
                format!("trace {trace_id}"),
                format!("{why} (after {:.0?})", started.elapsed()),
                false,
            )],
            Asked::Trace(trace) => judge(trace_id, trace),
        };
        let complete = judged.iter().all(|c| c.outcome != super::Outcome::Fail);
        if complete || started.elapsed() >= wait {
            return judged;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The checks of one trace as Jaeger returned it.
fn judge(trace_id: &str, trace: &Trace) -> Vec<Check> {
    let mut out = vec![Check::new(
        COMPONENT,
        "the flow's trace is stored",
        format!("trace {trace_id}"),
        format!("trace {} with {} spans", trace.trace_id, trace.spans.len()),
        trace.trace_id.eq_ignore_ascii_case(trace_id),
    )];
    let service_of = |span: &Span| {
        trace
            .processes
            .get(&span.process_id)
            .map_or("?", |p| p.service_name.as_str())
    };
    for service in SERVICES {
        let operations: BTreeSet<&str> = trace
            .spans
            .iter()
            .filter(|s| service_of(s) == service)
            .map(|s| s.operation_name.as_str())
            .collect();
        out.push(Check::new(
            COMPONENT,
            format!("spans from {service}"),
            "at least one",
            if operations.is_empty() {
                "none".to_string()
            } else {
                operations.into_iter().collect::<Vec<_>>().join(", ")
            },
            trace.spans.iter().any(|s| service_of(s) == service),
        ));
    }

    // One tree: a single root, every parent in the trace.
    let ids: BTreeSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&str> = trace
        .spans
        .iter()
        .filter(|s| parent(s).is_none())
        .map(|s| s.operation_name.as_str())
        .collect();
    let dangling = trace
        .spans
        .iter()
        .filter(|s| parent(s).is_some_and(|p| !ids.contains(p)))
        .count();
    out.push(Check::new(
        COMPONENT,
        "one tree",
        "one root span, every parent in the trace",
        format!(
            "{} root(s) [{}], {dangling} span(s) whose parent is missing",
            roots.len(),
            roots.join(", ")
        ),
        roots.len() == 1 && dangling == 0,
    ));

    // The hops: api → auth over HTTP, api → worker through the outbox and
    // Kafka.
    let by_id: BTreeMap<&str, &Span> = trace
        .spans
        .iter()
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let descends = |span: &Span, ancestor: &Span| {
        let mut current = span;
        // Bounded by the span count: a reference cycle must not hang verify.
        for _ in 0..trace.spans.len() {
            let Some(up) = parent(current).and_then(|p| by_id.get(p)) else {
                return false;
            };
            if up.span_id == ancestor.span_id {
                return true;
            }
            current = up;
        }
        false
    };
    let upload = trace
        .spans
        .iter()
        .find(|s| service_of(s) == UPLOAD.0 && s.operation_name == UPLOAD.1);
    let validate = trace
        .spans
        .iter()
        .find(|s| service_of(s) == VALIDATE.0 && s.operation_name == VALIDATE.1);
    let processing = trace
        .spans
        .iter()
        .find(|s| service_of(s) == "worker" && is_consumer(s));
    let hop = |what: &str, from: Option<&Span>, name: String| {
        let (joins, actual) = match (from, upload) {
            (None, _) => (false, format!("no {name} span")),
            (_, None) => (false, format!("no {} span of {}", UPLOAD.1, UPLOAD.0)),
            (Some(span), Some(upload)) => {
                let joins = descends(span, upload);
                let actual = if joins {
                    "its descendant"
                } else {
                    "not its descendant"
                };
                (joins, actual.to_string())
            }
        };
        Check::new(
            COMPONENT,
            what,
            format!("{name} descends from {}'s {}", UPLOAD.0, UPLOAD.1),
            actual,
            joins,
        )
    };
    out.push(hop(
        "api → auth: the token validation joins the upload",
        validate,
        format!("{}'s {}", VALIDATE.0, VALIDATE.1),
    ));
    out.push(hop(
        "api → worker: the processing joins the upload",
        processing,
        "the worker's processing (a consumer span)".to_string(),
    ));
    out
}

/// The span's parent: its CHILD_OF reference.
fn parent(span: &Span) -> Option<&str> {
    span.references
        .iter()
        .find(|r| r.ref_type == "CHILD_OF")
        .map(|r| r.span_id.as_str())
}

fn is_consumer(span: &Span) -> bool {
    span.tags
        .iter()
        .any(|t| t.key == "span.kind" && t.value == "consumer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trace as Jaeger's query API answers it: upload → auth call →
    /// validate, upload → outbox insert → publish → processing.
    fn trace(without: Option<&str>) -> Trace {
        let spans = [
            ("a1", "POST /api/upload", "p1", None, "server"),
            ("a2", "GET auth /validate", "p1", Some("a1"), "client"),
            ("v1", "GET /validate", "p2", Some("a2"), "server"),
            ("a3", "INSERT task_outbox", "p1", Some("a1"), "client"),
            ("a4", "image-tasks publish", "p1", Some("a3"), "producer"),
            ("w1", "image-tasks process", "p3", Some("a4"), "consumer"),
            ("w2", "image decode", "p3", Some("w1"), "internal"),
        ];
        let processes = json!({
            "p1": {"serviceName": "api", "tags": []},
            "p2": {"serviceName": "auth", "tags": []},
            "p3": {"serviceName": "worker", "tags": []},
        });
        let service = |p: &str| {
            processes[p]["serviceName"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let spans: Vec<serde_json::Value> = spans
            .iter()
            .filter(|(_, _, p, _, _)| Some(service(p).as_str()) != without)
            .map(|(id, name, process, parent, kind)| {
                json!({
                    "traceID": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "spanID": id,
                    "operationName": name,
                    "references": parent.map(|p| vec![json!({"refType": "CHILD_OF", "traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": p})]).unwrap_or_default(),
                    "startTime": 1_764_000_000_000_000_u64,
                    "duration": 1000,
                    "tags": [{"key": "span.kind", "type": "string", "value": kind}],
                    "logs": [],
                    "processID": process,
                    "warnings": null,
                })
            })
            .collect();
        let answer: Answer = serde_json::from_value(json!({
            "data": [{"traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spans": spans, "processes": processes, "warnings": null}],
            "total": 0, "limit": 0, "offset": 0, "errors": null
        }))
        .expect("Jaeger JSON");
        answer
            .data
            .and_then(|d| d.into_iter().next())
            .expect("a trace")
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| c.outcome == crate::verify::Outcome::Fail)
            .map(|c| c.check.as_str())
            .collect()
    }

    #[test]
    fn a_complete_trace_passes_every_check() {
        let checks = judge("4bf92f3577b34da6a3ce929d0e0e4736", &trace(None));
        assert_eq!(failed(&checks), Vec::<&str>::new(), "{checks:#?}");
        assert_eq!(checks.len(), 7);
    }

    #[test]
    fn a_trace_without_the_worker_fails_its_spans_and_its_hop() {
        let checks = judge("4bf92f3577b34da6a3ce929d0e0e4736", &trace(Some("worker")));
        assert_eq!(
            failed(&checks),
            [
                "spans from worker",
                "api → worker: the processing joins the upload"
            ]
        );
    }

    #[test]
    fn a_trace_cut_in_two_is_not_one_tree() {
        let mut cut = trace(None);
        for span in &mut cut.spans {
            if span.span_id == "w1" {
                span.references.clear();
            }
        }
        let failed_checks = judge("4bf92f3577b34da6a3ce929d0e0e4736", &cut);
        assert_eq!(
            failed(&failed_checks),
            ["one tree", "api → worker: the processing joins the upload"]
        );
    }
}
