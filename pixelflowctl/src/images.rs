//! Making sure every service's image exists: pull third-party images, build
//! the services' own. The services' images come from services/Dockerfile
//! (`--images dockerfile`, the default) or from binaries already built on
//! the host (`--images host`: fast iteration).
//!
//! A built image carries the digest of what it was built from (context,
//! Dockerfile, build arguments) as a label: `up` rebuilds when that digest
//! changed (an edited source) and leaves the image alone otherwise, so an
//! unchanged stack keeps its image ids and its containers.

mod context;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use futures::future::join_all;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::compose::model::Build;
use crate::compose::Project;
use crate::docker::{BuildRequest, Engine, PullEvent};
use crate::printer::Printer;
use crate::stack::image_of;
use crate::workspace::Workspace;

/// The label holding the digest of what an image was built from.
pub const CONTEXT_DIGEST: &str = "org.pixelflow.context-digest";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Build in the official Rust image from services/Dockerfile (the
    /// engine's build; `engine` says the same).
    #[value(alias = "engine")]
    Dockerfile,
    /// Package binaries already built on the host (`cargo build`) onto
    /// RUNTIME_IMAGE (default debian:bookworm-slim).
    Host,
}

/// Where the services' own images come from, on the command line of `up`
/// and `build`.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Where the services' own images come from: built by the engine from
    /// their Dockerfile, or packaged from binaries built on the host.
    #[arg(
        long,
        value_enum,
        env = "PIXELFLOW_IMAGES",
        default_value = "dockerfile"
    )]
    pub images: Source,
    /// With --images host: the cargo profile whose binaries to package
    /// (target/<profile>/).
    #[arg(long, env = "PIXELFLOW_PROFILE", default_value = "debug")]
    pub profile: String,
}

impl SourceArgs {
    /// The options for building `project`'s images. For the engine's
    /// builds, the cargo workspace of the build context is read once: each
    /// image is then digested by what its binary is built from. Without
    /// cargo, the whole context is, and `printer` says so.
    pub fn options(&self, project: &Project, rebuild: bool, printer: &Printer) -> Options {
        let workspace = match self.images {
            Source::Host => None,
            Source::Dockerfile => {
                let root = project.dir.join("..");
                match root
                    .join("Cargo.toml")
                    .is_file()
                    .then(|| Workspace::load(&root))
                {
                    Some(Ok(workspace)) => Some(workspace),
                    Some(Err(e)) => {
                        printer.status(format!(
                            "warning: {e:#}; any change in the build context rebuilds every image"
                        ));
                        None
                    }
                    None => None,
                }
            }
        };
        Options {
            source: self.images,
            workspace,
            rebuild,
            profile: self.profile.clone(),
            binaries: None,
        }
    }
}

pub struct Options {
    pub source: Source,
    /// The cargo workspace the services are built from, when cargo could
    /// tell: images are then digested by their binary's inputs alone.
    pub workspace: Option<Workspace>,
    /// Build the services' images even when their digest is unchanged (the
    /// engine's layer cache still applies).
    pub rebuild: bool,
    /// `target/<profile>` holds the host binaries.
    pub profile: String,
    /// With `Source::Host`: the folder holding the binaries, instead of
    /// `target/<profile>` (`dev` copies a build container's there).
    pub binaries: Option<PathBuf>,
}

