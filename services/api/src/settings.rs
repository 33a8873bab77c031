//! api's configuration, from environment variables.

use std::time::Duration;

use pixelflow_common::db::DatabaseSettings;
use pixelflow_common::kafka::KafkaSettings;
use pixelflow_common::settings::{positive, Env, SettingsError};

/// Everything api reads from its environment, with the defaults it uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST` (default `0.0.0.0`).
    pub host: String,
    /// `PORT` (default 8080). 0 picks a free port (tests).
    pub port: u16,
    /// `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` (default 10).
    pub database: DatabaseSettings,
    /// `KAFKA_BROKERS`, `KAFKA_TOPIC`, `KAFKA_TOPIC_PARTITIONS`.
    pub kafka: KafkaSettings,
    /// `KAFKA_MESSAGE_TIMEOUT_MS` (default 5000): how long one publish may
    /// take before it counts as failed and is retried later.
    pub kafka_message_timeout: Duration,
    /// `KAFKA_ENABLE_IDEMPOTENCE` (default true): the producer's
    /// `enable.idempotence`. Duplicates are harmless end to end (the worker
    /// ignores an event for a task no longer PENDING), so it may be turned
    /// off; the compose stack does, because the stand-in broker (tansu 0.6)
    /// breaks for every client when an idempotent producer reconnects with
    /// batches in flight.
    pub kafka_enable_idempotence: bool,
    /// `OUTBOX_POLL_INTERVAL_MS` (default 1000): how often unpublished tasks
    /// are retried (new tasks are published at once).
    pub outbox_poll_interval: Duration,
    /// `TASK_REDELIVER_AFTER_SECONDS` (default 300): a task still PENDING
    /// this long after its event went out gets the event again.
    pub task_redeliver_after: Duration,
    /// `AUTH_SERVICE_URL` (default `http://localhost:50051`).
    pub auth_service_url: String,
    /// `AUTH_TIMEOUT_MS` (default 3000).
    pub auth_timeout: Duration,
    /// `MAX_UPLOAD_BYTES` (default 10 MiB).
    pub max_upload_bytes: usize,
    /// `MAX_IMAGE_DIMENSION` (default 10000): the largest width or height
    /// accepted, read from the image header before anything is decoded.
    pub max_image_dimension: u32,
    /// `MAX_IMAGE_PIXELS` (default 64000000): the most pixels (width ×
    /// height, from the header) accepted.
    pub max_image_pixels: u64,
    /// `MAX_ACTIVE_TASKS_PER_USER` (default 20): uploads beyond this many of
    /// one user's tasks PENDING or PROCESSING get 429.
    pub max_active_tasks_per_user: u32,
    /// `UPLOAD_BYTES_IN_FLIGHT` (default 64 MiB): the most upload bytes
    /// being received at once, all clients together; an upload that would
    /// go beyond gets 503 with `Retry-After`, before its body is read.
    pub upload_bytes_in_flight: usize,
    /// `USER_STORAGE_QUOTA_BYTES` (default 1 GiB): the most image bytes
    /// (originals and thumbnails) one user's tasks may hold; an upload
    /// beyond gets 413.
    pub user_storage_quota: u64,
    /// `ORIGINAL_RETENTION_SECONDS` (default 0): how long a finished
    /// task's original image is kept (0: the worker drops it as it stores
    /// the thumbnail; the sweep drops any left).
    pub original_retention: Duration,
    /// `TASK_RETENTION_SECONDS` (default 604800, a week): finished tasks
    /// older than this are deleted with their thumbnails.
    pub task_retention: Duration,
    /// `CORS_ALLOWED_ORIGINS` (default none): the browser origins allowed
    /// to call api, comma-separated (`http://localhost:3000`).
    pub cors: pixelflow_common::cors::Cors,
    /// `LOG_LEVEL` (default [`pixelflow_common::logging::DEFAULT_FILTER`]).
    pub log_level: String,
    /// `OTEL_*`: whether and where spans are exported.
    pub tracing: pixelflow_common::telemetry::Tracing,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`, `HTTP_REQUEST_TIMEOUT_MS`,
    /// `HTTP_MAX_CONNECTIONS`: see [`pixelflow_common::server::HttpLimits`].
    pub http: pixelflow_common::server::HttpLimits,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let millis = |name, default: u64| -> Result<Duration, SettingsError> {
            Ok(Duration::from_millis(env.checked(name, default, positive)?))
        };
        Ok(Self {
            host: env.or("HOST", "0.0.0.0".to_string())?,
            port: env.or("PORT", 8080)?,
            database: DatabaseSettings::from_env(env, 10)?,
            kafka: KafkaSettings::from_env(env)?,
            kafka_message_timeout: millis("KAFKA_MESSAGE_TIMEOUT_MS", 5000)?,
            kafka_enable_idempotence: env.or("KAFKA_ENABLE_IDEMPOTENCE", true)?,
            outbox_poll_interval: millis("OUTBOX_POLL_INTERVAL_MS", 1000)?,
            task_redeliver_after: Duration::from_secs(env.checked(
                "TASK_REDELIVER_AFTER_SECONDS",
                300u64,
                positive,
            )?),
            auth_service_url: env
                .checked(
                    "AUTH_SERVICE_URL",
                    "http://localhost:50051".to_string(),
                    |url: &String| http_url(url),
                )?
                .trim_end_matches('/')
                .to_string(),
            auth_timeout: millis("AUTH_TIMEOUT_MS", 3000)?,
            max_upload_bytes: env.checked("MAX_UPLOAD_BYTES", 10 * 1024 * 1024, positive)?,
            max_image_dimension: env.checked("MAX_IMAGE_DIMENSION", 10_000, positive)?,
            max_image_pixels: env.checked("MAX_IMAGE_PIXELS", 64_000_000, positive)?,
            max_active_tasks_per_user: env.checked("MAX_ACTIVE_TASKS_PER_USER", 20, positive)?,
            upload_bytes_in_flight: env.checked(
                "UPLOAD_BYTES_IN_FLIGHT",
                64 * 1024 * 1024,
                positive,
            )?,
            user_storage_quota: env.checked(
                "USER_STORAGE_QUOTA_BYTES",
                1024 * 1024 * 1024,
                positive,
            )?,
            original_retention: Duration::from_secs(env.or("ORIGINAL_RETENTION_SECONDS", 0u64)?),
            task_retention: Duration::from_secs(env.checked(
                "TASK_RETENTION_SECONDS",
                7 * 24 * 3600u64,
                positive,
            )?),
            cors: pixelflow_common::cors::Cors::from_env(env)?,
            log_level: pixelflow_common::logging::level_from_env(env)?,
            tracing: pixelflow_common::telemetry::Tracing::from_env(env)?,
            http: pixelflow_common::server::HttpLimits::from_env(env)?,
        })
    }
}

/// An http(s) URL with a host, for `checked`: anything else would fail
/// every authenticated request, not the start.
fn http_url(value: &str) -> Result<(), String> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
        _ => Err("expected an http(s) URL such as http://auth:50051".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::from_env(&Env::pairs(&[])).expect("defaults");
        assert_eq!(s.port, 8080);
        assert_eq!(s.kafka.topic, "image-tasks");
        assert_eq!(s.kafka.partitions, 3);
        assert_eq!(s.max_upload_bytes, 10 * 1024 * 1024);
    }

    #[test]
    fn an_auth_url_that_is_not_an_http_url_is_refused_by_name() {
        for bad in ["localhost:50051", "auth:50051", "ftp://auth", "http://"] {
            let env = Env::pairs(&[("AUTH_SERVICE_URL", bad)]);
            let err = Settings::from_env(&env).expect_err(bad);
            assert!(err.to_string().contains("AUTH_SERVICE_URL"), "{err}");
        }
        let env = Env::pairs(&[("AUTH_SERVICE_URL", "https://auth.example:8443/")]);
        let s = Settings::from_env(&env).expect("an https URL");
        assert_eq!(s.auth_service_url, "https://auth.example:8443");
    }

    #[test]
    fn a_zero_upload_limit_is_refused_by_name() {
        let env = Env::pairs(&[("MAX_UPLOAD_BYTES", "0")]);
        let err = Settings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("MAX_UPLOAD_BYTES"), "{err}");
    }
}
