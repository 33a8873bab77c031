//! One scrape, read with prometheus-parse, grouped by family. Types and
//! HELP are read from the `#` lines, so a family is known even before it
//! has samples.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: Value,
}

impl Series {
    /// Its labels as the exposition writes them, `{a="1",b="2"}`, or
    /// nothing: for naming a series in a failure.
    pub fn labels_text(&self) -> String {
        if self.labels.is_empty() {
            return String::new();
        }
        let inner: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", inner.join(","))
    }
}

#[derive(Debug, Default)]
pub struct Family {
    pub kind: Option<String>,
    pub help: Option<String>,
    /// For histograms: the `le` buckets (one Series per label set, value
    /// Histogram), plus `_sum`/`_count` below.
    pub series: Vec<Series>,
    pub sums: Vec<Series>,
    pub counts: Vec<Series>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// The text as served.
    pub text: String,
    pub families: BTreeMap<String, Family>,
    /// Lines prometheus-parse could not read.
    pub unreadable: Vec<String>,
    /// What Prometheus would refuse or misread, line by line: a metric or
    /// label name it rejects (the whole scrape fails), a series given
    /// twice, a sample with a timestamp of its own.
    pub misread: Vec<String>,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
        let mut exposition = Exposition {
            text: text.to_string(),
            ..Exposition::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    exposition
                        .families
                        .entry(name.to_string())
                        .or_default()
                        .kind = Some(kind.to_string());
                }
            } else if !line.trim().is_empty() && !line.starts_with('#') {
                // prometheus-parse skips both of these without a word.
                let readable = match prometheus_parse::LineInfo::parse(line) {
                    prometheus_parse::LineInfo::Sample {
                        metric_name,
                        labels,
                        value,
                        timestamp,
                    } => {
                        if let Some(problem) = sample_problem(metric_name, labels, timestamp) {
                            exposition.misread.push(format!("{problem}: {line}"));
                        }
                        let key = (metric_name.to_string(), label_pairs(labels.unwrap_or("")));
                        if !seen.insert(key) {
                            exposition
                                .misread
                                .push(format!("the same series twice: {line}"));
                        }
                        is_number(value)
                    }
                    prometheus_parse::LineInfo::Ignored => false,
                    _ => true,
                };
                if !readable {
                    exposition.unreadable.push(line.to_string());
                }
            }
        }
        let scrape = match Scrape::parse(text.lines().map(|l| Ok(l.to_string()))) {
            Ok(s) => s,
            Err(e) => {
                exposition.unreadable.push(e.to_string());
                return exposition;
            }
        };
        for (name, help) in scrape.docs {
            exposition.families.entry(name).or_default().help = Some(help);
        }
        for sample in scrape.samples {
            let labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let series = Series {
                labels,
                value: sample.value,
            };
            let (family, slot) = if let Some(base) = sample
                .metric
                .strip_suffix("_sum")
                .filter(|b| is_histogram(&exposition, b))
            {
                (base.to_string(), 1)
            } else if let Some(base) = sample
                .metric
                .strip_suffix("_count")
                .filter(|b| is_histogram(&exposition, b))
            {
                (base.to_string(), 2)
            } else {
                (sample.metric, 0)
            };
            let family = exposition.families.entry(family).or_default();
            match slot {
                1 => family.sums.push(series),
                2 => family.counts.push(series),
                _ => family.series.push(series),
            }
        }
        exposition
    }

    /// The replicas of one service as one: each series summed over them
    /// (counters, gauges, histogram buckets, `_sum` and `_count`), so a
    /// flow's delta is the service's, whichever replica did the work. A
    /// summary's quantiles cannot be summed: the first replica's stand.
    /// Types and HELP are the first replica's; each replica's unreadable
    /// and misread lines are kept, named by its position.
    pub fn summed(replicas: Vec<Exposition>) -> Exposition {
        let mut replicas = replicas.into_iter().enumerate();
        let Some((_, mut total)) = replicas.next() else {
            return Exposition::default();
        };
        for (index, replica) in replicas {
            let named = |line: String| format!("replica {}: {line}", index + 1);
            total
                .unreadable
                .extend(replica.unreadable.into_iter().map(named));
            total.misread.extend(replica.misread.into_iter().map(named));
            for (name, family) in replica.families {
                let into = total.families.entry(name).or_default();
                into.kind = into.kind.take().or(family.kind);
                into.help = into.help.take().or(family.help);
                add_series(&mut into.series, family.series);
                add_series(&mut into.sums, family.sums);
                add_series(&mut into.counts, family.counts);
            }
        }
        total
    }

    /// The value of a counter, gauge or untyped sample whose labels include
    /// `labels`; histogram `_count` with `family_count`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matches = |s: &&Series| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        };
        if let Some(base) = name.strip_suffix("_count") {
            if let Some(f) = self
                .families
                .get(base)
                .filter(|f| f.kind.as_deref() == Some("histogram"))
            {
                return f.counts.iter().find(matches).and_then(|s| scalar(&s.value));
            }
        }
        self.families
            .get(name)?
            .series
            .iter()
            .find(matches)
            .and_then(|s| scalar(&s.value))
    }

    /// Like [`value`](Self::value), with an absent series read as 0: a
    /// labelled counter series appears with its first event.
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The sum of the series of `name` (a family, or a histogram's
    /// `_count`) whose labels match: a value ending in `*` matches by
    /// prefix. `None` when no series matches.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matches = |s: &&Series| {
            labels.iter().all(|(k, v)| {
                let have = s.labels.get(*k).map(String::as_str);
                match v.strip_suffix('*') {
                    Some(prefix) => have.is_some_and(|h| h.starts_with(prefix)),
                    None => have == Some(*v),
                }
            })
        };
        let histogram_count = name.strip_suffix("_count").and_then(|base| {
            self.families
                .get(base)
                .filter(|f| f.kind.as_deref() == Some("histogram"))
        });
        let series = match histogram_count {
            Some(family) => &family.counts,
            None => &self.families.get(name)?.series,
        };
        let values: Vec<f64> = series
            .iter()
            .filter(matches)
            .filter_map(|s| scalar(&s.value))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

