//! Static checks on one scrape: it parses; each expected family is there
//! with its type, HELP, labels and allowed values; histograms are well
//! formed; counters are non-negative; gauges within bounds; no label
//! carries unbounded values; no family has too many series.

use std::time::Duration;

use prometheus_parse::Value;

use crate::exposition::{scalar, Exposition, Family};
use crate::report::Check;
use crate::scrape::{content_type_problem, Scrape};
use crate::spec::{Kind, MetricSpec, ServiceSpec, DEFAULT_MAX_SERIES};

/// The HTTP answer as Prometheus judges it: its `Content-Type`, whether it
/// came within the scrape timeout, and whether every line reads as meant.
pub fn answer(service: &str, scrape: &Scrape, scrape_timeout: Duration) -> Vec<Check> {
    let content_type = content_type_problem(scrape.content_type.as_deref());
    let misread = &scrape.exposition.misread;
    vec![
        Check::new(
            service,
            "served as the Prometheus text format",
            "Content-Type: text/plain; version=0.0.4",
            content_type.clone().unwrap_or_else(|| {
                format!(
                    "Content-Type: {}",
                    scrape.content_type.as_deref().unwrap_or_default()
                )
            }),
            content_type.is_none(),
        ),
        Check::new(
            service,
            "answers within Prometheus' scrape_timeout",
            format!("within {scrape_timeout:?}"),
            format!("in {:.1?}", scrape.took),
            scrape.took <= scrape_timeout,
        ),
        Check::new(
            service,
            "Prometheus reads every line as meant",
            "valid names, each series once, no explicit timestamps",
            if misread.is_empty() {
                "every line".to_string()
            } else {
                misread.join(" | ")
            },
            misread.is_empty(),
        ),
    ]
}

pub fn run(service: &str, spec: &ServiceSpec, exposition: &Exposition) -> Vec<Check> {
    let mut checks = vec![Check::new(
        service,
        "exposition parses",
        "every line readable",
        if exposition.unreadable.is_empty() {
            "every line readable".to_string()
        } else {
            format!("unreadable: {}", exposition.unreadable.join(" | "))
        },
        exposition.unreadable.is_empty(),
    )];
    for metric in &spec.metrics {
        let actual = match exposition.families.get(&metric.name) {
            None => Err(format!("{} is missing", metric.name)),
            Some(family) => family_problem(metric, family).map_or(Ok(()), Err),
        };
        let expected = describe(metric);
        checks.push(match actual {
            Ok(()) => Check::new(
                service,
                &metric.name,
                &expected,
                summary(exposition, metric),
                true,
            ),
            Err(problem) => Check::new(service, &metric.name, &expected, problem, false),
        });
    }
    let unbounded = unbounded_labels(exposition);
    checks.push(Check::new(
        service,
        "label values are bounded",
        "no ids, emails or raw paths in labels",
        if unbounded.is_empty() {
            "none found".to_string()
        } else {
            unbounded.join("; ")
        },
        unbounded.is_empty(),
    ));
    checks
}

/// Families the spec does not list are held to the same shape: a
/// histogram whose buckets Prometheus would misread is wrong whoever
/// added it.
pub fn unlisted(service: &str, spec: &ServiceSpec, exposition: &Exposition) -> Check {
    let problems: Vec<String> = exposition
        .families
        .iter()
        .filter(|(name, _)| !spec.metrics.iter().any(|m| &m.name == *name))
        .filter_map(|(name, family)| {
            family.series.iter().find_map(|series| match &series.value {
                Value::Histogram(buckets) => histogram_problem(name, series, buckets, family),
                value => scalar(value)
                    .filter(|v| {
                        family.kind.as_deref() == Some("counter") && (*v < 0.0 || v.is_nan())
                    })
                    .map(|v| {
                        format!(
                            "{name}{} is {v}; a counter is never negative",
                            series.labels_text()
                        )
                    }),
            })
        })
        .collect();
    let count = exposition
        .families
        .keys()
        .filter(|name| !spec.metrics.iter().any(|m| &m.name == *name))
        .count();
    Check::new(
        service,
        "families outside the spec are well formed",
        "histograms cumulative with +Inf, _count and _sum; counters not negative",
        if problems.is_empty() {
            format!("{count} families outside the spec")
        } else {
            problems.join("; ")
        },
        problems.is_empty(),
    )
}

