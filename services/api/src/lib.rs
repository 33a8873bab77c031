//! api: authenticated image upload, task listing and results.
//!
//! An upload stores the task and its event in one transaction (the outbox);
//! the [`outbox::Relay`] publishes events to Kafka and keeps retrying while
//! the broker is away, so no task is ever left without its event.

mod auth_client;
mod metrics;
mod outbox;
mod routes;
mod settings;
mod tasks;
mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use pixelflow_common::server::Server;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

pub use auth_client::AuthClient;
pub use metrics::ApiMetrics;
pub use settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: AuthClient,
    pub metrics: ApiMetrics,
    pub limits: Arc<upload::Limits>,
    /// Wakes the outbox relay when a task is stored.
    pub outbox: Arc<Notify>,
    pub broker: pixelflow_common::kafka::BrokerProbe,
    /// Upload bytes being received, all clients together.
    pub in_flight: upload::InFlight,
    /// `/ready`'s last answer, served again for a second.
    pub ready: pixelflow_common::health::ReadyCache,
    /// The browser origins allowed to call api.
    pub cors: pixelflow_common::cors::Cors,
}

/// The tasks and outbox tables. api's versions are its own range, so it can
/// share a database with auth; the worker runs the same migrations.
pub fn migrator() -> sqlx::migrate::Migrator {
    pixelflow_common::db::shared(sqlx::migrate!("./migrations"))
}

pub struct Application {
    server: Server,
    relay: outbox::Relay,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.connect(&migrator()).await?;
        let metrics = ApiMetrics::new().context("cannot register metrics")?;
        let wake = Arc::new(Notify::new());
        let producer = outbox::producer(
            &settings.kafka.brokers,
            settings.kafka_message_timeout,
            settings.kafka_enable_idempotence,
        )
        .context("cannot create the Kafka producer (KAFKA_BROKERS)")?;
        let relay = outbox::Relay {
            redeliver_after: settings.task_redeliver_after,
            pool: pool.clone(),
            producer,
            kafka: settings.kafka.clone(),
            timeout: settings.kafka_message_timeout,
            idempotent: settings.kafka_enable_idempotence,
            poll_interval: settings.outbox_poll_interval,
            metrics: metrics.clone(),
            wake: wake.clone(),
            retention: outbox::Retention {
                originals: settings.original_retention,
                tasks: settings.task_retention,
                quota: settings.user_storage_quota,
            },
        };
        let state = AppState {
            pool,
            auth: AuthClient::new(&settings.auth_service_url, settings.auth_timeout)
                .context("cannot build the HTTP client for auth")?,
            metrics,
            limits: Arc::new(upload::Limits {
                max_bytes: settings.max_upload_bytes,
                max_dimension: settings.max_image_dimension,
                max_pixels: settings.max_image_pixels,
                max_active_tasks_per_user: i64::from(settings.max_active_tasks_per_user),
                user_storage_quota: i64::try_from(settings.user_storage_quota).unwrap_or(i64::MAX),
            }),
            outbox: wake,
            broker: pixelflow_common::kafka::BrokerProbe::new(&settings.kafka.brokers)
                .context("cannot create the Kafka client for readiness (KAFKA_BROKERS)")?,
            in_flight: upload::InFlight::new(settings.upload_bytes_in_flight),
            ready: Default::default(),
            cors: settings.cors.clone(),
        };
        let server =
            Server::bind(&settings.host, settings.port, router(state), &settings.http).await?;
        Ok(Self { server, relay })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves and relays until `shutdown` completes; in-flight requests
    /// finish first, then the relay publishes what they stored.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let relay = tokio::spawn(self.relay.run(stopped));
        let served = self.server.serve(shutdown).await;
        // Only now that no request can store another task does the relay
        // stop, after a last round: the events of uploads answered during
        // the shutdown go out before api exits. Also when serving failed:
        // the relay must not outlive the server.
        stop.send_replace(true);
        if let Err(e) = relay.await {
            tracing::error!(error = %e, "outbox relay panicked");
        }
        served
    }
}

pub fn router(state: AppState) -> Router {
    routes::router(state)
}
