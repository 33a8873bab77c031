//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::images;
use crate::printer::Output;
use crate::render::Level;

/// Runs the PixelFlow stack through the Docker Engine API: bring it up, see
/// what it logs, restart a piece, take it down.
///
/// Exit codes: 0 success, 1 failure, 2 usage error, 3 Docker not
/// reachable, 4 the compose file is invalid.
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
    /// Build or pull what is missing, create the network, volumes and
    /// containers, start them in dependency order and wait until each is
    /// healthy. Unchanged containers are left alone.
    Up {
        /// Services to bring up, with what they depend on (default: all).
        services: Vec<String>,
        /// Leave these services out, e.g. `--without grafana` where Grafana
        /// cannot be had. Services that depend on one are left out too.
        #[arg(long, value_name = "SERVICE")]
        without: Vec<String>,
        /// How long to wait for each service to become healthy.
        #[arg(long, default_value = "180s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Where the services' own images come from.
        #[arg(
            long,
            value_enum,
            env = "PIXELFLOW_IMAGES",
            default_value = "dockerfile"
        )]
        images: images::Source,
        /// Rebuild the services' images even when present (with --images
        /// host they are always repackaged: cheap, and cached when the
        /// binary did not change).
        #[arg(long)]
        build: bool,
        /// With --images host: the cargo profile whose binaries to package
        /// (target/<profile>/).
        #[arg(long, env = "PIXELFLOW_PROFILE", default_value = "debug")]
        profile: String,
    },
    /// The services' containers: state, health, ports, URLs.
    Ps {
        /// Services to show (default: all).
        services: Vec<String>,
    },
    /// Show the services' logs, JSON lines rendered readably.
    Logs {
        /// Services whose logs to show (default: all).
        services: Vec<String>,
        /// Keep following, also across restarts of the service.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each service.
        #[arg(long)]
        tail: Option<usize>,
        /// Only lines since then: 10m, 2h, an RFC 3339 time, unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Only lines at this level or above (non-JSON lines always show).
        #[arg(long, value_enum)]
        level: Option<Level>,
        /// Lines exactly as written, without prefix or rendering (for jq).
        #[arg(long)]
        raw: bool,
    },
    /// Restart services and wait until each is healthy again.
    Restart {
        /// Services to restart.
        #[arg(required = true)]
        services: Vec<String>,
        /// How long to wait for each service to become healthy.
        #[arg(long, default_value = "180s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Check every service's metrics against typed expectations, run a
    /// real register/login/upload/process flow and check each counter moved
    /// by what it did, then check Prometheus, the dashboards and Grafana.
    /// Works on the Docker stack and on services run as processes.
    ///
    /// Exit codes: 0 all passed, 1 a check failed, 2 verify could not run
    /// (a target did not answer).
    Verify {
        /// Expectations file (TOML); default: the embedded verify.toml.
        #[arg(long)]
        spec: Option<std::path::PathBuf>,
        /// Where a service's metrics are: SERVICE=URL (repeatable), e.g.
        /// auth=http://127.0.0.1:50051/metrics.
        #[arg(long, value_parser = crate::verify::parse_target)]
        target: Vec<(String, String)>,
        /// Skip the flow: only check the scrapes as they are.
        #[arg(long)]
        no_flow: bool,
        /// How long the flow waits for its task to complete.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        flow_timeout: std::time::Duration,
        /// Prometheus' base URL (skipped, visibly, when not reachable).
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        prometheus: String,
        /// Grafana's base URL (skipped, visibly, when not reachable).
        #[arg(long, default_value = "http://127.0.0.1:3001")]
        grafana: String,
        /// The dashboards whose panel queries to check.
        #[arg(long, default_value = "dashboards")]
        dashboards: std::path::PathBuf,
        /// Also write the results as JUnit XML to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<std::path::PathBuf>,
    },
    /// Remove the project's containers and networks.
    Down {
        /// Remove the project's named volumes too (their data is lost).
        #[arg(short = 'v', long)]
        volumes: bool,
    },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let ns = crate::compose::model::duration_ns(text)?;
    Ok(std::time::Duration::from_nanos(
        u64::try_from(ns).map_err(|_| "negative duration")?,
    ))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_for_timeouts() {
        assert_eq!(
            super::parse_duration("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert!(super::parse_duration("soon").is_err());
    }
}
