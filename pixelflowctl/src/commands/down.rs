//! `pixelflowctl down`: stops the project's containers gracefully, in
//! reverse dependency order, then removes them and the project's networks
//! (and with `-v` its volumes). It touches only what is its own: containers
//! of the services the compose file declares, networks and volumes the file
//! declares, each carrying this project's label.

use futures::future::join_all;

use crate::compose::{start_order, Project};
use crate::docker::Engine;
use crate::printer::Printer;
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
    /// With -v, remove the volumes even though the project's name comes
    /// from the folder's name alone (no COMPOSE_PROJECT_NAME, `.env` or
    /// `name:`), which another checkout in a folder of that name shares.
    #[arg(long, requires = "volumes")]
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("down -v would delete the volumes of project {project:?}, a name taken from the folder's name alone, which another checkout in a folder of that name shares; set COMPOSE_PROJECT_NAME (or add it to compose/.env), or pass --force to delete them anyway")]
pub struct FolderNamedVolumes {
    pub project: String,
}

pub async fn run(
    engine: &Engine,
    project: &Project,
    args: &Args,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    if args.volumes && project.name_from_folder && !args.force {
        return Err(FolderNamedVolumes {
            project: project.name.clone(),
        }
        .into());
    }
    let containers = stack::containers(engine, project).await?;
    // Dependents first: api stops (draining its outbox) before the broker
    // and the database it drains into.
    let mut levels = start_order(&project.services)?;
    levels.reverse();
    for level in levels {
        let stops = level.iter().flat_map(|service| {
            let grace = stack::grace_period(&project.services[service]);
            containers
                .get(service)
                .into_iter()
                .flatten()
                .map(move |found| async move {
                    engine.stop(&found.name, grace).await?;
                    engine.remove(&found.name).await?;
                    printer.status(format!("removed container {}", found.name));
                    anyhow::Ok(())
                })
        });
        for result in join_all(stops).await {
            result?;
        }
    }
    let label = stack::label_filter(stack::PROJECT, &project.name);
    let declared = |names: &[String], full: fn(&str, &str) -> String| -> Vec<String> {
        names.iter().map(|n| full(&project.name, n)).collect()
    };
    // `default`: the network docker compose makes when a file declares none.
    let mut networks = declared(&project.networks, stack::network_name);
    networks.push(stack::network_name(&project.name, "default"));
    for network in engine.labelled_networks(&label).await? {
        if networks.contains(&network) {
            engine.remove_network(&network).await?;
            printer.status(format!("removed network {network}"));
        }
    }
    if args.volumes {
        let volumes = declared(&project.volumes, stack::volume_name);
        for volume in engine.labelled_volumes(&label).await? {
            if volumes.contains(&volume) {
                engine.remove_volume(&volume).await?;
                printer.status(format!("removed volume {volume}"));
            }
        }
    }
    Ok(ExitStatus::Success)
}
