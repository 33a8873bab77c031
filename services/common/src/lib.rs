//! What the three PixelFlow services truly share.
//!
//! Each service builds its own router and state; this crate gives them the
//! same settings rules, the same JSON log shape, the same RED metrics and
//! health endpoints, and the same JSON error body, so that `pixelflowctl`
//! and dashboards can treat the three alike.

pub mod cors;
pub mod db;
pub mod error;
mod filter;
pub mod health;
mod hex;
pub mod http_metrics;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod outage;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
