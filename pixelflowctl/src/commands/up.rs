//! `pixelflowctl up`: images, network, volumes, then containers level by
//! level in dependency order (a level's services in parallel), each waited
//! on until healthy. Containers whose config hash has not changed are left
//! alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::{join_all, BoxFuture, FutureExt, Shared};

use crate::compose::{config_hash, start_order, PortMapping, Project};
use crate::docker::Engine;
use crate::printer::Printer;
use crate::{commands, health, images, stack};

pub struct Options {
    pub timeout: Duration,
    pub images: images::Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Unchanged,
    Started,
    Created,
    Recreated,
}

pub async fn run(
    engine: &Engine,
    project: &Project,
    requested: &[String],
    without: &[String],
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let requested = if requested.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        requested.to_vec()
    };
    let (wanted, skipped) = project.without(&project.with_dependencies(&requested), without);
    for name in &skipped {
        printer.status(format!("{name}: left out (--without)"));
    }
    let ids = images::ensure(engine, project, &wanted, &options.images, printer).await?;

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

    let subset: BTreeMap<_, _> = project
        .services
        .iter()
        .filter(|(n, _)| wanted.contains(n))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let existing = engine
        .containers(&[stack::label_filter(stack::PROJECT, &project.name)])
        .await?;
    let existing: HashMap<String, (String, String)> = existing
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels?;
            let service = labels.get(stack::SERVICE)?.clone();
            let hash = labels.get(stack::CONFIG_HASH).cloned().unwrap_or_default();
            Some((service, (c.id?, hash)))
        })
        .collect();

    // Each service starts as soon as its own dependencies are healthy, as
    // compose does; independent services come up side by side.
    let order: Vec<String> = start_order(&subset)?.into_iter().flatten().collect();
    let mut ready: HashMap<String, Shared<BoxFuture<'_, Result<(), String>>>> = HashMap::new();
    for name in &order {
        let dependencies: Vec<_> = project.services[name]
            .depends_on
            .keys()
            .filter_map(|d| ready.get(d).cloned())
            .collect();
        let hash = config_hash(&project.services[name], &ids[name]);
        let current = existing.get(name);
        let timeout = options.timeout;
        let future = async move {
            for dependency in dependencies {
                // The dependency's own error is reported once, by itself.
                dependency.await.map_err(|_| String::new())?;
            }
            let action = bring_up(engine, project, name, hash, current, timeout, printer)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let verb = match action {
                Action::Unchanged => "unchanged",
                Action::Started => "started",
                Action::Created => "created",
                Action::Recreated => "recreated",
            };
            printer.status(format!("{name}: {verb}, healthy"));
            Ok(())
        }
        .boxed()
        .shared();
        ready.insert(name.clone(), future);
    }
    let results = join_all(order.iter().map(|n| ready[n].clone())).await;
    if let Some(error) = results
        .into_iter()
        .filter_map(Result::err)
        .find(|e| !e.is_empty())
    {
        anyhow::bail!(error);
    }
    printer.status(format!("up in {:.1}s", started.elapsed().as_secs_f64()));
    commands::ps::run(engine, project, &wanted, printer).await
}

async fn bring_up(
    engine: &Engine,
    project: &Project,
    name: &str,
    hash: String,
    existing: Option<&(String, String)>,
    timeout: Duration,
    printer: &Printer,
) -> anyhow::Result<Action> {
    let container = stack::container_name(&project.name, name);
    let action = match existing {
        Some((_, old)) if *old == hash => {
            let (state, _, _) = health::state(engine, &container).await?;
            if state.status == "running" {
                Action::Unchanged
            } else {
                start(engine, project, name, &container).await?;
                Action::Started
            }
        }
        other => {
            engine.remove(&container).await?;
            engine
                .create(&container, stack::container_config(project, name, &hash))
                .await?;
            start(engine, project, name, &container).await?;
            if other.is_some() {
                Action::Recreated
            } else {
                Action::Created
            }
        }
    };
    let bar = printer.spinner(format!("{name}: waiting until healthy"));
    let result = health::wait(engine, name, &container, timeout).await;
    bar.finish_and_clear();
    result?;
    Ok(action)
}

async fn start(
    engine: &Engine,
    project: &Project,
    name: &str,
    container: &str,
) -> anyhow::Result<()> {
    match engine.start(container).await {
        Ok(()) => Ok(()),
        Err(e) if e.port_in_use() => {
            let ports: Vec<String> = project.services[name]
                .ports
                .iter()
                .filter_map(|p| PortMapping::parse(p).ok()?.host_port.map(|h| h.to_string()))
                .collect();
            let taken = ports
                .iter()
                .find(|p| e.to_string().contains(&format!(":{p} ")))
                .cloned();
            let port = taken.unwrap_or_else(|| ports.join(" or "));
            Err(anyhow::anyhow!(
                "host port {port} for service {name} is already in use: stop what holds it, or change the port in {}",
                project.file.display()
            ))
        }
        Err(e) => Err(e).with_context(|| format!("cannot start {name}")),
    }
}
