//! worker: consumes `image-tasks` in the `pixelflow-workers` group, makes a
//! PNG thumbnail of each task's image and records the outcome. Metrics and
//! health are served over HTTP.

mod budget;
mod consumer;
mod jpeg;
mod metrics;
mod offsets;
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
use pixelflow_common::server::Server;
use sqlx::PgPool;
use tokio::sync::watch;

pub use metrics::WorkerMetrics;
pub use settings::Settings;
pub use thumbnail::{decode_cost, fit, make as make_thumbnail, Limits, Thumbnail};

/// The worker shares the tasks table with api, as the original design
/// shared its task store, so it runs the same migrations (whichever of the
/// two starts first creates the tables; the migrator's lock serialises
/// them).
pub fn migrator() -> sqlx::migrate::Migrator {
    pixelflow_common::db::shared(sqlx::migrate!("../api/migrations"))
}

#[derive(Clone)]
struct HttpState {
    pool: PgPool,
    broker: pixelflow_common::kafka::BrokerProbe,
    ready: pixelflow_common::health::ReadyCache,
}

pub struct Worker {
    server: Server,
    consumer: consumer::TaskConsumer,
}

impl Worker {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.connect(&migrator()).await?;
        let metrics = WorkerMetrics::new().context("cannot register metrics")?;
        // Subscribing to a topic that does not exist yet leaves the consumer
        // idle until it does; creating it here makes a fresh stack work in
        // any start order. Failure is not fatal: api creates it too.
        if let Err(e) = settings.kafka.ensure_topic(Duration::from_secs(5)).await {
            tracing::error!(error = %e, "cannot ensure the Kafka topic; consuming anyway");
        }
        let consumer = consumer::TaskConsumer {
            consumer: consumer::consumer(
                &settings.kafka.brokers,
                &settings.kafka_group_id,
                settings.kafka_group_instance_id.as_deref(),
            )
            .context("cannot create the Kafka consumer (KAFKA_BROKERS)")?,
            concurrency: settings.concurrency,
            processor: Arc::new(consumer::Processor {
                pool: pool.clone(),
                metrics: metrics.clone(),
                limits: Arc::new(Limits {
                    size: settings.thumbnail_size,
                    max_dimension: settings.max_image_dimension,
                    max_pixels: settings.max_image_pixels,
                    max_alloc: settings.max_decode_bytes,
                }),
                retry_interval: settings.retry_interval,
                max_attempts: i32::try_from(settings.max_task_attempts).unwrap_or(i32::MAX),
                drop_originals: settings.original_retention.is_zero(),
                decode_budget: budget::DecodeBudget::new(settings.max_decode_bytes),
            }),
        };
        tracing::info!(concurrency = settings.concurrency, "consuming");
        consumer
            .subscribe(&settings.kafka.topic)
            .with_context(|| format!("cannot subscribe to {}", settings.kafka.topic))?;
        let router = router(
            HttpState {
                pool,
                broker: pixelflow_common::kafka::BrokerProbe::new(&settings.kafka.brokers)
                    .context("cannot create the Kafka client for readiness (KAFKA_BROKERS)")?,
                ready: Default::default(),
            },
            metrics.registry.clone(),
        );
        let server = Server::bind(
            &settings.host,
            settings.metrics_port,
            router,
            &settings.http,
        )
        .await?;
        Ok(Self { server, consumer })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
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
        let server = tokio::spawn(async move {
            self.server
                .serve(async move {
                    let _ = http_stopped.wait_for(|s| *s).await;
                })
                .await
        });
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
    state
        .ready
        .answer(async {
            let (db, broker) = tokio::join!(
                pixelflow_common::db::check(&state.pool, timeout),
                state.broker.check(timeout),
            );
            vec![db, broker]
        })
        .await
}
