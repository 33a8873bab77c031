//! Waiting for containers to be healthy, and saying why one is not.

use std::time::{Duration, Instant};

use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use futures::StreamExt;

use crate::docker::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`, or empty without a healthcheck.
    pub health: String,
}

pub async fn state(
    engine: &Engine,
    container: &str,
) -> anyhow::Result<(State, Option<i64>, String)> {
    let info = engine.inspect(container).await?;
    let s = info.state.unwrap_or_default();
    let health = s.health.as_ref().and_then(|h| h.status).map(|h| match h {
        HealthStatusEnum::HEALTHY => "healthy",
        HealthStatusEnum::UNHEALTHY => "unhealthy",
        HealthStatusEnum::STARTING => "starting",
        _ => "",
    });
    let probe = s
        .health
        .as_ref()
        .and_then(|h| h.log.as_ref())
        .and_then(|log| log.last())
        .map(|l| {
            format!(
                "exit {}: {}",
                l.exit_code.unwrap_or_default(),
                l.output.clone().unwrap_or_default().trim()
            )
        })
        .unwrap_or_default();
    let status = s.status.map(|st| st.to_string()).unwrap_or_default();
    let exit = match s.status {
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => s.exit_code,
        _ => None,
    };
    Ok((
        State {
            status,
            health: health.unwrap_or_default().to_string(),
        },
        exit,
        probe,
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum NotHealthy {
    #[error("{service} exited with code {code}\n--- last log lines ---\n{logs}")]
    Exited {
        service: String,
        code: i64,
        logs: String,
    },
    #[error("{service} is unhealthy; last health probe: {probe}\n--- last log lines ---\n{logs}")]
    Unhealthy {
        service: String,
        probe: String,
        logs: String,
    },
    #[error("{service} was not healthy within {timeout:?} (state {state}, health {health}); last health probe: {probe}\n--- last log lines ---\n{logs}")]
    Timeout {
        service: String,
        timeout: Duration,
        state: String,
        health: String,
        probe: String,
        logs: String,
    },
}

/// The last `n` lines the container wrote.
pub async fn tail(engine: &Engine, container: &str, n: usize) -> String {
    let lines: Vec<String> = engine
        .logs(container, false, Some(n), 0)
        .filter_map(|l| async move { l.ok() })
        .collect()
        .await;
    lines.join("\n")
}

/// Waits until `container` is healthy (or running, without a healthcheck);
/// stops at once when it exits or turns unhealthy.
pub async fn wait(
    engine: &Engine,
    service: &str,
    container: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let (state, exit, probe) = state(engine, container).await?;
        if let Some(code) = exit {
            let logs = tail(engine, container, 20).await;
            return Err(NotHealthy::Exited {
                service: service.into(),
                code,
                logs,
            }
            .into());
        }
        match state.health.as_str() {
            "healthy" => return Ok(()),
            "unhealthy" => {
                let logs = tail(engine, container, 20).await;
                return Err(NotHealthy::Unhealthy {
                    service: service.into(),
                    probe,
                    logs,
                }
                .into());
            }
            "" if state.status == "running" => return Ok(()),
            _ => {}
        }
        if start.elapsed() >= timeout {
            let logs = tail(engine, container, 20).await;
            return Err(NotHealthy::Timeout {
                service: service.into(),
                timeout,
                state: state.status,
                health: state.health,
                probe,
                logs,
            }
            .into());
        }
        // The engine has no "became healthy" event in API 1.41's filters
        // that covers every case; a short poll is cheap.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
