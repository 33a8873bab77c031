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

/// The level of a log line, where the line says it: our services' and
/// Jaeger's JSON (`"level"`), Prometheus', Alertmanager's and Grafana's
/// logfmt (`level=warn`), PostgreSQL's `LOG:`/`WARNING:`/`ERROR:`, or a
/// level word among the first tokens, as Kafka's log4j and tansu write.
/// `None` for a line that says none (a continuation, a banner): those
/// always show.
pub fn level_of(line: &str) -> Option<Level> {
    if line.starts_with('{') {
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            return value.get("level")?.as_str().and_then(Level::parse);
        }
    }
    let plain = strip_ansi(line);
    let tokens = plain.split_whitespace();
    for token in tokens.clone() {
        if let Some(value) = token
            .strip_prefix("level=")
            .or_else(|| token.strip_prefix("lvl="))
        {
            return Level::parse(value.trim_matches('"'));
        }
    }
    // Only the head of a line: a level word later is part of the message.
    tokens.take(5).find_map(|token| match token {
        "TRACE" => Some(Level::Trace),
        "DEBUG" | "DEBUG1:" | "DEBUG2:" | "DEBUG3:" | "DEBUG4:" | "DEBUG5:" => Some(Level::Debug),
        "INFO" | "INFO:" | "LOG:" | "NOTICE:" => Some(Level::Info),
        "WARN" | "WARNING" | "WARNING:" => Some(Level::Warn),
        "ERROR" | "ERROR:" | "FATAL" | "FATAL:" | "PANIC:" => Some(Level::Error),
        _ => None,
    })
}

/// `line` without ANSI colour sequences (`ESC [ … letter`), which tansu
/// writes around its level.
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the sequence's final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
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

    #[test]
    fn the_other_components_levels_are_read_from_the_way_each_writes_them() {
        let lines = [
            // Prometheus, Alertmanager (logfmt)
            (r#"ts=2026-11-28T09:28:55.581Z caller=main.go:973 level=info msg="Server is ready""#, Some(Level::Info)),
            (r#"ts=2026-11-28T09:28:55.581Z caller=scrape.go:1 level=warn msg="scrape failed""#, Some(Level::Warn)),
            // Grafana (logfmt, quoted)
            (r#"logger=sqlstore t=2026-11-28T09:28:55Z level="error" msg="x""#, Some(Level::Error)),
            // Jaeger (zap JSON)
            (r#"{"level":"info","ts":1732786135.5,"msg":"Starting"}"#, Some(Level::Info)),
            // PostgreSQL
            ("2026-11-28 09:28:54.123 UTC [1] LOG:  database system is ready", Some(Level::Info)),
            ("2026-11-28 09:28:54.123 UTC [7] ERROR:  relation \"x\" does not exist", Some(Level::Error)),
            ("2026-11-28 09:28:54.123 UTC [7] STATEMENT:  SELECT 1", None),
            // Kafka (log4j)
            ("[2026-11-28 09:28:54,123] WARN [Broker id=1] slow (kafka.server)", Some(Level::Warn)),
            // tansu (coloured)
            ("\u{1b}[2m2026-11-28T09:28:54.888626Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m \u{1b}[2mtansu_storage::lite\u{1b}[0m: err=Api(TopicAlreadyExists)", Some(Level::Error)),
            // A level word deep in a message is not the line's level.
            ("storage ready in 61ms after a restart: no ERROR seen, nor any WARN", None),
            ("storage: sqlite://tansu.db", None),
        ];
        for (line, level) in lines {
            assert_eq!(level_of(line), level, "{line}");
        }
    }
}
