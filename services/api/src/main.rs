use anyhow::Context;
use pixelflow_api::{Application, Settings};
use pixelflow_common::settings::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env(&Env::process()).context("api cannot start")?;
    let telemetry =
        pixelflow_common::telemetry::init("api", &settings.log_level, &settings.tracing)
            .map_err(anyhow::Error::msg)
            .context("api cannot start")?;
    let app = Application::build(settings).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "api cannot start");
        e
    })?;
    tracing::info!(address = %app.local_addr(), "api listening");
    app.run(pixelflow_common::shutdown::signal()).await?;
    tracing::info!("api stopped");
    // Spans still queued go out before the process ends.
    telemetry.shutdown();
    Ok(())
}
