//! `pixelflowctl drill`: the command line of [`crate::drill`].

use std::path::PathBuf;
use std::time::Duration;

use super::Context;
use crate::compose::Project;
use crate::drill::catalog::{self, DRILLS};
use crate::drill::timeline::Until;
use crate::printer::{Output, Printer};
use crate::ExitStatus;

/// Break the running stack on purpose and prove that its alerts fire,
/// nothing is lost, and it recovers.
///
/// Each drill is a fault through the Docker API (a container stopped,
/// killed or paused), the alerts it must raise, read from Prometheus' and
/// Alertmanager's APIs, and a recovery checked with exact counts: tasks
/// lost, tasks counted twice, the counters' deltas. The stack is always
/// put back, on failure and on Ctrl-C too. The rules keep their production
/// `for:`: by default a drill proves each alert pending within 2 minutes and
/// says when it would fire; `--until firing` waits for it (minutes).
/// `drill list` names the drills, and the alert rules no drill exercises.
///
/// Exit codes as for verify: 0 every check passed, 1 a check failed, 2 the
/// drill could not run (the stack is not up, Prometheus or Alertmanager
/// does not answer), 3 Docker is not reachable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The drill: list, kafka-down, worker-kill, postgres-restart,
    /// auth-down or worker-stuck.
    #[arg(value_parser = drill_name)]
    pub name: String,
    /// How far to follow the alerts: `pending` (each expected alert's
    /// expression true within 2 minutes; when it would fire is projected from
    /// its rule's for:), or `firing` (each fires and Alertmanager holds it,
    /// then it resolves once the fault is undone).
    #[arg(long, value_enum, default_value = "pending")]
    pub until: Until,
    /// The most the fault is held while waiting for the alerts (default:
    /// the pending bound and 10 s, or with --until firing the longest for: and the bounds on top).
    #[arg(long, value_parser = crate::parse::duration)]
    pub hold: Option<Duration>,
    /// The most the recovery may take once the fault is undone (with
    /// --until firing, the alerts' resolution included).
    #[arg(long, default_value = "5m", value_parser = crate::parse::duration)]
    pub recovery_timeout: Duration,
    /// Write the verdicts as JUnit XML to FILE too.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

fn drill_name(text: &str) -> Result<String, String> {
    if text == "list" || catalog::find(text).is_some() {
        Ok(text.to_string())
    } else {
        let names: Vec<&str> = DRILLS.iter().map(|d| d.name).collect();
        Err(format!("no drill {text:?}: list, {}", names.join(", ")))
    }
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let drill =
        catalog::find(&args.name).ok_or_else(|| anyhow::anyhow!("no drill {:?}", args.name))?;
    let options = crate::drill::Options {
        drill,
        until: args.until,
        hold: args.hold,
        recovery: args.recovery_timeout,
        junit: args.junit.clone(),
    };
    crate::drill::run(cx.engine, cx.project, &options, cx.printer).await
}

/// `drill list`: each drill with what it does and the alerts it proves,
/// then the project's alert rules that no drill exercises. Needs no Docker.
pub fn list(project: &Project, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let rules_file = project.dir.join("prometheus").join("alerts.yml");
    let unexercised = std::fs::read_to_string(&rules_file)
        .map_err(|e| e.to_string())
        .and_then(|text| catalog::unexercised(&text))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the alert rules in {}: {e}",
                rules_file.display()
            )
        })?;
    let alerts =
        |d: &catalog::Drill| -> Vec<String> { d.expects.iter().map(|e| e.name()).collect() };
    match printer.output {
        Output::Json => {
            let drills: Vec<_> = DRILLS
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "name": d.name,
                        "what": d.what,
                        "service": d.service,
                        "alerts": alerts(d),
                    })
                })
                .collect();
            printer.out(serde_json::to_string_pretty(&serde_json::json!({
                "drills": drills,
                "rules_no_drill_exercises": unexercised,
            }))?);
        }
        Output::Text => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
                .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
                .set_header(["DRILL", "WHAT IT DOES", "ALERTS IT PROVES"]);
            // Wrapped to the terminal, or to 120 columns in a pipe.
            if table.width().is_none() {
                table.set_width(120);
            }
            for d in DRILLS {
                table.add_row([d.name.to_string(), d.what.to_string(), alerts(d).join("\n")]);
            }
            printer.out(table.to_string());
            printer.out(if unexercised.is_empty() {
                "Every alert rule is exercised by a drill.".to_string()
            } else {
                format!("Alert rules no drill exercises: {}", unexercised.join(", "))
            });
        }
    }
    Ok(ExitStatus::Success)
}