/// Why Prometheus would refuse or misread one sample line, if it would:
/// a name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`, a label name outside
/// `[a-zA-Z_][a-zA-Z0-9_]*` or reserved (`__`), an explicit timestamp
/// (Prometheus stores the sample at that time, and drops it as out of
/// bounds when it is old).
fn sample_problem(name: &str, labels: Option<&str>, timestamp: Option<&str>) -> Option<String> {
    let valid_name = |s: &str, colon: bool| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    if !valid_name(name, true) {
        return Some(format!("metric name {name:?} is not valid"));
    }
    for (label, _) in label_pairs(labels.unwrap_or("")) {
        if !valid_name(&label, false) {
            return Some(format!("label name {label:?} is not valid"));
        }
        if label.starts_with("__") {
            return Some(format!("label name {label:?} is reserved (__)"));
        }
    }
    timestamp.map(|t| format!("explicit timestamp {t}"))
}

/// The `name="value"` pairs of a label set (the text inside `{}`), sorted;
/// quotes and escapes in values are honoured.
fn label_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut end = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else {
            break;
        };
        pairs.push((name.trim().to_string(), value));
        rest = body[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    pairs.sort();
    pairs
}

fn is_number(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "nan" | "+inf" | "-inf" | "inf"
    ) || value.parse::<f64>().is_ok()
}

fn is_histogram(e: &Exposition, name: &str) -> bool {
    e.families
        .get(name)
        .is_some_and(|f| matches!(f.kind.as_deref(), Some("histogram") | Some("summary")))
}

/// A counter, gauge or untyped sample's value; `None` for histogram and
/// summary samples.
/// Adds each of `more` to the series of `into` with the same labels, or
/// appends it.
fn add_series(into: &mut Vec<Series>, more: Vec<Series>) {
    for series in more {
        let Some(same) = into.iter_mut().find(|s| s.labels == series.labels) else {
            into.push(series);
            continue;
        };
        same.value = match (&same.value, series.value) {
            (Value::Counter(a), Value::Counter(b)) => Value::Counter(a + b),
            (Value::Gauge(a), Value::Gauge(b)) => Value::Gauge(a + b),
            (Value::Untyped(a), Value::Untyped(b)) => Value::Untyped(a + b),
            (Value::Histogram(a), Value::Histogram(b)) => Value::Histogram(
                a.iter()
                    .map(|bucket| prometheus_parse::HistogramCount {
                        less_than: bucket.less_than,
                        count: bucket.count
                            + b.iter()
                                .find(|o| o.less_than == bucket.less_than)
                                .map_or(0.0, |o| o.count),
                    })
                    .collect(),
            ),
            // A summary's quantiles, or replicas that disagree on a type:
            // the first stands.
            (kept, _) => kept.clone(),
        };
    }
}

pub fn scalar(v: &Value) -> Option<f64> {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_sum_into_one_exposition_series_by_series() {
        let replica = |processed: u32, active: u32, le_1: u32| {
            Exposition::parse(&format!(
                "# TYPE worker_tasks_processed_total counter\n\
                 worker_tasks_processed_total{{status=\"success\"}} {processed}\n\
                 # TYPE worker_active_processing_tasks gauge\n\
                 worker_active_processing_tasks {active}\n\
                 # TYPE d histogram\n\
                 d_bucket{{le=\"1\"}} {le_1}\n\
                 d_bucket{{le=\"+Inf\"}} {le_1}\n\
                 d_sum {le_1}\n\
                 d_count {le_1}\n"
            ))
        };
        let total = Exposition::summed(vec![replica(2, 0, 1), replica(3, 1, 4), replica(0, 0, 0)]);
        assert_eq!(
            total.value("worker_tasks_processed_total", &[("status", "success")]),
            Some(5.0)
        );
        assert_eq!(
            total.value("worker_active_processing_tasks", &[]),
            Some(1.0)
        );
        assert_eq!(total.value("d_count", &[]), Some(5.0));
        let buckets = &total.families["d"].series;
        assert_eq!(buckets.len(), 1);
        match &buckets[0].value {
            Value::Histogram(b) => assert!(b.iter().all(|b| b.count == 5.0), "{b:?}"),
            other => panic!("not a histogram: {other:?}"),
        }
        assert_eq!(total.families["d"].kind.as_deref(), Some("histogram"));
    }

    #[test]
    fn what_prometheus_would_refuse_or_misread_is_named_by_line() {
        let text = "# TYPE ok_total counter\nok_total{a=\"1\"} 1\nok_total{a=\"1\"} 2\n1bad 3\nlabelled{__name=\"x\"} 1\nstamped 1 1700000000000\nfine{b=\"q\\\"uote\",a=\"}\"} 4\n";
        let e = Exposition::parse(text);
        let expected = [
            "the same series twice",
            "metric name \"1bad\" is not valid",
            "label name \"__name\" is reserved",
            "explicit timestamp",
        ];
        assert_eq!(e.misread.len(), expected.len(), "{:?}", e.misread);
        for (misread, expected) in e.misread.iter().zip(expected) {
            assert!(misread.contains(expected), "{misread:?}: {expected:?}");
        }
        assert_eq!(
            label_pairs(r#"b="q\"uote",a="}""#),
            [
                ("a".to_string(), "}".to_string()),
                ("b".to_string(), "q\"uote".to_string())
            ]
        );
    }
}
