//! `pixelflowctl metrics`: the services' current series and values, the
//! typed replacement for `curl …/metrics | grep`.

use std::collections::BTreeMap;
use std::path::Path;

use comfy_table::{presets::UTF8_BORDERS_ONLY, CellAlignment, Table};

use crate::compose::Project;
use crate::printer::{Output, Printer};
use crate::stack::Published;
use crate::verify::{self, plan, spec, CouldNotRun};
use crate::ExitStatus;

/// Show the services' current metrics: each series and its value.
///
/// Scrapes the stack's services where their containers publish them (as
/// verify finds them), or the URLs given with --target, and prints every
/// series whose name or labels contain PATTERN; histograms as their _count
/// and _sum. `--output json` for scripts.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A service (auth, api or worker); default: all three.
    pub service: Option<String>,
    /// Only series whose text (name and labels) contains this, e.g.
    /// `tasks` or `status="failure"`.
    pub pattern: Option<String>,
    /// Where a service's metrics are: SERVICE=URL (repeatable), instead of
    /// finding them on the stack.
    #[arg(long, value_parser = crate::parse::target)]
    pub target: Vec<(String, String)>,
}

pub async fn run(args: Args, file: Option<&Path>, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let spec = spec::Spec::parse(spec::EMBEDDED).map_err(CouldNotRun)?;
    let mut hints = BTreeMap::new();
    let mut urls = if args.target.is_empty() {
        let project = Project::discover(file)?.ok_or_else(|| {
            CouldNotRun(
                "no compose/docker-compose.yml here or in a parent folder: pass --file, or --target SERVICE=URL".into(),
            )
        })?;
        let published = Published::find(&project).await;
        if !published.engine_answered() {
            printer.status(
                "metrics: Docker is not reachable; using the ports the compose file publishes",
            );
        }
        hints = plan::scrape_hints(&project, &published, &spec);
        plan::stack_targets(&project, &published, &spec)?
    } else {
        args.target.into_iter().collect()
    };
    if let Some(service) = &args.service {
        if !urls.contains_key(service) {
            return Err(anyhow::anyhow!(
                "no service {service:?} with metrics; the services are: {}",
                urls.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        urls.retain(|s, _| s == service);
    }
    let rows = verify::series(&urls, args.pattern.as_deref(), &hints).await?;
    if printer.output == Output::Json {
        printer.out(serde_json::to_string_pretty(&rows)?);
        return Ok(ExitStatus::Success);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["SERVICE", "SERIES", "TYPE", "VALUE"]);
    for r in &rows {
        table.add_row([
            r.service.clone(),
            r.series.clone(),
            r.kind.clone(),
            r.value.to_string(),
        ]);
    }
    if let Some(column) = table.column_mut(3) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    printer.out(table.to_string());
    printer.status(format!("{} series", rows.len()));
    Ok(ExitStatus::Success)
}
