//! What one verify run will look at, decided before anything is asked: the
//! services' metrics URLs, whether the flow runs, and for each further
//! component where it is, that the user skipped it, or why it is not part
//! of this run. The stages only carry the plan out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::grafana::Grafana;
use super::prometheus::Promised;
use super::spec::Spec;
use super::CouldNotRun;
use crate::compose::Project;
use crate::stack::Published;

/// The components verify checks besides the services: the one name for
/// their rows, their hints and `--skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Component {
    Prometheus,
    Dashboards,
    Grafana,
    Jaeger,
}

impl Component {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Prometheus => "prometheus",
            Self::Dashboards => "dashboards",
            Self::Grafana => "grafana",
            Self::Jaeger => "jaeger",
        }
    }

    /// The compose service that serves it and the port it listens on in
    /// its container; the dashboards are files, queried in Prometheus.
    pub fn served_at(self) -> Option<(&'static str, u16)> {
        match self {
            Self::Prometheus => Some(("prometheus", 9090)),
            Self::Grafana => Some(("grafana", 3001)),
            Self::Jaeger => Some(("jaeger", 16686)),
            Self::Dashboards => None,
        }
    }

    /// The flag that names it with `--target`.
    fn flag(self) -> &'static str {
        match self {
            Self::Prometheus => "--prometheus URL",
            Self::Grafana => "--grafana URL",
            Self::Jaeger => "--jaeger URL",
            Self::Dashboards => "--prometheus or --grafana",
        }
    }
}

/// Whether a component is checked, and where, or why not.
#[derive(Debug, Clone)]
pub enum Checked<T> {
    Check(T),
    /// The user asked to skip it.
    Skipped(Component),
    /// Not part of this run (the text says why): a stack without it, or
    /// `--target` naming only services.
    Absent(String),
}

impl<T> Checked<T> {
    pub fn is_checked(&self) -> bool {
        matches!(self, Checked::Check(_))
    }

    /// Why it is not checked, for its one row; `None` when it is.
    pub fn not_checked(&self) -> Option<String> {
        match self {
            Checked::Check(_) => None,
            Checked::Skipped(c) => Some(format!("skipped: --skip {}", c.name())),
            Checked::Absent(why) => Some(why.clone()),
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Checked<U> {
        match self {
            Checked::Check(t) => Checked::Check(f(t)),
            Checked::Skipped(c) => Checked::Skipped(c),
            Checked::Absent(why) => Checked::Absent(why),
        }
    }
}

/// What to do about a container that is not running, added to the rows
/// that fail because of it.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// For a service whose scrape fails.
    pub services: BTreeMap<String, String>,
    /// For a component's failing rows.
    pub components: BTreeMap<Component, String>,
}

/// One run of verify, decided.
pub struct Plan {
    pub spec: Spec,
    /// Each service's metrics URL: all of the spec's on a stack, the named
    /// ones with `--target`.
    pub targets: BTreeMap<String, String>,
    /// How long the flow waits for its task; `None` with `--no-flow`.
    pub flow: Option<Duration>,
    pub prometheus: Checked<String>,
    /// What the project's Prometheus configuration promises.
    pub promised: Promised,
    pub dashboards: Checked<PathBuf>,
    pub grafana: Checked<Grafana>,
    pub jaeger: Checked<String>,
    /// How long Jaeger may take to hold the flow's whole trace.
    pub trace_timeout: Duration,
    pub junit: Option<PathBuf>,
    pub hints: Hints,
}

/// What the user asked for, as the plan needs it.
pub struct Asked {
    pub skip: Vec<Component>,
    pub prometheus: Option<String>,
    pub grafana: Option<String>,
    pub jaeger: Option<String>,
    pub dashboards: Option<PathBuf>,
    pub grafana_user: String,
    pub grafana_password: crate::parse::Secret,
}

/// Where each component is, by component.
pub struct Components {
    pub prometheus: Checked<String>,
    pub dashboards: Checked<PathBuf>,
    pub grafana: Checked<Grafana>,
    pub jaeger: Checked<String>,
}

impl Asked {
    fn given(&self, component: Component) -> Option<String> {
        match component {
            Component::Prometheus => self.prometheus.clone(),
            Component::Grafana => self.grafana.clone(),
            Component::Jaeger => self.jaeger.clone(),
            Component::Dashboards => None,
        }
        .map(|url| url.trim_end_matches('/').to_string())
    }

