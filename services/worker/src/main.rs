use anyhow::Context;
use pixelflow_common::settings::Env;
use pixelflow_worker::{Settings, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env(&Env::process()).context("worker cannot start")?;
    pixelflow_common::logging::init("worker", &settings.log_level)
        .map_err(anyhow::Error::msg)
        .context("worker cannot start")?;
    let worker = Worker::build(settings).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "worker cannot start");
        e
    })?;
    tracing::info!(address = %worker.local_addr(), "worker metrics and health listening");
    worker.run(pixelflow_common::shutdown::signal()).await?;
    tracing::info!("worker stopped");
    Ok(())
}
