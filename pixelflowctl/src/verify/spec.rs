//! The expectations, as data: verify.toml, embedded.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const EMBEDDED: &str = include_str!("../../verify.toml");
pub const DEFAULT_MAX_SERIES: usize = 200;

#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub services: BTreeMap<String, ServiceSpec>,
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
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
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
    }
}