    /// The component's place unless skipped: `place` decides where it is.
    fn choose<T>(&self, component: Component, place: impl FnOnce() -> Checked<T>) -> Checked<T> {
        if self.skip.contains(&component) {
            Checked::Skipped(component)
        } else {
            place()
        }
    }

    fn grafana_at(&self, url: String) -> Grafana {
        Grafana {
            url,
            user: self.grafana_user.clone(),
            password: self.grafana_password.clone(),
        }
    }

    /// On the stack: every component the compose file declares, at the
    /// port its container publishes (a URL given replaces it).
    pub fn on_stack(&self, project: &Project, published: &Published) -> Components {
        let at = |component: Component| {
            self.choose(component, || {
                if let Some(url) = self.given(component) {
                    return Checked::Check(url);
                }
                let Some((service, port)) = component.served_at() else {
                    return Checked::Absent("not served by a container".into());
                };
                if !project.services.contains_key(service) {
                    return Checked::Absent(format!(
                        "not in the stack ({})",
                        project.file.display()
                    ));
                }
                match published.port(project, service, port) {
                    Some(p) => Checked::Check(format!("http://127.0.0.1:{p}")),
                    None => Checked::Absent(format!("{service} publishes no port for {port}")),
                }
            })
        };
        Components {
            prometheus: at(Component::Prometheus),
            grafana: at(Component::Grafana).map(|url| self.grafana_at(url)),
            jaeger: at(Component::Jaeger),
            dashboards: self.choose(Component::Dashboards, || {
                Checked::Check(self.dashboards_dir(Some(project)))
            }),
        }
    }

    /// With `--target`: only the components whose URL was given, and the
    /// dashboards with Prometheus or Grafana, which use them.
    pub fn named(&self, project: Option<&Project>) -> Components {
        let at = |component: Component| {
            self.choose(component, || match self.given(component) {
                Some(url) => Checked::Check(url),
                None => not_named(component),
            })
        };
        Components {
            prometheus: at(Component::Prometheus),
            grafana: at(Component::Grafana).map(|url| self.grafana_at(url)),
            jaeger: at(Component::Jaeger),
            dashboards: self.choose(Component::Dashboards, || {
                if self.prometheus.is_none() && self.grafana.is_none() {
                    not_named(Component::Dashboards)
                } else {
                    Checked::Check(self.dashboards_dir(project))
                }
            }),
        }
    }

