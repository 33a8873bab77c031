//! `pixelflowctl down`: removes the project's containers and networks (and
//! with `-v` its volumes): only what carries the project's label.

use crate::compose::Project;
use crate::docker::Engine;
use crate::printer::Printer;
use crate::stack;

pub async fn run(
    engine: &Engine,
    project: &Project,
    volumes: bool,
    printer: &Printer,
) -> anyhow::Result<()> {
    let label = stack::label_filter(stack::PROJECT, &project.name);
    for c in engine.containers(std::slice::from_ref(&label)).await? {
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .or(c.id)
            .unwrap_or_default();
        engine.remove(&name).await?;
        printer.status(format!("removed container {name}"));
    }
    for network in engine.labelled_networks(&label).await? {
        engine.remove_network(&network).await?;
        printer.status(format!("removed network {network}"));
    }
    if volumes {
        for volume in engine.labelled_volumes(&label).await? {
            engine.remove_volume(&volume).await?;
            printer.status(format!("removed volume {volume}"));
        }
    }
    Ok(())
}
