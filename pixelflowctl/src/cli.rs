//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::printer::Output;

/// Runs the PixelFlow stack through the Docker Engine API: bring it up, see
/// what it logs, restart a piece, take it down.
///
/// Exit codes: 0 success, 1 failure, 2 usage error (or verify could not
/// run), 3 Docker not reachable, 4 the compose file is invalid.
#[derive(Debug, Parser)]
#[command(name = "pixelflowctl", version)]
pub struct Cli {
    /// The compose file. Default: compose/docker-compose.yml in this folder
    /// or the nearest parent that has one. Goes before the command, as with
    /// docker compose (`logs -f` is --follow).
    #[arg(short = 'f', long, env = "PIXELFLOW_COMPOSE_FILE")]
    pub file: Option<PathBuf>,

    /// Results as a table or as JSON (progress always goes to stderr).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: Output,

    /// No progress or status lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Up(commands::up::Args),
    Dev(commands::dev::Args),
    Drill(commands::drill::Args),
    Build(commands::build::Args),
    Ps(commands::ps::Args),
    Logs(commands::logs::Args),
    Restart(commands::restart::Args),
    Verify(commands::verify::Args),
    Metrics(commands::metrics::Args),
    Down(commands::down::Args),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