fn describe(metric: &MetricSpec) -> String {
    let mut text = metric.kind.as_str().to_string();
    if !metric.labels.is_empty() {
        text.push_str(&format!("{{{}}}", metric.labels.join(",")));
    }
    for (label, values) in &metric.values {
        text.push_str(&format!(" {label}∈{}", values.join("|")));
    }
    if metric.min.is_some() || metric.max.is_some() {
        text.push_str(&format!(
            " in [{}, {}]",
            metric.min.unwrap_or(f64::NEG_INFINITY),
            metric.max.unwrap_or(f64::INFINITY)
        ));
    }
    text
}

fn summary(exposition: &Exposition, metric: &MetricSpec) -> String {
    let family = &exposition.families[&metric.name];
    let n = family.series.len();
    format!(
        "{}, {n} series",
        family.kind.as_deref().unwrap_or("untyped")
    )
}

/// The first thing wrong with a family, in words that name the metric.
fn family_problem(metric: &MetricSpec, family: &Family) -> Option<String> {
    let name = &metric.name;
    let kind = family.kind.as_deref().unwrap_or("untyped");
    if kind != metric.kind.as_str() {
        return Some(format!(
            "{name} has type {kind}, expected {}",
            metric.kind.as_str()
        ));
    }
    if family.help.as_deref().is_none_or(str::is_empty) {
        return Some(format!("{name} has no # HELP"));
    }
    if family.series.is_empty() {
        return Some(format!("{name} has no samples"));
    }
    let max_series = metric.max_series.unwrap_or(DEFAULT_MAX_SERIES);
    if family.series.len() > max_series {
        return Some(format!(
            "{name} has {} series, more than {max_series}",
            family.series.len()
        ));
    }
    for series in &family.series {
        for label in &metric.labels {
            if !series.labels.contains_key(label) {
                return Some(format!(
                    "{name}{} lacks label {label}",
                    series.labels_text()
                ));
            }
        }
        match (&series.value, metric.kind) {
            (Value::Histogram(buckets), Kind::Histogram) => {
                if let Some(p) = histogram_problem(name, series, buckets, family) {
                    return Some(p);
                }
            }
            (value, Kind::Counter) => {
                if let Some(v) = scalar(value).filter(|v| *v < 0.0 || v.is_nan()) {
                    return Some(format!(
                        "{name}{} is {v}; a counter is never negative",
                        series.labels_text()
                    ));
                }
            }
            (value, Kind::Gauge) => {
                if let Some(v) = scalar(value) {
                    if metric.min.is_some_and(|m| v < m) || metric.max.is_some_and(|m| v > m) {
                        return Some(format!(
                            "{name}{} is {v}, outside {}",
                            series.labels_text(),
                            describe(metric)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    documented_values_problem(metric, family)
}

/// A family with a fixed value set exposes every documented value from
/// start-up (a dashboard's "failures" panel must not show "no data" when
/// there were none) and no other.
fn documented_values_problem(metric: &MetricSpec, family: &Family) -> Option<String> {
    let name = &metric.name;
    for (label, allowed) in &metric.values {
        let seen: Vec<&String> = family
            .series
            .iter()
            .filter_map(|s| s.labels.get(label))
            .collect();
        let mut undocumented: Vec<String> = seen
            .iter()
            .filter(|v| !allowed.contains(v))
            .map(|v| format!("{label}=\"{v}\""))
            .collect();
        undocumented.dedup();
        let missing: Vec<String> = allowed
            .iter()
            .filter(|v| !seen.contains(v))
            .map(|v| format!("{label}=\"{v}\""))
            .collect();
        let mut problems = Vec::new();
        if !undocumented.is_empty() {
            problems.push(format!("has {}", undocumented.join(", ")));
        }
        if !missing.is_empty() {
            problems.push(format!("lacks {}", missing.join(", ")));
        }
        if !problems.is_empty() {
            return Some(format!(
                "{name} {}; documented: {}",
                problems.join(" and "),
                allowed.join(", ")
            ));
        }
    }
    None
}

fn histogram_problem(
    name: &str,
    series: &crate::exposition::Series,
    buckets: &[prometheus_parse::HistogramCount],
    family: &Family,
) -> Option<String> {
    let at = series.labels_text();
    if buckets.windows(2).any(|w| w[1].less_than <= w[0].less_than) {
        return Some(format!("{name}{at}: le bounds are not ascending"));
    }
    if buckets.windows(2).any(|w| w[1].count < w[0].count) {
        return Some(format!(
            "{name}{at}: bucket counts decrease; they must be cumulative"
        ));
    }
    let Some(last) = buckets.last().filter(|b| b.less_than == f64::INFINITY) else {
        return Some(format!("{name}{at}: no le=\"+Inf\" bucket"));
    };
    let count = family
        .counts
        .iter()
        .find(|c| c.labels == series.labels)
        .and_then(|c| scalar(&c.value));
    match count {
        None => return Some(format!("{name}{at}: no {name}_count")),
        Some(c) if c != last.count => {
            return Some(format!(
                "{name}{at}: +Inf bucket is {} but {name}_count is {c}",
                last.count
            ))
        }
        _ => {}
    }
    if !family.sums.iter().any(|s| s.labels == series.labels) {
        return Some(format!("{name}{at}: no {name}_sum"));
    }
    None
}

/// Label values that look like ids, emails or raw paths with ids.
fn unbounded_labels(exposition: &Exposition) -> Vec<String> {
    let mut found = Vec::new();
    for (name, family) in &exposition.families {
        for series in family.series.iter().chain(&family.counts) {
            for (label, value) in &series.labels {
                if looks_unbounded(value) {
                    found.push(format!("{name}{{{label}=\"{value}\"}}"));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found.truncate(5);
    found
}

fn looks_unbounded(value: &str) -> bool {
    let uuid_like =
        value.len() >= 32 && value.chars().filter(|c| c.is_ascii_hexdigit()).count() >= 32;
    let email = value.contains('@') && value.contains('.');
    let numeric_segment = value
        .split('/')
        .skip(1)
        .any(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()));
    uuid_like || email || numeric_segment
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;
    use crate::spec::Spec;

    const GOOD: &str = r#"# HELP t_requests_total Requests.
# TYPE t_requests_total counter
t_requests_total{endpoint="/api/tasks/{id}",method="GET",status="200"} 3
# HELP t_logins_total Logins.
# TYPE t_logins_total counter
t_logins_total{status="success"} 1
t_logins_total{status="failure"} 0
# HELP t_active Active.
# TYPE t_active gauge
t_active 0
# HELP t_duration_seconds Duration.
# TYPE t_duration_seconds histogram
t_duration_seconds_bucket{method="GET",le="0.1"} 1
t_duration_seconds_bucket{method="GET",le="1"} 2
t_duration_seconds_bucket{method="GET",le="+Inf"} 3
t_duration_seconds_sum{method="GET"} 1.5
t_duration_seconds_count{method="GET"} 3
"#;

    const SPEC: &str = r#"
[services.t]
url = "http://x/metrics"
[[services.t.metrics]]
name = "t_requests_total"
type = "counter"
labels = ["method", "endpoint", "status"]
[[services.t.metrics]]
name = "t_logins_total"
type = "counter"
labels = ["status"]
values = { status = ["success", "failure"] }
[[services.t.metrics]]
name = "t_active"
type = "gauge"
min = 0
max = 10
[[services.t.metrics]]
name = "t_duration_seconds"
type = "histogram"
labels = ["method"]
"#;

    fn failures(text: &str) -> Vec<String> {
        let spec = Spec::parse(SPEC).expect("spec");
        run("t", &spec.services["t"], &Exposition::parse(text))
            .into_iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.actual)
            .collect()
    }

    #[test]
    fn a_conforming_exposition_passes_every_check() {
        assert_eq!(failures(GOOD), Vec::<String>::new());
    }

    #[test]
    fn an_unreadable_line_fails_the_parse_check() {
        let text = format!("{GOOD}this is not a sample line\n");
        let failed = failures(&text);
        assert_eq!(failed, ["unreadable: this is not a sample line"]);
    }

    #[test]
    fn a_missing_family_is_named() {
        let text = GOOD.replace("t_active", "t_other");
        assert_eq!(failures(&text), ["t_active is missing"]);
    }

    #[test]
    fn a_wrong_type_is_named_with_both_types() {
        let text = GOOD.replace("# TYPE t_active gauge", "# TYPE t_active counter");
        assert_eq!(
            failures(&text),
            ["t_active has type counter, expected gauge"]
        );
    }

    #[test]
    fn a_missing_help_is_named() {
        let text = GOOD.replace("# HELP t_active Active.\n", "");
        assert_eq!(failures(&text), ["t_active has no # HELP"]);
    }

    #[test]
    fn a_missing_label_is_named() {
        let text = GOOD.replace(
            r#"t_requests_total{endpoint="/api/tasks/{id}",method="GET",status="200"}"#,
            r#"t_requests_total{endpoint="/api/tasks/{id}",status="200"}"#,
        );
        assert_eq!(
            failures(&text),
            [r#"t_requests_total{endpoint="/api/tasks/{id}",status="200"} lacks label method"#]
        );
    }

    #[test]
    fn a_value_outside_the_fixed_set_is_named() {
        let text = GOOD.replace(r#"{status="failure"}"#, r#"{status="oops"}"#);
        assert_eq!(
            failures(&text),
            [
                r#"t_logins_total has status="oops" and lacks status="failure"; documented: success, failure"#
            ]
        );
        let missing = GOOD.replace(r#"t_logins_total{status="failure"} 0"#, "");
        assert_eq!(
            failures(&missing),
            [r#"t_logins_total lacks status="failure"; documented: success, failure"#]
        );
    }

    #[test]
    fn broken_histograms_are_named_by_what_is_broken() {
        let decreasing = GOOD.replace(r#"le="1"} 2"#, r#"le="1"} 0"#);
        assert_eq!(
            failures(&decreasing),
            [
                r#"t_duration_seconds{method="GET"}: bucket counts decrease; they must be cumulative"#
            ]
        );
        let count = GOOD.replace(
            r#"t_duration_seconds_count{method="GET"} 3"#,
            r#"t_duration_seconds_count{method="GET"} 4"#,
        );
        assert_eq!(
            failures(&count),
            [
                r#"t_duration_seconds{method="GET"}: +Inf bucket is 3 but t_duration_seconds_count is 4"#
            ]
        );
        let no_inf = GOOD.replace(
            "t_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 3\n",
            "",
        );
        assert_eq!(
            failures(&no_inf),
            [r#"t_duration_seconds{method="GET"}: no le="+Inf" bucket"#]
        );
        let no_sum = GOOD.replace("t_duration_seconds_sum{method=\"GET\"} 1.5\n", "");
        assert_eq!(
            failures(&no_sum),
            [r#"t_duration_seconds{method="GET"}: no t_duration_seconds_sum"#]
        );
    }

    #[test]
    fn a_negative_counter_and_an_out_of_bounds_gauge_are_named() {
        let text = GOOD
            .replace(
                r#"t_logins_total{status="success"} 1"#,
                r#"t_logins_total{status="success"} -1"#,
            )
            .replace("t_active 0", "t_active 11");
        assert_eq!(
            failures(&text),
            [
                r#"t_logins_total{status="success"} is -1; a counter is never negative"#,
                "t_active is 11, outside gauge in [0, 10]"
            ]
        );
    }

    #[test]
    fn raw_paths_ids_and_emails_in_labels_are_refused() {
        let text = GOOD.replace("/api/tasks/{id}", "/api/tasks/123");
        assert_eq!(
            failures(&text),
            [r#"t_requests_total{endpoint="/api/tasks/123"}"#]
        );
        assert!(looks_unbounded("ada@example.com"));
        assert!(looks_unbounded("0b5e3b0c-6b2f-4d7e-9a43-2f1c8f0e9d11"));
        assert!(!looks_unbounded("/api/tasks/{id}"));
    }

    #[test]
    fn too_many_series_are_refused() {
        let mut text = GOOD.to_string();
        for i in 0..250 {
            text.push_str(&format!(
                "t_requests_total{{endpoint=\"/e{i}x\",method=\"GET\",status=\"200\"}} 1\n"
            ));
        }
        assert_eq!(
            failures(&text),
            ["t_requests_total has 251 series, more than 200"]
        );
    }
}
