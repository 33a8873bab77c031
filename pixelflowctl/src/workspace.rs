//! The cargo workspace, as `cargo metadata` describes it: which package
//! builds each binary, and what each binary is built from (its package's
//! folder, its path dependencies', the workspace manifest and lock file,
//! and folders a package declares it embeds at compile time). `up` digests
//! just those for an image, and `dev` reloads just the services an edit
//! touches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// What `cargo metadata --no-deps --format-version 1` prints, the parts
/// read here.
#[derive(Debug, Deserialize)]
struct Metadata {
    workspace_root: PathBuf,
    target_directory: PathBuf,
    packages: Vec<RawPackage>,
}

#[derive(Debug, Deserialize)]
struct RawPackage {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<RawTarget>,
    dependencies: Vec<RawDependency>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawDependency {
    name: String,
    #[serde(default)]
    path: Option<PathBuf>,
    /// `null` for a normal dependency, `dev` or `build`.
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Debug, Clone)]
struct Package {
    dir: PathBuf,
    bins: Vec<String>,
    /// Path dependencies a build of it compiles (normal and build ones:
    /// dev-dependencies build only its tests).
    path_deps: Vec<String>,
    /// Folders outside its own that it embeds at compile time
    /// (`[package.metadata.pixelflow] embeds`), e.g. another crate's
    /// migrations.
    embeds: Vec<PathBuf>,
}

/// A workspace's packages, by name.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    /// Where cargo puts what it builds (`target/`, or CARGO_TARGET_DIR).
    pub target: PathBuf,
    packages: BTreeMap<String, Package>,
}

/// What one binary is built from, absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The package that builds it.
    pub package: String,
    /// Files at the workspace root every build reads.
    pub files: Vec<PathBuf>,
    /// Folders whose every file is an input (sorted, none inside another).
    pub dirs: Vec<PathBuf>,
}

impl Inputs {
    /// Whether an edit of `path` can change the binary.
    pub fn covers(&self, path: &Path) -> bool {
        self.files.iter().any(|f| f == path) || self.dirs.iter().any(|d| path.starts_with(d))
    }
}

