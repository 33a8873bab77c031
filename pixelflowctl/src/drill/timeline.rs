//! What a drill saw, in time since its fault, and the verdicts on it.
//! Pure: the alerts come in as Prometheus' `/api/v1/alerts` and
//! Alertmanager's `/api/v2/alerts` answer them, so the judging is tested on
//! recorded answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pixelflow_verify::Check;
use serde::Serialize;
use serde_json::Value;

use super::catalog::{Drill, Expected};

/// An alert's state, as Prometheus reports it (inactive alerts are not
/// listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Firing,
}

/// One alert of one rule: its name and the `job` it is for, if any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Key {
    pub alert: String,
    pub job: Option<String>,
}

impl Key {
    fn of(labels: &Value) -> Option<Self> {
        Some(Self {
            alert: labels["alertname"].as_str()?.to_string(),
            job: labels["job"].as_str().map(str::to_string),
        })
    }

    fn name(&self) -> String {
        match &self.job {
            Some(job) => format!("{}{{job=\"{job}\"}}", self.alert),
            None => self.alert.clone(),
        }
    }

    fn is(&self, expected: &Expected) -> bool {
        expected.matches(&self.alert, self.job.as_deref())
    }
}

/// Prometheus' `/api/v1/alerts`: the alerts pending or firing.
pub fn prometheus_alerts(body: &Value) -> Result<BTreeMap<Key, State>, String> {
    if body["status"] != "success" {
        return Err(format!("Prometheus' alerts API answered {body}"));
    }
    let alerts = body["data"]["alerts"]
        .as_array()
        .ok_or_else(|| format!("no data.alerts in {body}"))?;
    let mut out = BTreeMap::new();
    for alert in alerts {
        let key =
            Key::of(&alert["labels"]).ok_or_else(|| format!("an alert without a name: {alert}"))?;
        let state = match alert["state"].as_str() {
            Some("pending") => State::Pending,
            Some("firing") => State::Firing,
            _ => continue,
        };
        // Several series of one rule and job (instances): the furthest on.
        let entry = out.entry(key).or_insert(state);
        *entry = (*entry).max(state);
    }
    Ok(out)
}

/// Alertmanager's `/api/v2/alerts`: the alerts it holds, active (neither
/// silenced nor inhibited).
pub fn alertmanager_alerts(body: &Value) -> Result<BTreeSet<Key>, String> {
    let alerts = body
        .as_array()
        .ok_or_else(|| format!("Alertmanager's alerts API answered {body}"))?;
    Ok(alerts
        .iter()
        .filter(|a| a["status"]["state"] == "active")
        .filter_map(|a| Key::of(&a["labels"]))
        .collect())
}

/// When each alert reached each state, since the fault (in JSON, seconds).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Seen {
    #[serde(serialize_with = "seconds")]
    pub pending: Option<Duration>,
    #[serde(serialize_with = "seconds")]
    pub firing: Option<Duration>,
    /// Held by Alertmanager.
    #[serde(serialize_with = "seconds")]
    pub held: Option<Duration>,
    /// Gone from Prometheus' list after it was seen.
    #[serde(serialize_with = "seconds")]
    pub resolved: Option<Duration>,
}

fn seconds<S: serde::Serializer>(at: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_f64(secs(*at)),
        None => s.serialize_none(),
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the fault (negative: before it).
    pub at_s: f64,
    pub what: String,
}

/// The drill's record: events in order, and each alert's states.
#[derive(Debug, Default, Serialize)]
pub struct Timeline {
    pub events: Vec<Event>,
    pub alerts: BTreeMap<String, Seen>,
    /// Alerts already pending or firing before the fault: not this drill's.
    #[serde(skip)]
    before: BTreeSet<Key>,
    #[serde(skip)]
    keys: BTreeMap<String, Key>,
}

fn secs(at: Duration) -> f64 {
    (at.as_secs_f64() * 10.0).round() / 10.0
}

impl Timeline {
    /// A timeline whose alerts active now (`before`) are left out.
    pub fn new(before: &BTreeMap<Key, State>) -> Self {
        Self {
            before: before.keys().cloned().collect(),
            ..Self::default()
        }
    }

    pub fn note(&mut self, at: Duration, what: impl Into<String>) {
        self.events.push(Event {
            at_s: secs(at),
            what: what.into(),
        });
    }

