//! The drills: each a fault on one service, the signals it must cause
//! (alerts, a first metric movement) and how it is undone. Data only: the
//! run is in [`super`], the judging in [`super::timeline`].

use std::time::Duration;

/// How a drill breaks its service, and so how it is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stopped as `docker stop` does (SIGTERM, its grace period), started
    /// again.
    Stop,
    /// SIGKILL with its task in hand. The restart policy is set to `no`
    /// first, so the engine does not bring it straight back (a killed
    /// container is restarted under `unless-stopped`), and put back after.
    Kill,
    /// Every process frozen (the engine's pause), with its task in hand;
    /// thawed after.
    Pause,
}

/// An alert a drill looks for: its name and, where the rule is per
/// service, the `job` it must be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub alert: &'static str,
    pub job: Option<&'static str>,
    /// The rule's `for:`: how long after pending it fires.
    pub for_: Duration,
}

impl Expected {
    /// `alert{job="…"}`, as rows and the timeline name it.
    pub fn name(&self) -> String {
        match self.job {
            Some(job) => format!("{}{{job=\"{job}\"}}", self.alert),
            None => self.alert.to_string(),
        }
    }

    /// Whether an alert with these labels is this one.
    pub fn matches(&self, alert: &str, job: Option<&str>) -> bool {
        self.alert == alert && self.job.is_none_or(|j| Some(j) == job)
    }
}

#[derive(Debug)]
pub struct Drill {
    pub name: &'static str,
    /// What it does, for `drill list` and `--help`.
    pub what: &'static str,
    /// The compose service it breaks.
    pub service: &'static str,
    pub fault: Fault,
    /// Whether uploads are refused while the fault lasts (a JSON 503 with
    /// `Retry-After`); otherwise each is accepted and must end COMPLETED.
    pub refuses_uploads: bool,
    /// A PromQL expression that is non-empty once the fault shows in the
    /// metrics: the timeline's "first metric movement".
    pub signal: &'static str,
    /// Alerts that must go pending (and with `--until firing` fire, reach
    /// Alertmanager and resolve once the fault is undone).
    pub expects: &'static [Expected],
    /// Alerts the same fault may raise too; any other that fires fails
    /// the drill.
    pub allows: &'static [Expected],
}

const fn alert(alert: &'static str, job: Option<&'static str>, for_secs: u64) -> Expected {
    Expected {
        alert,
        job,
        for_: Duration::from_secs(for_secs),
    }
}

const TARGET_DOWN_WORKER: Expected = alert("PixelFlowTargetDown", Some("worker"), 60);

/// Every drill, in the order `drill list` shows them.
pub const DRILLS: &[Drill] = &[
    Drill {
        name: "kafka-down",
        what: "stops the broker while uploads continue: the outbox holds their events, \
               PixelFlowKafkaPublishErrors goes pending then fires; once the broker is back \
               everything drains and every task ends COMPLETED once",
        service: "kafka",
        fault: Fault::Stop,
        refuses_uploads: false,
        signal: "increase(api_kafka_publish_errors_total[1m]) > 0",
        expects: &[alert("PixelFlowKafkaPublishErrors", None, 120)],
        // The worker cannot consume either, and gets no task to finish
        // while uploads go on.
        allows: &[
            alert("PixelFlowWorkerConsumptionErrors", None, 120),
            alert("PixelFlowWorkerStuck", None, 600),
        ],
    },
    Drill {
        name: "worker-kill",
        what: "SIGKILLs the worker with a task in hand and keeps it down: \
               PixelFlowTargetDown goes pending for the worker; once it is started again \
               the task ends COMPLETED, counted once",
        service: "worker",
        fault: Fault::Kill,
        refuses_uploads: false,
        // Found by DNS: once the killed container drops out of discovery
        // the worker has no `up` series at all.
        signal: "up{job=\"worker\"} == 0 or absent(up{job=\"worker\"})",
        expects: &[TARGET_DOWN_WORKER],
        // Its task in hand, unfinished while it is down.
        allows: &[alert("PixelFlowWorkerStuck", None, 600)],
    },
    Drill {
        name: "postgres-restart",
        what: "stops PostgreSQL while uploads continue: api answers them with a JSON 503 and \
               Retry-After, and the 5xx ratio rule goes pending for api; once PostgreSQL is \
               back uploads are accepted again",
        service: "postgres",
        fault: Fault::Stop,
        refuses_uploads: true,
        signal:
            "sum(increase(api_requests_total{status=\"503\",endpoint=\"/api/upload\"}[1m])) > 0",
        expects: &[alert("PixelFlowHighErrorRatio", Some("api"), 300)],
        allows: &[],
    },
    Drill {
        name: "auth-down",
        what: "stops auth while uploads continue: api answers them with a JSON 503 (it cannot \
               validate tokens), the 5xx ratio rule goes pending for api and not for auth, and \
               PixelFlowTargetDown for auth",
        service: "auth",
        fault: Fault::Stop,
        refuses_uploads: true,
        signal: "up{job=\"auth\"} == 0",
        expects: &[
            alert("PixelFlowHighErrorRatio", Some("api"), 300),
            alert("PixelFlowTargetDown", Some("auth"), 60),
        ],
        allows: &[],
    },
    Drill {
        name: "worker-stuck",
        what: "pauses the worker with a task in hand: PixelFlowWorkerStuck goes pending (a \
               frozen worker answers no scrape, so PixelFlowTargetDown may too); once thawed \
               the task ends COMPLETED once",
        service: "worker",
        fault: Fault::Pause,
        refuses_uploads: false,
        signal: "up{job=\"worker\"} == 0",
        expects: &[alert("PixelFlowWorkerStuck", None, 600)],
        allows: &[TARGET_DOWN_WORKER],
    },
];

