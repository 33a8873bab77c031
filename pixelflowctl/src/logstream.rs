//! Following containers' output: each container's lines with the engine's
//! timestamps, re-attached after the container stops and runs again (a
//! restart, a crash, a reload) without repeating a line, and shown behind
//! one coloured prefix per service. `logs` and `dev` both use it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use owo_colors::{AnsiColors, OwoColorize};
use tokio::sync::mpsc;

use crate::docker::{DockerError, Engine};
use crate::printer::Printer;
use crate::render;

const COLORS: [AnsiColors; 6] = [
    AnsiColors::Cyan,
    AnsiColors::Magenta,
    AnsiColors::Blue,
    AnsiColors::Yellow,
    AnsiColors::Green,
    AnsiColors::BrightRed,
];

/// Splits the engine's timestamp off a line.
pub fn split_timestamp(line: &str) -> (Option<DateTime<Utc>>, &str) {
    match line.split_once(' ') {
        Some((ts, rest)) => match DateTime::parse_from_rfc3339(ts) {
            Ok(t) => (Some(t.with_timezone(&Utc)), rest),
            Err(_) => (None, line),
        },
        None => (None, line),
    }
}

/// Shows each service's lines behind its name, padded to the longest and
/// coloured by its place.
pub struct Prefixed<'a> {
    pub services: &'a [String],
    width: usize,
}

impl<'a> Prefixed<'a> {
    pub fn new(services: &'a [String]) -> Self {
        Self {
            services,
            width: services.iter().map(String::len).max().unwrap_or(0),
        }
    }

    /// `line` of service `index`, rendered (JSON lines readably).
    pub fn line(&self, index: usize, line: &str, color: bool) -> String {
        let name = format!("{:<width$} |", self.services[index], width = self.width);
        let prefix = if color {
            name.color(COLORS[index % COLORS.len()]).to_string()
        } else {
            name
        };
        format!("{prefix} {}", render::render(line, color))
    }

    pub fn show(&self, printer: &Printer, index: usize, line: &str) {
        printer.out(self.line(index, line, printer.color));
    }
}

pub enum Event {
    /// A line of service `index`, with the engine's timestamp.
    Line(usize, Option<DateTime<Utc>>, String),
    /// The logs could not be read at all (no such container, say), or the
    /// engine went away while following them.
    Failed(DockerError),
}

/// Sends `container`'s lines; with `follow`, re-attaches after the
/// container stops and runs again, skipping lines already sent.
pub async fn stream(
    engine: Engine,
    container: String,
    index: usize,
    follow: bool,
    tail: Option<usize>,
    since: i64,
    tx: mpsc::Sender<Event>,
) {
    let mut last: Option<DateTime<Utc>> = None;
    let mut tail = tail;
    let mut since = since;
    loop {
        let mut lines = Box::pin(engine.logs_with(&container, follow, tail, since, true));
        while let Some(line) = lines.next().await {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    if last.is_none() || matches!(e, DockerError::Unreachable { .. }) {
                        let _ = tx.send(Event::Failed(e)).await;
                        return;
                    }
                    break;
                }
            };
            let (ts, text) = split_timestamp(&line);
            if let (Some(ts), Some(seen)) = (ts, last) {
                if ts <= seen {
                    continue;
                }
            }
            if ts.is_some() {
                last = ts;
            }
            if tx
                .send(Event::Line(index, ts, text.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        if !follow {
            return;
        }
        // The container stopped (a restart, a crash): wait until it runs
        // again, then pick up after the last line sent.
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match engine.observe(&container).await {
                Ok(observed) if observed.is_running() => break,
                Err(e @ DockerError::Unreachable { .. }) => {
                    let _ = tx.send(Event::Failed(e)).await;
                    return;
                }
                _ => {}
            }
        }
        tail = None;
        since = last.map_or(since, |t| t.timestamp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_timestamps_are_split_off() {
        let (ts, rest) = split_timestamp("2026-11-27T03:11:11.866342123Z {\"a\":1}");
        assert!(ts.is_some());
        assert_eq!(rest, "{\"a\":1}");
        assert_eq!(split_timestamp("no time here").1, "no time here");
    }
}