    /// One look at both APIs, `at` after the fault.
    pub fn observe(
        &mut self,
        at: Duration,
        prometheus: &BTreeMap<Key, State>,
        alertmanager: &BTreeSet<Key>,
    ) {
        let mut events = Vec::new();
        for (key, state) in prometheus {
            if self.before.contains(key) {
                continue;
            }
            let name = key.name();
            self.keys.insert(name.clone(), key.clone());
            let seen = self.alerts.entry(name.clone()).or_default();
            // Firing implies it was pending, however short that was.
            if seen.pending.is_none() {
                seen.pending = Some(at);
                events.push(format!("{name} pending"));
            }
            if *state == State::Firing && seen.firing.is_none() {
                seen.firing = Some(at);
                events.push(format!("{name} firing"));
            }
            if alertmanager.contains(key) && seen.held.is_none() {
                seen.held = Some(at);
                events.push(format!("{name} held by Alertmanager"));
            }
            // Back after a resolution: the earlier one did not hold.
            seen.resolved = None;
        }
        for (name, seen) in &mut self.alerts {
            let key = &self.keys[name];
            if !prometheus.contains_key(key) && seen.pending.is_some() && seen.resolved.is_none() {
                seen.resolved = Some(at);
                events.push(format!("{name} resolved"));
            }
        }
        for what in events {
            self.note(at, what);
        }
    }

    /// Whether every expected alert has reached `until` (pending, or
    /// firing and held by Alertmanager).
    pub fn reached(&self, expects: &[Expected], until: Until) -> bool {
        expects.iter().all(|e| {
            self.seen(e).is_some_and(|s| match until {
                Until::Pending => s.pending.is_some(),
                Until::Firing => s.firing.is_some() && s.held.is_some(),
            })
        })
    }

    /// Whether every expected alert that was seen has resolved.
    pub fn all_resolved(&self, expects: &[Expected]) -> bool {
        expects
            .iter()
            .all(|e| self.seen(e).is_none_or(|s| s.resolved.is_some()))
    }

    fn seen(&self, expected: &Expected) -> Option<&Seen> {
        self.alerts
            .iter()
            .find(|(name, _)| self.keys[*name].is(expected))
            .map(|(_, seen)| seen)
    }
}

/// How far a drill follows its alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    /// Each expected alert's expression true (pending), within a bound;
    /// when it would fire is projected from the rule's `for:`.
    Pending,
    /// Each expected alert firing and held by Alertmanager, then resolved
    /// once the fault is undone.
    Firing,
}

/// How long each state may take. Pending: a scrape (15 s), an evaluation
/// (15 s) and the rule's window filling with the fault, with a margin.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub pending: Duration,
    /// After pending, beyond the rule's `for:`: an evaluation and
    /// Alertmanager's intake.
    pub firing_slack: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            pending: Duration::from_secs(120),
            firing_slack: Duration::from_secs(45),
        }
    }
}

fn at(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_string(),
        |d| format!("at +{:.0}s", d.as_secs_f64()),
    )
}

