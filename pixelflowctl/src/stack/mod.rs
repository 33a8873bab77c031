//! How a compose project maps onto Docker objects, named and labelled the
//! way docker compose names and labels them, so `docker compose ps` and
//! `docker compose logs` see what pixelflowctl created (and the reverse).

pub mod converge;
mod published;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::container::{Config, NetworkingConfig};
use bollard::models::{
    EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, PortBinding,
    RestartPolicyNameEnum,
};
use futures::future::join_all;

use crate::compose::model::Words;
use crate::compose::{start_order, Project, RestartPolicy, Service};
use crate::docker::state::Status;
use crate::docker::Engine;
use crate::printer::Printer;

pub use published::Published;

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const VERSION: &str = "com.docker.compose.version";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";

/// The name `up` gives a service's container number `number` when it has
/// none (compose v2's); other tools' containers keep theirs
/// (`pixelflow_api_1`).
pub fn container_name(project: &str, service: &str, number: u32) -> String {
    format!("{project}-{service}-{number}")
}

/// The host name of a service's container number `number`: `worker-2`.
/// Stable across restarts and recreation, so a setting derived from it
/// (the worker's `KAFKA_GROUP_INSTANCE_ID: "{hostname}"`) is too.
pub fn hostname(service: &str, number: u32) -> String {
    format!("{service}-{number}")
}

/// How a replica is named in what pixelflowctl prints and prefixes: the
/// service alone when it runs one container, `worker-2` when several.
pub fn replica_label(service: &str, number: u32, replicas: usize) -> String {
    if replicas > 1 || number > 1 {
        hostname(service, number)
    } else {
        service.to_string()
    }
}

/// A container of one of the project's services, found by its labels.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub number: u32,
    /// Its config hash (empty when it carries none).
    pub hash: String,
    /// `None` when the engine named a state it does not document.
    pub status: Option<Status>,
    pub ports: Vec<bollard::models::Port>,
    /// The folder of the compose file it was made from
    /// (`com.docker.compose.project.working_dir`), when it says.
    pub working_dir: Option<String>,
}

impl Found {
    pub fn is_running(&self) -> bool {
        self.status == Some(Status::Running)
    }
}

/// The project's containers, by service, for the services its file
/// declares only, found by the labels docker compose v2 and docker-compose
/// 1.x both set (project, service, container number), whatever their names;
/// one-off containers (`compose run`) are left out. Lowest number first.
pub async fn containers(
    engine: &Engine,
    project: &Project,
) -> crate::docker::Result<BTreeMap<String, Vec<Found>>> {
    let mut found: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let listed = engine
        .containers(&[label_filter(PROJECT, &project.name)])
        .await?;
    for c in listed {
        let labels = c.labels.unwrap_or_default();
        let Some(service) = labels.get(SERVICE) else {
            continue;
        };
        if !project.services.contains_key(service)
            || labels
                .get(ONEOFF)
                .is_some_and(|o| o.eq_ignore_ascii_case("true"))
        {
            continue;
        }
        let Some(name) = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .or(c.id)
        else {
            continue;
        };
        found.entry(service.clone()).or_default().push(Found {
            name,
            number: labels.get(NUMBER).and_then(|n| n.parse().ok()).unwrap_or(1),
            hash: labels.get(CONFIG_HASH).cloned().unwrap_or_default(),
            status: c.state.as_deref().and_then(Status::parse),
            working_dir: labels.get(WORKING_DIR).cloned(),
            ports: c.ports.unwrap_or_default(),
        });
    }
    for list in found.values_mut() {
        list.sort_by_key(|f| f.number);
    }
    Ok(found)
}

/// Containers of this project made from another checkout's compose file:
/// a project name is all two clones share, and acting on the other's
/// containers (recreating them, taking them down, deleting their volumes)
/// destroys its work.
#[derive(Debug, thiserror::Error)]
#[error("project {project:?} runs from another folder, {other}, not {here}: leaving it alone. Set another COMPOSE_PROJECT_NAME for this checkout, or pass --force to act on it anyway")]
pub struct OtherCheckout {
    pub project: String,
    pub other: String,
    pub here: String,
}

