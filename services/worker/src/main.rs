use anyhow::Context;
use pixelflow_common::settings::Env;
use pixelflow_worker::{Settings, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env(&Env::process()).context("worker cannot start")?;
    let telemetry =
        pixelflow_common::telemetry::init("worker", &settings.log_level, &settings.tracing)
            .map_err(anyhow::Error::msg)
            .context("worker cannot start")?;
    let worker = Worker::build(settings).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "worker cannot start");
        e
    })?;
    tracing::info!(address = %worker.local_addr(), "worker metrics and health listening");
    worker.run(pixelflow_common::shutdown::signal()).await?;
    tracing::info!("worker stopped");
    // Spans still queued go out before the process ends.
    telemetry.shutdown();
    Ok(())
}
