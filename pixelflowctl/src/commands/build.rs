//! `pixelflowctl build`: the services' own images, built by the engine
//! (what `up` does first), whether or not what they are built from changed.

use super::Context;
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
    #[command(flatten)]
    pub source: images::SourceArgs,
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, project, printer) = (cx.engine, cx.project, cx.printer);
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
    let options = args.source.options(project, true, printer);
    images::ensure(engine, project, &services, &options, printer).await?;
    Ok(ExitStatus::Success)
}
