//! `pixelflowctl verify`: the command line of [`crate::verify`], and what
//! it is pointed at. On a stack (no `--target`), the components are the
//! compose file's (as `up` reads it) and their addresses the running
//! containers' published ports, else the ports the compose file publishes
//! with the same variables `up` honours; each of them must answer unless
//! the user skips it. With `--target`, only what is named is checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::compose::Project;
use crate::printer::Printer;
use crate::stack::Published;
use crate::verify::plan::{self, Asked, Components};
use crate::verify::{self, spec, Component, CouldNotRun, Hints, Plan};
use crate::ExitStatus;

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
    /// checked. Name a service again for each of its replicas (a scaled
    /// worker): every one is scraped and their series summed.
    #[arg(long, value_parser = crate::parse::target)]
    pub target: Vec<(String, String)>,
    /// Skip the flow: only check the scrapes as they are.
    #[arg(long)]
    pub no_flow: bool,
    /// How long the flow waits for its task to complete.
    #[arg(long, default_value = "60s", value_parser = crate::parse::duration)]
    pub flow_timeout: Duration,
    /// Prometheus' base URL (default: where the stack publishes it).
    #[arg(long, value_parser = crate::parse::base_url)]
    pub prometheus: Option<String>,
    /// Grafana's base URL (default: where the stack publishes it).
    #[arg(long, value_parser = crate::parse::base_url)]
    pub grafana: Option<String>,
    /// Grafana's user.
    #[arg(long, env = "GRAFANA_USER", default_value = "admin")]
    pub grafana_user: String,
    /// Grafana's password (its value never shows: not in this help, not in
    /// a report).
    #[arg(
        long,
        env = "GRAFANA_PASSWORD",
        hide_env_values = true,
        default_value = "admin",
        value_parser = crate::parse::secret
    )]
    pub grafana_password: crate::parse::Secret,
    /// Jaeger's base URL, its query API and UI (default: where the stack
    /// publishes it, port 16686).
    #[arg(long, value_parser = crate::parse::base_url)]
    pub jaeger: Option<String>,
    /// How long Jaeger may take to hold the flow's whole trace (the
    /// services export in batches, every 5 s unless OTEL_BSP_SCHEDULE_DELAY
    /// says otherwise).
    #[arg(long, default_value = "30s", value_parser = crate::parse::duration)]
    pub trace_timeout: Duration,
    /// The dashboards whose queries and provisioning to check (default:
    /// the project's dashboards/, beside compose/, from any folder).
    #[arg(long)]
    pub dashboards: Option<PathBuf>,
    /// Accept that a component is not checked (repeatable), e.g. `--skip
    /// grafana --skip jaeger` on a stack brought up without them. Without it, a component
    /// of the stack that does not answer fails.
    #[arg(long, value_enum, value_name = "COMPONENT")]
    pub skip: Vec<Component>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

pub async fn run(args: Args, file: Option<&Path>, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let spec = read_spec(args.spec.as_deref())?;
    let plan = plan(args, file, spec, printer).await?;
    let verdict = verify::run(plan, printer).await?;
    Ok(if verdict.all_passed() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// `--spec FILE`, else the embedded verify.toml.
fn read_spec(path: Option<&Path>) -> Result<spec::Spec, CouldNotRun> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CouldNotRun(format!("cannot read {}: {e}", path.display())))?,
        None => spec::EMBEDDED.to_string(),
    };
    spec::Spec::parse(&text).map_err(|e| CouldNotRun(format!("the spec is invalid: {e}")))
}

/// What this run looks at. On the stack the compose file describes it;
/// with --target it is read when named with --file, or for what a named
/// Prometheus or Grafana is checked against (the dashboards, the
/// Prometheus configuration), so scrape-only runs need none.
async fn plan(
    args: Args,
    file: Option<&Path>,
    spec: spec::Spec,
    printer: &Printer,
) -> anyhow::Result<Plan> {
    let on_stack = args.target.is_empty();
    let named_component =
        args.prometheus.is_some() || args.grafana.is_some() || args.jaeger.is_some();
    let project = if on_stack || file.is_some() || named_component {
        Project::discover(file)?
    } else {
        None
    };
    let asked = Asked {
        skip: args.skip,
        prometheus: args.prometheus,
        grafana: args.grafana,
        jaeger: args.jaeger,
        dashboards: args.dashboards,
        grafana_user: args.grafana_user,
        grafana_password: args.grafana_password,
    };
    let (targets, components, hints) = if on_stack {
        let project = project.as_ref().ok_or_else(|| {
            CouldNotRun(
                "no compose/docker-compose.yml here or in a parent folder: pass --file, or name the services with --target".into(),
            )
        })?;
        let published = Published::find(project).await;
        if !published.engine_answered() {
            printer.status(
                "verify: Docker is not reachable; using the ports the compose file publishes",
            );
        }
        let hints = Hints {
            services: plan::scrape_hints(project, &published, &spec),
            components: plan::component_hints(project, &published, &asked),
        };
        let targets = plan::stack_targets(project, &published, &spec)?;
        (targets, asked.on_stack(project, &published), hints)
    } else {
        let targets = plan::named_targets(args.target);
        (targets, asked.named(project.as_ref()), Hints::default())
    };
    let Components {
        prometheus,
        dashboards,
        grafana,
        jaeger,
    } = components;
    // What the project's Prometheus configuration promises: the scrape
    // timeout every service is held to, and what a Prometheus checked must
    // run with. Without a project, what README promises (a 15 s scrape
    // interval, Prometheus' default 10 s timeout).
    // A project without them is held to the defaults unless its
    // Prometheus is checked, which needs them.
    let promised = match project
        .as_ref()
        .map(|p| verify::Promised::from_dir(&p.dir.join("prometheus")))
    {
        Some(Ok(promised)) => promised,
        Some(Err(e)) if prometheus.is_checked() => return Err(CouldNotRun(e).into()),
        Some(Err(_)) | None => verify::Promised::default(),
    };
    Ok(Plan {
        spec,
        targets,
        flow: (!args.no_flow).then_some(args.flow_timeout),
        prometheus,
        promised,
        dashboards,
        grafana,
        jaeger,
        trace_timeout: args.trace_timeout,
        junit: args.junit,
        hints,
    })
}
