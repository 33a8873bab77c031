//! Whether values make sense for what their names promise, for every family
//! a service serves (listed in the spec or not): a `_seconds` histogram's
//! buckets in seconds, a `_ratio` between 0 and 1, `_bytes` whole and not
//! negative, a counter named `_total`; and over the flow, each histogram's
//! `_sum` moving with its `_count`, observations no longer than the flow
//! itself, and no counter going down (Prometheus reads that as a restart).

use std::time::Duration;

use crate::exposition::{scalar, Exposition, Family, Series};
use crate::report::Check;

/// The largest finite bucket bound a `_seconds` histogram may have: beyond
/// an hour, bounds are milliseconds written as seconds.
const MAX_SECONDS_BOUND: f64 = 3600.0;
/// The smallest largest-bound: a histogram whose buckets all end below
/// 50 ms counts in a unit a thousand times too large.
const MIN_SECONDS_TOP_BOUND: f64 = 0.05;
/// No request, query or task of the stack takes less than a microsecond:
/// a mean below that is a value divided once too often.
const MIN_OBSERVATION_SECONDS: f64 = 1e-6;

/// The problems of one scrape's families, by what their names promise.
pub fn families(exposition: &Exposition) -> Vec<String> {
    exposition
        .families
        .iter()
        .filter_map(|(name, family)| family_problem(name, family))
        .collect()
}

fn family_problem(name: &str, family: &Family) -> Option<String> {
    let kind = family.kind.as_deref().unwrap_or("untyped");
    if kind == "counter" && !name.ends_with("_total") {
        return Some(format!(
            "{name} is a counter not named *_total, as Prometheus names counters"
        ));
    }
    if name.ends_with("_total") && matches!(kind, "gauge" | "histogram" | "summary") {
        return Some(format!(
            "{name} is a {kind} named like a counter (*_total): rate() over it is wrong"
        ));
    }
    if kind == "histogram" && name.ends_with("_seconds") {
        return seconds_buckets_problem(name, family);
    }
    let values = || {
        family
            .series
            .iter()
            .filter_map(|s| scalar(&s.value).map(|v| (s, v)))
    };
    if name.ends_with("_ratio") {
        if let Some((s, v)) = values().find(|(_, v)| !(0.0..=1.0).contains(v)) {
            return Some(format!(
                "{name}{} is {v}; a ratio lies between 0 and 1",
                s.labels_text()
            ));
        }
    }
    if name.ends_with("_bytes") {
        if let Some((s, v)) = values().find(|(_, v)| *v < 0.0 || v.fract() != 0.0) {
            return Some(format!(
                "{name}{} is {v}; bytes are a whole number, never negative",
                s.labels_text()
            ));
        }
    }
    None
}

fn seconds_buckets_problem(name: &str, family: &Family) -> Option<String> {
    let bounds: Vec<f64> = family
        .series
        .iter()
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => Some(buckets),
            _ => None,
        })
        .flatten()
        .map(|b| b.less_than)
        .filter(|b| b.is_finite())
        .collect();
    let top = bounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if bounds.is_empty() {
        return None;
    }
    if top > MAX_SECONDS_BOUND {
        return Some(format!(
            "{name}'s buckets reach le=\"{top}\", over an hour: bounds in milliseconds under a _seconds name?"
        ));
    }
    if top < MIN_SECONDS_TOP_BOUND {
        return Some(format!(
            "{name}'s buckets end at le=\"{top}\", under 50 ms: bounds a thousand times too small for seconds?"
        ));
    }
    None
}

