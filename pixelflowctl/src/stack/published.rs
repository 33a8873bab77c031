//! Where the stack's services answer on the host: the ports the running
//! containers publish, as the engine says, else the ports the compose file
//! publishes (with the same variables `up` honours).

use std::collections::{BTreeMap, BTreeSet};

use crate::compose::Project;
use crate::docker::Engine;

/// The host ports the project's running containers publish, by service and
/// container port.
#[derive(Debug, Default)]
pub struct Published {
    /// The lowest-numbered running replica's host port, by service and
    /// container port.
    ports: BTreeMap<(String, u16), u16>,
    /// Every running replica's host port (by container number), where a
    /// service runs several.
    replicas: BTreeMap<(String, u16), Vec<(u32, u16)>>,
    /// The services with a running container; `None` when the engine
    /// could not be asked.
    running: Option<BTreeSet<String>>,
}

impl Published {
    /// What the engine says of `project`'s containers; nothing when it
    /// cannot be reached ([`Published::engine_answered`] tells), and the
    /// compose file's ports stand in.
    pub async fn find(project: &Project) -> Self {
        let Ok(engine) = Engine::connect().await else {
            return Self::default();
        };
        let Ok(containers) = super::containers(&engine, project).await else {
            return Self::default();
        };
        let mut published = Self {
            running: Some(BTreeSet::new()),
            ..Self::default()
        };
        for (service, found) in containers {
            for f in found.iter().filter(|f| f.is_running()) {
                published.note_running(&service);
                for p in &f.ports {
                    if let Some(public) = p.public_port {
                        let key = (service.clone(), p.private_port);
                        published.ports.entry(key.clone()).or_insert(public);
                        published
                            .replicas
                            .entry(key)
                            .or_default()
                            .push((f.number, public));
                    }
                }
            }
        }
        published
    }

    fn note_running(&mut self, service: &str) {
        if let Some(running) = &mut self.running {
            running.insert(service.to_string());
        }
    }

    /// Whether the engine was asked and answered.
    pub fn engine_answered(&self) -> bool {
        self.running.is_some()
    }

    /// Whether the engine said `service` has no running container.
    pub fn not_running(&self, service: &str) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| !running.contains(service))
    }

    /// Whether any service of the project runs.
    pub fn any_running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// The host ports of `service`'s running replicas beyond the first for
    /// `container_port`, with their container numbers.
    pub fn further_replicas(&self, service: &str, container_port: u16) -> Vec<(u32, u16)> {
        self.replicas
            .get(&(service.to_string(), container_port))
            .map(|all| all.iter().skip(1).copied().collect())
            .unwrap_or_default()
    }

    /// The host port for `container_port` of `service`: the running
    /// container's, else what the compose file publishes.
    pub fn port(&self, project: &Project, service: &str, container_port: u16) -> Option<u16> {
        self.ports
            .get(&(service.to_string(), container_port))
            .copied()
            .or_else(|| {
                project
                    .services
                    .get(service)?
                    .ports
                    .iter()
                    .find(|p| p.container_port == container_port)
                    .and_then(|p| p.host_port)
            })
    }
}
