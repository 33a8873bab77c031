//! `pixelflowctl verify`: the command line of [`crate::verify`], and what
//! it is pointed at. On a stack (no `--target`), the components are the
//! compose file's (as `up` reads it) and their addresses the running
//! containers' published ports, else the ports the compose file publishes
//! with the same variables `up` honours; each of them must answer unless
//! the user skips it. With `--target`, only what is named is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::compose::{PortMapping, Project};
use crate::docker::Engine;
use crate::printer::Printer;
use crate::verify::{self, spec, Component, CouldNotRun, Grafana};
use crate::{stack, ExitStatus};

/// Check that the observability works: metrics, a real flow, Prometheus,
/// dashboards, Grafana, Jaeger.
///
/// Checks every service's metrics against typed expectations, runs a real
/// register/login/upload/process flow and checks each counter moved by
/// exactly what it did, then checks Prometheus, the dashboards' queries,
/// Grafana, and that Jaeger holds the flow's trace (by the id api answered
/// the upload with) with spans from api, auth and worker in one tree.
/// Before the flow, it waits (at most one scrape interval) until
/// Prometheus has scraped every target once: the dashboards' rates see the
/// flow only against a sample from before it.
///
/// On the Docker stack (the default), every component the compose file
/// declares is checked at the port its container publishes; one that does
/// not answer fails, unless skipped with --skip. With --target (services
/// run as processes), only the named services, and Prometheus, Grafana or
/// Jaeger when their URL is given, are checked.
///
/// Exit codes: 0 all passed, 1 a check failed, 2 verify could not run (a
/// service did not answer its scrape, a bad spec).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Expectations file (TOML); default: the embedded pixelflowctl/verify-core/verify.toml.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where a service's metrics are: SERVICE=URL (repeatable), e.g.
    /// auth=http://127.0.0.1:50051/metrics. Only the named services are
    /// checked.
    #[arg(long, value_parser = verify::parse_target)]
    pub target: Vec<(String, String)>,
    /// Skip the flow: only check the scrapes as they are.
    #[arg(long)]
    pub no_flow: bool,
    /// How long the flow waits for its task to complete.
    #[arg(long, default_value = "60s", value_parser = crate::cli::parse_duration)]
    pub flow_timeout: Duration,
    /// Prometheus' base URL (default: where the stack publishes it).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Grafana's base URL (default: where the stack publishes it).
    #[arg(long)]
    pub grafana: Option<String>,
    /// Grafana's user.
    #[arg(long, env = "GRAFANA_USER", default_value = "admin")]
    pub grafana_user: String,
    /// Grafana's password.
    #[arg(long, env = "GRAFANA_PASSWORD", default_value = "admin")]
    pub grafana_password: String,
    /// Jaeger's base URL, its query API and UI (default: where the stack
    /// publishes it, port 16686).
    #[arg(long)]
    pub jaeger: Option<String>,
    /// How long Jaeger may take to hold the flow's whole trace (the
    /// services export in batches, every 5 s unless OTEL_BSP_SCHEDULE_DELAY
    /// says otherwise).
    #[arg(long, default_value = "30s", value_parser = crate::cli::parse_duration)]
    pub trace_timeout: Duration,
    /// The dashboards whose queries and provisioning to check (default:
    /// the project's dashboards/, beside compose/, from any folder).
    #[arg(long)]
    pub dashboards: Option<PathBuf>,
    /// Accept that a component is not checked (repeatable), e.g. `--skip
    /// grafana --skip jaeger` on a stack brought up without them. Without it, a component
    /// of the stack that does not answer fails.
    #[arg(long, value_enum, value_name = "COMPONENT")]
    pub skip: Vec<Skippable>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// The components besides the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Skippable {
    Prometheus,
    Dashboards,
    Grafana,
    Jaeger,
}

/// `file` (or compose/docker-compose.yml found from the current folder up,
/// else from the binary's folder up) as a project, if there is one.
pub(crate) fn project(file: Option<&Path>) -> anyhow::Result<Option<Project>> {
    if let Some(file) = file {
        return Ok(Some(Project::load(file)?));
    }
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let found = [cwd, exe]
        .into_iter()
        .flatten()
        .find_map(|start| crate::find_compose_file(&start));
    Ok(match found {
        Some(file) => Some(Project::load(&file)?),
        None => None,
    })
}

