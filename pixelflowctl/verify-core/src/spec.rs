//! The expectations, as data: verify.toml, embedded.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const EMBEDDED: &str = include_str!("../verify.toml");
pub const DEFAULT_MAX_SERIES: usize = 200;

#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub services: BTreeMap<String, ServiceSpec>,
    #[serde(default)]
    pub flow: FlowSpec,
}

/// What the flow moves: one registration, one failed and one good login,
/// one upload, and `polls` reads of the task until it completed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    #[serde(default)]
    pub deltas: Vec<DeltaSpec>,
}

/// One series' expected move during the flow: `count + per_poll × polls`,
/// exactly, unless `at_least` gives the reason it can only be a lower
/// bound. A label value ending in `*` matches by prefix (`status = "5*"`),
/// and the matching series are summed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSpec {
    pub service: String,
    /// The series name: a family, or a histogram's `_count`/`_sum`.
    pub series: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub count: f64,
    #[serde(default)]
    pub per_poll: f64,
    #[serde(default)]
    pub at_least: Option<String>,
}

impl DeltaSpec {
    pub fn expected(&self, polls: u32) -> f64 {
        self.count + self.per_poll * f64::from(polls)
    }

    /// The family the series belongs to.
    fn family(&self) -> &str {
        ["_count", "_sum", "_bucket"]
            .iter()
            .find_map(|suffix| self.series.strip_suffix(suffix))
            .unwrap_or(&self.series)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceSpec {
    pub url: String,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub max_series: Option<usize>,
}

impl Spec {
    /// Parses and checks that every flow delta names a declared service and
    /// one of its declared families.
    pub fn parse(text: &str) -> Result<Self, String> {
        let spec: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for delta in &spec.flow.deltas {
            let service = spec.services.get(&delta.service).ok_or_else(|| {
                format!(
                    "flow delta {}: no service {:?}",
                    delta.series, delta.service
                )
            })?;
            let declared = service.metrics.iter().any(|m| {
                m.name == delta.series || (m.kind == Kind::Histogram && m.name == delta.family())
            });
            if !declared {
                return Err(format!(
                    "flow delta {}: {} declares no such family",
                    delta.series, delta.service
                ));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_spec_parses_and_names_every_service() {
        let spec = Spec::parse(EMBEDDED).expect("valid");
        assert_eq!(
            spec.services.keys().collect::<Vec<_>>(),
            ["api", "auth", "worker"]
        );
        let logins = spec.services["auth"]
            .metrics
            .iter()
            .find(|m| m.name == "auth_logins_total")
            .expect("logins");
        assert_eq!(logins.values["status"], ["success", "failure"]);
        assert!(
            spec.flow.deltas.iter().all(|d| d.at_least.is_none()),
            "every delta of the embedded spec is exact"
        );
    }

    #[test]
    fn a_delta_on_an_undeclared_family_is_refused() {
        let text = "[services.a]\nurl = \"http://x/metrics\"\n[[services.a.metrics]]\nname = \"a_total\"\ntype = \"counter\"\n[[flow.deltas]]\nservice = \"a\"\nseries = \"b_total\"\ncount = 1\n";
        let err = Spec::parse(text).unwrap_err();
        assert!(err.contains("a declares no such family"), "{err}");
        assert!(Spec::parse(&text.replace("b_total", "a_total")).is_ok());
    }

    /// README's metrics table and the spec name the same families.
    #[test]
    fn the_readme_metrics_table_matches_the_spec() {
        let readme = include_str!("../../../README.md");
        let spec = Spec::parse(EMBEDDED).expect("valid");
        for (service, s) in &spec.services {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {service} |")))
                .unwrap_or_else(|| panic!("README has no metrics row for {service}"));
            let mut documented: Vec<String> = row
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|name| name.split('{').next().unwrap_or(name).to_string())
                .collect();
            documented.sort();
            let mut specified: Vec<String> = s.metrics.iter().map(|m| m.name.clone()).collect();
            specified.sort();
            assert_eq!(
                documented, specified,
                "README and verify.toml differ for {service}"
            );
        }
    }
}
