//! `pixelflowctl verify`: the command line of [`crate::verify`].

use std::path::PathBuf;
use std::time::Duration;

use crate::printer::Printer;
use crate::{verify, ExitStatus};

/// Check that the observability works: metrics, a real flow, Prometheus,
/// dashboards, Grafana.
///
/// Checks every service's metrics against typed expectations, runs a real
/// register/login/upload/process flow and checks each counter moved by what
/// it did, then checks Prometheus, the dashboards and Grafana. Works on the
/// Docker stack and on services run as processes.
///
/// Exit codes: 0 all passed, 1 a check failed, 2 verify could not run (a
/// target did not answer).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Expectations file (TOML); default: the embedded verify.toml.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where a service's metrics are: SERVICE=URL (repeatable), e.g.
    /// auth=http://127.0.0.1:50051/metrics.
    #[arg(long, value_parser = verify::parse_target)]
    pub target: Vec<(String, String)>,
    /// Skip the flow: only check the scrapes as they are.
    #[arg(long)]
    pub no_flow: bool,
    /// How long the flow waits for its task to complete.
    #[arg(long, default_value = "60s", value_parser = crate::cli::parse_duration)]
    pub flow_timeout: Duration,
    /// Prometheus' base URL (skipped, visibly, when not reachable).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub prometheus: String,
    /// Grafana's base URL (skipped, visibly, when not reachable).
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    pub grafana: String,
    /// The dashboards whose panel queries to check.
    #[arg(long, default_value = "dashboards")]
    pub dashboards: PathBuf,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

pub async fn run(args: Args, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let options = verify::Options {
        spec: args.spec,
        targets: args.target,
        flow: !args.no_flow,
        flow_timeout: args.flow_timeout,
        prometheus: args.prometheus.trim_end_matches('/').to_string(),
        grafana: args.grafana.trim_end_matches('/').to_string(),
        dashboards: args.dashboards,
        junit: args.junit,
    };
    Ok(if verify::run(options, printer).await? {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
