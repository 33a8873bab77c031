//! The typed subset of the compose format the stack uses. Keys outside it
//! are kept in `unsupported` so `up` can say what it ignores rather than
//! drop it silently. Values are parsed here, once: ports into
//! [`PortMapping`], durations into `Duration`, the restart policy into
//! [`RestartPolicy`]; a value the format does not allow is an error naming
//! it, never a default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    #[serde(default, deserialize_with = "port_mappings")]
    pub ports: Vec<PortMapping>,
    #[serde(default, deserialize_with = "strings")]
    pub volumes: Vec<String>,
    #[serde(default, deserialize_with = "names")]
    pub networks: Vec<String>,
    #[serde(default, deserialize_with = "depends_on")]
    pub depends_on: BTreeMap<String, Condition>,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    #[serde(default, deserialize_with = "strings")]
    pub profiles: Vec<String>,
    /// How long the service may take to stop after its stop signal.
    #[serde(default, with = "compose_duration")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// How the engine keeps the container's output (a driver and its
    /// options: `json-file` with `max-size` and `max-file` rotates it).
    #[serde(default)]
    pub logging: Option<Logging>,
    /// `deploy:`, of which `replicas` is honoured. Not part of the config
    /// hash: scaling adds or removes containers, it does not recreate the
    /// ones that stay.
    #[serde(default, skip_serializing)]
    pub deploy: Option<Deploy>,
    #[serde(flatten, skip_serializing)]
    pub unsupported: BTreeMap<String, serde_yaml::Value>,
}

impl Service {
    /// How many containers the service runs: `deploy.replicas`, else 1.
    pub fn replicas(&self) -> u32 {
        self.deploy.as_ref().and_then(|d| d.replicas).unwrap_or(1)
    }
}

/// `deploy:`, as compose writes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct Deploy {
    #[serde(default)]
    pub replicas: Option<u32>,
    /// `resources`, `placement`…: Swarm's and Kubernetes' business.
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, serde_yaml::Value>,
}

/// `logging:`, as compose writes it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
pub struct Logging {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "environment")]
    pub options: BTreeMap<String, String>,
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

/// `restart:`, as compose spells it; anything else is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// `on-failure`, or `on-failure:N` with at most N restarts.
    OnFailure {
        max_retries: Option<u32>,
    },
}

