//! What a batch of edits touches: the services whose binaries are built
//! from an edited file (from the cargo workspace), Prometheus' and
//! Alertmanager's configuration, the dashboards, the compose file itself.
//! Decided from the paths alone, before anything is built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::compose::Project;
use crate::images::binary_of;
use crate::workspace::{Inputs, Workspace};

/// One watched service: its compose name, its binary and what it is built
/// from.
#[derive(Debug, Clone)]
pub struct Watched {
    pub binary: String,
    pub package: String,
    pub inputs: Inputs,
}

/// What `dev` watches, and what each part of it reloads.
#[derive(Debug, Clone)]
pub struct Map {
    /// The services built from the workspace, by compose name.
    pub services: BTreeMap<String, Watched>,
    pub compose_file: PathBuf,
    /// compose/prometheus: Prometheus' configuration and rules.
    pub prometheus: PathBuf,
    /// compose/alertmanager.
    pub alertmanager: PathBuf,
    /// dashboards/ and Grafana's provisioning.
    pub dashboards: Vec<PathBuf>,
    pub root: PathBuf,
}

/// What one batch of edits changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Services to rebuild and reload, with the edits that touch each.
    pub services: BTreeMap<String, Vec<String>>,
    pub prometheus: Vec<String>,
    pub alertmanager: Vec<String>,
    pub dashboards: Vec<String>,
    pub compose_file: bool,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl Map {
    /// The map for `services` of `project` (those with a `build:` whose
    /// binary the workspace builds are watched; the others are not ours).
    pub fn new(project: &Project, workspace: &Workspace, services: &[String]) -> Self {
        let services = services
            .iter()
            .filter_map(|name| {
                let build = project.services.get(name)?.build.as_ref()?;
                let binary = binary_of(name, build).ok()?;
                let inputs = workspace.inputs(&binary)?;
                Some((
                    name.clone(),
                    Watched {
                        package: inputs.package.clone(),
                        binary,
                        inputs,
                    },
                ))
            })
            .collect();
        let compose_dir = absolute(&project.dir);
        Self {
            services,
            compose_file: absolute(&project.file),
            prometheus: compose_dir.join("prometheus"),
            alertmanager: compose_dir.join("alertmanager"),
            dashboards: vec![
                normalised(&compose_dir.join("..").join("dashboards")),
                compose_dir.join("grafana"),
            ],
            root: workspace.root.clone(),
        }
    }

    /// The folders and files to watch.
    pub fn watched(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut folders: BTreeSet<PathBuf> = self
            .services
            .values()
            .flat_map(|w| w.inputs.dirs.iter().cloned())
            .collect();
        folders.insert(self.prometheus.clone());
        folders.insert(self.alertmanager.clone());
        folders.extend(self.dashboards.iter().cloned());
        let mut files: BTreeSet<PathBuf> = self
            .services
            .values()
            .flat_map(|w| w.inputs.files.iter().cloned())
            .collect();
        files.insert(self.compose_file.clone());
        (folders.into_iter().collect(), files.into_iter().collect())
    }

    /// What `paths` change.
    pub fn change(&self, paths: &BTreeSet<PathBuf>) -> Change {
        let mut change = Change::default();
        for path in paths {
            let shown = path
                .strip_prefix(&self.root)
                .unwrap_or(path)
                .display()
                .to_string();
            for (service, watched) in &self.services {
                if watched.inputs.covers(path) {
                    change
                        .services
                        .entry(service.clone())
                        .or_default()
                        .push(shown.clone());
                }
            }
            if path == &self.compose_file {
                change.compose_file = true;
            } else if path.starts_with(&self.prometheus) {
                change.prometheus.push(shown.clone());
            } else if path.starts_with(&self.alertmanager) {
                change.alertmanager.push(shown.clone());
            } else if self.dashboards.iter().any(|d| path.starts_with(d)) {
                change.dashboards.push(shown.clone());
            }
        }
        change
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn normalised(path: &Path) -> PathBuf {
    absolute(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Map {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let project = Project::load_with(&root.join("compose/docker-compose.yml"), &|name| {
            (name == "COMPOSE_PROJECT_NAME").then(|| "dev".into())
        })
        .expect("the compose file loads");
        let workspace = Workspace::load(&root).expect("cargo metadata");
        let all = project.select(&[]).expect("services");
        Map::new(&project, &workspace, &all)
    }

    fn change(map: &Map, files: &[&str]) -> Change {
        let paths = files.iter().map(|f| map.root.join(f)).collect();
        map.change(&paths)
    }

    #[test]
    fn an_edit_reloads_the_services_built_from_it_and_nothing_else() {
        let map = map();
        assert_eq!(
            map.services.keys().collect::<Vec<_>>(),
            ["api", "auth", "worker"],
            "the workspace's services are watched, the images pulled are not"
        );
        let services =
            |files: &[&str]| change(&map, files).services.into_keys().collect::<Vec<_>>();
        assert_eq!(services(&["services/api/src/main.rs"]), ["api"]);
        assert_eq!(
            services(&["services/common/src/lib.rs"]),
            ["api", "auth", "worker"]
        );
        assert_eq!(
            services(&["services/api/migrations/20261127100001_create_tasks.sql"]),
            ["api", "worker"]
        );
        assert_eq!(services(&["Cargo.lock"]), ["api", "auth", "worker"]);
        assert!(change(&map, &["pixelflowctl/src/lib.rs"]).is_empty());
    }

    #[test]
    fn configuration_and_dashboards_reload_what_reads_them() {
        let map = map();
        let c = change(&map, &["compose/prometheus/alerts.yml"]);
        assert_eq!(c.prometheus, ["compose/prometheus/alerts.yml"]);
        assert!(c.services.is_empty());
        let c = change(&map, &["dashboards/api.json"]);
        assert_eq!(c.dashboards, ["dashboards/api.json"]);
        let c = change(&map, &["compose/docker-compose.yml"]);
        assert!(c.compose_file);
        let (folders, files) = map.watched();
        assert!(
            !folders.iter().any(|f| f.ends_with("target")),
            "the build output is never watched: {folders:?}"
        );
        assert!(files.iter().any(|f| f.ends_with("Cargo.lock")), "{files:?}");
    }
}
