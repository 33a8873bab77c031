//! auth's metrics: RED plus registrations, logins, validations and database
//! latency. Fixed label values exist at 0 from start-up so `rate()` and
//! delta checks work from the first event.

use pixelflow_common::http_metrics::HttpMetrics;
use pixelflow_common::metrics::{children, register, LATENCY_BUCKETS};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

pub const LOGIN_STATUSES: [&str; 2] = ["success", "failure"];
pub const VALIDATION_STATUSES: [&str; 2] = ["valid", "invalid"];
pub const QUERY_TYPES: [&str; 2] = ["insert_user", "select_user_by_email"];

/// `auth_logins_total{status}`, by status.
#[derive(Clone)]
pub struct Logins {
    pub success: IntCounter,
    pub failure: IntCounter,
}

/// `auth_token_validations_total{status}`, by status.
#[derive(Clone)]
pub struct Validations {
    pub valid: IntCounter,
    pub invalid: IntCounter,
}

/// `auth_db_query_duration_seconds{query_type}`, by query.
#[derive(Clone)]
pub struct DbQueries {
    pub insert_user: Histogram,
    pub select_user_by_email: Histogram,
}

#[derive(Clone)]
pub struct AuthMetrics {
    pub registry: Registry,
    pub http: HttpMetrics,
    pub registrations: IntCounter,
    pub logins: Logins,
    pub validations: Validations,
    pub db_queries: DbQueries,
}

impl AuthMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let logins = register(
            &registry,
            IntCounterVec::new(
                Opts::new("auth_logins_total", "Login attempts, by outcome."),
                &["status"],
            )?,
        )?;
        let validations = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "auth_token_validations_total",
                    "Token validations, by outcome.",
                ),
                &["status"],
            )?,
        )?;
        let db_query_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "auth_db_query_duration_seconds",
                    "Time spent in PostgreSQL queries, by query.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["query_type"],
            )?,
        )?;
        let [success, failure] = children(&logins, LOGIN_STATUSES);
        let [valid, invalid] = children(&validations, VALIDATION_STATUSES);
        let [insert_user, select_user_by_email] = children(&db_query_duration, QUERY_TYPES);
        let metrics = Self {
            http: HttpMetrics::new("auth", &registry)?,
            registrations: register(
                &registry,
                IntCounter::new("auth_registrations_total", "Users registered.")?,
            )?,
            logins: Logins { success, failure },
            validations: Validations { valid, invalid },
            db_queries: DbQueries {
                insert_user,
                select_user_by_email,
            },
            registry,
        };
        Ok(metrics)
    }
}
