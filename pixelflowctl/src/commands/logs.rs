//! `pixelflowctl logs`: the services' output through the API, one coloured
//! prefix per service, JSON lines rendered readably, a level filter, and
//! `-f` that keeps following across a restart of the service.

use tokio::sync::mpsc;

use super::Context;
use crate::logstream::{stream, Event, Prefixed};
use crate::render::{self, Level};
use crate::{stack, ExitStatus};

/// Show the services' logs, JSON lines rendered readably.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services whose logs to show (default: all).
    pub services: Vec<String>,
    /// Keep following, also across restarts of the service.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each service.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Only lines since then: 10m, 2h, an RFC 3339 time, unix seconds.
    #[arg(long, value_parser = crate::parse::since)]
    pub since: Option<i64>,
    /// Only lines at this level or above. The level is read as each
    /// component writes it (JSON `level`, logfmt `level=`, PostgreSQL's
    /// `LOG:`/`ERROR:`, Kafka's and tansu's level word); a line that says
    /// none (a continuation, a banner) always shows.
    #[arg(long, value_enum)]
    pub level: Option<Level>,
    /// Lines exactly as written, without prefix or rendering (for jq).
    #[arg(long)]
    pub raw: bool,
    /// Only the lines of one task (JSON lines whose `task_id` is ID), from
    /// every service named (default: all), merged in time order.
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Only the lines of one trace (JSON lines whose `trace_id` is ID), from
    /// every service named (default: all), merged in time order. ID is the
    /// 32-hex trace id, or the whole `traceparent` api answered with.
    #[arg(long, value_name = "ID", value_parser = crate::parse::trace_id)]
    pub trace: Option<String>,
}

/// Whether `line` is a JSON log line whose `field` is `id`.
fn has_field(line: &str, field: &str, id: &str) -> bool {
    line.starts_with('{')
        && serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get(field)?.as_str().map(|t| t.eq_ignore_ascii_case(id)))
            == Some(true)
}

/// Whether `line` is a JSON log line about task `id`.
fn is_about_task(line: &str, id: &str) -> bool {
    has_field(line, "task_id", id)
}

/// Whether `line` is a JSON log line of trace `id`.
fn is_in_trace(line: &str, id: &str) -> bool {
    has_field(line, "trace_id", id)
}

pub async fn run(cx: &Context<'_>, options: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
    let mut containers = stack::containers(engine, project).await?;
    let mut services = project.select(&options.services)?;
    if options.services.is_empty() {
        // All services means all that have a container: one left out of
        // `up` (`--without grafana --without jaeger`) has no logs to show, and is no error.
        services.retain(|s| containers.contains_key(s));
        if services.is_empty() {
            anyhow::bail!(
                "no container of project {} exists: start the stack with `pixelflowctl up`",
                project.name
            );
        }
    }
    let missing: Vec<&str> = services
        .iter()
        .filter(|s| !containers.contains_key(*s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} {} no container in project {}: bring {} up first (pixelflowctl up {})",
            missing.join(", "),
            if missing.len() == 1 { "has" } else { "have" },
            project.name,
            if missing.len() == 1 { "it" } else { "them" },
            missing.join(" ")
        );
    }
    // One stream per container: a scaled service's replicas each have
    // theirs, prefixed `worker-2`.
    let mut streams: Vec<(String, String)> = Vec::new();
    for service in &services {
        // A container removed since the listing: the engine's "no such
        // container" comes back as this service's failure below.
        let found = containers.remove(service).unwrap_or_default();
        if found.is_empty() {
            streams.push((
                service.clone(),
                stack::container_name(&project.name, service, 1),
            ));
        }
        let replicas = found.len();
        for f in found {
            streams.push((stack::replica_label(service, f.number, replicas), f.name));
        }
    }
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    for (index, (_, container)) in streams.iter().enumerate() {
        let (engine, tx, container) = (engine.clone(), tx.clone(), container.clone());
        let (follow, tail, since) = (options.follow, options.tail, options.since.unwrap_or(0));
        tokio::spawn(
            async move { stream(engine, container, index, follow, tail, since, tx).await },
        );
    }
    drop(tx);
    let labels: Vec<String> = streams.into_iter().map(|(label, _)| label).collect();
    let prefixed = Prefixed::new(&labels);
    let show = |index: usize, line: &str| {
        if options.raw {
            printer.out(line);
        } else {
            prefixed.show(printer, index, line);
        }
    };
    // One task's or trace's lines come from several services: without -f
    // they are gathered first and shown in the engine's time order.
    let merge = (options.task.is_some() || options.trace.is_some()) && !options.follow;
    let mut gathered = Vec::new();
    while let Some(event) = rx.recv().await {
        let (index, at, line) = match event {
            Event::Line(index, at, line) => (index, at, line),
            Event::Failed(error) => return Err(error.into()),
        };
        if let Some(min) = options.level {
            if render::level_of(&line).is_some_and(|l| l < min) {
                continue;
            }
        }
        if let Some(id) = &options.task {
            if !is_about_task(&line, id) {
                continue;
            }
        }
        if let Some(id) = &options.trace {
            if !is_in_trace(&line, id) {
                continue;
            }
        }
        if merge {
            gathered.push((at, index, line));
        } else {
            show(index, &line);
        }
    }
    gathered.sort_by_key(|(at, index, _)| (*at, *index));
    for (_, index, line) in &gathered {
        show(*index, line);
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_and_trace_filters_keep_only_json_lines_naming_theirs() {
        let task = "0b7e1c52-4a1e-4c4e-9f59-1d1e1d1e1d1e";
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        for (filter, field, id, other) in [
            (
                is_about_task as fn(&str, &str) -> bool,
                "task_id",
                task,
                "another",
            ),
            (
                is_in_trace,
                "trace_id",
                trace,
                "0af7651916cd43dd8448eb211c80319c",
            ),
        ] {
            let line = |value: &str| {
                format!(r#"{{"level":"INFO","message":"task completed","{field}":"{value}"}}"#)
            };
            assert!(filter(&line(id), id), "{field}");
            assert!(!filter(&line(other), id), "{field}: another's");
            assert!(
                !filter(r#"{"level":"INFO","message":"listening"}"#, id),
                "{field}: none"
            );
            assert!(
                !filter(&format!("plain text about {id}"), id),
                "{field}: not JSON"
            );
        }
    }
}
