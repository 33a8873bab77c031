//! The development loop: the stack up as `up` brings it, then a watch of
//! the workspace. Each batch of edits is planned first ([`plan::Map`]:
//! which services are built from the edited files, which configuration
//! they touch), then carried out: an incremental build of just those
//! binaries, each put into its running container ([`reload::swap`]) and
//! checked with `verify --no-flow`; Prometheus and Grafana told to re-read
//! their files. Every other container is left alone, the watched services'
//! logs stream throughout, and nothing that fails stops the loop.

pub mod build;
mod events;
mod plan;
mod reload;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::compose::Project;
use crate::docker::Engine;
use crate::images;
use crate::logstream::{self, Prefixed};
use crate::printer::{Output, Printer};
use crate::stack::{self, converge, Published};
use crate::verify::{self, spec, Outcome};
use crate::workspace::Workspace;
use build::{Builder, CompileError, Place};
use events::{Event, Phases, Verified};

/// What the user asked of the loop.
pub struct Options {
    pub services: Vec<String>,
    pub without: Vec<String>,
    pub build: Option<Place>,
    /// `--images engine`: the engine builds every image, as `up` does.
    pub engine_images: bool,
    pub down_on_exit: bool,
    /// How long a service may take to be ready after a start.
    pub timeout: Duration,
}

/// Everything a reload needs, decided once.
struct Loop<'a> {
    engine: &'a Engine,
    project: Project,
    printer: &'a Printer,
    builder: Builder,
    workspace: Workspace,
    map: plan::Map,
    wanted: Vec<String>,
    options: &'a Options,
    spec: spec::Spec,
    scrape_timeout: Duration,
}

pub async fn run(
    engine: &Engine,
    project: Project,
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let since = chrono::Utc::now().timestamp() - 1;
    let root = std::fs::canonicalize(project.dir.join(".."))
        .context("cannot find the workspace beside the compose folder")?;
    let (builder, how) = Builder::choose(
        engine,
        &project,
        &root,
        options.build,
        options.engine_images,
    )
    .await?;
    Event::Builder { how }.show(printer);
    let workspace = builder.workspace(engine, &root).await?;
    let wanted = converge::wanted(&project, &options.services, &options.without, printer);
    let map = plan::Map::new(&project, &workspace, &wanted);
    let scrape_timeout = verify::Promised::from_dir(&project.dir.join("prometheus"))
        .map(|p| p.scrape_timeout)
        .unwrap_or(pixelflow_verify::scrape::DEFAULT_SCRAPE_TIMEOUT);
    let mut dev = Loop {
        engine,
        project,
        printer,
        builder,
        workspace,
        map,
        wanted,
        options,
        spec: pixelflow_verify::embedded_spec(),
        scrape_timeout,
    };
    dev.first_up().await?;
    let watched: Vec<String> = dev.map.services.keys().cloned().collect();
    let mut logs = dev.follow(&watched, since).await?;
    // Watching before saying so: an edit right after the line is seen.
    let (folders, files) = dev.map.watched();
    let mut watch = watch::Watch::start(&folders, &files)?;
    Event::Watching {
        services: watched.clone(),
        seconds: started.elapsed().as_secs_f64(),
    }
    .show(printer);
    let prefixed = Prefixed::new(&watched);
    let show_log = |event: logstream::Event| match event {
        logstream::Event::Line(index, _, line) => {
            if printer.output == Output::Json {
                Event::Log {
                    service: watched[index].clone(),
                    line,
                }
                .show(printer);
            } else {
                prefixed.show(printer, index, &line);
            }
        }
        // A container gone for good (or the engine): its lines end here.
        logstream::Event::Failed(e) => printer.status(format!("dev: logs: {e}")),
    };
    let mut stopping = false;
    while !stopping {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => stopping = true,
            Some(event) = logs.recv() => show_log(event),
            batch = watch.next_batch() => {
                let Some(batch) = batch else { break };
                let change = dev.map.change(&batch);
                if change.is_empty() {
                    continue;
                }
                // Logs keep streaming while the change is carried out; a
                // Ctrl-C lets it finish, then stops.
                let work = dev.apply(change);
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        result = &mut work => {
                            if let Err(e) = result {
                                printer.status(format!("dev: {e:#}"));
                            }
                            break;
                        }
                        Some(event) = logs.recv() => show_log(event),
                        _ = tokio::signal::ctrl_c(), if !stopping => stopping = true,
                    }
                }
            }
        }
    }
    dev.builder.finish(engine).await;
    if options.down_on_exit {
        stack::down(engine, &dev.project, false, false, printer).await?;
    }
    Event::Stopped {
        down: options.down_on_exit,
    }
    .show(printer);
    Ok(())
}

