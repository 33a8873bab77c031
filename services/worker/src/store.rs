//! The tasks table as the worker sees it. Each update names the status it
//! expects, so handling an event twice changes nothing the second time.

use pixelflow_common::telemetry::{db_span, TimedBy};
use sqlx::PgPool;
use uuid::Uuid;

use crate::thumbnail::Thumbnail;

/// A claimed task: its image and how many claims it has had, this one
/// included.
#[derive(sqlx::FromRow)]
pub struct Claimed {
    /// Present for a task still to process (an original is dropped only
    /// once the task is finished).
    pub image: Option<Vec<u8>>,
    pub attempts: i32,
}

/// Marks the task PROCESSING, counts the attempt and returns its image;
/// `None` when the task is already COMPLETED or FAILED (a repeated event)
/// or does not exist. A task found PROCESSING was left so by a worker that
/// stopped mid-way: it is claimed again, one attempt more.
pub async fn claim(pool: &PgPool, task_id: Uuid) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE tasks SET status = 'PROCESSING', attempts = attempts + 1, \
         updated_at = clock_timestamp() \
         WHERE id = $1 AND status IN ('PENDING', 'PROCESSING') RETURNING image, attempts",
    )
    .bind(task_id)
    .fetch_optional(pool)
    .timed_by(db_span("UPDATE tasks claim"))
    .await
}

/// Stores the thumbnail; false when the task was no longer PROCESSING
/// (another delivery of the same event recorded an outcome first), so the
/// caller counts each task once.
/// With `drop_original` the original image goes as the thumbnail is stored
/// (`ORIGINAL_RETENTION_SECONDS=0`); either way `stored_bytes` follows
/// what the row holds.
pub async fn complete(
    pool: &PgPool,
    task_id: Uuid,
    thumbnail: &Thumbnail,
    drop_original: bool,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET status = 'COMPLETED', result = $2, result_width = $3, \
         result_height = $4, error = NULL, updated_at = clock_timestamp(), \
         image = CASE WHEN $5 THEN NULL ELSE image END, \
         stored_bytes = octet_length($2) \
           + CASE WHEN $5 THEN 0 ELSE coalesce(octet_length(image), 0) END \
         WHERE id = $1 AND status = 'PROCESSING'",
    )
    .bind(task_id)
    .bind(&thumbnail.png)
    .bind(i32::try_from(thumbnail.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(thumbnail.height).unwrap_or(i32::MAX))
    .bind(drop_original)
    .execute(pool)
    .timed_by(db_span("UPDATE tasks complete"))
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Marks the task FAILED with `reason`; false as for [`complete`].
pub async fn fail(
    pool: &PgPool,
    task_id: Uuid,
    reason: &str,
    drop_original: bool,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET status = 'FAILED', error = $2, updated_at = clock_timestamp(), \
         image = CASE WHEN $3 THEN NULL ELSE image END, \
         stored_bytes = CASE WHEN $3 THEN 0 ELSE coalesce(octet_length(image), 0) END \
         WHERE id = $1 AND status = 'PROCESSING'",
    )
    .bind(task_id)
    .bind(reason)
    .bind(drop_original)
    .execute(pool)
    .timed_by(db_span("UPDATE tasks fail"))
    .await
    .map(|done| done.rows_affected() == 1)
}