/// An error naming the other folder when any of `found` was made from a
/// compose file in another folder than `project`'s.
pub fn ours<'a>(
    project: &Project,
    found: impl IntoIterator<Item = &'a Found>,
) -> Result<(), OtherCheckout> {
    let here = absolute(&project.dir);
    for container in found {
        if let Some(dir) = &container.working_dir {
            // Compared as folders: a symbolic link to this one is this one.
            let theirs = std::fs::canonicalize(dir)
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| dir.clone());
            if theirs != here {
                return Err(OtherCheckout {
                    project: project.name.clone(),
                    other: dir.clone(),
                    here,
                });
            }
        }
    }
    Ok(())
}

/// The container of `service` (its lowest-numbered one), or an error that
/// says `up` creates it.
pub async fn container_of(
    engine: &Engine,
    project: &Project,
    service: &str,
) -> anyhow::Result<Found> {
    containers(engine, project)
        .await?
        .remove(service)
        .and_then(|list| list.into_iter().next())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{service} has no container in project {}: bring it up first (pixelflowctl up {service})",
                project.name
            )
        })
}

/// Every container of `service`, lowest number first, or an error that
/// says `up` creates them.
pub async fn containers_of(
    engine: &Engine,
    project: &Project,
    service: &str,
) -> anyhow::Result<Vec<Found>> {
    containers(engine, project)
        .await?
        .remove(service)
        .filter(|list| !list.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{service} has no container in project {}: bring it up first (pixelflowctl up {service})",
                project.name
            )
        })
}

/// How long `service` may take to stop after SIGTERM before it is killed:
/// its `stop_grace_period`, else compose's 10 s.
pub fn grace_period(service: &Service) -> Duration {
    service.stop_grace_period.unwrap_or(Duration::from_secs(10))
}

pub fn network_name(project: &str, network: &str) -> String {
    format!("{project}_{network}")
}

pub fn volume_name(project: &str, volume: &str) -> String {
    format!("{project}_{volume}")
}

/// The image a service runs: its `image:`, else `<project>-<service>`.
pub fn image_of(project: &Project, service: &str) -> String {
    project.services[service]
        .image
        .clone()
        .unwrap_or_else(|| format!("{}-{service}", project.name))
}

