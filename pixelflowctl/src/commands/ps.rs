//! `pixelflowctl ps`: the project's containers.

use super::Context;
use crate::stack::status;
use crate::ExitStatus;

/// The services' containers: state, health, ports, URLs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to show (default: all).
    pub services: Vec<String>,
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
    let services = project.select(&args.services)?;
    status::show(engine, project, &services, printer).await?;
    Ok(ExitStatus::Success)
}
