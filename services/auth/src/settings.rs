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
    /// `JWT_SECRET` (required, at least 32 bytes): signs tokens.
    pub jwt_secret: String,
    /// `TOKEN_TTL_SECONDS` (default 3600): how long a token is valid.
    pub token_ttl: Duration,
    /// `LOG_LEVEL` (default [`pixelflow_common::logging::DEFAULT_FILTER`]).
    pub log_level: String,
    /// `OTEL_*`: whether and where spans are exported.
    pub tracing: pixelflow_common::telemetry::Tracing,
    /// `CORS_ALLOWED_ORIGINS` (default none): the browser origins allowed
    /// to call auth, comma-separated (`http://localhost:3000`).
    pub cors: pixelflow_common::cors::Cors,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`, `HTTP_REQUEST_TIMEOUT_MS`,
    /// `HTTP_MAX_CONNECTIONS`: see [`pixelflow_common::server::HttpLimits`].
    pub http: pixelflow_common::server::HttpLimits,
    /// `PASSWORD_HASH_CONCURRENCY` (default: the number of CPUs): how many
    /// Argon2id hashes (19 MiB each) run at once.
    pub hash_concurrency: usize,
    /// `PASSWORD_HASH_QUEUE_TIMEOUT_MS` (default 2000): how long a register
    /// or login waits for a hashing slot before it is refused with 503.
    pub hash_queue_timeout: Duration,
    /// `LOGIN_MAX_FAILURES` (default 10) logins per email not ended in
    /// success within `LOGIN_FAILURE_WINDOW_SECONDS` (default 300); then 429
    /// until the window ends.
    pub login_max_failures: u32,
    pub login_failure_window: Duration,
    /// `PIXELFLOW_ENVIRONMENT` (default `development`): in `production`,
    /// a JWT_SECRET published in this repository is refused.
    pub production: bool,
    /// Whether JWT_SECRET is one published in this repository (compose
    /// default, README example): warned about at start-up.
    pub published_secret: bool,
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
            .field("tracing", &self.tracing)
            .field("http", &self.http)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue_timeout", &self.hash_queue_timeout)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_failure_window", &self.login_failure_window)
            .field("production", &self.production)
            .finish_non_exhaustive()
    }
}

/// RFC 7518 §3.2: an HS256 key is at least as long as its hash, 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// Secrets anyone can read in this repository: compose's default and the
/// README's example. Fine on a laptop, never in production.
pub const PUBLISHED_SECRETS: &[&str] = &[
    "local-development-secret-change-me",
    "change-me-to-a-secret-of-at-least-32-bytes",
];

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let environment: String = env.or("PIXELFLOW_ENVIRONMENT", "development".to_string())?;
        let production = match environment.as_str() {
            "production" => true,
            "development" | "test" => false,
            _ => {
                return Err(SettingsError::Invalid {
                    name: "PIXELFLOW_ENVIRONMENT",
                    value: environment,
                    reason: "must be development, test or production".into(),
                })
            }
        };
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let mut settings = Self {
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
                        reason: format!("must be at least {MIN_SECRET_LEN} bytes (RFC 7518: an HS256 key is no shorter than its hash)"),
                    });
                }
                secret
            },
            token_ttl: Duration::from_secs(env.checked("TOKEN_TTL_SECONDS", 3600u64, positive)?),
            log_level: pixelflow_common::logging::level_from_env(env)?,
            tracing: pixelflow_common::telemetry::Tracing::from_env(env)?,
            cors: pixelflow_common::cors::Cors::from_env(env)?,
            http: pixelflow_common::server::HttpLimits::from_env(env)?,
            hash_concurrency: env.checked("PASSWORD_HASH_CONCURRENCY", cpus, positive)?,
            hash_queue_timeout: Duration::from_millis(env.checked(
                "PASSWORD_HASH_QUEUE_TIMEOUT_MS",
                2000u64,
                positive,
            )?),
            login_max_failures: env.checked("LOGIN_MAX_FAILURES", 10u32, positive)?,
            login_failure_window: Duration::from_secs(env.checked(
                "LOGIN_FAILURE_WINDOW_SECONDS",
                300u64,
                positive,
            )?),
            production,
            published_secret: false,
        };
        settings.published_secret = PUBLISHED_SECRETS.contains(&settings.jwt_secret.as_str());
        if settings.published_secret && production {
            return Err(SettingsError::Invalid {
                name: "JWT_SECRET",
                value: "<redacted>".into(),
                reason: "is a secret published in the PixelFlow repository; \
                         PIXELFLOW_ENVIRONMENT=production needs your own"
                    .into(),
            });
        }
        Ok(settings)
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
        assert!(text.contains("at least 32"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn production_refuses_the_published_secret_and_development_flags_it() {
        let published = PUBLISHED_SECRETS[0];
        let err = Settings::from_env(&env(&[
            ("JWT_SECRET", published),
            ("PIXELFLOW_ENVIRONMENT", "production"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("published"), "{err}");
        assert!(!err.contains(published), "{err}");
        let dev = Settings::from_env(&env(&[("JWT_SECRET", published)])).expect("development");
        assert!(dev.published_secret);
        let own = Settings::from_env(&env(&[
            ("JWT_SECRET", "a-secret-of-our-own-0123456789abcdef"),
            ("PIXELFLOW_ENVIRONMENT", "production"),
        ]))
        .expect("own secret");
        assert!(own.production && !own.published_secret);
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::from_env(&env(&[("JWT_SECRET", "0123456789abcdef0123456789abcdef")]))
            .expect("valid");
        assert_eq!(s.port, 50051);
        assert_eq!(s.token_ttl, Duration::from_secs(3600));
        assert_eq!(s.hash_queue_timeout, Duration::from_millis(2000));
        assert_eq!(s.login_max_failures, 10);
        assert_eq!(s.login_failure_window, Duration::from_secs(300));
        assert!(s.hash_concurrency >= 1 && !s.production);
        assert!(!format!("{s:?}").contains("0123456789abcdef0123456789abcdef"));
    }
}
