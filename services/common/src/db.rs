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

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("cannot connect to PostgreSQL (DATABASE_URL): {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot run database migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
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
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url)
            .await
            .map_err(DatabaseError::Connect)?;
        migrator.run(&pool).await.map_err(DatabaseError::Migrate)?;
        Ok(pool)
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
