//! auth's configuration, from environment variables.

use std::time::Duration;

use pixelflow_common::db::DatabaseSettings;
use pixelflow_common::settings::{positive, Env, SettingsError};

/// Everything auth reads from its environment, with the defaults it uses.
#[derive(Clone)]
pub struct Settings {
    /// `HOST` (default `0.0.0.0`): the address to listen on.
    pub host: String,
    /// `PORT` (default 50051). 0 picks a free port (tests).
    pub port: u16,
    /// `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` (default 10).
    pub database: DatabaseSettings,
    /// `JWT_SECRET` (required, at least 16 characters): signs tokens.
    pub jwt_secret: String,
    /// `TOKEN_TTL_SECONDS` (default 3600): how long a token is valid.
    pub token_ttl: Duration,
    /// `LOG_LEVEL` (default [`pixelflow_common::logging::DEFAULT_FILTER`]).
    pub log_level: String,
}

impl std::fmt::Debug for Settings {
    // By hand, so the secret cannot reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("token_ttl", &self.token_ttl)
            .field("log_level", &self.log_level)
            .finish_non_exhaustive()
    }
}

pub const MIN_SECRET_LEN: usize = 16;

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            host: env.or("HOST", "0.0.0.0".to_string())?,
            port: env.or("PORT", 50051)?,
            database: DatabaseSettings::from_env(env, 10)?,
            jwt_secret: {
                let secret: String =
                    env.required("JWT_SECRET", "the key that signs login tokens")?;
                if secret.len() < MIN_SECRET_LEN {
                    return Err(SettingsError::Invalid {
                        name: "JWT_SECRET",
                        value: "<redacted>".into(),
                        reason: format!("must be at least {MIN_SECRET_LEN} characters"),
                    });
                }
                secret
            },
            token_ttl: Duration::from_secs(env.checked("TOKEN_TTL_SECONDS", 3600u64, positive)?),
            log_level: pixelflow_common::logging::level_from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::pairs(pairs)
    }

    #[test]
    fn auth_refuses_to_start_without_a_jwt_secret() {
        let err = Settings::from_env(&env(&[])).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET is required"), "{err}");
    }

    #[test]
    fn a_short_secret_is_refused_without_echoing_it() {
        let err = Settings::from_env(&env(&[("JWT_SECRET", "hunter2")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("at least 16"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::from_env(&env(&[("JWT_SECRET", "0123456789abcdef")])).expect("valid");
        assert_eq!(s.port, 50051);
        assert_eq!(s.token_ttl, Duration::from_secs(3600));
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }
}
