//! `pixelflowctl dev`: the command line of [`crate::dev`].

use std::time::Duration;

use super::Context;
use crate::dev::{self, build::Place};
use crate::ExitStatus;

/// Bring the stack up, then rebuild and reload each service as you edit
/// it.
///
/// Brings the stack up as `up` does, then watches the workspace. An edit
/// reloads what is built from it, known from the cargo workspace: an edit
/// under services/api reloads api alone, one under services/common all
/// three services; compose/prometheus makes Prometheus re-read its
/// configuration (no restart), dashboards/ Grafana its dashboards, and an
/// edited compose file recreates the containers whose configuration
/// changed. Saves close together are one reload.
///
/// A reload is an incremental cargo build of just the affected binaries
/// (on the host when it can run them, else in a build container of the
/// official Rust image, whose target folder and registry are kept in
/// volumes); the new binary goes into the running container, which is
/// stopped gracefully first (SIGTERM and its grace period: a task in hand
/// finishes, api's outbox drains), started, waited for until ready, and
/// checked with `verify --no-flow`. Every other container is left alone.
/// Each reload prints one line with the time of each phase and verify's
/// verdict; the watched services' logs stream below, across reloads.
///
/// A compile error prints cargo's output and the running container keeps
/// serving the last good build; a build that crashes or never becomes
/// ready is reported with its last log lines, and the next save tries
/// again. Ctrl-C stops watching and leaves the stack running (--down-on-exit
/// takes it down).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to bring up and watch, with what they depend on (default:
    /// all).
    pub services: Vec<String>,
    /// Leave these services out (repeatable), as with `up`.
    #[arg(long, value_name = "SERVICE")]
    pub without: Vec<String>,
    /// Where to compile: on the host (Linux, the engine's architecture,
    /// cargo present) or in a build container. Default: the host when it
    /// can, and it says which.
    #[arg(long, value_enum, conflicts_with = "images")]
    pub build: Option<Place>,
    /// `engine`: every image built by the engine from services/Dockerfile,
    /// as `up` builds them (a reload is an image build: slow, but nothing
    /// is compiled outside the engine).
    #[arg(long, value_enum, value_name = "engine")]
    pub images: Option<EngineImages>,
    /// Take the stack down when the loop stops (default: leave it running).
    #[arg(long)]
    pub down_on_exit: bool,
    /// How long each service may take to be ready after a start.
    #[arg(long, default_value = "120s", value_parser = crate::parse::duration)]
    pub timeout: Duration,
}

/// `--images engine`, the one choice `dev` offers for images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineImages {
    Engine,
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
    let options = dev::Options {
        services: args.services.clone(),
        without: args.without.clone(),
        build: args.build,
        engine_images: args.images.is_some(),
        down_on_exit: args.down_on_exit,
        timeout: args.timeout,
    };
    dev::run(engine, project.clone(), &options, printer).await?;
    Ok(ExitStatus::Success)
}
