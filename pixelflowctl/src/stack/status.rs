//! The project's containers as `ps` shows them: state, health, ports and
//! where each answers; `up` shows the same table when it is done.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use crate::compose::Project;
use crate::docker::state::{Health, Status};
use crate::docker::Engine;
use crate::health;
use crate::printer::{Output, Printer};
use crate::stack;

#[derive(Debug, Serialize)]
pub struct Row {
    pub service: String,
    /// The container's number among the service's replicas (1 when it
    /// runs one; none before it is created).
    pub replica: Option<u32>,
    pub container: String,
    pub state: String,
    pub health: String,
    pub ports: Vec<String>,
    pub urls: Vec<String>,
}

/// The rows of `services`. Health is the engine's verdict; while the
/// engine has not run its first check yet ("starting"), the service's own
/// healthcheck command is run here, as `up` does, and a pass shows as
/// healthy, which the engine's next check will say too.
pub async fn rows(
    engine: &Engine,
    project: &Project,
    services: &[String],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut containers = stack::containers(engine, project).await?;
    for service in services {
        let list = containers.remove(service).unwrap_or_default();
        let founds: Vec<Option<stack::Found>> = if list.is_empty() {
            vec![None]
        } else {
            list.into_iter().map(Some).collect()
        };
        for found in founds {
            let row = row(engine, project, service, found).await?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The row of one container of `service` (or of none yet).
async fn row(
    engine: &Engine,
    project: &Project,
    service: &str,
    found: Option<stack::Found>,
) -> anyhow::Result<Row> {
    let replica = found.as_ref().map(|f| f.number);
    let container = found.as_ref().map(|f| f.name.clone());
    let (status, health) = match &container {
        Some(name) => {
            let observed = engine.observe(name).await?;
            let health = match observed.current_health() {
                Some(Health::Starting)
                    if observed.is_running()
                        && health::passes_own_check(engine, &project.services[service], name)
                            .await =>
                {
                    Some(Health::Healthy)
                }
                other => other,
            };
            (observed.status, health)
        }
        None => (None, None),
    };
    let state = match (&container, status) {
        (None, _) => "not created".to_string(),
        (Some(_), Some(status)) => status.to_string(),
        (Some(_), None) => "unknown".to_string(),
    };
    let health = health.map(|h| h.to_string()).unwrap_or_default();
    let published = found
        .filter(|_| status == Some(Status::Running))
        .map(|f| f.ports)
        .unwrap_or_default();
    let urls = stack::urls(&project.services[service], &published);
    let ports = published
        .into_iter()
        // With the address it listens on: 127.0.0.1 unless PIXELFLOW_BIND
        // opened it to the network.
        .filter_map(|p| {
            let ip = match p.ip.as_deref() {
                None | Some("") => "0.0.0.0",
                Some(ip) => ip,
            };
            Some(format!("{ip}:{}->{}", p.public_port?, p.private_port))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Row {
        service: service.to_string(),
        replica,
        container: container.unwrap_or_default(),
        state,
        health,
        ports,
        urls,
    })
}

impl Row {
    /// The service, or `worker-2` for one replica among several.
    fn label(&self, rows: &[Row]) -> String {
        let replicas = rows.iter().filter(|r| r.service == self.service).count();
        stack::replica_label(&self.service, self.replica.unwrap_or(1), replicas)
    }
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
            r.label(rows),
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

/// The table (or JSON) of `services`' containers.
pub async fn show(
    engine: &Engine,
    project: &Project,
    services: &[String],
    printer: &Printer,
) -> anyhow::Result<()> {
    let rows = rows(engine, project, services).await?;
    print(&rows, printer)
}