impl Loop<'_> {
    /// The packages that build `services`' binaries, once each.
    fn packages<'s>(&'s self, services: impl Iterator<Item = &'s String>) -> Vec<&'s str> {
        let set: BTreeSet<&str> = services
            .filter_map(|s| self.map.services.get(s))
            .map(|w| w.package.as_str())
            .collect();
        set.into_iter().collect()
    }

    /// Builds every watched binary, then brings the stack up with them as
    /// `up --images host` does (or with the engine's images).
    async fn first_up(&mut self) -> anyhow::Result<()> {
        let root = self.workspace.root.clone();
        let binaries = match &self.builder {
            Builder::Engine => None,
            Builder::Host => {
                let packages = self.packages(self.map.services.keys());
                self.builder
                    .build(self.engine, &root, &packages)
                    .await
                    .context("the first build")?;
                Some(self.workspace.target.join("debug"))
            }
            Builder::Container(_) => {
                let packages = self.packages(self.map.services.keys());
                self.builder
                    .build(self.engine, &root, &packages)
                    .await
                    .context("the first build")?;
                // Packaged from the host like the host's own binaries.
                let dir = root.join("target").join("pixelflow-dev");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for watched in self.map.services.values() {
                    let bytes = self
                        .builder
                        .binary(self.engine, &self.workspace, &watched.binary)
                        .await?;
                    let path = dir.join(&watched.binary);
                    std::fs::write(&path, bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                Some(dir)
            }
        };
        self.converge(&self.wanted, binaries).await
    }

    /// `up` for `services`, with images from `binaries` (host-built) or
    /// else the engine's build. Never forced: another checkout's stack is
    /// not dev's to recreate.
    async fn converge(&self, services: &[String], binaries: Option<PathBuf>) -> anyhow::Result<()> {
        let options = self.image_options(binaries);
        converge::converge(
            self.engine,
            &self.project,
            services,
            &options,
            self.options.timeout,
            false,
            self.printer,
        )
        .await
    }

    fn image_options(&self, binaries: Option<PathBuf>) -> images::Options {
        images::Options {
            source: match binaries {
                Some(_) => images::Source::Host,
                None => images::Source::Dockerfile,
            },
            workspace: Some(self.workspace.clone()),
            rebuild: false,
            profile: "debug".into(),
            binaries,
        }
    }

    /// Follows the logs of `services` from `since` (unix seconds): their
    /// start-up lines included, across every reload.
    async fn follow(
        &self,
        services: &[String],
        since: i64,
    ) -> anyhow::Result<mpsc::Receiver<logstream::Event>> {
        let (tx, rx) = mpsc::channel(1024);
        for (index, service) in services.iter().enumerate() {
            let container = stack::container_of(self.engine, &self.project, service)
                .await?
                .name;
            let (engine, tx) = (self.engine.clone(), tx.clone());
            tokio::spawn(async move {
                logstream::stream(engine, container, index, true, None, since, tx).await
            });
        }
        Ok(rx)
    }

    /// Carries one batch's change out.
    async fn apply(&mut self, change: plan::Change) -> anyhow::Result<()> {
        if change.compose_file {
            self.reconverge().await;
        }
        if !change.prometheus.is_empty() {
            self.reload_config("prometheus", 9090, &change.prometheus)
                .await;
        }
        if !change.alertmanager.is_empty() {
            self.reload_config("alertmanager", 9093, &change.alertmanager)
                .await;
        }
        if !change.dashboards.is_empty() {
            self.reload_dashboards(&change.dashboards).await;
        }
        if !change.services.is_empty() {
            self.reload_services(&change.services).await?;
        }
        Ok(())
    }

    /// The compose file changed: read it again and bring the stack in line
    /// (a container whose configuration changed is recreated, the others
    /// are left alone).
    async fn reconverge(&mut self) {
        let trigger = vec![self.map.compose_file.display().to_string()];
        let outcome = match Project::load(&self.project.file) {
            Err(e) => Err(anyhow::Error::from(e)),
            Ok(project) => {
                self.project = project;
                let binaries = match self.builder {
                    Builder::Engine => None,
                    Builder::Host => Some(self.workspace.target.join("debug")),
                    Builder::Container(_) => {
                        Some(self.workspace.root.join("target").join("pixelflow-dev"))
                    }
                };
                self.converge(&self.wanted, binaries).await
            }
        };
        Event::Reconfigured {
            component: "compose".into(),
            trigger,
            ok: outcome.is_ok(),
            outcome: match outcome {
                Ok(()) => "the stack follows the edited compose file".into(),
                Err(e) => format!("not applied: {e:#}"),
            },
        }
        .show(self.printer);
    }

    /// Tells `service` (Prometheus, Alertmanager) to re-read its files:
    /// SIGHUP through the Docker API (their HTTP lifecycle endpoints stay
    /// off: they would let anyone who reaches the port stop them), then
    /// its own account of the reload, read from `port` (its metrics).
    async fn reload_config(&self, service: &str, port: u16, trigger: &[String]) {
        let outcome = self.sighup(service, port).await;
        Event::Reconfigured {
            component: service.into(),
            trigger: trigger.to_vec(),
            ok: outcome.is_ok(),
            outcome: outcome
                .map(|()| "configuration reloaded".to_string())
                .unwrap_or_else(|e| e),
        }
        .show(self.printer);
    }

    async fn sighup(&self, service: &str, port: u16) -> Result<(), String> {
        let published = Published::find(&self.project).await;
        if published.not_running(service) {
            return Err(format!(
                "no {service} container is running: nothing to reload"
            ));
        }
        let host_port = published
            .port(&self.project, service, port)
            .ok_or_else(|| format!("{service} publishes no port for {port}"))?;
        // The time and outcome of its last reload, from its own metrics.
        let family = format!("{service}_config_last_reload_success_timestamp_seconds");
        let ok_family = format!("{service}_config_last_reload_successful");
        let url = format!("http://127.0.0.1:{host_port}/metrics");
        let read = || async {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            let e = pixelflow_verify::Exposition::parse(&text);
            Some((e.value(&family, &[]), e.value(&ok_family, &[])))
        };
        let before = read().await.and_then(|(at, _)| at).unwrap_or(0.0);
        let container = stack::container_of(self.engine, &self.project, service)
            .await
            .map_err(|e| format!("{e:#}"))?
            .name;
        self.engine
            .kill(&container, "SIGHUP")
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match read().await {
                Some((Some(at), _)) if at > before => return Ok(()),
                Some((_, Some(0.0))) => {
                    return Err(format!(
                        "{service} refused the edited configuration (its last reload failed; its log says why): it keeps the previous one"
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        Err(format!("{service} did not report a reload within 10 s"))
    }

    /// Tells Grafana to read its provisioned dashboards again.
    async fn reload_dashboards(&self, trigger: &[String]) {
        let published = Published::find(&self.project).await;
        let outcome = match published.port(&self.project, "grafana", 3001) {
            _ if published.not_running("grafana") => Err(
                "no grafana container is running (left out?): the dashboards are read when it starts"
                    .to_string(),
            ),
            None => Err("grafana publishes no port for 3001".to_string()),
            Some(port) => {
                let user = std::env::var("GRAFANA_USER").unwrap_or_else(|_| "admin".into());
                let password =
                    std::env::var("GRAFANA_PASSWORD").unwrap_or_else(|_| "admin".into());
                let url =
                    format!("http://127.0.0.1:{port}/api/admin/provisioning/dashboards/reload");
                match reqwest::Client::new()
                    .post(&url)
                    .basic_auth(user, Some(password))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("Grafana answered {}", r.status())),
                    Err(e) => Err(format!("cannot reach {url}: {e}")),
                }
            }
        };
        Event::Reconfigured {
            component: "grafana".into(),
            trigger: trigger.to_vec(),
            ok: outcome.is_ok(),
            outcome: outcome
                .map(|()| "dashboards reloaded".to_string())
                .unwrap_or_else(|e| e),
        }
        .show(self.printer);
    }

    /// Rebuilds the binaries of `services` (one cargo run) and puts each in
    /// its container, side by side.
    async fn reload_services(
        &self,
        services: &BTreeMap<String, Vec<String>>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let trigger = shown(&self.workspace.root, services.values().flatten());
        if let Builder::Engine = self.builder {
            return self.rebuild_images(services, trigger, started).await;
        }
        // Every watched package, always: cargo unifies features over the
        // packages it builds, and building one alone would pick another
        // set of features and recompile the dependencies. The unchanged
        // ones cost a fingerprint check.
        let packages = self.packages(self.map.services.keys());
        let built = self
            .builder
            .build(self.engine, &self.workspace.root, &packages)
            .await;
        let mut phases = Phases::default();
        phases.set(|p| &mut p.build_s, started.elapsed());
        if let Err(e) = built {
            let output = match e.downcast::<CompileError>() {
                Ok(compile) => compile.output,
                Err(other) => format!("{other:#}"),
            };
            Event::BuildFailed {
                services: services.keys().cloned().collect(),
                trigger,
                output,
            }
            .show(self.printer);
            return Ok(());
        }
        let swaps = services.iter().map(|(service, trigger)| {
            let trigger = shown(&self.workspace.root, trigger.iter());
            async move {
                let outcome = self.swap_one(service, phases).await;
                (service, trigger, outcome, events::unix_now())
            }
        });
        for (service, trigger, outcome, ready_at) in futures::future::join_all(swaps).await {
            let event = match outcome {
                Ok(phases) => Event::Reloaded {
                    service: service.clone(),
                    trigger,
                    phases,
                    seconds: started.elapsed().as_secs_f64(),
                    ready_at,
                    verify: self.verify(service).await,
                },
                Err(not) => {
                    self.halt(service).await;
                    Event::NotReady {
                        service: service.clone(),
                        trigger,
                        phases: not.phases,
                        error: explain(&not.error),
                    }
                }
            };
            event.show(self.printer);
        }
        Ok(())
    }

    /// Stops a build that does not run, so its restart policy does not
    /// crash it again and again until the next save.
    async fn halt(&self, service: &str) {
        if let Ok(found) = stack::container_of(self.engine, &self.project, service).await {
            let _ = self.engine.stop(&found.name, Duration::from_secs(1)).await;
        }
    }

    async fn swap_one(&self, service: &str, phases: Phases) -> Result<Phases, reload::NotRunning> {
        let failed = |error: anyhow::Error| reload::NotRunning { phases, error };
        let watched = &self.map.services[service];
        let binary = self
            .builder
            .binary(self.engine, &self.workspace, &watched.binary)
            .await
            .map_err(failed)?;
        let container = stack::container_of(self.engine, &self.project, service)
            .await
            .map_err(failed)?
            .name;
        reload::swap(
            self.engine,
            &self.project,
            service,
            &container,
            &binary,
            self.options.timeout,
            phases,
        )
        .await
    }

    /// With `--images engine`: the images of `services` rebuilt by the
    /// engine (only those whose inputs changed) and their containers
    /// recreated, as `up` does.
    async fn rebuild_images(
        &self,
        services: &BTreeMap<String, Vec<String>>,
        trigger: Vec<String>,
        started: Instant,
    ) -> anyhow::Result<()> {
        let names: Vec<String> = services.keys().cloned().collect();
        let outcome = self.converge(&names, None).await;
        let mut phases = Phases::default();
        phases.set(|p| &mut p.build_s, started.elapsed());
        for service in &names {
            let event = match &outcome {
                Ok(()) => Event::Reloaded {
                    service: service.clone(),
                    trigger: trigger.clone(),
                    phases,
                    seconds: started.elapsed().as_secs_f64(),
                    ready_at: events::unix_now(),
                    verify: self.verify(service).await,
                },
                Err(e) => Event::NotReady {
                    service: service.clone(),
                    trigger: trigger.clone(),
                    phases,
                    error: explain(e),
                },
            };
            event.show(self.printer);
        }
        Ok(())
    }

    /// `verify --no-flow` of `service` as it runs now.
    async fn verify(&self, service: &str) -> Verified {
        let published = Published::find(&self.project).await;
        let rows = match verify::plan::stack_targets(&self.project, &published, &self.spec) {
            Err(e) => Err(e),
            Ok(targets) => match targets.get(service) {
                None => Err(verify::CouldNotRun(format!("the spec has no {service}"))),
                Some(url) => {
                    verify::one_service(&self.spec, service, url, self.scrape_timeout).await
                }
            },
        };
        match rows {
            Err(e) => Verified {
                passed: 0,
                failed: 1,
                failures: vec![format!("could not run: {e}")],
            },
            Ok(rows) => Verified {
                passed: rows.iter().filter(|r| r.outcome == Outcome::Pass).count(),
                failed: rows.iter().filter(|r| r.outcome == Outcome::Fail).count(),
                failures: rows
                    .iter()
                    .filter(|r| r.outcome == Outcome::Fail)
                    .map(|r| format!("{}: {}", r.check, r.actual))
                    .collect(),
            },
        }
    }
}

/// The edits to name for a reload: those still there (an editor's
/// temporary file, renamed over the real one, is not), or all when none
/// is (a deletion).
fn shown<'a>(root: &std::path::Path, edits: impl Iterator<Item = &'a String>) -> Vec<String> {
    let all: BTreeSet<&String> = edits.collect();
    let there: Vec<String> = all
        .iter()
        .filter(|e| root.join(e.as_str()).exists())
        .map(|e| e.to_string())
        .collect();
    if there.is_empty() {
        all.into_iter().cloned().collect()
    } else {
        there
    }
}

/// An error as the loop shows it, with a hint where the cause is known: a
/// host binary linked against a newer C library than the image's.
fn explain(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    if text.contains("GLIBC_") && text.contains("not found") {
        format!("{text}\nThe host's C library is newer than the runtime image's: build in a container (--build container).")
    } else {
        text
    }
}