pub async fn run(args: Args, file: Option<&Path>, printer: &Printer) -> anyhow::Result<ExitStatus> {
    // The compose file describes the stack; with --target it is read only
    // for what a named Prometheus or Grafana is checked against (the
    // dashboards, the Prometheus configuration): scrape-only runs skip it.
    let project = if args.target.is_empty()
        || args.prometheus.is_some()
        || args.grafana.is_some()
        || args.jaeger.is_some()
    {
        project(file)?
    } else {
        None
    };
    let spec_text = match &args.spec {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CouldNotRun(format!("cannot read {}: {e}", path.display())))?,
        None => spec::EMBEDDED.to_string(),
    };
    let parsed = spec::Spec::parse(&spec_text)
        .map_err(|e| CouldNotRun(format!("the spec is invalid: {e}")))?;
    let skipped = |component: Skippable| {
        args.skip
            .contains(&component)
            .then(|| format!("skipped: --skip {}", name(component)))
    };
    let dashboards_dir = args.dashboards.clone().or_else(|| {
        project
            .as_ref()
            .map(|p| p.dir.join("..").join("dashboards"))
    });
    let grafana = |url: String| Grafana {
        url: url.trim_end_matches('/').to_string(),
        user: args.grafana_user.clone(),
        password: args.grafana_password.clone(),
    };

    let (targets, prometheus, dashboards, grafana, jaeger, hints) = if args.target.is_empty() {
        let project = project.as_ref().ok_or_else(|| {
            CouldNotRun(
                "no compose/docker-compose.yml here or in a parent folder: pass --file, or name the services with --target".into(),
            )
        })?;
        let published = Published::find(project, "verify", printer).await;
        let targets = published.targets(project, &parsed)?;
        let component = |service: &str, port: u16, given: &Option<String>| {
            if let Some(url) = given {
                return Component::Check(url.trim_end_matches('/').to_string());
            }
            if !project.services.contains_key(service) {
                return Component::Absent(format!("not in the stack ({})", project.file.display()));
            }
            match published.port(project, service, port) {
                Some(p) => Component::Check(format!("http://127.0.0.1:{p}")),
                None => Component::Absent(format!("{service} publishes no port for {port}")),
            }
        };
        let prometheus = skipped(Skippable::Prometheus)
            .map(Component::Skipped)
            .unwrap_or_else(|| component("prometheus", 9090, &args.prometheus));
        let grafana = skipped(Skippable::Grafana)
            .map(Component::Skipped)
            .unwrap_or_else(|| match component("grafana", 3001, &args.grafana) {
                Component::Check(url) => Component::Check(grafana(url)),
                Component::Skipped(w) => Component::Skipped(w),
                Component::Absent(w) => Component::Absent(w),
            });
        let dashboards = match (skipped(Skippable::Dashboards), dashboards_dir) {
            (Some(why), _) => Component::Skipped(why),
            (None, Some(dir)) => Component::Check(dir),
            (None, None) => Component::Absent("no dashboards folder".into()),
        };
        let jaeger = skipped(Skippable::Jaeger)
            .map(Component::Skipped)
            .unwrap_or_else(|| component("jaeger", 16686, &args.jaeger));
        // A component whose container is not running fails like any other
        // that does not answer; its rows say how to leave it out.
        let mut hints = published.scrape_hints(project, &parsed);
        for (service, given) in [
            ("prometheus", &args.prometheus),
            ("grafana", &args.grafana),
            ("jaeger", &args.jaeger),
        ] {
            if given.is_none()
                && project.services.contains_key(service)
                && published.not_running(service)
            {
                hints.insert(
                    service.to_string(),
                    format!("no {service} container is running (up --without {service}?): --skip {service} leaves it out"),
                );
            }
        }
        if hints.contains_key("prometheus") {
            hints.insert(
                "dashboards".to_string(),
                "their queries run in Prometheus, whose container is not running: --skip prometheus --skip dashboards leaves both out".to_string(),
            );
        }
        (targets, prometheus, dashboards, grafana, jaeger, hints)
    } else {
        let prometheus = match (skipped(Skippable::Prometheus), &args.prometheus) {
            (Some(why), _) => Component::Skipped(why),
            (None, Some(url)) => Component::Check(url.trim_end_matches('/').to_string()),
            (None, None) => not_named("--prometheus URL"),
        };
        let grafana = match (skipped(Skippable::Grafana), &args.grafana) {
            (Some(why), _) => Component::Skipped(why),
            (None, Some(url)) => Component::Check(grafana(url.clone())),
            (None, None) => not_named("--grafana URL"),
        };
        // The dashboards go with Prometheus or Grafana, which use them.
        let dashboards = match (skipped(Skippable::Dashboards), dashboards_dir) {
            (Some(why), _) => Component::Skipped(why),
            (None, _) if args.prometheus.is_none() && args.grafana.is_none() => {
                not_named("--prometheus or --grafana")
            }
            (None, Some(dir)) => Component::Check(dir),
            (None, None) => Component::Check(PathBuf::from("dashboards")),
        };
        let jaeger = match (skipped(Skippable::Jaeger), &args.jaeger) {
            (Some(why), _) => Component::Skipped(why),
            (None, Some(url)) => Component::Check(url.trim_end_matches('/').to_string()),
            (None, None) => not_named("--jaeger URL"),
        };
        let targets = args.target.iter().cloned().collect();
        (
            targets,
            prometheus,
            dashboards,
            grafana,
            jaeger,
            BTreeMap::new(),
        )
    };
    // What the project's Prometheus configuration promises (read only when
    // Prometheus is checked); without a project, what README promises (a
    // 15 s scrape interval).
    let promised = match (&prometheus, &project) {
        (Component::Check(_), Some(p)) => {
            verify::Promised::from_dir(&p.dir.join("prometheus")).map_err(CouldNotRun)?
        }
        _ => verify::Promised::default(),
    };
    let options = verify::Options {
        spec: parsed,
        targets,
        flow: !args.no_flow,
        flow_timeout: args.flow_timeout,
        prometheus,
        promised,
        dashboards,
        grafana,
        jaeger,
        trace_timeout: args.trace_timeout,
        junit: args.junit,
        hints,
    };
    Ok(if verify::run(options, printer).await? {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// A component `--target` mode leaves out because it was not named.
fn not_named<T>(flag: &str) -> Component<T> {
    Component::Absent(format!("not named: with --target, pass {flag} to check it"))
}

fn name(component: Skippable) -> &'static str {
    match component {
        Skippable::Prometheus => "prometheus",
        Skippable::Dashboards => "dashboards",
        Skippable::Grafana => "grafana",
        Skippable::Jaeger => "jaeger",
    }
}

/// The host ports the project's running containers publish, by service and
/// container port.
pub(crate) struct Published {
    ports: BTreeMap<(String, u16), u16>,
    /// The services with a running container, when the engine said.
    running: Option<BTreeSet<String>>,
}

impl Published {
    /// Each spec service's metrics URL on the stack: the spec's port is the
    /// container's, its path the scrape path.
    pub(crate) fn targets(
        &self,
        project: &Project,
        spec: &spec::Spec,
    ) -> Result<BTreeMap<String, String>, CouldNotRun> {
        let mut targets = BTreeMap::new();
        for (service, s) in &spec.services {
            let url = reqwest::Url::parse(&s.url)
                .map_err(|e| CouldNotRun(format!("spec url {}: {e}", s.url)))?;
            let port = url.port_or_known_default().unwrap_or(80);
            let host_port = self.port(project, service, port).ok_or_else(|| {
                CouldNotRun(format!(
                    "{service} publishes no port for {port} in {}; name its URL with --target {service}=URL",
                    project.file.display()
                ))
            })?;
            targets.insert(
                service.clone(),
                format!("http://127.0.0.1:{host_port}{}", url.path()),
            );
        }
        Ok(targets)
    }

    /// What the engine says of `project`'s containers. Without an engine,
    /// nothing: the compose file's ports stand in, and `command` says so.
    pub(crate) async fn find(project: &Project, command: &str, printer: &Printer) -> Self {
        let mut ports = BTreeMap::new();
        let mut running = None;
        let engine = Engine::connect().await.ok();
        if engine.is_none() {
            printer.status(format!(
                "{command}: Docker is not reachable; using the ports the compose file publishes"
            ));
        }
        if let Some(engine) = &engine {
            if let Ok(containers) = stack::containers(engine, project).await {
                let mut names = BTreeSet::new();
                for (service, found) in containers {
                    for f in found.iter().filter(|f| f.state == "running") {
                        names.insert(service.clone());
                        for p in &f.ports {
                            if let Some(public) = p.public_port {
                                ports.insert((service.clone(), p.private_port), public);
                            }
                        }
                    }
                }
                running = Some(names);
            }
        }
        Self { ports, running }
    }

    /// Whether the engine said `service` has no running container.
    fn not_running(&self, service: &str) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| !running.contains(service))
    }

    /// For each of the spec's services without a running container, what
    /// its failed scrape adds: bring the stack up, or only the services
    /// that are down when the rest of it runs (a plain `up` would also try
    /// what was left out on purpose).
    pub(crate) fn scrape_hints(
        &self,
        project: &Project,
        spec: &spec::Spec,
    ) -> BTreeMap<String, String> {
        let down: Vec<&String> = spec
            .services
            .keys()
            .filter(|service| self.not_running(service))
            .collect();
        let stack_runs = self.running.as_ref().is_some_and(|r| !r.is_empty());
        let way = if stack_runs {
            let names: Vec<&str> = down.iter().map(|s| s.as_str()).collect();
            format!("start it (pixelflowctl up {})", names.join(" "))
        } else {
            "bring the stack up first (pixelflowctl up)".to_string()
        };
        down.into_iter()
            .map(|service| {
                (
                    service.clone(),
                    format!(
                        "no {service} container is running in project {}: {way}",
                        project.name
                    ),
                )
            })
            .collect()
    }

    /// The host port for `container_port` of `service`: the running
    /// container's, else what the compose file publishes.
    fn port(&self, project: &Project, service: &str, container_port: u16) -> Option<u16> {
        self.ports
            .get(&(service.to_string(), container_port))
            .copied()
            .or_else(|| {
                project.services.get(service)?.ports.iter().find_map(|p| {
                    let p = PortMapping::parse(p).ok()?;
                    (p.container_port == container_port)
                        .then_some(p.host_port)
                        .flatten()
                })
            })
    }
}
