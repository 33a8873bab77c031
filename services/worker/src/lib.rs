//! worker: consumes `image-tasks` in the `pixelflow-workers` group, makes a
//! PNG thumbnail of each task's image and records the outcome. Metrics and
//! health are served over HTTP.

mod consumer;
mod metrics;
mod settings;
mod store;
mod thumbnail;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use pixelflow_common::health::{ready_response, Check};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use metrics::WorkerMetrics;
pub use settings::Settings;
pub use thumbnail::{make as make_thumbnail, Limits, Thumbnail};

/// The worker shares the tasks table with api, as the original design
/// shared its task store, so it runs the same migrations (whichever of the
/// two starts first creates the tables; the migrator's lock serialises
/// them).
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("../api/migrations");
    migrator.set_ignore_missing(true);
    migrator
}

#[derive(Clone)]
struct HttpState {
    pool: PgPool,
    brokers: String,
}

pub struct Worker {
    listener: TcpListener,
    router: Router,
    consumer: consumer::TaskConsumer,
}

impl Worker {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.database_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&settings.database_url)
            .await
            .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
        migrator()
            .run(&pool)
            .await
            .context("cannot run the tasks migrations")?;
        let metrics = WorkerMetrics::new().context("cannot register metrics")?;
        // Subscribing to a topic that does not exist yet leaves the consumer
        // idle until it does; creating it here makes a fresh stack work in
        // any start order. Failure is not fatal: api creates it too.
        if let Err(e) = pixelflow_common::kafka::ensure_topic(
            &settings.kafka_brokers,
            &settings.kafka_topic,
            settings.kafka_topic_partitions,
            Duration::from_secs(5),
        )
        .await
        {
            tracing::error!(error = %e, "cannot ensure the Kafka topic; consuming anyway");
        }
        let consumer = consumer::TaskConsumer {
            consumer: consumer::consumer(&settings.kafka_brokers, &settings.kafka_group_id)
                .context("cannot create the Kafka consumer (KAFKA_BROKERS)")?,
            pool: pool.clone(),
            metrics: metrics.clone(),
            limits: Arc::new(Limits {
                size: settings.thumbnail_size,
                max_dimension: settings.max_image_dimension,
                max_alloc: settings.max_decode_bytes,
            }),
            retry_interval: settings.retry_interval,
        };
        consumer
            .subscribe(&settings.kafka_topic)
            .with_context(|| format!("cannot subscribe to {}", settings.kafka_topic))?;
        let listener = TcpListener::bind((settings.host.as_str(), settings.metrics_port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.host, settings.metrics_port
                )
            })?;
        let router = router(
            HttpState {
                pool,
                brokers: settings.kafka_brokers.clone(),
            },
            metrics.registry.clone(),
        );
        Ok(Self {
            listener,
            router,
            consumer,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Consumes and serves metrics until `shutdown` completes. The task in
    /// hand is finished and its offset committed before the consumer leaves
    /// the group; the metrics server stops last.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let (http_stop, http_stopped) = watch::channel(false);
        let mut http_stopped = http_stopped;
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            let _ = http_stopped.wait_for(|s| *s).await;
        });
        let server = tokio::spawn(async move { serve.await });
        tokio::spawn(async move {
            shutdown.await;
            stop.send_replace(true);
        });
        self.consumer.run(stopped).await;
        http_stop.send_replace(true);
        match server.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

fn router(state: HttpState, registry: prometheus::Registry) -> Router {
    let routes = Router::new().route("/ready", get(ready)).with_state(state);
    pixelflow_common::http_metrics::standard_routes(routes, registry)
}

async fn ready(State(state): State<HttpState>) -> Response {
    let timeout = Duration::from_secs(2);
    let (db, broker) = tokio::join!(
        Check::run("database", timeout, async {
            sqlx::query("SELECT 1")
                .execute(&state.pool)
                .await
                .map(|_| ())
        }),
        Check::run(
            "kafka",
            timeout,
            pixelflow_common::kafka::probe(&state.brokers, timeout)
        ),
    );
    ready_response(vec![db, broker])
}
