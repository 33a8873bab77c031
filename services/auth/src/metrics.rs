//! auth's metrics: RED plus registrations, logins, validations and database
//! latency. Fixed label values exist at 0 from start-up so `rate()` and
//! delta checks work from the first event.

use pixelflow_common::http_metrics::HttpMetrics;
use pixelflow_common::metrics::{register, LATENCY_BUCKETS};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

pub const LOGIN_STATUSES: [&str; 2] = ["success", "failure"];
pub const VALIDATION_STATUSES: [&str; 2] = ["valid", "invalid"];
pub const QUERY_TYPES: [&str; 2] = ["insert_user", "select_user_by_email"];

#[derive(Clone)]
pub struct AuthMetrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub registrations: IntCounter,
    pub logins: IntCounterVec,
    pub validations: IntCounterVec,
    pub db_query_duration: HistogramVec,
}

impl AuthMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let metrics = Self {
            http: HttpMetrics::new("auth", &registry)?,
            registrations: register(
                &registry,
                IntCounter::new("auth_registrations_total", "Users registered.")?,
            )?,
            logins: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("auth_logins_total", "Login attempts, by outcome."),
                    &["status"],
                )?,
            )?,
            validations: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "auth_token_validations_total",
                        "Token validations, by outcome.",
                    ),
                    &["status"],
                )?,
            )?,
            db_query_duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "auth_db_query_duration_seconds",
                        "Time spent in PostgreSQL queries, by query.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["query_type"],
                )?,
            )?,
            registry,
        };
        for status in LOGIN_STATUSES {
            metrics.logins.with_label_values(&[status]);
        }
        for status in VALIDATION_STATUSES {
            metrics.validations.with_label_values(&[status]);
        }
        for query in QUERY_TYPES {
            metrics.db_query_duration.with_label_values(&[query]);
        }
        Ok(metrics)
    }
}
