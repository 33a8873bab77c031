//! worker's configuration, from environment variables.

use std::time::Duration;

use pixelflow_common::settings::{positive, Env, SettingsError};

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST` (default `0.0.0.0`): where metrics and health listen.
    pub host: String,
    /// `METRICS_PORT` (default 8081). 0 picks a free port (tests).
    pub metrics_port: u16,
    /// `DATABASE_URL` (default `postgres://postgres:postgres@localhost:5432/pixelflow`).
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS` (default 5).
    pub database_max_connections: u32,
    /// `KAFKA_BROKERS` (default `localhost:9092`).
    pub kafka_brokers: String,
    /// `KAFKA_TOPIC` (default `image-tasks`).
    pub kafka_topic: String,
    /// `KAFKA_TOPIC_PARTITIONS` (default 3): used when the worker creates the
    /// topic because it starts before api.
    pub kafka_topic_partitions: i32,
    /// `KAFKA_GROUP_ID` (default `pixelflow-workers`).
    pub kafka_group_id: String,
    /// `THUMBNAIL_SIZE` (default 256): thumbnails fit a square of this side.
    pub thumbnail_size: u32,
    /// `MAX_IMAGE_DIMENSION` (default 10000): larger images are refused
    /// before decoding.
    pub max_image_dimension: u32,
    /// `MAX_DECODE_BYTES` (default 512 MiB): the most memory one decode may
    /// allocate.
    pub max_decode_bytes: u64,
    /// `RETRY_INTERVAL_MS` (default 1000): the wait before retrying after the
    /// database or broker failed.
    pub retry_interval: Duration,
    /// `LOG_LEVEL` (default `info`).
    pub log_level: String,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            host: env.or("HOST", "0.0.0.0".to_string())?,
            metrics_port: env.or("METRICS_PORT", 8081)?,
            database_url: env.or(
                "DATABASE_URL",
                "postgres://postgres:postgres@localhost:5432/pixelflow".to_string(),
            )?,
            database_max_connections: env.checked("DATABASE_MAX_CONNECTIONS", 5, positive)?,
            kafka_brokers: env.or("KAFKA_BROKERS", "localhost:9092".to_string())?,
            kafka_topic: env.or("KAFKA_TOPIC", "image-tasks".to_string())?,
            kafka_topic_partitions: env.checked("KAFKA_TOPIC_PARTITIONS", 3, positive)?,
            kafka_group_id: env.or("KAFKA_GROUP_ID", "pixelflow-workers".to_string())?,
            thumbnail_size: env.checked("THUMBNAIL_SIZE", 256, positive)?,
            max_image_dimension: env.checked("MAX_IMAGE_DIMENSION", 10_000, positive)?,
            max_decode_bytes: env.checked("MAX_DECODE_BYTES", 512 * 1024 * 1024, positive)?,
            retry_interval: Duration::from_millis(env.checked(
                "RETRY_INTERVAL_MS",
                1000u64,
                positive,
            )?),
            log_level: env.or("LOG_LEVEL", "info".to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::from_env(&Env::from_map(Default::default())).expect("defaults");
        assert_eq!(s.metrics_port, 8081);
        assert_eq!(s.kafka_group_id, "pixelflow-workers");
        assert_eq!(s.thumbnail_size, 256);
    }

    #[test]
    fn a_bad_port_is_refused_by_name() {
        let env = Env::from_map([("METRICS_PORT".to_string(), "99999".to_string())].into());
        let err = Settings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("METRICS_PORT"), "{err}");
    }
}
