//! The tasks table as api sees it: create (with its outbox row, in one
//! transaction), list, read, read the result.

use chrono::{DateTime, Utc};
use pixelflow_common::kafka::TaskCreated;
use pixelflow_common::telemetry::{db_span, TimedBy};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::upload::Upload;

/// Where a task is; the tasks table's CHECK constraint holds the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Processing => "PROCESSING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
        }
    }
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "PENDING" => Ok(Status::Pending),
            "PROCESSING" => Ok(Status::Processing),
            "COMPLETED" => Ok(Status::Completed),
            "FAILED" => Ok(Status::Failed),
            _ => Err(format!("unknown task status {text:?}")),
        }
    }
}

/// A task as clients see it: never the image bytes.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Task {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub result_width: Option<i32>,
    pub result_height: Option<i32>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const TASK_COLUMNS: &str = "id, status, content_type, width, height, result_width, \
     result_height, error, created_at, updated_at";

/// What an upload became.
pub enum Created {
    Task(Task),
    /// The user already has `active` tasks waiting or processing, the most
    /// allowed: nothing was stored.
    TooMany {
        active: i64,
    },
    /// The user's tasks hold `used` bytes of images; with this upload they
    /// would hold more than `quota`: nothing was stored.
    OverQuota {
        used: i64,
        quota: i64,
    },
}

/// What one user may hold.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// Tasks PENDING or PROCESSING at once.
    pub active_tasks: i64,
    /// Bytes of images (originals and thumbnails) over all the user's
    /// tasks.
    pub stored_bytes: i64,
}

/// The user's tasks PENDING or PROCESSING (the partial index
/// `tasks_active_by_user`, not the user's whole history).
pub async fn active(
    executor: impl sqlx::PgExecutor<'_>,
    user_id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE user_id = $1 AND status IN ('PENDING', 'PROCESSING')",
    )
    .bind(user_id)
    .fetch_one(executor)
    .timed_by(db_span("COUNT active tasks"))
    .await
}

/// The bytes of images the user's tasks hold (`tasks_stored_by_user`).
pub async fn stored(
    executor: impl sqlx::PgExecutor<'_>,
    user_id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(stored_bytes), 0)::BIGINT FROM tasks WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(executor)
    .timed_by(db_span("SUM stored bytes"))
    .await
}