impl RestartPolicy {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "no" => Self::No,
            "always" => Self::Always,
            "unless-stopped" => Self::UnlessStopped,
            "on-failure" => Self::OnFailure { max_retries: None },
            other => match other.strip_prefix("on-failure:") {
                Some(n) => Self::OnFailure {
                    max_retries: Some(n.parse().map_err(|_| {
                        format!("restart: bad retry count in {other:?}")
                    })?),
                },
                None => {
                    return Err(format!(
                        "restart: unknown policy {other:?}; compose allows no, always, on-failure[:N] and unless-stopped"
                    ))
                }
            },
        })
    }

    fn text(self) -> String {
        match self {
            Self::No => "no".into(),
            Self::Always => "always".into(),
            Self::UnlessStopped => "unless-stopped".into(),
            Self::OnFailure { max_retries: None } => "on-failure".into(),
            Self::OnFailure {
                max_retries: Some(n),
            } => format!("on-failure:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML 1.1 readers take a bare `no` for false; compose means "no".
        let text = match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Bool(false) => "no".to_string(),
            serde_yaml::Value::String(s) => s,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "restart: expected a policy name, got {other:?}"
                )))
            }
        };
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A short-syntax port: `[ip:]host:container[/proto]` or `container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: String,
}

impl PortMapping {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (spec, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let port = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| format!("bad port {s:?} in {text:?}"))
        };
        let (host_ip, host_port, container) = match parts.as_slice() {
            [c] => (None, None, port(c)?),
            [c, h] => (None, Some(port(h)?), port(c)?),
            [c, h, ip] => (Some(ip.to_string()), Some(port(h)?), port(c)?),
            _ => return Err(format!("bad port mapping {text:?}")),
        };
        Ok(Self {
            host_ip,
            host_port,
            container_port: container,
            protocol: protocol.to_string(),
        })
    }

    /// The engine's key for the container side: `8080/tcp`.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ip) = &self.host_ip {
            write!(f, "{ip}:")?;
        }
        if let Some(host) = self.host_port {
            write!(f, "{host}:")?;
        }
        write!(f, "{}", self.container_port)?;
        if self.protocol != "tcp" {
            write!(f, "/{}", self.protocol)?;
        }
        Ok(())
    }
}

impl Serialize for PortMapping {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `ports:`: short-syntax mappings, strings or bare numbers.
fn port_mappings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortMapping>, D::Error> {
    strings(d)?
        .iter()
        .map(|p| PortMapping::parse(p).map_err(serde::de::Error::custom))
        .collect()
}

/// Compose durations (`1m30s`) as `Option<Duration>`, written back in
/// nanoseconds (`1500000000ns`) so a config hash stays exact.
mod compose_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<serde_yaml::Value>::deserialize(d)? {
            None | Some(serde_yaml::Value::Null) => Ok(None),
            Some(serde_yaml::Value::String(text)) => {
                duration(&text).map(Some).map_err(serde::de::Error::custom)
            }
            Some(other) => Err(serde::de::Error::custom(format!(
                "expected a duration such as 10s or 1m30s, got {other:?}"
            ))),
        }
    }

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&format!("{}ns", d.as_nanos())),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Option<Words>,
    #[serde(default, with = "compose_duration")]
    pub interval: Option<Duration>,
    #[serde(default, with = "compose_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default, with = "compose_duration")]
    pub start_period: Option<Duration>,
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

/// A compose duration (`1m30s`, `2s`, `500ms`, `1h`): the one parser of
/// durations written as compose and Prometheus write them.
pub fn duration(text: &str) -> Result<Duration, String> {
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
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_compose_writes_them() {
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("10").is_err());
        assert!(duration("3 days").is_err());
    }

    #[test]
    fn restart_policies_parse_and_an_unknown_one_is_refused() {
        let service = |restart: &str| {
            serde_yaml::from_str::<Service>(&format!("image: i\nrestart: {restart}\n"))
                .map(|s| s.restart)
                .map_err(|e| e.to_string())
        };
        assert_eq!(service("always"), Ok(Some(RestartPolicy::Always)));
        assert_eq!(service("\"no\""), Ok(Some(RestartPolicy::No)));
        assert_eq!(
            service("on-failure:3"),
            Ok(Some(RestartPolicy::OnFailure {
                max_retries: Some(3)
            }))
        );
        let err = service("sometimes").unwrap_err();
        assert!(err.contains("unknown policy \"sometimes\""), "{err}");
    }

    #[test]
    fn bad_ports_and_durations_are_refused_where_they_are_read() {
        let err = serde_yaml::from_str::<Service>("image: i\nports: [\"x:80\"]\n").unwrap_err();
        assert!(err.to_string().contains("bad port \"x\""), "{err}");
        let err =
            serde_yaml::from_str::<Service>("image: i\nstop_grace_period: soon\n").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        let s: Service =
            serde_yaml::from_str("image: i\nhealthcheck: { interval: 2s, timeout: 1m30s }\n")
                .expect("parses");
        let h = s.healthcheck.expect("healthcheck");
        assert_eq!(
            (h.interval, h.timeout),
            (Some(Duration::from_secs(2)), Some(Duration::from_secs(90)))
        );
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
        let ports: Vec<String> = a.ports.iter().map(ToString::to_string).collect();
        assert_eq!(ports, ["8080", "9090:9090"]);
        let b = &file.services["b"];
        assert_eq!(b.environment["C"], "3");
        assert_eq!(b.environment["E"], "true");
        assert_eq!(b.depends_on["a"], Condition::ServiceHealthy);
        assert_eq!(b.networks, ["front"]);
    }
}
