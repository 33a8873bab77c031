//! Rendering the services' JSON log lines for people: time, coloured
//! level, message, then the context as `key=value`. Lines that are not JSON
//! pass through untouched.

use owo_colors::OwoColorize;
use serde_json::Value;

/// Log levels in order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Some(Self::Trace),
            "DEBUG" => Some(Self::Debug),
            "INFO" => Some(Self::Info),
            "WARN" | "WARNING" => Some(Self::Warn),
            "ERROR" | "FATAL" => Some(Self::Error),
            _ => None,
        }
    }
}

/// Keys rendered in the line's head, not repeated as context.
const HEAD: [&str; 5] = ["timestamp", "level", "message", "service", "target"];

/// The level of a JSON log line, if it is one.
pub fn level_of(line: &str) -> Option<Level> {
    let value: Value = serde_json::from_str(line).ok()?;
    value.get("level")?.as_str().and_then(Level::parse)
}

/// `line` made readable; `color` adds ANSI colours.
pub fn render(line: &str, color: bool) -> String {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let text = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or_default();
    // HH:MM:SS.mmm of an RFC 3339 timestamp.
    let time = text("timestamp")
        .split_once('T')
        .map(|(_, t)| t.trim_end_matches('Z').chars().take(12).collect::<String>())
        .unwrap_or_default();
    let level = text("level").to_ascii_uppercase();
    let padded = format!("{level:<5}");
    let level = if !color {
        padded
    } else {
        match Level::parse(&level) {
            Some(Level::Error) => padded.red().bold().to_string(),
            Some(Level::Warn) => padded.yellow().bold().to_string(),
            Some(Level::Info) => padded.green().to_string(),
            _ => padded.dimmed().to_string(),
        }
    };
    let mut out = format!("{time} {level} {}", text("message"));
    for (k, v) in &fields {
        if HEAD.contains(&k.as_str()) {
            continue;
        }
        let v = match v {
            Value::String(s) if s.contains(' ') || s.is_empty() => format!("{s:?}"),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if color {
            out.push_str(&format!(" {}={v}", k.dimmed()));
        } else {
            out.push_str(&format!(" {k}={v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-11-27T03:11:11.866342Z","level":"INFO","service":"worker","message":"task completed","target":"pixelflow_worker::consumer","task_id":"b9a2","width":48,"note":"two words"}"#;

    #[test]
    fn json_lines_become_time_level_message_and_context() {
        assert_eq!(
            render(LINE, false),
            r#"03:11:11.866 INFO  task completed task_id=b9a2 width=48 note="two words""#
        );
    }

    #[test]
    fn colour_marks_the_level() {
        let warn = LINE.replace("INFO", "WARN");
        assert!(render(&warn, true).contains("\u{1b}["));
        assert!(!render(&warn, false).contains("\u{1b}["));
    }

    #[test]
    fn other_lines_pass_through_untouched() {
        assert_eq!(render("plain text [1]", false), "plain text [1]");
        assert_eq!(render("[1,2]", false), "[1,2]");
    }

    #[test]
    fn levels_are_read_for_filtering() {
        assert_eq!(level_of(LINE), Some(Level::Info));
        assert_eq!(level_of(&LINE.replace("INFO", "ERROR")), Some(Level::Error));
        assert_eq!(level_of("not json"), None);
        assert!(Level::Warn > Level::Info);
    }
}