pub fn label_filter(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

fn absolute(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

pub fn project_labels(project: &Project) -> HashMap<String, String> {
    HashMap::from([(PROJECT.to_string(), project.name.clone())])
}

/// Container number `number` of `service`, with `hash` as its config hash.
/// The first publishes the ports the compose file names; the others publish
/// theirs on ports the engine picks (`ps` shows them), as the same host
/// port cannot be published twice.
pub fn container_config(project: &Project, name: &str, hash: &str, number: u32) -> Config<String> {
    let service: &Service = &project.services[name];
    let mut labels = project_labels(project);
    labels.extend([
        (SERVICE.to_string(), name.to_string()),
        (CONFIG_HASH.to_string(), hash.to_string()),
        (NUMBER.to_string(), number.to_string()),
        (ONEOFF.to_string(), "False".to_string()),
        (WORKING_DIR.to_string(), absolute(&project.dir)),
        (CONFIG_FILES.to_string(), absolute(&project.file)),
        (
            VERSION.to_string(),
            format!("pixelflowctl-{}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    let mut exposed = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &service.ports {
        let key = p.container_key();
        exposed.insert(key.clone(), HashMap::new());
        if let Some(host_port) = p.host_port {
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: (number == 1).then(|| host_port.to_string()),
                });
        }
    }
    let binds = service
        .volumes
        .iter()
        .map(|v| {
            let (source, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
            let source = if source.starts_with('.') || source.starts_with('/') {
                absolute(&project.dir.join(source))
            } else {
                volume_name(&project.name, source)
            };
            if rest.is_empty() {
                source
            } else {
                format!("{source}:{rest}")
            }
        })
        .collect::<Vec<_>>();
    let networks = if service.networks.is_empty() {
        project
            .networks
            .first()
            .cloned()
            .into_iter()
            .collect::<Vec<_>>()
    } else {
        service.networks.clone()
    };
    let endpoints = networks
        .first()
        .map(|n| {
            HashMap::from([(
                network_name(&project.name, n),
                EndpointSettings {
                    aliases: Some(vec![name.to_string()]),
                    ..Default::default()
                },
            )])
        })
        .unwrap_or_default();
    let restart = service.restart.map(|r| {
        let (name, retries) = match r {
            RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
            RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
            RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
            RestartPolicy::OnFailure { max_retries } => {
                (RestartPolicyNameEnum::ON_FAILURE, max_retries)
            }
        };
        bollard::models::RestartPolicy {
            name: Some(name),
            maximum_retry_count: retries.map(i64::from),
        }
    });
    Config {
        image: Some(image_of(project, name)),
        cmd: service.command.as_ref().map(Words::argv),
        entrypoint: service.entrypoint.as_ref().map(Words::argv),
        env: Some(
            service
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        healthcheck: service.healthcheck.as_ref().and_then(|h| {
            let test = match h.test.as_ref()? {
                Words::Line(l) => vec!["CMD-SHELL".to_string(), l.clone()],
                Words::List(v) => v.clone(),
            };
            let ns = |d: &Option<Duration>| d.and_then(|d| i64::try_from(d.as_nanos()).ok());
            Some(HealthConfig {
                test: Some(if h.disable == Some(true) {
                    vec!["NONE".into()]
                } else {
                    test
                }),
                interval: ns(&h.interval),
                timeout: ns(&h.timeout),
                retries: h.retries,
                start_period: ns(&h.start_period),
                ..Default::default()
            })
        }),
        host_config: Some(HostConfig {
            log_config: service.logging.as_ref().map(|l| HostConfigLogConfig {
                typ: l.driver.clone().or(Some("json-file".into())),
                config: Some(l.options.clone().into_iter().collect()),
            }),
            port_bindings: Some(bindings),
            binds: Some(binds),
            restart_policy: restart,
            network_mode: networks.first().map(|n| network_name(&project.name, n)),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: endpoints,
        }),
        hostname: Some(hostname(name, number)),
        stop_signal: service.stop_signal.clone(),
        stop_timeout: Some(i64::try_from(grace_period(service).as_secs()).unwrap_or(i64::MAX)),
        ..Default::default()
    }
}

/// `http://localhost:<port>` for each port a running container of
/// `service` publishes, when its healthcheck speaks HTTP (so not PostgreSQL
/// or Kafka). The port is the one the engine published, which is where the
/// service is even when the compose file's mapping changed since (a moved
/// `API_PORT` not yet applied by `up`); a service without a running
/// container has no URL, as nothing answers there.
pub fn urls(service: &Service, published: &[bollard::models::Port]) -> Vec<String> {
    let http = service
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| t.argv().iter().any(|w| w.contains("http://")));
    if !http {
        return Vec::new();
    }
    service
        .ports
        .iter()
        .filter(|p| p.host_port.is_some())
        .filter_map(|p| {
            published
                .iter()
                .find(|q| q.private_port == p.container_port && q.public_port.is_some())
                .and_then(|q| q.public_port)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|port| format!("http://localhost:{port}"))
        .collect()
}

/// Stops the project's containers gracefully, dependents first, removes
/// them and the project's networks, and with `volumes` its volumes: only
/// what the compose file declares, of this project.
pub async fn down(
    engine: &Engine,
    project: &Project,
    volumes: bool,
    force: bool,
    printer: &Printer,
) -> anyhow::Result<()> {
    let containers = containers(engine, project).await?;
    if !force {
        ours(project, containers.values().flatten())?;
    }
    // Dependents first: api stops (draining its outbox) before the broker
    // and the database it drains into.
    let mut levels = start_order(&project.services)?;
    levels.reverse();
    for level in levels {
        let stops = level.iter().flat_map(|service| {
            let grace = grace_period(&project.services[service]);
            containers
                .get(service)
                .into_iter()
                .flatten()
                .map(move |found| async move {
                    engine.stop(&found.name, grace).await?;
                    engine.remove(&found.name).await?;
                    printer.status(format!("removed container {}", found.name));
                    anyhow::Ok(())
                })
        });
        for result in join_all(stops).await {
            result?;
        }
    }
    let label = label_filter(PROJECT, &project.name);
    let declared = |names: &[String], full: fn(&str, &str) -> String| -> Vec<String> {
        names.iter().map(|n| full(&project.name, n)).collect()
    };
    // `default`: the network docker compose makes when a file declares none.
    let mut networks = declared(&project.networks, network_name);
    networks.push(network_name(&project.name, "default"));
    for network in engine.labelled_networks(&label).await? {
        if networks.contains(&network) {
            engine.remove_network(&network).await?;
            printer.status(format!("removed network {network}"));
        }
    }
    if volumes {
        let volumes = declared(&project.volumes, volume_name);
        for volume in engine.labelled_volumes(&label).await? {
            if volumes.contains(&volume) {
                engine.remove_volume(&volume).await?;
                printer.status(format!("removed volume {volume}"));
            }
        }
    }
    Ok(())
}
