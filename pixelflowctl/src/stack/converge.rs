//! Bringing services up: images, network, volumes, then containers in
//! dependency order, each service starting as soon as what it depends on
//! is started or healthy (as its `depends_on` condition says), independent
//! services side by side. Containers whose config hash has not changed are
//! left alone; a changed one is stopped gracefully before it is replaced.
//! `up` runs it for what was asked; `dev` for what an edit changed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use futures::future::{join_all, BoxFuture, FutureExt, Shared};

use super::Found;
use crate::compose::{config_hash, start_order, Condition, Project};
use crate::docker::Engine;
use crate::printer::Printer;
use crate::{health, images, stack};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Unchanged,
    Started,
    Created,
    Recreated,
}

/// A service's progress, shared by those that depend on it. A service that
/// failed keeps its error (with its whole chain, for the exit code) in the
/// run's [`Failures`]; its dependents see only that it failed.
type Milestone<'a> = Shared<BoxFuture<'a, Result<(), Failed>>>;

/// A milestone not reached: the service's own error is in [`Failures`].
#[derive(Debug, Clone, Copy)]
struct Failed;

/// Each failed service's error, in start order.
#[derive(Default)]
struct Failures(std::sync::Mutex<Vec<(usize, anyhow::Error)>>);

impl Failures {
    fn record(&self, position: usize, error: anyhow::Error) -> Failed {
        if let Ok(mut errors) = self.0.lock() {
            errors.push((position, error));
        }
        Failed
    }

    /// The error of the first service in start order that failed.
    fn first(self) -> Option<anyhow::Error> {
        let mut errors = self.0.into_inner().ok()?;
        errors.sort_by_key(|(position, _)| *position);
        errors.into_iter().next().map(|(_, e)| e)
    }
}

/// The services to bring up for `services` (default: those of the active
/// profiles), with what they depend on, less `without` and what depends on
/// those; each left out is said.
pub fn wanted(
    project: &Project,
    services: &[String],
    without: &[String],
    printer: &Printer,
) -> Vec<String> {
    let requested = if services.is_empty() {
        let (active, inactive) = project.by_profile(&active_profiles());
        for name in &inactive {
            printer.status(format!(
                "{name}: left out (its profiles are not in COMPOSE_PROFILES)"
            ));
        }
        active
    } else {
        services.to_vec()
    };
    let (wanted, skipped) = project.without(&project.with_dependencies(&requested), without);
    for name in &skipped {
        printer.status(format!("{name}: left out (--without)"));
    }
    for warning in project.ignored(&wanted) {
        printer.status(format!("warning: {warning}"));
    }
    wanted
}

