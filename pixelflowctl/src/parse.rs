//! The command line's value parsers: each turns one argument's text into
//! its typed value, or says what was expected. A leaf: commands use it, it
//! uses none of them.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A value that must not be shown: its `Debug` says `<redacted>`, so a
/// password given on the command line or in the environment reaches no
/// log, report or panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_string())
    }
}

/// A secret, as given.
pub fn secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::from(text))
}

/// A duration as compose writes it: `90s`, `3m`, `1m30s`, `500ms`.
pub fn duration(text: &str) -> Result<Duration, String> {
    crate::compose::model::duration(text)
}

/// `SERVICE=URL`, e.g. `auth=http://127.0.0.1:50051/metrics`.
pub fn target(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(s, u)| (s.to_string(), u.to_string()))
        .filter(|(s, u)| !s.is_empty() && u.starts_with("http"))
        .ok_or_else(|| format!("--target {text:?}: expected SERVICE=http://host:port/metrics"))
}

/// A base URL such as `http://127.0.0.1:9090`, refused at the command line
/// rather than as a failed request halfway through a run.
/// `SERVICE=N` for `--scale`: N containers of SERVICE (0 stops them all).
pub fn scale(text: &str) -> Result<(String, u32), String> {
    let (service, count) = text
        .split_once('=')
        .ok_or_else(|| format!("expected SERVICE=N, such as worker=3, got {text:?}"))?;
    let count = count
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{text:?}: N must be a whole number, such as worker=3"))?;
    if service.trim().is_empty() {
        return Err(format!("{text:?}: name the service, such as worker=3"));
    }
    Ok((service.trim().to_string(), count))
}

pub fn base_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(text.trim_end_matches('/').to_string())
        }
        _ => Err(format!(
            "{text:?}: expected a URL such as http://127.0.0.1:3000"
        )),
    }
}

/// `--since`: `10m`, `2h`, `30s` ago, an RFC 3339 time, or unix seconds,
/// as unix seconds.
pub fn since(text: &str) -> Result<i64, String> {
    since_at(text, Utc::now())
}

/// [`since`] as seen at `now`.
pub fn since_at(text: &str, now: DateTime<Utc>) -> Result<i64, String> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    let ago = duration(text).map_err(|_| {
        format!(
            "--since {text:?}: expected a duration such as 10m, an RFC 3339 time, or unix seconds"
        )
    })?;
    Ok(now.timestamp() - i64::try_from(ago.as_secs()).unwrap_or(i64::MAX))
}

/// A trace id, from itself (32 hex digits) or from a `traceparent` value.
pub fn trace_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    pixelflow_verify::flow::trace_id_of(text).ok_or_else(|| {
        format!("{text:?} is neither a trace id (32 hex digits) nor a traceparent (00-<trace id>-<span id>-<flags>)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_is_a_service_and_a_whole_number() {
        assert_eq!(scale("worker=3"), Ok(("worker".to_string(), 3)));
        assert_eq!(scale("worker=0"), Ok(("worker".to_string(), 0)));
        assert!(scale("worker").unwrap_err().contains("SERVICE=N"));
        assert!(scale("worker=three").unwrap_err().contains("whole number"));
        assert!(scale("=3").unwrap_err().contains("name the service"));
    }

    #[test]
    fn a_base_url_is_http_with_a_host_and_loses_its_trailing_slash() {
        assert_eq!(
            base_url("http://127.0.0.1:3000/").as_deref(),
            Ok("http://127.0.0.1:3000")
        );
        for refused in ["not a url", "127.0.0.1:3000", "ftp://host", "http://"] {
            assert!(base_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn durations_parse_for_timeouts() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert!(duration("soon").is_err());
    }

    #[test]
    fn a_target_is_a_service_and_an_http_url() {
        assert_eq!(
            target("auth=http://127.0.0.1:50051/metrics"),
            Ok(("auth".into(), "http://127.0.0.1:50051/metrics".into()))
        );
        assert!(target("auth").is_err());
        assert!(target("=http://x").is_err());
        assert!(target("auth=ftp://x").is_err());
    }

    #[test]
    fn since_reads_durations_times_and_seconds() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(since_at("10m", now), Ok(now.timestamp() - 600));
        assert_eq!(
            since_at("2026-11-27T11:00:00Z", now),
            Ok(now.timestamp() - 3600)
        );
        assert_eq!(since_at("1700000000", now), Ok(1_700_000_000));
        assert!(since_at("yesterday", now).is_err());
    }

    #[test]
    fn a_trace_is_named_by_its_id_or_by_the_traceparent_api_answered() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(id).as_deref(), Ok(id));
        assert_eq!(trace_id(&id.to_uppercase()).as_deref(), Ok(id));
        assert_eq!(
            trace_id(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Ok(id)
        );
        let error = trace_id("abc").unwrap_err();
        assert!(error.contains("32 hex digits"), "{error}");
    }
}
