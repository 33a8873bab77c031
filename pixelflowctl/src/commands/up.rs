//! `pixelflowctl up`: images, network, volumes, then containers in
//! dependency order, each service starting as soon as what it depends on
//! is started or healthy (as its `depends_on` condition says), independent
//! services side by side. Containers whose config hash has not changed are
//! left alone; a changed one is stopped gracefully before it is replaced.

use std::time::{Duration, Instant};

use super::Context;
use crate::stack::{converge, status};
use crate::{images, ExitStatus};

/// Build or pull what is missing, then start the stack and wait until it is
/// healthy.
///
/// Creates the network, volumes and containers, starts each service once
/// what it depends on is started or healthy (as its `depends_on` condition
/// says) and waits until each is healthy. Unchanged containers are left
/// alone; changed ones are stopped gracefully (SIGTERM, their
/// stop_grace_period) and replaced. An image is rebuilt when what it is
/// built from changed.
///
/// Services with `profiles:` start only when one of their profiles is
/// listed in COMPOSE_PROFILES, or when named.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to bring up, with what they depend on (default: all).
    pub services: Vec<String>,
    /// Leave these services out (repeatable), e.g. `--without grafana
    /// --without jaeger` where their images cannot be had. Services that
    /// depend on one are left out too; the services run without Jaeger
    /// (their spans are dropped, reported once in each one's log).
    #[arg(long, value_name = "SERVICE")]
    pub without: Vec<String>,
    /// How long to wait for each service to become healthy (builds and
    /// pulls do not count).
    #[arg(long, default_value = "180s", value_parser = crate::parse::duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub source: images::SourceArgs,
    /// Build the services' images even when what they are built from has
    /// not changed (without it, an edited source is rebuilt and an
    /// unchanged one is not).
    #[arg(long)]
    pub build: bool,
    /// Recreate containers of this project even when another folder's
    /// compose file made them (another checkout with the same project
    /// name): without it, up refuses and names that folder.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
    let started = Instant::now();
    let wanted = converge::wanted(project, &args.services, &args.without, printer);
    let options = args.source.options(project, args.build, printer);
    converge::converge(
        engine,
        project,
        &wanted,
        &options,
        args.timeout,
        args.force,
        printer,
    )
    .await?;
    printer.status(format!("up in {:.1}s", started.elapsed().as_secs_f64()));
    status::show(engine, project, &wanted, printer).await?;
    Ok(ExitStatus::Success)
}
