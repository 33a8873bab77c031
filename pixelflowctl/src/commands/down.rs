//! `pixelflowctl down`: stops the project's containers gracefully, in
//! reverse dependency order, then removes them and the project's networks
//! (and with `-v` its volumes). It touches only what is its own: containers
//! of the services the compose file declares, networks and volumes the file
//! declares, each carrying this project's label.

use super::Context;
use crate::{stack, ExitStatus};

/// Stop and remove the project's containers and networks (volumes with -v).
///
/// Each container gets SIGTERM and its stop_grace_period (default 10 s)
/// before it would be killed, dependents first, so no work in hand is lost.
/// Only what the compose file declares is touched: containers of its
/// services, its networks and volumes, of this project.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the project's named volumes too (their data is lost).
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Act on a project whose containers were made from another folder's
    /// compose file (another checkout with the same project name), and
    /// with -v remove the volumes even though the project's name comes
    /// from the folder's name alone (no COMPOSE_PROJECT_NAME, `.env` or
    /// `name:`), which another checkout in a folder of that name shares.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("down -v would delete the volumes of project {project:?}, a name taken from the folder's name alone, which another checkout in a folder of that name shares; set COMPOSE_PROJECT_NAME (or add it to compose/.env), or pass --force to delete them anyway")]
pub struct FolderNamedVolumes {
    pub project: String,
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
    if args.volumes && project.name_from_folder && !args.force {
        return Err(FolderNamedVolumes {
            project: project.name.clone(),
        }
        .into());
    }
    stack::down(engine, project, args.volumes, args.force, printer).await?;
    Ok(ExitStatus::Success)
}
