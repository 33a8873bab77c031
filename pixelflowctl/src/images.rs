//! Making sure every service's image exists: pull third-party images, build
//! the services' own. The services' images come from services/Dockerfile
//! (`--images dockerfile`) or from binaries already built on the host
//! (`--images host`: fast iteration, and machines with no registry).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::compose::Project;
use crate::docker::Engine;
use crate::printer::Printer;
use crate::stack::image_of;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Build in the official Rust image from services/Dockerfile.
    Dockerfile,
    /// Package binaries already built on the host (`cargo build`) onto
    /// RUNTIME_IMAGE (default debian:bookworm-slim).
    Host,
}

pub struct Options {
    pub source: Source,
    /// Rebuild the services' images even when present.
    pub rebuild: bool,
    /// `target/<profile>` holds the host binaries.
    pub profile: String,
}

/// Pulls or builds what `services` need. Returns each image's id.
pub async fn ensure(
    engine: &Engine,
    project: &Project,
    services: &[String],
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<HashMap<String, String>> {
    // Side by side: pulls and builds of different images do not wait on
    // each other.
    let results = futures::future::join_all(
        services
            .iter()
            .map(|name| ensure_one(engine, project, name, options, printer)),
    )
    .await;
    let mut ids = HashMap::new();
    for (name, result) in services.iter().zip(results) {
        ids.insert(name.clone(), result?);
    }
    Ok(ids)
}

async fn ensure_one(
    engine: &Engine,
    project: &Project,
    name: &String,
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<String> {
    {
        let service = &project.services[name];
        let image = image_of(project, name);
        let present = engine.image_id(&image).await?;
        let id = match (&service.build, present) {
            // Host packaging is a cached COPY of the binary: always redo it,
            // so a rebuilt binary reaches its container (and an unchanged one
            // keeps the image id, and so its container).
            (Some(_), Some(id)) if !options.rebuild && options.source == Source::Dockerfile => id,
            (Some(build), _) => {
                let bar = printer.spinner(format!("{name}: building {image}"));
                let service_arg = build
                    .args()
                    .get("SERVICE")
                    .cloned()
                    .unwrap_or_else(|| name.clone());
                let result = match options.source {
                    Source::Host => {
                        let context = host_context(project, &service_arg, &options.profile)?;
                        let mut args = HashMap::new();
                        if let Ok(base) = std::env::var("RUNTIME_IMAGE") {
                            args.insert("RUNTIME_IMAGE".to_string(), base);
                        }
                        engine
                            .build(&image, "Dockerfile", args, context, |line| {
                                bar.set_message(format!("{name}: {line}"))
                            })
                            .await
                    }
                    Source::Dockerfile => {
                        let dir = project.dir.join(build.context());
                        let dockerfile = match &build {
                            crate::compose::model::Build::Full {
                                dockerfile: Some(d),
                                ..
                            } => d.clone(),
                            _ => "Dockerfile".into(),
                        };
                        let context = directory_context(&dir)?;
                        let mut args = build.args().into_iter().collect::<HashMap<_, _>>();
                        for key in ["RUST_IMAGE", "RUNTIME_IMAGE"] {
                            if let Ok(v) = std::env::var(key) {
                                args.insert(key.to_string(), v);
                            }
                        }
                        engine
                            .build(&image, &dockerfile, args, context, |line| {
                                bar.set_message(format!("{name}: {line}"))
                            })
                            .await
                    }
                };
                bar.finish_and_clear();
                result?;
                printer.status(format!("built {image}"));
                engine
                    .image_id(&image)
                    .await?
                    .with_context(|| format!("{image} is missing right after its build"))?
            }
            (None, Some(id)) => id,
            (None, None) => {
                let bar = printer.spinner(format!("{name}: pulling {image}"));
                let result = engine
                    .pull(&image, |line| bar.set_message(format!("{name}: {line}")))
                    .await;
                bar.finish_and_clear();
                result.with_context(|| {
                    format!("cannot pull {image} for {name}; on a machine without registry access build stand-ins (compose/standins/build) and set the image variables it prints")
                })?;
                printer.status(format!("pulled {image}"));
                engine
                    .image_id(&image)
                    .await?
                    .with_context(|| format!("{image} is missing right after its pull"))?
            }
        };
        Ok(id)
    }
}

/// A build context holding the host binary and a two-line Dockerfile.
fn host_context(project: &Project, binary: &str, profile: &str) -> anyhow::Result<Vec<u8>> {
    let root = project.dir.join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join(profile).join(binary);
    if !path.exists() {
        bail!(
            "{} is missing: build it first (cargo build{} -p pixelflow-{binary})",
            path.display(),
            if profile == "release" {
                " --release"
            } else {
                ""
            }
        );
    }
    let dockerfile = "ARG RUNTIME_IMAGE=debian:bookworm-slim\n\
        FROM ${RUNTIME_IMAGE}\n\
        RUN command -v curl >/dev/null || (apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*)\n\
        COPY service /usr/local/bin/service\n\
        USER 65534:65534\n\
        ENTRYPOINT [\"/usr/local/bin/service\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    append(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    let binary_bytes =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    append(&mut tar, "service", &binary_bytes, 0o755)?;
    tar.into_inner().context("cannot finish the build context")
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, name, data)
        .with_context(|| format!("cannot add {name} to the build context"))
}

/// A directory as a build context, leaving out `target` and `.git` (what
/// .dockerignore leaves out too).
fn directory_context(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    add_dir(&mut tar, dir, Path::new(""))?;
    tar.into_inner().context("cannot finish the build context")
}

fn add_dir(tar: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> anyhow::Result<()> {
    let here = root.join(rel);
    for entry in
        std::fs::read_dir(&here).with_context(|| format!("cannot read {}", here.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if rel.as_os_str().is_empty() && (name == "target" || name == ".git") {
            continue;
        }
        let path = rel.join(&name);
        if entry.file_type()?.is_dir() {
            if name == "target" {
                continue;
            }
            add_dir(tar, root, &path)?;
        } else {
            tar.append_path_with_name(root.join(&path), &path)
                .with_context(|| format!("cannot add {} to the build context", path.display()))?;
        }
    }
    Ok(())
}
