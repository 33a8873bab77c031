//! The two servers the load bench compares: one route, served once bare and
//! once behind the RED middleware (metrics and the request log, as every
//! service runs it). Prints `{"bare":PORT,"metered":PORT}` and serves until
//! killed. Logs go to stdout like a service's; the bench sends them to
//! /dev/null.

use axum::routing::get;
use axum::{Json, Router};
use pixelflow_common::http_metrics::HttpMetrics;

async fn item() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": 42, "status": "COMPLETED" }))
}

fn routes() -> Router {
    Router::new().route("/items/{id}", get(item))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pixelflow_common::logging::init("bench", "info").map_err(anyhow::Error::msg)?;
    let registry = prometheus::Registry::new();
    let metered = HttpMetrics::new("bench", &registry)?.layer(routes());
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metered_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!(
        "{}",
        serde_json::json!({
            "bare": bare_listener.local_addr()?.port(),
            "metered": metered_listener.local_addr()?.port(),
        })
    );
    let bare = tokio::spawn(async move { axum::serve(bare_listener, routes()).await });
    axum::serve(metered_listener, metered).await?;
    bare.await??;
    Ok(())
}
