//! Where `dev` compiles: on the host when the host can run the containers'
//! binaries (Linux, the engine's architecture, cargo present), else in a
//! long-lived build container of the official Rust image with the
//! workspace mounted and the target folder and cargo's registry in named
//! volumes (so incremental builds work there too); or, with
//! `--images engine`, by the engine from services/Dockerfile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bollard::container::Config;
use bollard::models::HostConfig;

use crate::compose::Project;
use crate::docker::Engine;
use crate::stack;
use crate::workspace::Workspace;

/// `--build`: where to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Place {
    /// With the host's cargo (Linux on the engine's architecture).
    Host,
    /// In a build container of the official Rust image.
    Container,
}

/// The decided builder.
#[derive(Debug, Clone)]
pub enum Builder {
    Host,
    Container(BuildContainer),
    /// The engine's own build from services/Dockerfile.
    Engine,
}

/// The build container: its name and the workspace mounted at `/src`.
#[derive(Debug, Clone)]
pub struct BuildContainer {
    pub name: String,
    image: String,
    root: PathBuf,
    labels: HashMap<String, String>,
    target_volume: String,
    registry_volume: String,
}

/// Where the workspace is in the build container.
const MOUNT: &str = "/src";
/// The build container's target folder (a named volume).
const TARGET: &str = "/target";

/// A compile that failed: cargo's own output says why.
#[derive(Debug, thiserror::Error)]
#[error("cargo build failed:\n{output}")]
pub struct CompileError {
    pub output: String,
}

/// Whether the host's own cargo can build binaries for the engine's
/// containers: the same OS (Linux) and architecture, and cargo on the
/// PATH. `None` when it can; otherwise why not.
pub fn host_cannot(engine_os: &str, engine_arch: &str, cargo: bool) -> Option<String> {
    let host_arch = std::env::consts::ARCH;
    // The engine names architectures as `uname -m` does.
    let engine_arch = match engine_arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    };
    if std::env::consts::OS != "linux" || engine_os != "linux" {
        return Some(format!(
            "the host is {} and the engine runs {engine_os} containers",
            std::env::consts::OS
        ));
    }
    if host_arch != engine_arch {
        return Some(format!(
            "the host is {host_arch} and the engine {engine_arch}"
        ));
    }
    (!cargo).then(|| "no cargo on the host".to_string())
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn cargo_present() -> bool {
    std::process::Command::new(cargo())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Builder {
    /// Decides where to build, and says why: `--images engine` and
    /// `--build` decide when given; otherwise the host when it can.
    pub async fn choose(
        engine: &Engine,
        project: &Project,
        root: &Path,
        asked: Option<Place>,
        engine_images: bool,
    ) -> anyhow::Result<(Self, String)> {
        if engine_images {
            return Ok((
                Self::Engine,
                "the engine builds the images from services/Dockerfile (--images engine)".into(),
            ));
        }
        let (os, arch) = engine.platform().await?;
        let cannot = host_cannot(&os, &arch, cargo_present());
        let container = || Self::Container(BuildContainer::new(project, root));
        Ok(match (asked, cannot) {
            (Some(Place::Host), Some(why)) => anyhow::bail!(
                "cannot build on the host: {why}; use --build container"
            ),
            (Some(Place::Host), None) => (Self::Host, "on the host (--build host)".into()),
            (Some(Place::Container), _) => {
                let c = container();
                let why = format!("in the build container {} (--build container)", name_of(&c));
                (c, why)
            }
            (None, None) => (
                Self::Host,
                format!("on the host ({os} {arch}, as the engine's containers): --build container to build in a container"),
            ),
            (None, Some(why)) => {
                let c = container();
                let text = format!("in the build container {}: {why}", name_of(&c));
                (c, text)
            }
        })
    }

    /// The workspace at `root`, as cargo describes it where it builds.
    pub async fn workspace(&self, engine: &Engine, root: &Path) -> anyhow::Result<Workspace> {
        match self {
            Self::Host => Workspace::load(root),
            Self::Engine => Workspace::load(root).context(
                "dev reads which service an edit touches from the cargo workspace; without cargo on the host, use --build container",
            ),
            Self::Container(c) => c.workspace(engine).await,
        }
    }

    /// Compiles the binaries of `packages` (debug, incremental).
    pub async fn build(
        &self,
        engine: &Engine,
        root: &Path,
        packages: &[&str],
    ) -> anyhow::Result<()> {
        let mut argv: Vec<String> = vec!["build".into(), "--color".into(), "never".into()];
        for package in packages {
            argv.extend(["-p".into(), package.to_string()]);
        }
        argv.push("--bins".into());
        match self {
            Self::Host => {
                let output = tokio::process::Command::new(cargo())
                    .args(&argv)
                    .current_dir(root)
                    .output()
                    .await
                    .context("cannot run cargo")?;
                if output.status.success() {
                    Ok(())
                } else {
                    Err(CompileError {
                        output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    }
                    .into())
                }
            }
            Self::Container(c) => c.cargo(engine, argv).await,
            Self::Engine => Ok(()),
        }
    }

    /// The bytes of binary `bin` as just built.
    pub async fn binary(
        &self,
        engine: &Engine,
        workspace: &Workspace,
        bin: &str,
    ) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::Host | Self::Engine => {
                let path = workspace.target.join("debug").join(bin);
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
            }
            Self::Container(c) => c.binary(engine, bin).await,
        }
    }

    /// Stops the build container (its volumes keep the build for next
    /// time).
    pub async fn finish(&self, engine: &Engine) {
        if let Self::Container(c) = self {
            let _ = engine.stop(&c.name, Duration::from_secs(1)).await;
        }
    }
}