/// Over the flow (`before` and `after` scrapes, `window` apart at most):
/// each histogram series' `_sum` moved with its `_count`; a `_seconds`
/// histogram's mean observation lies between a microsecond and the window;
/// no counter went down.
pub fn over_flow(before: &Exposition, after: &Exposition, window: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, family) in &after.families {
        let Some(earlier) = before.families.get(name) else {
            continue;
        };
        match family.kind.as_deref() {
            Some("histogram") => {
                for count in &family.counts {
                    let moved = |list: &[Series], earlier: &[Series]| {
                        let now = find(list, count)?;
                        Some(now - find(earlier, count).unwrap_or(0.0))
                    };
                    let (Some(dcount), Some(dsum)) = (
                        moved(&family.counts, &earlier.counts),
                        moved(&family.sums, &earlier.sums),
                    ) else {
                        continue;
                    };
                    let at = count.labels_text();
                    if dcount > 0.0 && dsum <= 0.0 {
                        problems.push(format!(
                            "{name}{at}: _count rose by {dcount} during the flow but _sum by {dsum}; _sum must move with it"
                        ));
                    } else if dcount == 0.0 && dsum != 0.0 {
                        problems.push(format!(
                            "{name}{at}: _sum moved by {dsum} with no observation (_count unchanged)"
                        ));
                    } else if dcount > 0.0 && name.ends_with("_seconds") {
                        let mean = dsum / dcount;
                        if mean > window.as_secs_f64() {
                            problems.push(format!(
                                "{name}{at}: {dcount} observation(s) averaging {mean:.3} s during a flow of {:.3} s: milliseconds observed as seconds?",
                                window.as_secs_f64()
                            ));
                        } else if mean < MIN_OBSERVATION_SECONDS {
                            problems.push(format!(
                                "{name}{at}: {dcount} observation(s) averaging {mean:e} s, under a microsecond: a unit too large?"
                            ));
                        }
                    }
                }
            }
            Some("counter") => {
                for series in &family.series {
                    let (Some(now), Some(was)) =
                        (scalar(&series.value), find(&earlier.series, series))
                    else {
                        continue;
                    };
                    if now < was {
                        problems.push(format!(
                            "{name}{} went down from {was} to {now} during the flow: Prometheus reads that as a restart",
                            series.labels_text()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

/// The value of the series in `list` with the labels of `like`.
fn find(list: &[Series], like: &Series) -> Option<f64> {
    list.iter()
        .find(|s| s.labels == like.labels)
        .and_then(|s| scalar(&s.value))
}

/// The row for a scrape's families, by what their names promise.
pub fn families_row(service: &str, exposition: &Exposition) -> Check {
    let problems = families(exposition);
    Check::new(
        service,
        "every family's values fit its name",
        "_seconds buckets in seconds, _ratio in [0, 1], _bytes whole, counters *_total",
        summary(&problems, exposition.families.len()),
        problems.is_empty(),
    )
}

/// The row for how every histogram and counter moved over the flow.
pub fn flow_row(service: &str, before: &Exposition, after: &Exposition, window: Duration) -> Check {
    let problems = over_flow(before, after, window);
    Check::new(
        service,
        "histograms and counters over the flow read as meant",
        "_sum with _count, seconds within the flow, no counter down",
        summary(&problems, after.families.len()),
        problems.is_empty(),
    )
}

fn summary(problems: &[String], families: usize) -> String {
    if problems.is_empty() {
        format!("all {families} families")
    } else {
        problems.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(name: &str, bounds: &[&str], count: f64, sum: f64) -> String {
        let mut text = format!("# HELP {name} H.\n# TYPE {name} histogram\n");
        for b in bounds {
            text.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {count}\n"));
        }
        text.push_str(&format!(
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n"
        ));
        text
    }

    #[test]
    fn seconds_buckets_in_milliseconds_or_far_too_small_are_named() {
        let fine = Exposition::parse(&histogram("a_seconds", &["0.01", "1", "10"], 1.0, 0.2));
        assert_eq!(families(&fine), Vec::<String>::new());
        let ms = Exposition::parse(&histogram("a_seconds", &["5", "100", "5000"], 1.0, 20.0));
        assert!(
            families(&ms)[0].contains("milliseconds"),
            "{:?}",
            families(&ms)
        );
        let tiny = Exposition::parse(&histogram("a_seconds", &["0.00001", "0.01"], 1.0, 0.001));
        assert!(
            families(&tiny)[0].contains("too small"),
            "{:?}",
            families(&tiny)
        );
    }

    #[test]
    fn names_promising_a_unit_or_a_type_are_held_to_it() {
        let e = Exposition::parse(
            "# TYPE a_ratio gauge\na_ratio 1.5\n# TYPE b_bytes gauge\nb_bytes 2.5\n# TYPE c counter\nc 1\n# TYPE d_total gauge\nd_total 1\n",
        );
        let problems = families(&e);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn a_sum_that_stays_while_the_count_moves_fails_the_flow() {
        let before = Exposition::parse(&histogram("a_seconds", &["1"], 1.0, 0.1));
        let stuck = Exposition::parse(&histogram("a_seconds", &["1"], 3.0, 0.1));
        let problems = over_flow(&before, &stuck, Duration::from_secs(2));
        assert!(problems[0].contains("_sum must move"), "{problems:?}");
        let moved = Exposition::parse(&histogram("a_seconds", &["1"], 3.0, 0.3));
        assert_eq!(
            over_flow(&before, &moved, Duration::from_secs(2)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn observations_longer_than_the_flow_are_milliseconds_observed_as_seconds() {
        let before = Exposition::parse(&histogram("a_seconds", &["1"], 1.0, 0.1));
        let ms = Exposition::parse(&histogram("a_seconds", &["1"], 3.0, 24.1));
        let problems = over_flow(&before, &ms, Duration::from_secs(2));
        assert!(problems[0].contains("milliseconds"), "{problems:?}");
        let tiny = Exposition::parse(&histogram("a_seconds", &["1"], 3.0, 0.100_000_001));
        let problems = over_flow(&before, &tiny, Duration::from_secs(2));
        assert!(problems[0].contains("microsecond"), "{problems:?}");
    }

    #[test]
    fn a_counter_that_goes_down_reads_as_a_restart() {
        let before = Exposition::parse("# TYPE a_total counter\na_total{x=\"1\"} 5\n");
        let after = Exposition::parse("# TYPE a_total counter\na_total{x=\"1\"} 4\n");
        let problems = over_flow(&before, &after, Duration::from_secs(2));
        assert!(problems[0].contains("restart"), "{problems:?}");
    }
}
