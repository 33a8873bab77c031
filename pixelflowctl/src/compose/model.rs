//! The typed subset of the compose format the stack uses. Keys outside it
//! are kept in `unsupported` so `up` can say what it ignores rather than
//! drop it silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ComposeFile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default, deserialize_with = "nullable_map")]
    pub volumes: BTreeMap<String, serde_yaml::Value>,
    #[serde(default, deserialize_with = "nullable_map")]
    pub networks: BTreeMap<String, serde_yaml::Value>,
    /// Informational only (compose v2 ignores it; docker-compose 1.x wants
    /// it).
    #[serde(default)]
    pub version: Option<serde_yaml::Value>,
    /// Top-level keys outside the subset (`configs`, `secrets`…).
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
pub struct Service {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub build: Option<Build>,
    #[serde(default)]
    pub command: Option<Words>,
    #[serde(default)]
    pub entrypoint: Option<Words>,
    #[serde(default, deserialize_with = "environment")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "strings")]
    pub ports: Vec<String>,
    #[serde(default, deserialize_with = "strings")]
    pub volumes: Vec<String>,
    #[serde(default, deserialize_with = "names")]
    pub networks: Vec<String>,
    #[serde(default, deserialize_with = "depends_on")]
    pub depends_on: BTreeMap<String, Condition>,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub restart: Option<String>,
    #[serde(default, deserialize_with = "strings")]
    pub profiles: Vec<String>,
    /// How long the service may take to stop after its stop signal.
    #[serde(default)]
    pub stop_grace_period: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Build {
    Context(String),
    Full {
        #[serde(default = "dot")]
        context: String,
        #[serde(default)]
        dockerfile: Option<String>,
        #[serde(default, deserialize_with = "environment")]
        args: BTreeMap<String, String>,
    },
}

fn dot() -> String {
    ".".into()
}

impl Build {
    pub fn context(&self) -> &str {
        match self {
            Build::Context(c) => c,
            Build::Full { context, .. } => context,
        }
    }
    pub fn args(&self) -> BTreeMap<String, String> {
        match self {
            Build::Context(_) => BTreeMap::new(),
            Build::Full { args, .. } => args.clone(),
        }
    }
}

/// A command as a string (run by a shell) or a list of words.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Words {
    Line(String),
    List(Vec<String>),
}

impl Words {
    /// The argv Docker runs: a string line is split on whitespace, as
    /// compose does for `command:`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Words::Line(l) => l.split_whitespace().map(str::to_string).collect(),
            Words::List(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Option<Words>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default)]
    pub start_period: Option<String>,
    #[serde(default)]
    pub disable: Option<bool>,
}

fn scalar_to_string(v: serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn nullable_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_yaml::Value>, D::Error> {
    Ok(Option::<BTreeMap<String, serde_yaml::Value>>::deserialize(d)?.unwrap_or_default())
}

/// A list of scalars (numbers allowed, as in `ports: [8080]`).
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Option::<Vec<serde_yaml::Value>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|v| {
            scalar_to_string(v)
                .ok_or_else(|| serde::de::Error::custom("expected a string or number"))
        })
        .collect()
}

/// `KEY: value` map (null values become empty) or `["KEY=value"]` list.
fn environment<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    match Option::<serde_yaml::Value>::deserialize(d)? {
        None => Ok(BTreeMap::new()),
        Some(serde_yaml::Value::Mapping(m)) => m
            .into_iter()
            .map(|(k, v)| {
                let k = scalar_to_string(k)
                    .ok_or_else(|| serde::de::Error::custom("environment keys must be strings"))?;
                let v = if v.is_null() {
                    String::new()
                } else {
                    scalar_to_string(v).ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "environment {k}: expected a string, number or boolean"
                        ))
                    })?
                };
                Ok((k, v))
            })
            .collect(),
        Some(serde_yaml::Value::Sequence(items)) => items
            .into_iter()
            .map(|item| {
                let s = scalar_to_string(item).ok_or_else(|| {
                    serde::de::Error::custom("environment entries must be KEY=value")
                })?;
                let (k, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
                Ok((k.to_string(), v.to_string()))
            })
            .collect(),
        Some(_) => Err(serde::de::Error::custom(
            "environment must be a map or a list",
        )),
    }
}

/// A list of names, or a map whose keys are the names.
fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Option::<serde_yaml::Value>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(serde_yaml::Value::Sequence(items)) => items
            .into_iter()
            .map(|v| scalar_to_string(v).ok_or_else(|| serde::de::Error::custom("expected a name")))
            .collect(),
        Some(serde_yaml::Value::Mapping(m)) => m
            .into_iter()
            .map(|(k, _)| {
                scalar_to_string(k).ok_or_else(|| serde::de::Error::custom("expected a name"))
            })
            .collect(),
        Some(_) => Err(serde::de::Error::custom(
            "expected a list or a map of names",
        )),
    }
}

/// `[a, b]` (each `service_started`) or `{a: {condition: ...}}`.
fn depends_on<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Condition>, D::Error> {
    #[derive(Deserialize)]
    struct Long {
        #[serde(default = "started")]
        condition: Condition,
    }
    fn started() -> Condition {
        Condition::ServiceStarted
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Map(BTreeMap<String, Long>),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(Form::List(v)) => v
            .into_iter()
            .map(|s| (s, Condition::ServiceStarted))
            .collect(),
        Some(Form::Map(m)) => m.into_iter().map(|(k, l)| (k, l.condition)).collect(),
    })
}

/// A compose duration as a `Duration`; `None` when it is not one (or is
/// negative).
pub fn duration(text: &str) -> Option<std::time::Duration> {
    let ns = u64::try_from(duration_ns(text).ok()?).ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

/// A compose duration (`1m30s`, `2s`, `500ms`, `1h`) in nanoseconds.
pub fn duration_ns(text: &str) -> Result<i64, String> {
    let mut total: f64 = 0.0;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    if text.trim().is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() || n == 'µ' {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = number
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        number.clear();
        let scale = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("bad duration unit {other:?} in {text:?}")),
        };
        total += n * scale;
    }
    if !number.is_empty() {
        return Err(format!("duration {text:?} lacks a unit"));
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_compose_writes_them() {
        assert_eq!(duration_ns("2s"), Ok(2_000_000_000));
        assert_eq!(duration_ns("1m30s"), Ok(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Ok(500_000_000));
        assert!(duration_ns("10").is_err());
        assert!(duration_ns("3 days").is_err());
    }

    #[test]
    fn short_and_long_forms_read_alike() {
        let yaml = r#"
services:
  a:
    image: x
    environment: ["A=1", "B"]
    depends_on: [b]
    ports: [8080, "9090:9090"]
  b:
    image: y
    environment: { C: 3, D: null, E: true }
    depends_on: { a: { condition: service_healthy } }
    networks: { front: {} }
"#;
        let file: ComposeFile = serde_yaml::from_str(yaml).expect("parses");
        let a = &file.services["a"];
        assert_eq!(a.environment["A"], "1");
        assert_eq!(a.environment["B"], "");
        assert_eq!(a.depends_on["b"], Condition::ServiceStarted);
        assert_eq!(a.ports, ["8080", "9090:9090"]);
        let b = &file.services["b"];
        assert_eq!(b.environment["C"], "3");
        assert_eq!(b.environment["E"], "true");
        assert_eq!(b.depends_on["a"], Condition::ServiceHealthy);
        assert_eq!(b.networks, ["front"]);
    }
}