/// The alert verdicts: each expected alert reached its states within its
/// bounds, and no other alert fired.
pub fn alert_checks(
    drill: &Drill,
    timeline: &Timeline,
    until: Until,
    bounds: Bounds,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for expected in drill.expects {
        let name = expected.name();
        let seen = timeline.seen(expected).cloned().unwrap_or_default();
        checks.push(Check::new(
            "alerts",
            format!("{name} pending"),
            format!("within {}s of the fault", bounds.pending.as_secs()),
            at(seen.pending),
            seen.pending.is_some_and(|p| p <= bounds.pending),
        ));
        match until {
            Until::Pending => checks.push(Check::skip(
                "alerts",
                format!("{name} firing"),
                match seen.firing.or(seen.pending) {
                    Some(_) if seen.firing.is_some() => format!("fired {} (not awaited: --until pending)", at(seen.firing)),
                    Some(p) => format!(
                        "not awaited (--until pending): would fire at about +{:.0}s, {}s after pending (its for:); --until firing waits",
                        (p + expected.for_).as_secs_f64(),
                        expected.for_.as_secs()
                    ),
                    None => "not awaited (--until pending), and never pending".to_string(),
                },
            )),
            Until::Firing => {
                let bound = seen
                    .pending
                    .map(|p| p + expected.for_ + bounds.firing_slack);
                checks.push(Check::new(
                    "alerts",
                    format!("{name} firing"),
                    format!(
                        "{}s after pending (its for:), within {}s more",
                        expected.for_.as_secs(),
                        bounds.firing_slack.as_secs()
                    ),
                    at(seen.firing),
                    matches!((seen.firing, bound), (Some(f), Some(b)) if f <= b),
                ));
                checks.push(Check::new(
                    "alerts",
                    format!("{name} held by Alertmanager"),
                    "while firing",
                    at(seen.held),
                    seen.held.is_some(),
                ));
                checks.push(Check::new(
                    "alerts",
                    format!("{name} resolved"),
                    "once the fault is undone",
                    at(seen.resolved),
                    seen.resolved.is_some(),
                ));
            }
        }
    }
    let unexpected: Vec<String> = timeline
        .alerts
        .iter()
        .filter(|(_, seen)| seen.firing.is_some())
        .filter(|(name, _)| {
            let key = &timeline.keys[*name];
            !drill.expects.iter().chain(drill.allows).any(|e| key.is(e))
        })
        .map(|(name, seen)| format!("{name} {}", at(seen.firing)))
        .collect();
    checks.push(Check::new(
        "alerts",
        "no unexpected alert fired",
        "none",
        if unexpected.is_empty() {
            "none".to_string()
        } else {
            unexpected.join(", ")
        },
        unexpected.is_empty(),
    ));
    checks
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::drill::catalog::find;

    fn prometheus(alerts: &[(&str, &str, &str)]) -> BTreeMap<Key, State> {
        let alerts: Vec<Value> = alerts
            .iter()
            .map(|(name, job, state)| {
                json!({
                    "labels": {"alertname": name, "job": job, "severity": "page"},
                    "annotations": {"summary": "…"},
                    "state": state,
                    "activeAt": "2026-12-06T10:00:00Z",
                    "value": "1e+00"
                })
            })
            .collect();
        prometheus_alerts(&json!({"status": "success", "data": {"alerts": alerts}}))
            .expect("parses")
    }

    /// Alertmanager's answer, as recorded from v0.27 holding one alert.
    fn alertmanager(names: &[(&str, &str)]) -> BTreeSet<Key> {
        let alerts: Vec<Value> = names
            .iter()
            .map(|(name, job)| {
                json!({
                    "annotations": {"summary": "…"},
                    "endsAt": "2026-12-06T10:09:00.000Z",
                    "fingerprint": "8c1b0ab9c5e7d1d0",
                    "receivers": [{"name": "default"}],
                    "startsAt": "2026-12-06T10:02:00.000Z",
                    "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
                    "updatedAt": "2026-12-06T10:05:00.000Z",
                    "generatorURL": "http://prometheus:9090/graph",
                    "labels": {"alertname": name, "job": job, "severity": "page"}
                })
            })
            .collect();
        alertmanager_alerts(&Value::Array(alerts)).expect("parses")
    }

    #[test]
    fn a_worker_kill_timeline_passes_when_target_down_pends_fires_is_held_and_resolves() {
        let drill = find("worker-kill").expect("drill");
        let mut timeline = Timeline::new(&prometheus(&[]));
        let s = Duration::from_secs;
        timeline.observe(s(10), &prometheus(&[]), &alertmanager(&[]));
        timeline.observe(
            s(31),
            &prometheus(&[("PixelFlowTargetDown", "worker", "pending")]),
            &alertmanager(&[]),
        );
        timeline.observe(
            s(91),
            &prometheus(&[("PixelFlowTargetDown", "worker", "firing")]),
            &alertmanager(&[]),
        );
        assert!(
            !timeline.reached(drill.expects, Until::Firing),
            "not yet held"
        );
        timeline.observe(
            s(93),
            &prometheus(&[("PixelFlowTargetDown", "worker", "firing")]),
            &alertmanager(&[("PixelFlowTargetDown", "worker")]),
        );
        assert!(timeline.reached(drill.expects, Until::Firing));
        timeline.observe(s(130), &prometheus(&[]), &alertmanager(&[]));
        assert!(timeline.all_resolved(drill.expects));
        let checks = alert_checks(drill, &timeline, Until::Firing, Bounds::default());
        let failed: Vec<_> = checks
            .iter()
            .filter(|c| c.outcome == pixelflow_verify::Outcome::Fail)
            .collect();
        assert!(failed.is_empty(), "{failed:?}");
        let seen = &timeline.alerts["PixelFlowTargetDown{job=\"worker\"}"];
        assert_eq!(
            (seen.pending, seen.firing, seen.held, seen.resolved),
            (Some(s(31)), Some(s(91)), Some(s(93)), Some(s(130)))
        );
        let events: Vec<&str> = timeline.events.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            events,
            [
                "PixelFlowTargetDown{job=\"worker\"} pending",
                "PixelFlowTargetDown{job=\"worker\"} firing",
                "PixelFlowTargetDown{job=\"worker\"} held by Alertmanager",
                "PixelFlowTargetDown{job=\"worker\"} resolved",
            ]
        );
    }

    #[test]
    fn a_late_pending_an_unexpected_firing_and_the_wrong_job_fail_with_their_names() {
        let drill = find("auth-down").expect("drill");
        let mut timeline = Timeline::new(&prometheus(&[]));
        let s = Duration::from_secs;
        // The ratio rule fires for auth instead of api, TargetDown is late,
        // and the worker's publish errors were never this drill's.
        timeline.observe(
            s(150),
            &prometheus(&[
                ("PixelFlowHighErrorRatio", "auth", "firing"),
                ("PixelFlowTargetDown", "auth", "pending"),
            ]),
            &alertmanager(&[]),
        );
        let checks = alert_checks(drill, &timeline, Until::Pending, Bounds::default());
        let row = |check: &str| {
            checks
                .iter()
                .find(|c| c.check == check)
                .unwrap_or_else(|| panic!("no row {check}: {checks:?}"))
        };
        use pixelflow_verify::Outcome::{Fail, Skip};
        assert_eq!(
            row("PixelFlowHighErrorRatio{job=\"api\"} pending").actual,
            "never"
        );
        assert_eq!(
            row("PixelFlowHighErrorRatio{job=\"api\"} pending").outcome,
            Fail
        );
        assert_eq!(
            row("PixelFlowTargetDown{job=\"auth\"} pending").actual,
            "at +150s"
        );
        assert_eq!(
            row("PixelFlowTargetDown{job=\"auth\"} pending").outcome,
            Fail
        );
        assert_eq!(
            row("PixelFlowTargetDown{job=\"auth\"} firing").outcome,
            Skip
        );
        assert!(
            row("PixelFlowTargetDown{job=\"auth\"} firing")
                .actual
                .contains("would fire at about +210s"),
            "{:?}",
            row("PixelFlowTargetDown{job=\"auth\"} firing")
        );
        let unexpected = row("no unexpected alert fired");
        assert_eq!(unexpected.outcome, Fail);
        assert_eq!(
            unexpected.actual,
            "PixelFlowHighErrorRatio{job=\"auth\"} at +150s"
        );
    }

    #[test]
    fn alerts_active_before_the_fault_are_not_the_drills() {
        let drill = find("kafka-down").expect("drill");
        let before = prometheus(&[("PixelFlowLatencySLO", "api", "firing")]);
        let mut timeline = Timeline::new(&before);
        timeline.observe(
            Duration::from_secs(40),
            &prometheus(&[
                ("PixelFlowLatencySLO", "api", "firing"),
                ("PixelFlowKafkaPublishErrors", "api", "pending"),
            ]),
            &alertmanager(&[]),
        );
        let checks = alert_checks(drill, &timeline, Until::Pending, Bounds::default());
        assert!(
            checks
                .iter()
                .all(|c| c.outcome != pixelflow_verify::Outcome::Fail),
            "{checks:?}"
        );
        assert!(timeline.reached(drill.expects, Until::Pending));
    }

    #[test]
    fn answers_that_are_not_the_apis_are_errors_and_silenced_alerts_are_not_held() {
        assert!(prometheus_alerts(&json!({"status": "error", "error": "x"})).is_err());
        assert!(alertmanager_alerts(&json!({"alerts": []})).is_err());
        let silenced = json!([{
            "labels": {"alertname": "PixelFlowTargetDown", "job": "worker"},
            "status": {"state": "suppressed", "silencedBy": ["abc"], "inhibitedBy": []}
        }]);
        assert!(alertmanager_alerts(&silenced).expect("parses").is_empty());
    }
}
