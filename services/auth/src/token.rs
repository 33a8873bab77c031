//! JWTs (HS256) that carry a user id and expire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid: {0}")]
    Invalid(String),
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A token for `user_id` issued at `now`, and when it expires.
    pub fn issue_at(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), jsonwebtoken::errors::Error> {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(1));
        let expires_at = now + ttl;
        let claims = Claims {
            sub: user_id,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires_at))
    }

    /// The user id in a valid, unexpired token signed with our key.
    pub fn validate(&self, token: &str) -> Result<Uuid, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // auth checks its own tokens, so no clock skew to forgive.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims.sub),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        TokenKeys::new(secret.as_bytes(), Duration::from_secs(3600))
    }

    #[test]
    fn a_fresh_token_validates_to_its_user() {
        let k = keys("0123456789abcdef");
        let user = Uuid::new_v4();
        let (token, expires) = k.issue_at(user, Utc::now()).expect("issue");
        assert!(expires > Utc::now());
        assert_eq!(k.validate(&token).expect("valid"), user);
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let k = keys("0123456789abcdef");
        let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
        let (token, _) = k.issue_at(Uuid::new_v4(), two_hours_ago).expect("issue");
        assert!(matches!(k.validate(&token), Err(TokenError::Expired)));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let (token, _) = keys("another-secret-key!")
            .issue_at(Uuid::new_v4(), Utc::now())
            .expect("issue");
        assert!(matches!(
            keys("0123456789abcdef").validate(&token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        // header {"alg":"none","typ":"JWT"}, a valid-looking payload, no signature.
        let forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiLCJpYXQiOjAsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(keys("0123456789abcdef").validate(forged).is_err());
    }
}
