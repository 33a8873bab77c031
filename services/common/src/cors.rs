//! Cross-origin requests from browsers (the original system's React
//! frontend calls auth and api from its own origin). `CORS_ALLOWED_ORIGINS`
//! names the origins allowed, exactly; none by default. A preflight from an
//! allowed origin is answered here (before routing, which knows no OPTIONS
//! and would answer 405); one from another origin is refused with a JSON
//! 403; other requests from another origin are served without the headers
//! that let a browser show the answer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::ApiError;
use crate::settings::{Env, SettingsError};

/// The origins allowed to call the service from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    origins: Arc<Vec<String>>,
}

/// How long a browser may keep a preflight's answer.
const MAX_AGE_SECONDS: &str = "600";
/// What a browser may send: the token and the image's type.
const ALLOWED_HEADERS: &str = "authorization, content-type, traceparent";
/// What a browser script may read of an answer besides the simple headers.
const EXPOSED_HEADERS: &str = "traceparent, retry-after";

impl Cors {
    /// `CORS_ALLOWED_ORIGINS`: `scheme://host[:port]`, comma-separated.
    /// `*` is refused: the answers carry users' data and take a bearer
    /// token.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let Some(text) = env.raw("CORS_ALLOWED_ORIGINS") else {
            return Ok(Self::default());
        };
        let mut origins = Vec::new();
        for origin in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
            });
            if !valid {
                return Err(SettingsError::Invalid {
                    name: "CORS_ALLOWED_ORIGINS",
                    value: text.clone(),
                    reason: format!(
                        "{origin:?} is not an origin such as http://localhost:3000 (scheme, host and port, no path; * is not allowed)"
                    ),
                });
            }
            origins.push(origin.trim_end_matches('/').to_ascii_lowercase());
        }
        Ok(Self {
            origins: Arc::new(origins),
        })
    }

    pub fn allowing(origins: &[&str]) -> Self {
        Self {
            origins: Arc::new(origins.iter().map(|o| o.to_string()).collect()),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// `router` behind this policy.
    pub fn layer(self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self, middleware))
    }
}

async fn middleware(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string)
    else {
        return next.run(request).await;
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = cors.allows(&origin);
    match (preflight, allowed) {
        (true, true) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            allow(headers, &origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECONDS),
            );
            response
        }
        (true, false) => {
            tracing::warn!(origin = %crate::logging::clip(&origin), "CORS preflight refused: origin not allowed");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "this origin is not allowed to call the service (CORS_ALLOWED_ORIGINS)",
            )
            .into_response()
        }
        (false, true) => {
            let mut response = next.run(request).await;
            allow(response.headers_mut(), &origin);
            response.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            response
        }
        // Served, but without the headers a browser needs to let the page
        // read it: the browser refuses it.
        (false, false) => next.run(request).await,
    }
}

fn allow(headers: &mut axum::http::HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_a_wildcard_or_a_path_is_refused() {
        let env = Env::pairs(&[(
            "CORS_ALLOWED_ORIGINS",
            "http://localhost:3000, https://app.example",
        )]);
        let cors = Cors::from_env(&env).expect("valid");
        assert!(cors.allows("http://localhost:3000"));
        assert!(!cors.allows("http://localhost:3001"));
        assert_eq!(Cors::from_env(&Env::pairs(&[])), Ok(Cors::default()));
        for bad in ["*", "localhost:3000", "http://app.example/path"] {
            let env = Env::pairs(&[("CORS_ALLOWED_ORIGINS", bad)]);
            let err = Cors::from_env(&env).expect_err(bad).to_string();
            assert!(err.contains("CORS_ALLOWED_ORIGINS"), "{err}");
        }
    }
}