impl Workspace {
    /// The workspace of `root`/Cargo.toml, from `cargo metadata` (which
    /// needs no network with `--no-deps`).
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let output =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
                .args([
                    "metadata",
                    "--no-deps",
                    "--format-version",
                    "1",
                    "--manifest-path",
                ])
                .arg(root.join("Cargo.toml"))
                .output()
                .context("cannot run cargo metadata (is cargo installed?)")?;
        if !output.status.success() {
            anyhow::bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Self::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// The workspace `cargo metadata` described in `json`.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let metadata: Metadata =
            serde_json::from_str(json).context("cannot read cargo metadata's answer")?;
        let packages = metadata
            .packages
            .into_iter()
            .map(|p| {
                let dir = p
                    .manifest_path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let embeds = p
                    .metadata
                    .as_ref()
                    .and_then(|m| m["pixelflow"]["embeds"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| e.as_str())
                    .map(|e| normalise(&dir.join(e)))
                    .collect();
                let package = Package {
                    bins: p
                        .targets
                        .iter()
                        .filter(|t| t.kind.iter().any(|k| k == "bin"))
                        .map(|t| t.name.clone())
                        .collect(),
                    path_deps: p
                        .dependencies
                        .iter()
                        .filter(|d| d.path.is_some() && d.kind.as_deref() != Some("dev"))
                        .map(|d| d.name.clone())
                        .collect(),
                    embeds,
                    dir,
                };
                (p.name, package)
            })
            .collect();
        Ok(Self {
            root: metadata.workspace_root,
            target: metadata.target_directory,
            packages,
        })
    }

    /// The same workspace seen from elsewhere: cargo ran where the
    /// workspace is mounted at `from` (a build container's `/src`), and its
    /// paths are read here as under `to`.
    pub fn rebased(mut self, from: &Path, to: &Path) -> Self {
        let move_path = |p: &mut PathBuf| {
            if let Ok(rest) = p.strip_prefix(from) {
                *p = to.join(rest);
            }
        };
        move_path(&mut self.root);
        for package in self.packages.values_mut() {
            move_path(&mut package.dir);
            package.embeds.iter_mut().for_each(move_path);
        }
        self
    }

    /// The package that builds `bin`.
    pub fn package_of(&self, bin: &str) -> Option<&str> {
        self.packages
            .iter()
            .find(|(_, p)| p.bins.iter().any(|b| b == bin))
            .map(|(name, _)| name.as_str())
    }

    /// What binary `bin` is built from; `None` when no package builds it.
    pub fn inputs(&self, bin: &str) -> Option<Inputs> {
        let name = self.package_of(bin)?.to_string();
        let mut seen = BTreeSet::new();
        let mut stack = vec![name.clone()];
        let mut dirs = Vec::new();
        while let Some(next) = stack.pop() {
            let Some(package) = self.packages.get(&next) else {
                continue;
            };
            if !seen.insert(next) {
                continue;
            }
            dirs.push(package.dir.clone());
            dirs.extend(package.embeds.iter().cloned());
            stack.extend(package.path_deps.iter().cloned());
        }
        dirs.sort();
        dirs.dedup();
        // A folder inside another adds nothing.
        let outer: Vec<PathBuf> = dirs
            .iter()
            .filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o)))
            .cloned()
            .collect();
        Some(Inputs {
            package: name,
            files: vec![self.root.join("Cargo.toml"), self.root.join("Cargo.lock")],
            dirs: outer,
        })
    }
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> Workspace {
        Workspace::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).expect("cargo metadata")
    }

    #[test]
    fn a_service_is_built_from_its_crate_common_and_the_lock_not_its_neighbours() {
        let ws = workspace();
        let api = ws.inputs("api").expect("api is a binary");
        assert_eq!(api.package, "pixelflow-api");
        let root = &ws.root;
        assert!(api.covers(&root.join("services/api/src/main.rs")));
        assert!(api.covers(&root.join("services/common/src/lib.rs")));
        assert!(api.covers(&root.join("Cargo.lock")));
        assert!(
            !api.covers(&root.join("services/auth/src/lib.rs")),
            "{api:?}"
        );
        assert!(
            !api.covers(&root.join("services/worker/src/lib.rs")),
            "{api:?}"
        );
        assert!(
            !api.covers(&root.join("pixelflowctl/src/lib.rs")),
            "{api:?}"
        );
        assert!(ws.inputs("nothing-builds-this").is_none());
    }

    #[test]
    fn what_a_package_embeds_from_elsewhere_is_its_input_too() {
        let ws = workspace();
        let worker = ws.inputs("worker").expect("worker is a binary");
        assert!(
            worker.covers(
                &ws.root
                    .join("services/api/migrations/20261127100001_create_tasks.sql")
            ),
            "the worker runs api's migrations: {worker:?}"
        );
        assert!(!worker.covers(&ws.root.join("services/api/src/lib.rs")));
    }

    /// Every file cargo recorded as an input of a service binary (its
    /// dep-info, written by the build tests/run makes first) is one of the
    /// inputs computed here: an edit the digest would miss is a test
    /// failure, not a stale image.
    #[test]
    fn every_file_cargo_built_a_service_from_is_one_of_its_inputs() {
        let ws = workspace();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| ws.root.join("target"));
        for bin in ["auth", "api", "worker"] {
            let inputs = ws.inputs(bin).expect("a service binary");
            let depinfo = target.join("debug").join(format!("{bin}.d"));
            let Ok(text) = std::fs::read_to_string(&depinfo) else {
                panic!(
                    "{} is missing: cargo build --bins first (tests/run does)",
                    depinfo.display()
                );
            };
            let (_, deps) = text.split_once(": ").expect("a make rule");
            let missed: Vec<&str> = deps
                .split_whitespace()
                .filter(|d| Path::new(d).starts_with(&ws.root))
                .filter(|d| !Path::new(d).starts_with(&target))
                .filter(|d| !inputs.covers(Path::new(d)))
                .collect();
            assert!(
                missed.is_empty(),
                "{bin} is built from {missed:?}, which its inputs miss"
            );
        }
    }
}
