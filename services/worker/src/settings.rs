//! worker's configuration, from environment variables.

use std::time::Duration;

use pixelflow_common::db::DatabaseSettings;
use pixelflow_common::kafka::KafkaSettings;
use pixelflow_common::settings::{positive, Env, SettingsError};

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST` (default `0.0.0.0`): where metrics and health listen.
    pub host: String,
    /// `METRICS_PORT` (default 8081). 0 picks a free port (tests).
    pub metrics_port: u16,
    /// `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` (default 5).
    pub database: DatabaseSettings,
    /// `KAFKA_BROKERS`, `KAFKA_TOPIC`, `KAFKA_TOPIC_PARTITIONS`.
    pub kafka: KafkaSettings,
    /// `KAFKA_GROUP_ID` (default `pixelflow-workers`).
    pub kafka_group_id: String,
    /// `KAFKA_GROUP_INSTANCE_ID` (default unset): a static group member id,
    /// stable across restarts of this worker. `{hostname}` in it is this
    /// host's name, so replicas get an id each from one setting: compose
    /// sets `{hostname}` (pixelflowctl names replicas `worker-1`,
    /// `worker-2`…), a Kubernetes StatefulSet's pods are `worker-0`….
    pub kafka_group_instance_id: Option<String>,
    /// `WORKER_CONCURRENCY` (default: the CPUs this process may use, as the
    /// container's CPU quota and affinity allow): events processed at once,
    /// decoding and resizing on blocking threads.
    pub concurrency: usize,
    /// `MAX_TASK_ATTEMPTS` (default 3): claims of one task whose worker
    /// stopped mid-way before the task is marked FAILED.
    pub max_task_attempts: u32,
    /// `THUMBNAIL_SIZE` (default 256): thumbnails fit a square of this side.
    pub thumbnail_size: u32,
    /// `MAX_IMAGE_DIMENSION` (default 10000): larger images are refused
    /// before decoding.
    pub max_image_dimension: u32,
    /// `MAX_DECODE_BYTES` (default 512 MiB): the most memory one decode may
    /// allocate.
    pub max_decode_bytes: u64,
    /// `MAX_IMAGE_PIXELS` (default 64000000): width × height, from the
    /// header, beyond which an image is not decoded.
    pub max_image_pixels: u64,
    /// `RETRY_INTERVAL_MS` (default 1000): the wait before retrying after the
    /// database or broker failed.
    pub retry_interval: Duration,
    /// `ORIGINAL_RETENTION_SECONDS` (default 0): 0 drops a task's original
    /// image as its outcome is stored; longer, api's sweep drops it then.
    pub original_retention: Duration,
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
        Ok(Self {
            host: env.or("HOST", "0.0.0.0".to_string())?,
            metrics_port: env.or("METRICS_PORT", 8081)?,
            database: DatabaseSettings::from_env(env, 5)?,
            kafka: KafkaSettings::from_env(env)?,
            kafka_group_id: env.or("KAFKA_GROUP_ID", "pixelflow-workers".to_string())?,
            kafka_group_instance_id: env
                .raw("KAFKA_GROUP_INSTANCE_ID")
                .map(|id| id.replace("{hostname}", &hostname(env))),
            concurrency: env.checked("WORKER_CONCURRENCY", default_concurrency(), positive)?,
            max_task_attempts: env.checked("MAX_TASK_ATTEMPTS", 3u32, positive)?,
            thumbnail_size: env.checked("THUMBNAIL_SIZE", 256, positive)?,
            max_image_dimension: env.checked("MAX_IMAGE_DIMENSION", 10_000, positive)?,
            max_decode_bytes: env.checked("MAX_DECODE_BYTES", 512 * 1024 * 1024, positive)?,
            max_image_pixels: env.checked("MAX_IMAGE_PIXELS", 64_000_000, positive)?,
            retry_interval: Duration::from_millis(env.checked(
                "RETRY_INTERVAL_MS",
                1000u64,
                positive,
            )?),
            original_retention: Duration::from_secs(env.or("ORIGINAL_RETENTION_SECONDS", 0u64)?),
            log_level: pixelflow_common::logging::level_from_env(env)?,
            tracing: pixelflow_common::telemetry::Tracing::from_env(env)?,
            http: pixelflow_common::server::HttpLimits::from_env(env)?,
        })
    }
}

/// This host's name: `HOSTNAME` (Docker and Kubernetes set it), else the
/// kernel's.
fn hostname(env: &Env) -> String {
    env.raw("HOSTNAME")
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

/// The CPUs this process may use: std reads the cgroup quota (`--cpus`,
/// a pod's CPU limit) and the affinity mask, not only the machine's count.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::from_env(&Env::pairs(&[])).expect("defaults");
        assert_eq!(s.metrics_port, 8081);
        assert_eq!(s.kafka_group_id, "pixelflow-workers");
        assert_eq!(s.thumbnail_size, 256);
        assert_eq!(s.concurrency, default_concurrency());
        assert!(s.concurrency >= 1);
    }

    #[test]
    fn the_group_instance_id_takes_the_host_name_where_it_says_so() {
        let env = Env::pairs(&[
            ("KAFKA_GROUP_INSTANCE_ID", "{hostname}"),
            ("HOSTNAME", "worker-2"),
        ]);
        let s = Settings::from_env(&env).expect("settings");
        assert_eq!(s.kafka_group_instance_id.as_deref(), Some("worker-2"));
        let env = Env::pairs(&[("KAFKA_GROUP_INSTANCE_ID", "fixed-1"), ("HOSTNAME", "x")]);
        let s = Settings::from_env(&env).expect("settings");
        assert_eq!(s.kafka_group_instance_id.as_deref(), Some("fixed-1"));
    }

    #[test]
    fn a_concurrency_of_zero_is_refused_by_name() {
        let env = Env::pairs(&[("WORKER_CONCURRENCY", "0")]);
        let err = Settings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("WORKER_CONCURRENCY"), "{err}");
    }

    #[test]
    fn a_bad_port_is_refused_by_name() {
        let env = Env::pairs(&[("METRICS_PORT", "99999")]);
        let err = Settings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("METRICS_PORT"), "{err}");
    }
}
