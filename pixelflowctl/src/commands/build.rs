//! `pixelflowctl build`: the services' own images, built by the engine
//! (what `up` does first), whether or not what they are built from changed.

use crate::compose::Project;
use crate::docker::Engine;
use crate::printer::Printer;
use crate::{images, ExitStatus};

/// Build the services' own images.
///
/// Builds the images of the services that have a `build:` section
/// (default: all of them), as `up` builds them, even when what they are
/// built from did not change. The engine's layer cache still applies: an
/// unchanged source gives the same image.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services whose images to build (default: every service with a
    /// `build:` section).
    pub services: Vec<String>,
    /// Where the images come from: built by the engine from the service's
    /// Dockerfile, or packaged from binaries built on the host.
    #[arg(
        long,
        value_enum,
        env = "PIXELFLOW_IMAGES",
        default_value = "dockerfile"
    )]
    pub images: images::Source,
    /// With --images host: the cargo profile whose binaries to package
    /// (target/<profile>/).
    #[arg(long, env = "PIXELFLOW_PROFILE", default_value = "debug")]
    pub profile: String,
}

pub async fn run(
    engine: &Engine,
    project: &Project,
    args: &Args,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let services: Vec<String> = project
        .select(&args.services)?
        .into_iter()
        .filter(|name| {
            let buildable = project.services[name].build.is_some();
            if !buildable && !args.services.is_empty() {
                printer.status(format!("{name}: no build section, nothing to build"));
            }
            buildable
        })
        .collect();
    let options = images::Options {
        source: args.images,
        rebuild: true,
        profile: args.profile.clone(),
    };
    images::ensure(engine, project, &services, &options, printer).await?;
    Ok(ExitStatus::Success)
}
