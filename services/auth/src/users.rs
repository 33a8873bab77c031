//! The users table, with every query timed into
//! `auth_db_query_duration_seconds{query_type}` and traced as a span of its
//! own.

use std::future::Future;

use pixelflow_common::telemetry::TimedBy;
use prometheus::Histogram;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub struct StoredUser {
    pub id: Uuid,
    pub password_hash: String,
}

/// `query` timed into `histogram` (its query type's child) and traced as
/// a span named `query_type`.
async fn timed<T>(
    histogram: &Histogram,
    query_type: &'static str,
    query: impl Future<Output = T>,
) -> T {
    let timer = histogram.start_timer();
    let result = query
        .timed_by(pixelflow_common::telemetry::db_span(query_type))
        .await;
    timer.observe_duration();
    result
}

/// Inserts a user; `None` when the email is taken.
pub async fn insert(
    pool: &PgPool,
    histogram: &Histogram,
    email: &str,
    password_hash: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let id = Uuid::new_v4();
    let inserted = timed(
        histogram,
        "insert_user",
        sqlx::query(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .execute(pool),
    )
    .await?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

pub async fn find_by_email(
    pool: &PgPool,
    histogram: &Histogram,
    email: &str,
) -> Result<Option<StoredUser>, sqlx::Error> {
    timed(
        histogram,
        "select_user_by_email",
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(pool),
    )
    .await
}
