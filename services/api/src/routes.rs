//! api's HTTP routes.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pixelflow_common::error::ApiError;
use pixelflow_common::health::Check;
use pixelflow_common::http_metrics::standard_routes;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth_client::AuthError;
use crate::tasks::Status;
use crate::{tasks, upload, AppState};

/// Multipart framing around the image may add a little to the body.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let http = state.metrics.http.clone();
    let registry = state.metrics.registry.clone();
    let cors = state.cors.clone();
    let body_limit = state.limits.max_bytes + MULTIPART_OVERHEAD;
    let routes = Router::new()
        .route(
            "/api/upload",
            post(upload).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/api/tasks", get(list))
        .route("/api/tasks/{id}", get(get_task).delete(delete_task))
        .route("/api/tasks/{id}/result", get(result))
        .route("/ready", get(ready))
        .with_state(state);
    cors.layer(http.layer(standard_routes(routes, registry)))
}

/// The caller, as auth vouches for it.
pub struct AuthUser(pub Uuid);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
        match state.auth.validate(header).await {
            Ok(user_id) => Ok(Self(user_id)),
            Err(AuthError::Unauthorized(reason)) => Err(ApiError::unauthorized(reason)),
            Err(e @ AuthError::Unavailable(_)) => {
                tracing::error!(error = %e, "cannot validate token");
                Err(
                    ApiError::unavailable("authentication is unavailable, try again later")
                        .retry_after(1),
                )
            }
        }
    }
}

fn too_many_active(active: i64) -> ApiError {
    ApiError::too_many_requests(format!(
        "active tasks limit: {active} of your tasks are still waiting or processing, the most \
         allowed (MAX_ACTIVE_TASKS_PER_USER); upload again when some have finished"
    ))
    .retry_after(5)
}

fn over_quota(used: i64, quota: i64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "storage quota: your tasks hold {used} of {quota} bytes of images \
             (USER_STORAGE_QUOTA_BYTES); delete tasks (DELETE /api/tasks/{{id}}) to make room"
        ),
    )
}

/// The upload's size as its request declares it, when it does.
fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn upload(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    req: Request,
) -> Result<Response, ApiError> {
    let refused = |e: ApiError| {
        tracing::warn!(%user_id, error = %e.message, "upload refused");
        e
    };
    // The cheap refusals come before the body is read: a user at a limit
    // costs a query, not 10 MiB received.
    let limits = &state.limits;
    let active = tasks::active(&state.pool, user_id)
        .await
        .map_err(|e| ApiError::database("cannot count active tasks", &e))?;
    if active >= limits.max_active_tasks_per_user {
        return Err(refused(too_many_active(active)));
    }
    let declared = declared_length(&req);
    let used = tasks::stored(&state.pool, user_id)
        .await
        .map_err(|e| ApiError::database("cannot sum stored bytes", &e))?;
    let incoming = i64::try_from(declared.unwrap_or(1)).unwrap_or(i64::MAX);
    if used.saturating_add(incoming.min(i64::try_from(limits.max_bytes).unwrap_or(i64::MAX)))
        > limits.user_storage_quota
    {
        return Err(refused(over_quota(used, limits.user_storage_quota)));
    }
    let _room = state
        .in_flight
        .reserve(
            declared
                .unwrap_or(limits.max_bytes + MULTIPART_OVERHEAD)
                .min(limits.max_bytes + MULTIPART_OVERHEAD),
        )
        .map_err(refused)?;
    let image = upload::read(req, limits).await.map_err(refused)?;
    // Checked again under the user's lock: concurrent uploads cannot
    // overshoot either limit.
    let created = tasks::create(&state.pool, user_id, &image, limits.allowance())
        .await
        .map_err(|e| ApiError::database("cannot store task", &e))?;
    let task = match created {
        tasks::Created::Task(task) => task,
        tasks::Created::TooMany { active } => return Err(refused(too_many_active(active))),
        tasks::Created::OverQuota { used, quota } => return Err(refused(over_quota(used, quota))),
    };
    state.outbox.notify_one();
    state.metrics.tasks_created.inc();
    tracing::info!(%user_id, task_id = %task.id, bytes = image.bytes.len(), "task created");
    Ok((StatusCode::CREATED, Json(task)).into_response())
}

async fn delete_task(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(path)?;
    // Someone else's task is "no such task", as for reading it.
    if !tasks::delete(&state.pool, user_id, id)
        .await
        .map_err(|e| ApiError::database("cannot delete task", &e))?
    {
        return Err(no_such_task());
    }
    tracing::info!(%user_id, task_id = %id, "task deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

const DEFAULT_LIST_LIMIT: i64 = 50;
const MAX_LIST_LIMIT: i64 = 500;

async fn list(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<tasks::Task>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}"
        )));
    }
    let tasks = tasks::list(&state.pool, user_id, limit)
        .await
        .map_err(|e| ApiError::database("cannot list tasks", &e))?;
    state.metrics.tasks_retrieved.inc();
    Ok(Json(tasks))
}

fn task_id(path: Result<Path<Uuid>, PathRejection>) -> Result<Uuid, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|_| ApiError::bad_request("task id must be a UUID"))
}

fn no_such_task() -> ApiError {
    ApiError::not_found("no such task")
}

async fn get_task(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<tasks::Task>, ApiError> {
    let id = task_id(path)?;
    let task = tasks::get(&state.pool, user_id, id)
        .await
        .map_err(|e| ApiError::database("cannot read task", &e))?
        .ok_or_else(no_such_task)?;
    state.metrics.tasks_retrieved.inc();
    Ok(Json(task))
}

async fn result(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    path: Result<Path<Uuid>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(path)?;
    let tasks::Outcome {
        status,
        error,
        result,
    } = tasks::result(&state.pool, user_id, id)
        .await
        .map_err(|e| ApiError::database("cannot read task result", &e))?
        .ok_or_else(no_such_task)?;
    match (status, result) {
        (Status::Completed, Some(png)) => {
            state.metrics.tasks_retrieved.inc();
            Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
        (Status::Failed, _) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "task failed: {}",
                error.unwrap_or_else(|| "no reason recorded".into())
            ),
        )),
        (status, _) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("task is {}; its result is not ready yet", status.as_str()),
        )),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    let timeout = Duration::from_secs(2);
    state
        .ready
        .answer(async {
            let (db, broker, auth) = tokio::join!(
                pixelflow_common::db::check(&state.pool, timeout),
                state.broker.check(timeout),
                Check::run("auth", timeout, state.auth.probe()),
            );
            vec![db, broker, auth]
        })
        .await
}
