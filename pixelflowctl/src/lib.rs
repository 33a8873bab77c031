//! pixelflowctl: the PixelFlow stack through the Docker Engine API.

pub mod cli;
mod commands;
pub mod compose;
mod docker;
mod health;
mod images;
mod printer;
pub mod render;
mod stack;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use cli::{Cli, Command};
pub use docker::DockerError;

/// Exit code when verify could not run.
pub const EXIT_COULD_NOT_RUN: u8 = 2;
/// Exit code when Docker cannot be reached.
pub const EXIT_DOCKER_UNREACHABLE: u8 = 3;
/// Exit code when the compose file is invalid.
pub const EXIT_COMPOSE_INVALID: u8 = 4;

/// The exit code for an error.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(DockerError::Unreachable { .. }) = cause.downcast_ref::<DockerError>() {
            return EXIT_DOCKER_UNREACHABLE;
        }
        if cause.downcast_ref::<verify::CouldNotRun>().is_some() {
            return EXIT_COULD_NOT_RUN;
        }
        if cause.downcast_ref::<compose::ComposeError>().is_some() {
            return EXIT_COMPOSE_INVALID;
        }
    }
    1
}

/// compose/docker-compose.yml in `start` or its nearest parent with one.
fn find_compose_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join("compose").join("docker-compose.yml"))
        .find(|f| f.is_file())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let printer = printer::Printer::new(cli.output, cli.quiet);
    // verify needs neither the compose file nor Docker: its targets can be
    // anywhere.
    if let Command::Verify {
        spec,
        target,
        no_flow,
        flow_timeout,
        prometheus,
        grafana,
        dashboards,
        junit,
    } = cli.command
    {
        let options = verify::Options {
            spec,
            targets: target,
            flow: !no_flow,
            flow_timeout,
            prometheus: prometheus.trim_end_matches('/').to_string(),
            grafana: grafana.trim_end_matches('/').to_string(),
            dashboards,
            junit,
        };
        return match verify::run(options, &printer).await? {
            true => Ok(()),
            false => Err(anyhow::anyhow!("verify: some checks failed")),
        };
    }
    let file = match cli.file {
        Some(f) => f,
        None => {
            let cwd = std::env::current_dir().context("cannot read the current folder")?;
            find_compose_file(&cwd).with_context(|| {
                format!(
                    "no compose/docker-compose.yml in {} or its parents; pass --file",
                    cwd.display()
                )
            })?
        }
    };
    let project = compose::Project::load(&file)?;
    // Names first: a typo deserves its answer even with Docker down.
    let named: &[String] = match &cli.command {
        Command::Up {
            services, without, ..
        } => {
            project.select(without).map_err(anyhow::Error::msg)?;
            services
        }
        Command::Ps { services }
        | Command::Logs { services, .. }
        | Command::Restart { services, .. } => services,
        Command::Down { .. } | Command::Verify { .. } => &[],
    };
    project.select(named).map_err(anyhow::Error::msg)?;
    let engine = docker::Engine::connect().await?;
    match cli.command {
        Command::Up {
            services,
            without,
            timeout,
            images,
            build,
            profile,
        } => {
            let options = commands::up::Options {
                timeout,
                images: images::Options {
                    source: images,
                    rebuild: build,
                    profile,
                },
            };
            commands::up::run(&engine, &project, &services, &without, &options, &printer).await
        }
        Command::Ps { services } => {
            let services = project.select(&services).map_err(anyhow::Error::msg)?;
            commands::ps::run(&engine, &project, &services, &printer).await
        }
        Command::Logs {
            services,
            follow,
            tail,
            since,
            level,
            raw,
        } => {
            let services = project.select(&services).map_err(anyhow::Error::msg)?;
            let options = commands::logs::Options {
                follow,
                tail,
                since: commands::logs::since_arg(since.as_deref())?,
                level,
                raw,
            };
            commands::logs::run(&engine, &project, &services, options, &printer).await
        }
        Command::Restart { services, timeout } => {
            let services = project.select(&services).map_err(anyhow::Error::msg)?;
            commands::restart::run(&engine, &project, &services, timeout, &printer).await
        }
        Command::Down { volumes } => {
            commands::down::run(&engine, &project, volumes, &printer).await
        }
        // Handled above, before the compose file and Docker.
        Command::Verify { .. } => Ok(()),
    }
}
