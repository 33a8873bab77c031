//! auth: register, login (JWT) and token validation over HTTP.
//!
//! [`Application::build`] turns typed [`Settings`] into a bound listener and
//! a router; [`Application::run`] serves until the caller's shutdown future
//! completes. `main.rs` only reads the environment and waits for SIGTERM;
//! tests build the same application on port 0 against a fresh database.

mod metrics;
mod password;
mod routes;
mod settings;
mod throttle;
mod token;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use pixelflow_common::server::Server;
use sqlx::PgPool;

pub use metrics::AuthMetrics;
pub use settings::Settings;
pub use token::{Claims, TokenKeys};

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tokens: Arc<TokenKeys>,
    pub metrics: AuthMetrics,
    /// A real hash of a random password, verified against on unknown emails
    /// so that "no such user" takes as long as "wrong password".
    pub decoy_hash: Arc<str>,
    /// Argon2id, at most `PASSWORD_HASH_CONCURRENCY` at once.
    pub hasher: password::Hasher,
    pub throttle: Arc<throttle::LoginThrottle>,
    /// `/ready`'s last answer, served again for a second.
    pub ready: pixelflow_common::health::ReadyCache,
    /// The browser origins allowed to call auth.
    pub cors: pixelflow_common::cors::Cors,
}

/// The users table and anything after it. Versions are auth's own range so
/// auth can share a database with api: each ignores the other's migrations.
pub fn migrator() -> sqlx::migrate::Migrator {
    pixelflow_common::db::shared(sqlx::migrate!("./migrations"))
}

pub struct Application {
    server: Server,
}

impl Application {
    /// Connects to PostgreSQL, runs migrations, registers metrics and binds
    /// the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.published_secret {
            tracing::warn!(
                "JWT_SECRET is a secret published in the PixelFlow repository: anyone can \
                 forge tokens; set your own (PIXELFLOW_ENVIRONMENT=production refuses it)"
            );
        }
        let pool = settings.database.connect(&migrator()).await?;
        let hasher = password::Hasher::new(settings.hash_concurrency, settings.hash_queue_timeout);
        let state = AppState {
            pool,
            tokens: Arc::new(TokenKeys::new(
                settings.jwt_secret.as_bytes(),
                settings.token_ttl,
            )),
            metrics: AuthMetrics::new().context("cannot register metrics")?,
            decoy_hash: hasher
                .hash(uuid::Uuid::new_v4().to_string())
                .await
                .context("cannot prepare the decoy password hash")?
                .into(),
            hasher,
            throttle: Arc::new(throttle::LoginThrottle::new(
                settings.login_max_failures,
                settings.login_failure_window,
            )),
            ready: Default::default(),
            cors: settings.cors.clone(),
        };
        let server =
            Server::bind(&settings.host, settings.port, router(state), &settings.http).await?;
        Ok(Self { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.server.serve(shutdown).await
    }
}

/// The whole HTTP surface of auth.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}