/// The drill called `name`.
pub fn find(name: &str) -> Option<&'static Drill> {
    DRILLS.iter().find(|d| d.name == name)
}

/// One alerting rule of a Prometheus rule file, as far as drills care.
#[derive(Debug, serde::Deserialize)]
pub struct Rule {
    /// `None` for a recording rule.
    pub alert: Option<String>,
    #[serde(rename = "for")]
    pub for_: Option<String>,
}

/// The rules of a Prometheus rule file (`alerts.yml`).
pub fn rules(alerts_yml: &str) -> Result<Vec<Rule>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        groups: Vec<Group>,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        rules: Vec<Rule>,
    }
    let file: File = serde_yaml::from_str(alerts_yml).map_err(|e| e.to_string())?;
    Ok(file.groups.into_iter().flat_map(|g| g.rules).collect())
}

/// The alert rules in `alerts_yml` that no drill expects, each with its
/// `for:`: what `drill list` reports as not exercised.
pub fn unexercised(alerts_yml: &str) -> Result<Vec<String>, String> {
    Ok(rules(alerts_yml)?
        .into_iter()
        .filter_map(|r| Some((r.alert?, r.for_)))
        .filter(|(name, _)| {
            !DRILLS
                .iter()
                .flat_map(|d| d.expects)
                .any(|e| e.alert == name)
        })
        .map(|(name, for_)| match for_ {
            Some(for_) => format!("{name} (for {for_})"),
            None => name,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drill_has_a_unique_name_and_expects_an_alert() {
        let mut names: Vec<&str> = DRILLS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DRILLS.len());
        assert!(DRILLS.iter().all(|d| !d.expects.is_empty()));
        assert!(find("kafka-down").is_some() && find("nonsense").is_none());
    }

    #[test]
    fn the_rules_no_drill_exercises_are_named() {
        let rules = "groups:\n  - name: g\n    rules:\n      - alert: PixelFlowTargetDown\n        expr: up == 0\n      - record: x\n        expr: y\n      - alert: SomethingElse\n        expr: z\n        for: 5m\n";
        assert_eq!(
            unexercised(rules),
            Ok(vec!["SomethingElse (for 5m)".to_string()])
        );
    }

    #[test]
    fn the_repository_rules_each_expected_by_a_drill_exist() {
        // A drill that looks for a rule that is not there could never pass.
        let rules = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../compose/prometheus/alerts.yml"),
        )
        .expect("the rules file");
        let rules = super::rules(&rules).expect("the rules parse");
        for drill in DRILLS {
            for expected in drill.expects.iter().chain(drill.allows) {
                let rule = rules
                    .iter()
                    .find(|r| r.alert.as_deref() == Some(expected.alert))
                    .unwrap_or_else(|| panic!("{}: no rule {}", drill.name, expected.alert));
                // The projection of when it fires is pending + for:.
                assert_eq!(
                    Ok(expected.for_),
                    crate::compose::model::duration(rule.for_.as_deref().unwrap_or("0s")),
                    "{}: {}",
                    drill.name,
                    expected.alert
                );
            }
        }
    }
}
