//! auth's HTTP routes.

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pixelflow_common::error::ApiError;
use pixelflow_common::http_metrics::standard_routes;
use pixelflow_common::json::JsonBody;
use serde::Deserialize;

use crate::password::PasswordError;
use crate::token::TokenError;
use crate::{users, AppState};

/// Credentials are small; anything bigger is refused before parsing.
const MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_EMAIL_LEN: usize = 254;
pub const MIN_PASSWORD_LEN: usize = 8;
/// Argon2 would happily hash megabytes; there is no reason to let it.
const MAX_PASSWORD_LEN: usize = 1024;

pub fn router(state: AppState) -> Router {
    let http = state.metrics.http.clone();
    let registry = state.metrics.registry.clone();
    let cors = state.cors.clone();
    let routes = Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/validate", get(validate))
        .route("/ready", get(ready))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    cors.layer(http.layer(standard_routes(routes, registry)))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

/// The email as stored and looked up: trimmed, Unicode-normalised (NFC:
/// `é` and `e` + U+0301 are one address) and lowercased; or why it is not
/// an email. Run before anything else sees it, the login throttle
/// included, so no key is longer than [`MAX_EMAIL_LEN`].
pub fn normalised_email(raw: &str) -> Result<String, ApiError> {
    use unicode_normalization::UnicodeNormalization;
    // Bounded before the work: a 16 KiB "email" is refused by its length.
    if raw.len() > 4 * MAX_EMAIL_LEN {
        return Err(ApiError::bad_request(format!(
            "email must be at most {MAX_EMAIL_LEN} characters"
        )));
    }
    let email: String = raw.trim().nfc().collect::<String>().to_lowercase();
    validate_email(&email).map_err(ApiError::bad_request)?;
    Ok(email)
}

impl Credentials {
    /// The normalised email, or what is wrong with the input.
    fn validated(&self) -> Result<String, ApiError> {
        let email = normalised_email(&self.email)?;
        if self.password.chars().count() < MIN_PASSWORD_LEN {
            return Err(ApiError::bad_request(format!(
                "password must be at least {MIN_PASSWORD_LEN} characters"
            )));
        }
        if self.password.len() > MAX_PASSWORD_LEN {
            return Err(ApiError::bad_request(format!(
                "password must be at most {MAX_PASSWORD_LEN} bytes"
            )));
        }
        Ok(email)
    }
}

/// A deliberately plain check: one `@`, something before it, a dotted
/// domain after it, no spaces or control characters.
fn validate_email(email: &str) -> Result<(), String> {
    if email.is_empty() {
        return Err("email is required".into());
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!("email must be at most {MAX_EMAIL_LEN} characters"));
    }
    let malformed = || Err("email is malformed".to_string());
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return malformed();
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => malformed(),
    }
}

async fn register(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let email = credentials.validated()?;
    let hash = state
        .hasher
        .hash(credentials.password)
        .await
        .map_err(hashing_error)?;
    let inserted = users::insert(
        &state.pool,
        &state.metrics.db_queries.insert_user,
        &email,
        &hash,
    )
    .await
    .map_err(|e| ApiError::database("cannot store user", &e))?;
    match inserted {
        Some(user_id) => {
            state.metrics.registrations.inc();
            tracing::info!(%user_id, "user registered");
            Ok((
                StatusCode::CREATED,
                Json(serde_json::json!({ "user_id": user_id })),
            )
                .into_response())
        }
        None => {
            tracing::warn!("registration refused: email already registered");
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "email already registered",
            ))
        }
    }
}

async fn login(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let email = normalised_email(&credentials.email).inspect_err(|e| {
        tracing::warn!(error = %e.message, "login refused: not an email");
    })?;
    if let Err(wait) = state.throttle.attempt(&email, Instant::now()) {
        tracing::warn!(
            retry_after_s = wait,
            "login refused: too many failed logins for this email"
        );
        return Err(
            ApiError::too_many_requests("too many login attempts; try again later")
                .retry_after(wait),
        );
    }
    let user = users::find_by_email(
        &state.pool,
        &state.metrics.db_queries.select_user_by_email,
        &email,
    )
    .await
    .map_err(|e| ApiError::database("cannot look up user", &e))?;
    // Unknown emails are checked against a decoy hash, so both failures take
    // the same time and get the same answer.
    let (user_id, phc) = match &user {
        Some(u) => (Some(u.id), u.password_hash.clone()),
        None => (None, state.decoy_hash.to_string()),
    };
    let matches = state
        .hasher
        .verify(credentials.password, phc)
        .await
        .map_err(hashing_error)?;
    let user_id = match (user_id, matches) {
        (Some(id), true) => id,
        _ => {
            state.metrics.logins.failure.inc();
            match user_id {
                Some(user_id) => tracing::warn!(%user_id, "login failed: wrong password"),
                None => tracing::warn!("login failed: unknown email"),
            }
            return Err(ApiError::unauthorized("invalid email or password"));
        }
    };
    let (token, expires_at) = state
        .tokens
        .issue_at(user_id, chrono::Utc::now())
        .map_err(|e| ApiError::internal("cannot sign token", &e))?;
    state.throttle.succeeded(&email);
    state.metrics.logins.success.inc();
    tracing::info!(%user_id, "user logged in");
    Ok(Json(serde_json::json!({
        "token": token,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
    .into_response())
}

/// Busy hashing slots are load, not a fault: 503 with `Retry-After`.
fn hashing_error(e: PasswordError) -> ApiError {
    match e {
        PasswordError::Busy(waited) => {
            tracing::warn!(
                waited_ms = waited.as_millis() as u64,
                "refused: password hashing is saturated"
            );
            ApiError::unavailable("too busy; try again shortly").retry_after(1)
        }
        other => ApiError::internal("password hashing failed", &other),
    }
}

/// The token in `Authorization: Bearer <token>`, or why there is none.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("missing Authorization header")?
        .to_str()
        .map_err(|_| "malformed Authorization header")?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err("Authorization header must be 'Bearer <token>'"),
    }
}

async fn validate(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let result = bearer_token(&headers)
        .map_err(str::to_string)
        .and_then(|token| {
            state.tokens.validate(token).map_err(|e| match e {
                TokenError::Expired => "token expired".to_string(),
                TokenError::Invalid(_) => "token invalid".to_string(),
            })
        });
    match result {
        Ok(user_id) => {
            state.metrics.validations.valid.inc();
            Ok(Json(serde_json::json!({ "valid": true, "user_id": user_id })).into_response())
        }
        Err(reason) => {
            state.metrics.validations.invalid.inc();
            tracing::warn!(error = %reason, "token validation failed");
            Err(ApiError::unauthorized(reason))
        }
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    state
        .ready
        .answer(async {
            vec![pixelflow_common::db::check(&state.pool, Duration::from_secs(2)).await]
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_emails_pass_and_malformed_ones_do_not() {
        assert!(validate_email("ada@example.com").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "a da@example.com",
            "a@b@c.com",
            "ada@.com",
            "ada@example.",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Err("missing Authorization header"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert!(bearer_token(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            "Bearer abc.def".parse().expect("header"),
        );
        assert_eq!(bearer_token(&headers), Ok("abc.def"));
    }
}
