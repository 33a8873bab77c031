//! The tasks table as the worker sees it. Each update names the status it
//! expects, so handling an event twice changes nothing the second time.

use sqlx::PgPool;
use uuid::Uuid;

use crate::thumbnail::Thumbnail;

/// Marks the task PROCESSING and returns its image; `None` when the task is
/// already COMPLETED or FAILED (a repeated event) or does not exist.
pub async fn claim(pool: &PgPool, task_id: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE tasks SET status = 'PROCESSING', updated_at = clock_timestamp() \
         WHERE id = $1 AND status IN ('PENDING', 'PROCESSING') RETURNING image",
    )
    .bind(task_id)
    .fetch_optional(pool)
    .await
}

pub async fn complete(
    pool: &PgPool,
    task_id: Uuid,
    thumbnail: &Thumbnail,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET status = 'COMPLETED', result = $2, result_width = $3, \
         result_height = $4, error = NULL, updated_at = clock_timestamp() \
         WHERE id = $1 AND status = 'PROCESSING'",
    )
    .bind(task_id)
    .bind(&thumbnail.png)
    .bind(i32::try_from(thumbnail.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(thumbnail.height).unwrap_or(i32::MAX))
    .execute(pool)
    .await
    .map(|_| ())
}

pub async fn fail(pool: &PgPool, task_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET status = 'FAILED', error = $2, updated_at = clock_timestamp() \
         WHERE id = $1 AND status = 'PROCESSING'",
    )
    .bind(task_id)
    .bind(reason)
    .execute(pool)
    .await
    .map(|_| ())
}
