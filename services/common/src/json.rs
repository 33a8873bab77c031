//! A JSON body extractor whose every rejection is a 400 with a JSON error.
//!
//! axum's own `Json` answers 415 or 422 with a plain-text body; the services
//! promise `{"error": ...}` and 400 for any body that is not the expected
//! JSON.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                // An oversized body is its own client error, not a syntax one.
                let status = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    status
                } else {
                    axum::http::StatusCode::BAD_REQUEST
                };
                Err(ApiError::new(status, rejection.body_text()))
            }
        }
    }
}