/// Stores the task and its event in one transaction: either both exist or
/// neither does, so a task can never miss its event. A user may have at
/// most `max_active` tasks PENDING or PROCESSING: one client cannot queue
/// unbounded work for the worker. The count is taken under a per-user
/// advisory lock, so concurrent uploads cannot overshoot it.
pub async fn create(
    pool: &PgPool,
    user_id: Uuid,
    upload: &Upload,
    allowance: Allowance,
) -> Result<Created, sqlx::Error> {
    let mut tx = pool.begin().timed_by(db_span("BEGIN")).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(user_id)
        .execute(&mut *tx)
        .timed_by(db_span("LOCK user tasks"))
        .await?;
    let active = active(&mut *tx, user_id).await?;
    if active >= allowance.active_tasks {
        return Ok(Created::TooMany { active });
    }
    let used = stored(&mut *tx, user_id).await?;
    let size = i64::try_from(upload.bytes.len()).unwrap_or(i64::MAX);
    if used.saturating_add(size) > allowance.stored_bytes {
        return Ok(Created::OverQuota {
            used,
            quota: allowance.stored_bytes,
        });
    }
    // Stored with the task: an event the sweeper queues again later names
    // this span, and stays in the upload's trace.
    let insert_task = db_span("INSERT tasks");
    let task_traceparent = insert_task.traceparent();
    let task: Task = sqlx::query_as(&format!(
        "INSERT INTO tasks (id, user_id, status, content_type, width, height, image, traceparent, stored_bytes) \
         VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $8) RETURNING {TASK_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(user_id)
    .bind(upload.content_type)
    .bind(i32::try_from(upload.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(upload.height).unwrap_or(i32::MAX))
    .bind(upload.bytes.as_ref())
    .bind(task_traceparent)
    .bind(size)
    .fetch_one(&mut *tx)
    .timed_by(insert_task)
    .await?;
    let event = TaskCreated {
        task_id: task.id,
        user_id,
        content_type: task.content_type.clone(),
        created_at: task.created_at,
    };
    // The event's traceparent names the outbox insert: the worker's spans
    // hang under it, in the upload's trace.
    let insert = db_span("INSERT task_outbox");
    let traceparent = insert.traceparent();
    crate::outbox::enqueue(&mut tx, &event, traceparent.as_deref())
        .timed_by(insert)
        .await?;
    tx.commit().timed_by(db_span("COMMIT")).await?;
    Ok(Created::Task(task))
}

/// Deletes one of the user's tasks, its images and any event still
/// waiting for it; false when there is no such task of theirs. A worker
/// holding it finds it gone and records nothing.
pub async fn delete(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM tasks WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .timed_by(db_span("DELETE task"))
        .await
        .map(|done| done.rows_affected() == 1)
}

/// How much a retention sweep removes at most, so one sweep after a long
/// time away cannot hold the table for long.
const SWEEP_BATCH: i64 = 500;

/// Drops the originals of tasks finished more than `originals` ago and
/// deletes the tasks finished more than `tasks` ago; returns how many of
/// each.
pub async fn retain(
    pool: &PgPool,
    originals: std::time::Duration,
    tasks: std::time::Duration,
) -> Result<(u64, u64), sqlx::Error> {
    let dropped = sqlx::query(
        "UPDATE tasks SET image = NULL, stored_bytes = coalesce(octet_length(result), 0) \
         WHERE id IN (SELECT id FROM tasks WHERE status IN ('COMPLETED', 'FAILED') \
           AND image IS NOT NULL \
           AND updated_at < clock_timestamp() - make_interval(secs => $1) LIMIT $2)",
    )
    .bind(originals.as_secs_f64())
    .bind(SWEEP_BATCH)
    .execute(pool)
    .timed_by(db_span("UPDATE tasks drop originals"))
    .await?
    .rows_affected();
    let deleted = sqlx::query(
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
           WHERE status IN ('COMPLETED', 'FAILED') \
           AND updated_at < clock_timestamp() - make_interval(secs => $1) LIMIT $2)",
    )
    .bind(tasks.as_secs_f64())
    .bind(SWEEP_BATCH)
    .execute(pool)
    .timed_by(db_span("DELETE tasks past retention"))
    .await?
    .rows_affected();
    Ok((dropped, deleted))
}

/// The bytes of images stored for all users, and the largest one user's
/// tasks hold.
pub async fn storage(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT coalesce(sum(per_user), 0)::BIGINT, coalesce(max(per_user), 0)::BIGINT \
         FROM (SELECT sum(stored_bytes) AS per_user FROM tasks GROUP BY user_id) AS users",
    )
    .fetch_one(pool)
    .await
}

/// The user's tasks, newest first.
pub async fn list(pool: &PgPool, user_id: Uuid, limit: i64) -> Result<Vec<Task>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .timed_by(db_span("SELECT tasks"))
    .await
}

/// One of the user's tasks; someone else's is `None`, like a missing one.
pub async fn get(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<Option<Task>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .timed_by(db_span("SELECT task"))
    .await
}

/// A task's outcome: its status, error and thumbnail.
#[derive(sqlx::FromRow)]
pub struct Outcome {
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub error: Option<String>,
    pub result: Option<Vec<u8>>,
}

/// The thumbnail of one of the user's tasks, with the task's status and
/// error so a caller can say why there is none yet.
pub async fn result(
    pool: &PgPool,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Outcome>, sqlx::Error> {
    sqlx::query_as("SELECT status, error, result FROM tasks WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .timed_by(db_span("SELECT task result"))
        .await
}
