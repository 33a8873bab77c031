//! `pixelflowctl restart`: a graceful restart through the API (SIGTERM,
//! the service's stop_grace_period, then start), returning once healthy.

use std::time::{Duration, Instant};

use super::Context;
use crate::{health, stack, ExitStatus};

/// Restart services gracefully and wait until each is healthy again.
///
/// Each gets SIGTERM and its stop_grace_period (default 10 s) to finish its
/// work (a worker its task, api its outbox) before it would be killed. A
/// scaled service's replicas restart one after another, each healthy
/// before the next stops, so the service keeps serving.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to restart.
    #[arg(required = true)]
    pub services: Vec<String>,
    /// How long to wait for each service to become healthy.
    #[arg(long, default_value = "180s", value_parser = crate::parse::duration)]
    pub timeout: Duration,
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
    let services = project.select(&args.services)?;
    for name in &services {
        let found = stack::containers_of(engine, project, name).await?;
        let replicas = found.len();
        for container in found {
            let label = stack::replica_label(name, container.number, replicas);
            let started = Instant::now();
            let bar = printer.spinner(format!("{label}: restarting"));
            let result = async {
                engine
                    .restart(
                        &container.name,
                        stack::grace_period(&project.services[name]),
                    )
                    .await?;
                health::wait(
                    engine,
                    name,
                    &project.services[name],
                    &container.name,
                    args.timeout,
                )
                .await
            }
            .await;
            bar.finish_and_clear();
            result?;
            printer.out(format!(
                "{label} restarted and healthy in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(ExitStatus::Success)
}
