//! Putting a new build into a running service: stop the container
//! gracefully (SIGTERM and its grace period: a task in hand finishes, the
//! outbox drains), copy the binary into it, start it, wait until it is
//! ready. The image is not rebuilt and no other container is touched.

use std::time::{Duration, Instant};

use super::events::Phases;
use crate::compose::Project;
use crate::docker::Engine;
use crate::{health, stack};

/// Where the images' entrypoint runs the service from.
const BINARY: &str = "usr/local/bin/service";

/// `binary` as the tar archive the engine extracts at `/`.
fn archive(binary: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_size(binary.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    );
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_data(&mut header, BINARY, binary)?;
    Ok(tar.into_inner()?)
}

/// Why a new build is not running, with how far the reload got.
pub struct NotRunning {
    pub phases: Phases,
    pub error: anyhow::Error,
}

/// Replaces `service`'s binary in its container `container` with `binary`
/// and waits until it is ready (`timeout`). `phases` comes in with the
/// build's time and goes out with every phase's.
pub async fn swap(
    engine: &Engine,
    project: &Project,
    service: &str,
    container: &str,
    binary: &[u8],
    timeout: Duration,
    mut phases: Phases,
) -> Result<Phases, NotRunning> {
    let definition = &project.services[service];
    let failed = |phases: Phases| move |error: anyhow::Error| NotRunning { phases, error };
    let at = Instant::now();
    let tar = archive(binary).map_err(failed(phases))?;
    let packaged = at.elapsed();

    let at = Instant::now();
    engine
        .stop(container, stack::grace_period(definition))
        .await
        .map_err(|e| failed(phases)(e.into()))?;
    phases.set(|p| &mut p.stop_s, at.elapsed());

    let at = Instant::now();
    engine
        .upload(container, tar)
        .await
        .map_err(|e| failed(phases)(e.into()))?;
    phases.set(|p| &mut p.package_s, packaged + at.elapsed());

    let at = Instant::now();
    engine
        .start(container)
        .await
        .map_err(|e| failed(phases)(e.into()))?;
    phases.set(|p| &mut p.start_s, at.elapsed());

    let at = Instant::now();
    let ready = health::wait(engine, service, definition, container, timeout).await;
    phases.set(|p| &mut p.ready_s, at.elapsed());
    ready.map_err(failed(phases))?;
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_goes_where_the_entrypoint_runs_it_executable() {
        let tar = archive(b"\x7fELF...").expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entry = archive
            .entries()
            .expect("entries")
            .next()
            .expect("one entry")
            .expect("entry");
        assert_eq!(
            entry.path().expect("path").to_str(),
            Some("usr/local/bin/service")
        );
        assert_eq!(entry.header().mode().expect("mode") & 0o777, 0o755);
    }
}
