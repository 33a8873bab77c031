//! `pixelflowctl ps`: the project's containers.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use crate::compose::Project;
use crate::docker::Engine;
use crate::health;
use crate::printer::{Output, Printer};
use crate::stack;

#[derive(Debug, Serialize)]
pub struct Row {
    pub service: String,
    pub container: String,
    pub state: String,
    pub health: String,
    pub ports: Vec<String>,
    pub urls: Vec<String>,
}

pub async fn rows(
    engine: &Engine,
    project: &Project,
    services: &[String],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let containers = engine
        .containers(&[stack::label_filter(stack::PROJECT, &project.name)])
        .await?;
    for service in services {
        let found = containers
            .iter()
            .find(|c| c.labels.as_ref().and_then(|l| l.get(stack::SERVICE)) == Some(service));
        let container = found
            .and_then(|c| c.names.as_ref()?.first().cloned())
            .map(|n| n.trim_start_matches('/').to_string());
        let (state, health) = match &container {
            Some(name) => {
                let (s, _, _) = health::state(engine, name).await?;
                (s.status, s.health)
            }
            None => ("not created".to_string(), String::new()),
        };
        let ports = found
            .and_then(|c| c.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some(format!("{}->{}", p.public_port?, p.private_port)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        rows.push(Row {
            service: service.clone(),
            container: container.unwrap_or_default(),
            state,
            health,
            ports,
            urls: stack::urls(&project.services[service]),
        });
    }
    Ok(rows)
}

pub fn print(rows: &[Row], printer: &Printer) -> anyhow::Result<()> {
    if printer.output == Output::Json {
        printer.out(serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["SERVICE", "STATE", "HEALTH", "PORTS", "URL"]);
    for r in rows {
        table.add_row([
            r.service.clone(),
            r.state.clone(),
            if r.health.is_empty() {
                "-".into()
            } else {
                r.health.clone()
            },
            r.ports.join(", "),
            r.urls.join(" "),
        ]);
    }
    printer.out(table.to_string());
    Ok(())
}

pub async fn run(
    engine: &Engine,
    project: &Project,
    services: &[String],
    printer: &Printer,
) -> anyhow::Result<()> {
    let rows = rows(engine, project, services).await?;
    print(&rows, printer)
}