fn name_of(builder: &Builder) -> &str {
    match builder {
        Builder::Container(c) => &c.name,
        _ => "",
    }
}

impl BuildContainer {
    fn new(project: &Project, root: &Path) -> Self {
        let mut labels = stack::project_labels(project);
        labels.insert("org.pixelflow.dev-build".into(), "true".into());
        Self {
            name: format!("{}-dev-build", project.name),
            image: std::env::var("RUST_IMAGE").unwrap_or_else(|_| "rust:1-bookworm".into()),
            root: root.to_path_buf(),
            labels,
            target_volume: stack::volume_name(&project.name, "dev-target"),
            registry_volume: stack::volume_name(&project.name, "dev-cargo-registry"),
        }
    }

    /// Creates and starts the container unless it runs already.
    pub async fn ensure(&self, engine: &Engine) -> anyhow::Result<()> {
        if engine
            .observe(&self.name)
            .await
            .is_ok_and(|o| o.is_running())
        {
            return Ok(());
        }
        if engine.inspect(&self.name).await.is_err() {
            for volume in [&self.target_volume, &self.registry_volume] {
                engine.ensure_volume(volume, self.labels.clone()).await?;
            }
            let config = Config {
                image: Some(self.image.clone()),
                cmd: Some(vec!["sleep".into(), "infinity".into()]),
                env: Some(vec![format!("CARGO_TARGET_DIR={TARGET}")]),
                working_dir: Some(MOUNT.into()),
                labels: Some(self.labels.clone()),
                host_config: Some(HostConfig {
                    binds: Some(vec![
                        format!("{}:{MOUNT}", self.root.display()),
                        format!("{}:{TARGET}", self.target_volume),
                        format!("{}:/usr/local/cargo/registry", self.registry_volume),
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            engine.create(&self.name, config).await?;
        }
        engine.start(&self.name).await?;
        // The worker links libturbojpeg: its headers and library, once per
        // build container (the official Rust image lacks them).
        let (code, output) = engine
            .exec_in(
                &self.name,
                vec![
                    "sh".into(),
                    "-c".into(),
                    "dpkg -s libturbojpeg0-dev >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends libturbojpeg0-dev)".into(),
                ],
                None,
                Vec::new(),
            )
            .await?;
        if code != 0 {
            anyhow::bail!(
                "cannot install libturbojpeg0-dev in the build container {}: {}",
                self.name,
                output.trim()
            );
        }
        Ok(())
    }

    async fn cargo(&self, engine: &Engine, args: Vec<String>) -> anyhow::Result<()> {
        self.ensure(engine).await?;
        let mut argv = vec!["cargo".to_string()];
        argv.extend(args);
        let (code, output) = engine
            .exec_in(&self.name, argv, Some(MOUNT.into()), Vec::new())
            .await?;
        if code == 0 {
            Ok(())
        } else {
            Err(CompileError {
                output: output.trim().to_string(),
            }
            .into())
        }
    }

    async fn workspace(&self, engine: &Engine) -> anyhow::Result<Workspace> {
        self.ensure(engine).await?;
        let argv = ["cargo", "metadata", "--no-deps", "--format-version", "1"]
            .map(String::from)
            .to_vec();
        let (code, output) = engine
            .exec_in(&self.name, argv, Some(MOUNT.into()), Vec::new())
            .await?;
        if code != 0 {
            anyhow::bail!("cargo metadata failed in {}: {output}", self.name);
        }
        // Only the JSON line: cargo may warn on the merged stderr.
        let json = output
            .lines()
            .find(|l| l.starts_with('{'))
            .context("cargo metadata printed no JSON")?;
        Ok(Workspace::parse(json)?.rebased(Path::new(MOUNT), &self.root))
    }

    async fn binary(&self, engine: &Engine, bin: &str) -> anyhow::Result<Vec<u8>> {
        let tar = engine
            .download(&self.name, &format!("{TARGET}/debug/{bin}"))
            .await?;
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entry = archive
            .entries()
            .context("cannot read the copied binary")?
            .next()
            .context("the build container sent no binary")?
            .context("cannot read the copied binary")?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .context("cannot read the copied binary")?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_builds_only_what_the_engine_can_run() {
        let arch = std::env::consts::ARCH;
        if std::env::consts::OS == "linux" {
            assert_eq!(host_cannot("linux", arch, true), None);
            let other = if arch == "x86_64" {
                "aarch64"
            } else {
                "x86_64"
            };
            assert!(host_cannot("linux", other, true).is_some_and(|w| w.contains(other)));
            assert_eq!(
                host_cannot("linux", arch, false).as_deref(),
                Some("no cargo on the host")
            );
        }
        assert!(host_cannot("windows", arch, true).is_some());
    }
}
