//! The PostgreSQL connection every service opens the same way: settings,
//! a pool, its own migrations, and the readiness check.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::health::Check;
use crate::settings::{positive, Env, SettingsError};

pub const DEFAULT_URL: &str = "postgres://postgres:postgres@localhost:5432/pixelflow";

#[derive(Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`.
    pub url: String,
    /// `DATABASE_MAX_CONNECTIONS`.
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseSettings {
    // The URL may carry a password: keep it out of `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The cause is in each message, not chained as `source` too: `{:#}`
/// would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("cannot connect to PostgreSQL (DATABASE_URL): {0}")]
    Connect(sqlx::Error),
    #[error("cannot run database migrations: {0}")]
    Migrate(sqlx::migrate::MigrateError),
}

impl DatabaseSettings {
    pub fn from_env(env: &Env, default_max_connections: u32) -> Result<Self, SettingsError> {
        Ok(Self {
            url: env.or("DATABASE_URL", DEFAULT_URL.to_string())?,
            max_connections: env.checked(
                "DATABASE_MAX_CONNECTIONS",
                default_max_connections,
                positive,
            )?,
        })
    }

    /// A pool, with `migrator`'s migrations applied.
    pub async fn connect(&self, migrator: &Migrator) -> Result<PgPool, DatabaseError> {
        let pool = match PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url)
            .await
        {
            Ok(pool) => pool,
            // The pool retries until its timeout and then says only that it
            // timed out: one direct attempt names why (refused, a wrong
            // password, no such database).
            Err(sqlx::Error::PoolTimedOut) => {
                return Err(DatabaseError::Connect(why_not(&self.url).await));
            }
            Err(e) => return Err(DatabaseError::Connect(e)),
        };
        migrator.run(&pool).await.map_err(DatabaseError::Migrate)?;
        Ok(pool)
    }
}

/// Why `url` cannot be connected to, from one attempt of at most 5 s; the
/// pool's own "timed out" when that attempt works or gives up too.
async fn why_not(url: &str) -> sqlx::Error {
    use sqlx::Connection as _;
    match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(url)).await {
        Ok(Err(e)) => e,
        Ok(Ok(_)) | Err(_) => sqlx::Error::PoolTimedOut,
    }
}

/// A migrator that tolerates migrations it does not know, so services with
/// disjoint version ranges can share one database.
pub fn shared(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// The `/ready` check for the database.
pub async fn check(pool: &PgPool, timeout: Duration) -> Check {
    Check::run("database", timeout, async {
        sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_that_cannot_be_reached_is_named_with_the_reason_once() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let settings = DatabaseSettings {
            url: format!("postgres://postgres:postgres@127.0.0.1:{closed}/postgres"),
            max_connections: 1,
        };
        let migrator = shared(Migrator::DEFAULT);
        let err = settings
            .connect(&migrator)
            .await
            .expect_err("nothing listens");
        let text = format!("{:#}", anyhow::Error::new(err));
        assert!(
            text.starts_with("cannot connect to PostgreSQL (DATABASE_URL): "),
            "{text}"
        );
        assert!(
            text.contains("refused"),
            "the reason, not only a timeout: {text}"
        );
        assert_eq!(text.matches("refused").count(), 1, "said once: {text}");
    }
}
