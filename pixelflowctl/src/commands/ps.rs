//! `pixelflowctl ps`: the project's containers.

use crate::compose::Project;
use crate::docker::Engine;
use crate::printer::Printer;
use crate::stack::status;
use crate::ExitStatus;

/// The services' containers: state, health, ports, URLs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to show (default: all).
    pub services: Vec<String>,
}

pub async fn run(
    engine: &Engine,
    project: &Project,
    args: &Args,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let services = project.select(&args.services)?;
    status::show(engine, project, &services, printer).await?;
    Ok(ExitStatus::Success)
}