/// COMPOSE_PROFILES, as docker compose reads it (comma-separated).
fn active_profiles() -> Vec<String> {
    std::env::var("COMPOSE_PROFILES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Builds or pulls what `wanted` needs, then makes each of its containers
/// run with its current configuration and waits until each is healthy
/// (`timeout` each, builds and pulls not counted).
pub async fn converge(
    engine: &Engine,
    project: &Project,
    wanted: &[String],
    options: &images::Options,
    timeout: Duration,
    force: bool,
    printer: &Printer,
) -> anyhow::Result<()> {
    // Before anything is built or touched: another checkout's stack is not
    // this one's to recreate.
    if !force {
        stack::ours(
            project,
            stack::containers(engine, project)
                .await?
                .iter()
                .filter(|(name, _)| wanted.contains(name))
                .flat_map(|(_, found)| found),
        )?;
    }
    let ids = images::ensure(engine, project, wanted, options, printer).await?;

    for network in &project.networks {
        let mut labels = stack::project_labels(project);
        labels.insert(stack::NETWORK.into(), network.clone());
        engine
            .ensure_network(&stack::network_name(&project.name, network), labels)
            .await?;
    }
    for volume in &project.volumes {
        let mut labels = stack::project_labels(project);
        labels.insert(stack::VOLUME.into(), volume.clone());
        engine
            .ensure_volume(&stack::volume_name(&project.name, volume), labels)
            .await?;
    }

    // Read after the builds, which may take minutes.
    let existing = stack::containers(engine, project).await?;
    let subset: BTreeMap<_, _> = project
        .services
        .iter()
        .filter(|(n, _)| wanted.contains(n))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();

    let order: Vec<String> = start_order(&subset)?.into_iter().flatten().collect();
    let collected = Failures::default();
    let failures = &collected;
    let mut started_at: HashMap<String, Milestone<'_>> = HashMap::new();
    let mut healthy_at: HashMap<String, Milestone<'_>> = HashMap::new();
    for (position, name) in order.iter().enumerate() {
        let waits: Vec<Milestone<'_>> = project.services[name]
            .depends_on
            .iter()
            .filter_map(|(dependency, condition)| match condition {
                Condition::ServiceStarted => started_at.get(dependency).cloned(),
                // service_completed_successfully is reported as not
                // supported (Project::ignored); healthy is the closest.
                Condition::ServiceHealthy | Condition::ServiceCompletedSuccessfully => {
                    healthy_at.get(dependency).cloned()
                }
            })
            .collect();
        let hash = config_hash(&project.services[name], &ids[name]);
        let current = existing.get(name).cloned().unwrap_or_default();
        let (tell_started, on_started) = futures::channel::oneshot::channel::<Result<(), Failed>>();
        let healthy = async move {
            let mut tell_started = Some(tell_started);
            let own = |e: anyhow::Error| failures.record(position, e);
            let result = async {
                for wait in waits {
                    // The dependency's own error is reported once, by itself.
                    wait.await?;
                }
                let replicas = project.services[name].replicas();
                scale_down(engine, project, name, &current, replicas, printer)
                    .await
                    .map_err(own)?;
                let ups = (1..=replicas).map(|number| {
                    let found = current.iter().find(|f| f.number == number).cloned();
                    bring_up(engine, project, name, number, hash.clone(), found)
                });
                let brought: Vec<_> = join_all(ups)
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<_>>()
                    .map_err(own)?;
                if let Some(tell) = tell_started.take() {
                    let _ = tell.send(Ok(()));
                }
                let waits = brought
                    .iter()
                    .zip(1..)
                    .map(|((action, container), number)| {
                        let label = stack::replica_label(name, number, brought.len());
                        async move {
                            let bar = printer.spinner(format!("{label}: waiting until healthy"));
                            let waited = health::wait(
                                engine,
                                name,
                                &project.services[name],
                                container,
                                timeout,
                            )
                            .await;
                            bar.finish_and_clear();
                            waited?;
                            let verb = match action {
                                Action::Unchanged => "unchanged",
                                Action::Started => "started",
                                Action::Created => "created",
                                Action::Recreated => "recreated",
                            };
                            printer.status(format!("{label}: {verb}, healthy"));
                            anyhow::Ok(())
                        }
                    });
                for waited in join_all(waits).await {
                    waited.map_err(own)?;
                }
                Ok(())
            }
            .await;
            if let (Some(tell), Err(_)) = (tell_started, &result) {
                let _ = tell.send(Err(Failed));
            }
            result
        }
        .boxed()
        .shared();
        let on_started = async move { on_started.await.unwrap_or(Err(Failed)) }
            .boxed()
            .shared();
        started_at.insert(name.clone(), on_started);
        healthy_at.insert(name.clone(), healthy);
    }
    // Driving every service's healthy milestone drives its start too.
    let results = join_all(order.iter().map(|n| healthy_at[n].clone())).await;
    drop((started_at, healthy_at));
    if results.iter().any(Result::is_err) {
        return Err(collected
            .first()
            .unwrap_or_else(|| anyhow::anyhow!("a service failed without saying why")));
    }
    Ok(())
}

/// Stops and removes the service's containers numbered above `replicas`,
/// highest first, gracefully (a worker finishes its tasks).
async fn scale_down(
    engine: &Engine,
    project: &Project,
    name: &str,
    current: &[Found],
    replicas: u32,
    printer: &Printer,
) -> anyhow::Result<()> {
    for found in current.iter().rev().filter(|f| f.number > replicas) {
        engine
            .stop(&found.name, stack::grace_period(&project.services[name]))
            .await?;
        engine.remove(&found.name).await?;
        printer.status(format!(
            "{}: removed (scaled to {replicas})",
            stack::hostname(name, found.number)
        ));
    }
    Ok(())
}

/// Makes the service's container number `number` run with config `hash`;
/// returns what it did and the container's name.
async fn bring_up(
    engine: &Engine,
    project: &Project,
    name: &str,
    number: u32,
    hash: String,
    existing: Option<Found>,
) -> anyhow::Result<(Action, String)> {
    match existing {
        Some(found) if found.hash == hash => {
            if found.is_running() {
                Ok((Action::Unchanged, found.name))
            } else {
                start(engine, project, name, &found.name).await?;
                Ok((Action::Started, found.name))
            }
        }
        Some(found) => {
            // Gracefully: a worker finishes its task, api drains its outbox.
            engine
                .stop(&found.name, stack::grace_period(&project.services[name]))
                .await?;
            engine.remove(&found.name).await?;
            create_and_start(engine, project, name, number, &found.name, &hash).await?;
            Ok((Action::Recreated, found.name))
        }
        None => {
            let container = stack::container_name(&project.name, name, number);
            create_and_start(engine, project, name, number, &container, &hash).await?;
            Ok((Action::Created, container))
        }
    }
}

async fn create_and_start(
    engine: &Engine,
    project: &Project,
    name: &str,
    number: u32,
    container: &str,
    hash: &str,
) -> anyhow::Result<()> {
    engine
        .create(
            container,
            stack::container_config(project, name, hash, number),
        )
        .await?;
    start(engine, project, name, container).await
}

/// A host port near `taken` that nothing holds now, to suggest: 10000
/// above it when that is a port, else the next ones up.
fn free_port_near(taken: u16) -> Option<u16> {
    let above = taken.checked_add(10_000).into_iter();
    above
        .chain((1..100).filter_map(|step| taken.checked_add(step)))
        .find(|&port| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok())
}

/// The variables that set `service`'s port mappings number `indices` in
/// the compose `file` (`"${API_PORT:-8080}:8080"` reads `API_PORT`): the
/// way to move a taken port without editing the file. Read from the file
/// as written, with compose's own interpolation telling which names a
/// mapping reads; none when the file cannot be read again.
fn port_variables(file: &std::path::Path, service: &str, indices: &[usize]) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return Vec::new();
    };
    let mappings = doc
        .get("services")
        .and_then(|services| services.get(service))
        .and_then(|service| service.get("ports"))
        .and_then(|ports| ports.as_sequence())
        .cloned()
        .unwrap_or_default();
    let names = std::cell::RefCell::new(Vec::<String>::new());
    for mapping in indices.iter().filter_map(|&i| mappings.get(i)?.as_str()) {
        let read = std::cell::RefCell::new(Vec::<String>::new());
        let _ = crate::compose::interpolate(mapping, &|name| {
            read.borrow_mut().push(name.to_string());
            None
        });
        // Of the names it reads, the ones that set its host port (not the
        // bind address, PIXELFLOW_BIND): given a port of their own, the
        // mapping publishes that port.
        for name in read.into_inner() {
            const PROBE: u16 = 65_000;
            let probed =
                crate::compose::interpolate(mapping, &|n| (n == name).then(|| PROBE.to_string()));
            let sets_port = probed
                .ok()
                .and_then(|m| crate::compose::PortMapping::parse(&m).ok())
                .is_some_and(|p| p.host_port == Some(PROBE));
            let mut names = names.borrow_mut();
            if sets_port && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.into_inner()
}

async fn start(
    engine: &Engine,
    project: &Project,
    name: &str,
    container: &str,
) -> anyhow::Result<()> {
    let Err(error) = engine.start(container).await else {
        return Ok(());
    };
    // Which host port is taken is asked of the host, not read from the
    // engine's English: a port we cannot bind either is the culprit.
    let (taken, indices): (Vec<String>, Vec<usize>) = project.services[name]
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let port = p.host_port?;
            let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
            std::net::TcpListener::bind((ip, port))
                .is_err()
                .then(|| (port.to_string(), i))
        })
        .unzip();
    if error.status() == Some(500) && !taken.is_empty() {
        let variables = port_variables(&project.file, name, &indices);
        let free = taken[0].parse().ok().and_then(free_port_near);
        let way = match (variables.first(), free) {
            (Some(variable), Some(free)) => format!(
                "move it with {} (for example {variable}={free} pixelflowctl up, {free} being free now)",
                variables.join(" or ")
            ),
            (Some(_), None) => format!("move it with {}", variables.join(" or ")),
            (None, _) => format!("change the port in {}", project.file.display()),
        };
        return Err(anyhow::Error::new(error).context(format!(
            "host port {} for service {name} is already in use: stop what holds it, or {way}",
            taken.join(" and "),
        )));
    }
    Err(error).with_context(|| format!("cannot start {name}"))
}
