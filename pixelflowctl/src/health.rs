//! Waiting for containers to be healthy, and saying why one is not.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::compose::model::Words;
use crate::compose::Service;
use crate::docker::state::{Health, Observed, Status};
use crate::docker::Engine;

/// The exit code of a crash-looping container's next crash: the engine
/// resets the code when it restarts the container, so it is read while the
/// container is down again (a few seconds at most in a crash loop).
async fn crash_exit_code(engine: &Engine, container: &str) -> Option<i64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match engine.observe(container).await {
            Ok(o) if !o.is_running() => return o.last_exit,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return None,
        }
    }
    None
}

/// Restarts by the restart policy that make a crash loop: one crash can be
/// a hiccup, two in a row are not.
const CRASH_LOOP_RESTARTS: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum NotHealthy {
    #[error("{service} exited with code {code}\n--- last log lines ---\n{logs}")]
    Exited {
        service: String,
        code: i64,
        logs: String,
    },
    #[error("{service} keeps crashing: its restart policy restarted it {restarts} time(s), last exit code {code}\n--- last log lines ---\n{logs}")]
    CrashLoop {
        service: String,
        restarts: i64,
        /// The last crash's exit code, or "unknown".
        code: String,
        logs: String,
    },
    #[error("{service} is unhealthy; last health probe: {probe}\n--- last log lines ---\n{logs}")]
    Unhealthy {
        service: String,
        probe: String,
        logs: String,
    },
    #[error("{service} was not healthy within {timeout:?} (state {}, health {}); last health probe: {probe}\n--- last log lines ---\n{logs}", .status.map_or("unknown", Status::as_str), .health.map_or("none", Health::as_str))]
    Timeout {
        service: String,
        timeout: Duration,
        status: Option<Status>,
        health: Option<Health>,
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

/// The service's own healthcheck command, as `up` runs it itself.
#[derive(Debug, Clone)]
pub struct Probe {
    argv: Vec<String>,
    timeout: Duration,
}

impl Probe {
    /// The healthcheck's test as an argv (`CMD-SHELL` through `/bin/sh
    /// -c`), unless it is disabled or absent.
    pub fn of(service: &Service) -> Option<Self> {
        let check = service.healthcheck.as_ref()?;
        if check.disable == Some(true) {
            return None;
        }
        let argv = match check.test.as_ref()? {
            Words::Line(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
            Words::List(words) => match words.split_first() {
                Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
                Some((kind, rest)) if kind == "CMD-SHELL" => {
                    vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
                }
                _ => return None,
            },
        };
        let timeout = check.timeout.unwrap_or(Duration::from_secs(30));
        (!argv.is_empty()).then_some(Self { argv, timeout })
    }

    /// Whether the command succeeds in the container now.
    async fn passes(&self, engine: &Engine, container: &str) -> bool {
        matches!(
            tokio::time::timeout(self.timeout, engine.exec(container, self.argv.clone())).await,
            Ok(Ok((0, _)))
        )
    }
}

/// Whether the service's own healthcheck command passes in `container` now
/// (false without one).
pub async fn passes_own_check(engine: &Engine, service: &Service, container: &str) -> bool {
    match Probe::of(service) {
        Some(check) => check.passes(engine, container).await,
        None => false,
    }
}

/// Waits until `container` is healthy (or running, without a healthcheck);
/// stops at once when it exits, turns unhealthy, or keeps crashing under a
/// restart policy.
///
/// The engine runs a healthcheck first one `interval` after the start (2 s
/// to 5 s in the stack's file), and every dependent waits on that. So while
/// the engine still says "starting", the service's own healthcheck command
/// is also run here, every poll: when it passes, the service is as healthy
/// as the engine's next check would say.
pub async fn wait(
    engine: &Engine,
    service: &str,
    definition: &Service,
    container: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let own_check = Probe::of(definition);
    loop {
        let observed = engine.observe(container).await?;
        let Observed {
            status,
            health,
            restarts,
            last_exit,
            ..
        } = observed;
        // The count starts at 0 with each start through the API, so it
        // counts crashes since `up` or `restart` started the container. The
        // engine marks a container that exits under a restart policy
        // unhealthy: after a restart, that is the crash, not a probe.
        let crashing = restarts >= CRASH_LOOP_RESTARTS
            || (restarts >= 1
                && (health == Some(Health::Unhealthy) || status == Some(Status::Restarting)));
        if crashing {
            let code = if observed.is_running() {
                crash_exit_code(engine, container).await
            } else {
                last_exit
            };
            let logs = tail(engine, container, 20).await;
            return Err(NotHealthy::CrashLoop {
                service: service.into(),
                restarts,
                code: code.map_or_else(|| "unknown".into(), |c| c.to_string()),
                logs,
            }
            .into());
        }
        if let Some(code) = observed.exit() {
            let logs = tail(engine, container, 20).await;
            return Err(NotHealthy::Exited {
                service: service.into(),
                code,
                logs,
            }
            .into());
        }
        match (status, health) {
            (_, Some(Health::Healthy)) => return Ok(()),
            (_, Some(Health::Unhealthy)) => {
                let logs = tail(engine, container, 20).await;
                return Err(NotHealthy::Unhealthy {
                    service: service.into(),
                    probe: observed.probe,
                    logs,
                }
                .into());
            }
            (Some(Status::Running), None) => return Ok(()),
            (Some(Status::Running), Some(Health::Starting)) => {
                if let Some(check) = &own_check {
                    if check.passes(engine, container).await {
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        if start.elapsed() >= timeout {
            let logs = tail(engine, container, 20).await;
            return Err(NotHealthy::Timeout {
                service: service.into(),
                timeout,
                status,
                health,
                probe: observed.probe,
                logs,
            }
            .into());
        }
        // The engine has no "became healthy" event in API 1.41's filters
        // that covers every case; a short poll is cheap.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(healthcheck: &str) -> Service {
        serde_yaml::from_str(&format!("image: i\nhealthcheck:\n{healthcheck}")).expect("parses")
    }

    #[test]
    fn the_own_check_runs_the_healthcheck_as_the_engine_would() {
        let shell = Probe::of(&service(
            "  test: [\"CMD-SHELL\", \"pg_isready -h 127.0.0.1\"]\n  timeout: 3s\n",
        ))
        .expect("a probe");
        assert_eq!(shell.argv, ["/bin/sh", "-c", "pg_isready -h 127.0.0.1"]);
        assert_eq!(shell.timeout, Duration::from_secs(3));
        let exec = Probe::of(&service(
            "  test: [\"CMD\", \"curl\", \"-fsS\", \"http://x/ready\"]\n",
        ))
        .expect("a probe");
        assert_eq!(exec.argv, ["curl", "-fsS", "http://x/ready"]);
        let line = Probe::of(&service("  test: wget -q -O /dev/null http://x\n")).expect("a probe");
        assert_eq!(line.argv[..2], ["/bin/sh", "-c"]);
        assert!(Probe::of(&service("  test: [\"NONE\"]\n")).is_none());
        assert!(Probe::of(&service("  test: [\"CMD\", \"true\"]\n  disable: true\n")).is_none());
    }
}
