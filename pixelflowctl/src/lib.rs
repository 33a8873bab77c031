//! pixelflowctl: the PixelFlow stack through the Docker Engine API.

pub mod cli;
pub mod commands;
pub mod compose;
mod dev;
mod docker;
mod drill;
mod health;
mod images;
mod logstream;
pub mod parse;
mod printer;
pub mod render;
mod stack;
pub mod verify;
mod workspace;

pub use cli::{Cli, Command};
pub use docker::DockerError;

/// How a command ended, as the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done (verify: every check passed).
    Success = 0,
    /// 1: failed (verify: a check failed).
    Failure = 1,
    /// 2: verify could not run (a target did not answer, a bad spec).
    CouldNotRun = 2,
    /// 3: Docker is not reachable.
    DockerUnreachable = 3,
    /// 4: the compose file is invalid.
    ComposeInvalid = 4,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

/// The exit status for an error, from the typed errors in its chain.
pub fn exit_status(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(DockerError::Unreachable { .. }) = cause.downcast_ref::<DockerError>() {
            return ExitStatus::DockerUnreachable;
        }
        if cause.downcast_ref::<verify::CouldNotRun>().is_some() {
            return ExitStatus::CouldNotRun;
        }
        if cause.downcast_ref::<compose::ComposeError>().is_some() {
            return ExitStatus::ComposeInvalid;
        }
    }
    ExitStatus::Failure
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let printer = printer::Printer::new(cli.output, cli.quiet);
    // verify needs neither the compose file nor Docker: its targets can be
    // anywhere.
    let command = match cli.command {
        Command::Verify(args) => {
            return commands::verify::run(args, cli.file.as_deref(), &printer).await
        }
        Command::Metrics(args) => {
            return commands::metrics::run(args, cli.file.as_deref(), &printer).await
        }
        other => other,
    };
    let project = compose::Project::discover(cli.file.as_deref())?.ok_or_else(|| {
        anyhow::anyhow!(
            "no compose/docker-compose.yml in {} or its parents; pass --file",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the current folder".into())
        )
    })?;
    // Names first: a typo deserves its answer even with Docker down.
    let named: &[String] = match &command {
        Command::Up(args) => {
            project.select(&args.without)?;
            &args.services
        }
        Command::Dev(args) => {
            project.select(&args.without)?;
            &args.services
        }
        Command::Drill(args) if args.name == "list" => {
            return commands::drill::list(&project, &printer);
        }
        Command::Drill(_) => &[],
        Command::Build(args) => &args.services,
        Command::Ps(args) => &args.services,
        Command::Logs(args) => &args.services,
        Command::Restart(args) => &args.services,
        Command::Down(_) | Command::Verify(_) | Command::Metrics(_) => &[],
    };
    project.select(named)?;
    let engine = docker::Engine::connect().await?;
    let cx = commands::Context {
        engine: &engine,
        project: &project,
        printer: &printer,
    };
    match &command {
        Command::Up(args) => commands::up::run(&cx, args).await,
        Command::Dev(args) => commands::dev::run(&cx, args).await,
        Command::Drill(args) => commands::drill::run(&cx, args).await,
        Command::Build(args) => commands::build::run(&cx, args).await,
        Command::Ps(args) => commands::ps::run(&cx, args).await,
        Command::Logs(args) => commands::logs::run(&cx, args).await,
        Command::Restart(args) => commands::restart::run(&cx, args).await,
        Command::Down(args) => commands::down::run(&cx, args).await,
        // Returned above, before the compose file and Docker.
        Command::Verify(_) | Command::Metrics(_) => Ok(ExitStatus::Success),
    }
}