/// Pulls or builds what `services` need. Returns each image's id.
///
/// Pulls run side by side with the builds. Of the builds, the first runs
/// alone and the others after it, side by side: they share their first
/// layers (the compile stage, the runtime base with curl), which the first
/// build puts in the cache. Run at once on an empty cache, each would make
/// its own copy of those layers and a later build could pick any of them,
/// changing image ids (and recreating containers) with nothing changed.
pub async fn ensure(
    engine: &Engine,
    project: &Project,
    services: &[String],
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<HashMap<String, String>> {
    let (built, pulled): (Vec<&String>, Vec<&String>) = services
        .iter()
        .partition(|name| project.services[*name].build.is_some());
    let pulls = join_all(
        pulled
            .iter()
            .map(|name| ensure_pulled(engine, project, name, printer)),
    );
    let builds = async {
        let mut results = Vec::new();
        if let Some((first, rest)) = built.split_first() {
            results.push(ensure_built(engine, project, first, options, printer).await);
            results.extend(
                join_all(
                    rest.iter()
                        .map(|name| ensure_built(engine, project, name, options, printer)),
                )
                .await,
            );
        }
        results
    };
    let (pulls, builds) = futures::join!(pulls, builds);
    let mut ids = HashMap::new();
    let mut unpulled = Vec::new();
    for (name, result) in pulled.into_iter().zip(pulls) {
        match result {
            Ok(id) => {
                ids.insert(name.clone(), id);
            }
            Err(e) => unpulled.push((name.clone(), e)),
        }
    }
    // An engine gone is no missing image: its error, with its exit code.
    if let Some(at) = unpulled
        .iter()
        .position(|(_, e)| crate::exit_status(e) == crate::ExitStatus::DockerUnreachable)
    {
        return Err(unpulled.swap_remove(at).1);
    }
    if !unpulled.is_empty() {
        anyhow::bail!(cannot_pull(project, services, &unpulled));
    }
    for (name, result) in built.into_iter().zip(builds) {
        ids.insert(name.clone(), result?);
    }
    Ok(ids)
}

/// Every image that could not be pulled, at once, and the way on without
/// a registry: the stand-ins, or leaving the services out (with what
/// depends on them).
fn cannot_pull(
    project: &Project,
    services: &[String],
    unpulled: &[(String, anyhow::Error)],
) -> String {
    let names: Vec<String> = unpulled.iter().map(|(name, _)| name.clone()).collect();
    let mut text = format!("cannot pull the image of {}:", names.join(", "));
    for (name, e) in unpulled {
        text.push_str(&format!("\n  {name}: {e:#}"));
    }
    let (_, left_out) = project.without(services, &names);
    let dependents: Vec<&str> = left_out
        .iter()
        .filter(|s| !names.contains(s))
        .map(String::as_str)
        .collect();
    let without: Vec<String> = names.iter().map(|n| format!("--without {n}")).collect();
    text.push_str(&format!(
        "\nWithout registry access: compose/standins/build tags local stand-ins under the official names of the images it can make (PostgreSQL, Kafka, Prometheus, Alertmanager, and Debian and Rust for the builds); `up {}` leaves the others out",
        without.join(" ")
    ));
    match dependents.as_slice() {
        [] => {}
        [one] => text.push_str(&format!(" (and {one}, which depends on them)")),
        many => text.push_str(&format!(" (and {}, which depend on them)", many.join(", "))),
    }
    text
}

async fn ensure_pulled(
    engine: &Engine,
    project: &Project,
    name: &str,
    printer: &Printer,
) -> anyhow::Result<String> {
    let image = image_of(project, name);
    if let Some(id) = engine.image_id(&image).await? {
        return Ok(id);
    }
    let progress = PullProgress::new(printer, name);
    let result = engine.pull(&image, |event| progress.update(event)).await;
    progress.finish();
    result?;
    printer.status(format!("{name}: pulled {image}"));
    engine
        .image_id(&image)
        .await?
        .with_context(|| format!("{image} is missing right after its pull"))
}

async fn ensure_built(
    engine: &Engine,
    project: &Project,
    name: &str,
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<String> {
    let build = project.services[name]
        .build
        .as_ref()
        .with_context(|| format!("{name} has no build section"))?;
    let image = image_of(project, name);
    let mut request = match options.source {
        Source::Host => host_request(project, name, build, options)?,
        Source::Dockerfile => dockerfile_request(project, build)?,
    };
    // Built by the engine, an image is digested by what its binary is built
    // from, not by the whole context: an edit to api rebuilds api alone.
    // The host's packaging context holds just the binary already.
    let digest = match (options.source, options.workspace.as_ref()) {
        (Source::Dockerfile, Some(workspace)) => {
            match binary_inputs(project, name, build, workspace)? {
                Some(part) => digest_of(&part, &request),
                None => digest_of(&request.context, &request),
            }
        }
        _ => digest_of(&request.context, &request),
    };
    let present = engine.image(&image).await?;
    if let Some(present) = &present {
        if !options.rebuild && present.labels.get(CONTEXT_DIGEST) == Some(&digest) {
            return Ok(present.id.clone());
        }
    }
    request.labels.insert(CONTEXT_DIGEST.into(), digest);
    let progress = BuildProgress::new(printer, name);
    let result = engine
        .build(&image, request, |line| progress.line(line))
        .await;
    progress.finish();
    result?;
    let id = engine
        .image_id(&image)
        .await?
        .with_context(|| format!("{image} is missing right after its build"))?;
    let verb = match present {
        Some(p) if p.id == id => "unchanged",
        Some(_) => "rebuilt",
        None => "built",
    };
    printer.status(format!("{name}: {verb} {image}"));
    Ok(id)
}

/// The part of the build context the service's binary is built from (its
/// SERVICE build argument names the binary): `None` when no package of the
/// workspace builds it, or the context is not the workspace's.
fn binary_inputs(
    project: &Project,
    name: &str,
    build: &Build,
    workspace: &Workspace,
) -> anyhow::Result<Option<Vec<u8>>> {
    let dir = std::fs::canonicalize(project.dir.join(build.context()))
        .unwrap_or_else(|_| project.dir.join(build.context()));
    let binary = binary_of(name, build)?;
    let Some(mut inputs) = workspace.inputs(&binary).filter(|_| dir == workspace.root) else {
        return Ok(None);
    };
    // The Dockerfile is read wherever it is.
    inputs.files.push(dir.join(dockerfile_of(build)));
    context::subset(&dir, &inputs).map(Some)
}

/// The digest of what a build reads: `content` (its context, or the part
/// of it the binary is built from), the Dockerfile's name, the arguments
/// and the labels.
fn digest_of(content: &[u8], request: &BuildRequest) -> String {
    let mut hash = Sha256::new();
    hash.update(content);
    hash.update(request.dockerfile.as_bytes());
    let mut args: Vec<_> = request.args.iter().chain(&request.labels).collect();
    args.sort();
    for (k, v) in args {
        hash.update(format!("\0{k}={v}").as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The service's build section as the engine's build: its context folder
/// (honouring .dockerignore), Dockerfile and arguments. RUST_IMAGE and
/// RUNTIME_IMAGE from the environment replace the Dockerfile's bases.
fn dockerfile_request(project: &Project, build: &Build) -> anyhow::Result<BuildRequest> {
    let dir = project.dir.join(build.context());
    let dockerfile = dockerfile_of(build);
    let mut args: HashMap<String, String> = build.args().into_iter().collect();
    for key in ["RUST_IMAGE", "RUNTIME_IMAGE"] {
        if let Ok(v) = std::env::var(key) {
            args.insert(key.to_string(), v);
        }
    }
    Ok(BuildRequest {
        dockerfile,
        args,
        labels: HashMap::new(),
        context: context::directory(&dir)?,
    })
}

/// The binary a service's image runs: its SERVICE build argument, else
/// its name. It becomes a file name under `target/`, so it must be one:
/// letters, digits, `-` and `_`, never a path (`../../etc/passwd`).
pub fn binary_of(name: &str, build: &Build) -> anyhow::Result<String> {
    let binary = build
        .args()
        .get("SERVICE")
        .cloned()
        .unwrap_or_else(|| name.to_string());
    let plain = !binary.is_empty()
        && binary
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plain {
        bail!("{name}: build argument SERVICE={binary:?} is not a binary's name (letters, digits, - and _ only)");
    }
    Ok(binary)
}

/// The Dockerfile's path inside the build context.
fn dockerfile_of(build: &Build) -> String {
    match build {
        Build::Full {
            dockerfile: Some(d),
            ..
        } => d.clone(),
        _ => "Dockerfile".into(),
    }
}

/// The host binary of the service (its SERVICE build argument) and a
/// Dockerfile that copies it onto RUNTIME_IMAGE.
fn host_request(
    project: &Project,
    name: &str,
    build: &Build,
    options: &Options,
) -> anyhow::Result<BuildRequest> {
    let profile = options.profile.as_str();
    let binary = binary_of(name, build)?;
    let root = project.dir.join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = options
        .binaries
        .clone()
        .unwrap_or_else(|| target.join(profile))
        .join(&binary);
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
        RUN (command -v curl >/dev/null && dpkg -s libturbojpeg0 >/dev/null 2>&1) || (apt-get update && apt-get install -y --no-install-recommends curl ca-certificates libturbojpeg0 && rm -rf /var/lib/apt/lists/*)\n\
        COPY service /usr/local/bin/service\n\
        USER 65534:65534\n\
        ENTRYPOINT [\"/usr/local/bin/service\"]\n";
    let binary_bytes =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let context = context::files(&[
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("service", &binary_bytes, 0o755),
    ])?;
    let mut args = HashMap::new();
    if let Ok(base) = std::env::var("RUNTIME_IMAGE") {
        args.insert("RUNTIME_IMAGE".to_string(), base);
    }
    Ok(BuildRequest {
        dockerfile: "Dockerfile".into(),
        args,
        labels: HashMap::new(),
        context,
    })
}

/// A build's progress: step N of M, with the current line of output (the
/// cargo line while the services compile). Without a terminal, each step
/// is a status line instead.
struct BuildProgress<'a> {
    printer: &'a Printer,
    name: String,
    bar: ProgressBar,
}

impl<'a> BuildProgress<'a> {
    fn new(printer: &'a Printer, name: &str) -> Self {
        let bar = printer.steps(format!("{name}: building"));
        Self {
            printer,
            name: name.to_string(),
            bar,
        }
    }

    fn line(&self, line: &str) {
        if let Some((step, of)) = parse_step(line) {
            self.bar.set_length(of);
            self.bar.set_position(step.saturating_sub(1));
            if !self.printer.interactive() {
                self.printer.status(format!("{}: {line}", self.name));
            }
        }
        self.bar
            .set_message(format!("{}: {}", self.name, line.trim()));
    }

    fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// `Step 3/12 : RUN …` as (3, 12).
fn parse_step(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("Step ")?;
    let (fraction, _) = rest.split_once(' ')?;
    let (n, m) = fraction.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// A pull's progress: one bar of bytes per layer.
struct PullProgress<'a> {
    printer: &'a Printer,
    name: String,
    layers: std::sync::Mutex<HashMap<String, ProgressBar>>,
}

impl<'a> PullProgress<'a> {
    fn new(printer: &'a Printer, name: &str) -> Self {
        Self {
            printer,
            name: name.to_string(),
            layers: Default::default(),
        }
    }

    fn update(&self, event: PullEvent) {
        let Some(layer) = event.layer else {
            self.printer
                .status(format!("{}: {}", self.name, event.status));
            return;
        };
        let Ok(mut layers) = self.layers.lock() else {
            return;
        };
        let bar = layers
            .entry(layer.clone())
            .or_insert_with(|| self.printer.bytes(format!("{}: {layer}", self.name)));
        if let Some(total) = event.total {
            bar.set_length(total);
        }
        if let Some(current) = event.current {
            bar.set_position(current);
        }
        bar.set_message(format!("{}: {layer} {}", self.name, event.status));
    }

    fn finish(self) {
        if let Ok(layers) = self.layers.into_inner() {
            for bar in layers.into_values() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_argument_that_is_a_path_is_refused() {
        let build = |service: &str| Build::Full {
            context: "..".into(),
            dockerfile: None,
            args: [("SERVICE".to_string(), service.to_string())].into(),
        };
        assert_eq!(binary_of("api", &build("api")).ok().as_deref(), Some("api"));
        for bad in ["../../etc/passwd", "a/b", "", "api;rm"] {
            let error = binary_of("api", &build(bad)).unwrap_err().to_string();
            assert!(error.contains("is not a binary's name"), "{bad}: {error}");
        }
    }

    #[test]
    fn build_steps_are_read_from_the_classic_builders_output() {
        assert_eq!(parse_step("Step 3/12 : RUN cargo build"), Some((3, 12)));
        assert_eq!(parse_step("   Compiling tokio v1.0"), None);
        assert_eq!(parse_step("Step x/12 : RUN"), None);
    }

    /// The repository without its build output, in a folder of its own.
    fn copy_of_the_workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        pixelflow_testkit::copy_workspace(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
            dir.path(),
        );
        dir
    }

    /// Each service's image digest on the engine's path, as `up` takes it.
    fn digests(root: &std::path::Path) -> Vec<String> {
        let project = Project::load_with(&root.join("compose/docker-compose.yml"), &|name| {
            (name == "COMPOSE_PROJECT_NAME").then(|| "digests".into())
        })
        .expect("the compose file loads");
        let workspace = Workspace::load(root).expect("cargo metadata");
        ["auth", "api", "worker"]
            .iter()
            .map(|name| {
                let build = project.services[*name].build.as_ref().expect("built");
                let request = dockerfile_request(&project, build).expect("request");
                let part = binary_inputs(&project, name, build, &workspace)
                    .expect("inputs")
                    .expect("the service's binary is the workspace's");
                digest_of(&part, &request)
            })
            .collect()
    }

    #[test]
    fn an_edit_changes_the_digest_of_the_images_built_from_it_and_no_other() {
        let copy = copy_of_the_workspace();
        let root = copy.path();
        let edit = |file: &str| {
            let path = root.join(file);
            let mut text = std::fs::read_to_string(&path).expect("read");
            text.push_str("\n// edited\n");
            std::fs::write(&path, text).expect("write");
        };
        let changed = |before: &[String], after: &[String]| -> Vec<&str> {
            ["auth", "api", "worker"]
                .into_iter()
                .zip(before.iter().zip(after))
                .filter(|(_, (b, a))| b != a)
                .map(|(name, _)| name)
                .collect()
        };
        let mut before = digests(root);
        for (file, expected) in [
            ("services/api/src/main.rs", &["api"][..]),
            ("services/common/src/lib.rs", &["auth", "api", "worker"]),
            (
                "services/api/migrations/20261127100001_create_tasks.sql",
                &["api", "worker"],
            ),
            ("services/api/tests/http.rs", &[]),
            ("pixelflowctl/src/lib.rs", &[]),
            ("dashboards/api.json", &[]),
            ("Cargo.lock", &["auth", "api", "worker"]),
        ] {
            edit(file);
            let after = digests(root);
            assert_eq!(changed(&before, &after), expected, "an edit of {file}");
            before = after;
        }
    }

    #[test]
    fn the_digest_follows_context_arguments_and_dockerfile() {
        let request = |context: &[u8], arg: &str| BuildRequest {
            dockerfile: "Dockerfile".into(),
            args: HashMap::from([("SERVICE".to_string(), arg.to_string())]),
            labels: HashMap::new(),
            context: context.to_vec(),
        };
        let digest = |r: &BuildRequest| digest_of(&r.context, r);
        let base = digest(&request(b"a", "api"));
        assert_eq!(base, digest(&request(b"a", "api")));
        assert_ne!(base, digest(&request(b"b", "api")));
        assert_ne!(base, digest(&request(b"a", "auth")));
    }
}
