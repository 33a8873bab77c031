use anyhow::Context;
use pixelflow_auth::{Application, Settings};
use pixelflow_common::settings::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env(&Env::process()).context("auth cannot start")?;
    let telemetry =
        pixelflow_common::telemetry::init("auth", &settings.log_level, &settings.tracing)
            .map_err(anyhow::Error::msg)
            .context("auth cannot start")?;
    let app = Application::build(settings).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "auth cannot start");
        e
    })?;
    tracing::info!(address = %app.local_addr(), "auth listening");
    app.run(pixelflow_common::shutdown::signal()).await?;
    tracing::info!("auth stopped");
    // Spans still queued go out before the process ends.
    telemetry.shutdown();
    Ok(())
}