    /// `--dashboards`, else the project's dashboards/ beside compose/, else
    /// dashboards/ here.
    fn dashboards_dir(&self, project: Option<&Project>) -> PathBuf {
        self.dashboards.clone().unwrap_or_else(|| match project {
            Some(p) => p.dir.join("..").join("dashboards"),
            None => PathBuf::from("dashboards"),
        })
    }
}

/// A component `--target` mode leaves out because it was not named.
fn not_named<T>(component: Component) -> Checked<T> {
    Checked::Absent(format!(
        "not named: with --target, pass {} to check it",
        component.flag()
    ))
}

/// Each spec service's metrics URL on the stack: the spec's port is the
/// container's, its path the scrape path.
/// `--target SERVICE=URL` as given: a service named more than once is one
/// with replicas (a scaled worker), each URL scraped and summed.
pub fn named_targets(named: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut targets = BTreeMap::new();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (service, url) in named {
        let number = seen.entry(service.clone()).or_insert(0);
        *number += 1;
        targets.insert(
            pixelflow_verify::scrape::replica_key(&service, *number),
            url,
        );
    }
    targets
}

pub fn stack_targets(
    project: &Project,
    published: &Published,
    spec: &Spec,
) -> Result<BTreeMap<String, String>, CouldNotRun> {
    let mut targets = BTreeMap::new();
    for (service, s) in &spec.services {
        let url = reqwest::Url::parse(&s.url)
            .map_err(|e| CouldNotRun(format!("spec url {}: {e}", s.url)))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let host_port = published.port(project, service, port).ok_or_else(|| {
            CouldNotRun(format!(
                "{service} publishes no port for {port} in {}; name its URL with --target {service}=URL",
                project.file.display()
            ))
        })?;
        targets.insert(
            service.clone(),
            format!("http://127.0.0.1:{host_port}{}", url.path()),
        );
        // A scaled service: every replica is scraped, and its series are
        // summed with the others' (a flow's task goes to one of them).
        for (number, port) in published.further_replicas(service, port) {
            targets.insert(
                pixelflow_verify::scrape::replica_key(service, number),
                format!("http://127.0.0.1:{port}{}", url.path()),
            );
        }
    }
    Ok(targets)
}

/// For each spec service without a running container, what its failed
/// scrape adds: bring the stack up, or start only the services that are
/// down when the rest of it runs (a plain `up` would also try what was
/// left out on purpose).
pub fn scrape_hints(
    project: &Project,
    published: &Published,
    spec: &Spec,
) -> BTreeMap<String, String> {
    let down: Vec<&str> = spec
        .services
        .keys()
        .map(String::as_str)
        .filter(|service| published.not_running(service))
        .collect();
    let way = if published.any_running() {
        format!("start it (pixelflowctl up {})", down.join(" "))
    } else {
        "bring the stack up first (pixelflowctl up)".to_string()
    };
    down.into_iter()
        .map(|service| {
            (
                service.to_string(),
                format!(
                    "no {service} container is running in project {}: {way}",
                    project.name
                ),
            )
        })
        .collect()
}

/// For each component whose container is not running (and whose URL was
/// not given), how to leave it out; the dashboards go with Prometheus.
pub fn component_hints(
    project: &Project,
    published: &Published,
    asked: &Asked,
) -> BTreeMap<Component, String> {
    let mut hints = BTreeMap::new();
    for component in [Component::Prometheus, Component::Grafana, Component::Jaeger] {
        let Some((service, _)) = component.served_at() else {
            continue;
        };
        if asked.given(component).is_none()
            && project.services.contains_key(service)
            && published.not_running(service)
        {
            hints.insert(
                component,
                format!("no {service} container is running (up --without {service}?): --skip {service} leaves it out"),
            );
        }
    }
    if hints.contains_key(&Component::Prometheus) {
        hints.insert(
            Component::Dashboards,
            "their queries run in Prometheus, whose container is not running: --skip prometheus --skip dashboards leaves both out".to_string(),
        );
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(skip: &[Component]) -> Asked {
        Asked {
            skip: skip.to_vec(),
            prometheus: Some("http://p:9090/".into()),
            grafana: None,
            jaeger: None,
            dashboards: None,
            grafana_user: "admin".into(),
            grafana_password: "secret".into(),
        }
    }

    #[test]
    fn with_targets_only_what_is_named_is_checked_and_a_skip_wins() {
        let components = asked(&[]).named(None);
        assert!(matches!(&components.prometheus, Checked::Check(url) if url == "http://p:9090"));
        assert!(
            components.dashboards.is_checked(),
            "they go with Prometheus"
        );
        assert_eq!(
            components.grafana.not_checked().as_deref(),
            Some("not named: with --target, pass --grafana URL to check it")
        );
        let skipped = asked(&[Component::Prometheus]).named(None);
        assert_eq!(
            skipped.prometheus.not_checked().as_deref(),
            Some("skipped: --skip prometheus")
        );
    }

    #[test]
    fn every_component_has_one_name_for_rows_hints_and_skip() {
        use clap::ValueEnum;
        for component in Component::value_variants() {
            let flag = component
                .to_possible_value()
                .map(|v| v.get_name().to_string());
            assert_eq!(flag.as_deref(), Some(component.name()));
        }
    }
}
