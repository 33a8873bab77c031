//! Loading `compose/docker-compose.yml` into a typed [`Project`]: `.env`
//! and environment interpolation as compose does them, merge keys, then the
//! typed model; plus the start order and each service's config hash.

mod interpolate;
pub mod model;
mod order;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use interpolate::{interpolate, InterpolationError};
pub use model::{Condition, PortMapping, RestartPolicy, Service};
pub use order::{start_order, OrderError};

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    // The cause is in each message, so no variant chains it as its
    // `source` too: `{:#}` would print it twice.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}{location}: {message}")]
    Parse {
        path: PathBuf,
        location: String,
        message: String,
    },
    #[error("{path}: {error}")]
    Interpolation {
        path: PathBuf,
        error: InterpolationError,
    },
    #[error("{path}: service {service}: {message}")]
    Invalid {
        path: PathBuf,
        service: String,
        message: String,
    },
    #[error("{path}: {error}")]
    Order { path: PathBuf, error: OrderError },
}

/// A service name the compose file does not declare.
#[derive(Debug, thiserror::Error)]
#[error("no service {name:?} in {}; the services are: {}", .file.display(), .valid.join(", "))]
pub struct UnknownService {
    pub name: String,
    pub file: PathBuf,
    pub valid: Vec<String>,
}

/// A loaded compose project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    /// The name came from no setting (COMPOSE_PROJECT_NAME, `.env`, the
    /// file's `name:`) but from the folder's name, which another checkout
    /// in a folder of the same name shares.
    pub name_from_folder: bool,
    /// The folder holding the compose file: relative paths start here.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub services: BTreeMap<String, Service>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
    /// Top-level keys `up` does not honour.
    pub unsupported: Vec<String>,
}

/// Reads `KEY=value` lines; `#` comments and blank lines are skipped, one
/// pair of surrounding quotes is removed.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The compose file a command works on: `file` when given, else
/// compose/docker-compose.yml in the current folder or its nearest parent
/// with one, else in the folder of the pixelflowctl binary or a parent (a
/// `target/debug/pixelflowctl` run from elsewhere still finds its
/// checkout).
pub fn discover(file: Option<&Path>) -> Option<PathBuf> {
    if let Some(file) = file {
        return Some(file.to_path_buf());
    }
    let find = |start: PathBuf| {
        start
            .ancestors()
            .map(|dir| dir.join("compose").join("docker-compose.yml"))
            .find(|f| f.is_file())
    };
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    [cwd, exe].into_iter().flatten().find_map(find)
}

impl Project {
    /// The project of [`discover`]'s file, if there is one.
    pub fn discover(file: Option<&Path>) -> Result<Option<Self>, ComposeError> {
        discover(file).map(|f| Self::load(&f)).transpose()
    }

    /// Loads `file`, with variables from the process environment first and
    /// `.env` beside the file second, as compose resolves them.
    pub fn load(file: &Path) -> Result<Self, ComposeError> {
        let dotenv = std::fs::read_to_string(file.with_file_name(".env"))
            .map(|t| parse_dotenv(&t))
            .unwrap_or_default();
        Self::load_with(file, &|name| {
            std::env::var(name)
                .ok()
                .or_else(|| dotenv.get(name).cloned())
        })
    }

    pub fn load_with(
        file: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ComposeError> {
        let text = std::fs::read_to_string(file).map_err(|error| ComposeError::Read {
            path: file.to_path_buf(),
            error,
        })?;
        Self::parse(file, &text, lookup)
    }

    pub fn parse(
        file: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ComposeError> {
        let path = file.to_path_buf();
        let parse_error = |e: serde_yaml::Error| ComposeError::Parse {
            path: path.clone(),
            location: e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default(),
            message: e.to_string(),
        };
        let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_error)?;
        // serde_yaml applies merge keys one level at a time: a mapping merged
        // in that has a merge key of its own (an anchor built on another,
        // like x-rust-service on x-logging) brings that key along unapplied.
        // Again, until none is left.
        let mut rounds = 0;
        while has_merge_key(&value) {
            rounds += 1;
            if rounds > MAX_MERGE_DEPTH {
                return Err(ComposeError::Parse {
                    path: path.clone(),
                    location: String::new(),
                    message: format!("merge keys (<<) nest more than {MAX_MERGE_DEPTH} deep"),
                });
            }
            value.apply_merge().map_err(parse_error)?;
        }
        interpolate_all(&mut value, lookup).map_err(|error| ComposeError::Interpolation {
            path: path.clone(),
            error,
        })?;
        // Extension fields (x-*) are anchors' homes, not part of the model.
        if let serde_yaml::Value::Mapping(m) = &mut value {
            m.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
        }
        let compose: model::ComposeFile =
            serde_path_to_error::deserialize(value).map_err(|e| ComposeError::Parse {
                path: path.clone(),
                location: String::new(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let set = lookup("COMPOSE_PROJECT_NAME")
            .filter(|n| !n.is_empty())
            .or(compose.name.clone());
        let name_from_folder = set.is_none();
        let name = set
            .or_else(|| {
                std::fs::canonicalize(&dir)
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "default".into());
        let project = Self {
            name: name.to_lowercase(),
            name_from_folder,
            dir,
            file: path.clone(),
            services: compose.services,
            volumes: compose.volumes.into_keys().collect(),
            networks: compose.networks.into_keys().collect(),
            unsupported: compose.unsupported.into_keys().collect(),
        };
        project.validate()?;
        Ok(project)
    }

    fn validate(&self) -> Result<(), ComposeError> {
        let invalid = |service: &str, message: String| ComposeError::Invalid {
            path: self.file.clone(),
            service: service.into(),
            message,
        };
        for (name, service) in &self.services {
            if service.image.is_none() && service.build.is_none() {
                return Err(invalid(name, "needs an image or a build".into()));
            }
            for dep in service.depends_on.keys() {
                if !self.services.contains_key(dep) {
                    return Err(invalid(name, format!("depends on unknown service {dep:?}")));
                }
            }
            for network in &service.networks {
                if !self.networks.contains(network) {
                    return Err(invalid(
                        name,
                        format!("uses undeclared network {network:?}"),
                    ));
                }
            }
        }
        start_order(&self.services).map_err(|error| ComposeError::Order {
            path: self.file.clone(),
            error,
        })?;
        Ok(())
    }

    /// The service names, or what is wrong with `names` (an unknown one,
    /// with the valid ones listed).
    pub fn select(&self, names: &[String]) -> Result<Vec<String>, UnknownService> {
        if names.is_empty() {
            return Ok(self.services.keys().cloned().collect());
        }
        for n in names {
            if !self.services.contains_key(n) {
                return Err(UnknownService {
                    name: n.clone(),
                    file: self.file.clone(),
                    valid: self.services.keys().cloned().collect(),
                });
            }
        }
        Ok(names.to_vec())
    }

    /// `names` and everything they depend on, transitively.
    pub fn with_dependencies(&self, names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut stack: Vec<String> = names.to_vec();
        while let Some(n) = stack.pop() {
            if out.contains(&n) {
                continue;
            }
            if let Some(s) = self.services.get(&n) {
                stack.extend(s.depends_on.keys().cloned());
            }
            out.push(n);
        }
        out.sort();
        out
    }
}

impl Project {
    /// The services to start by default, and those left out because none
    /// of their `profiles` is active (as docker compose decides).
    pub fn by_profile(&self, active: &[String]) -> (Vec<String>, Vec<String>) {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for (name, s) in &self.services {
            if s.profiles.is_empty() || s.profiles.iter().any(|p| active.contains(p)) {
                on.push(name.clone());
            } else {
                off.push(name.clone());
            }
        }
        (on, off)
    }

    /// What `up` does not honour in `services`, one sentence each: keys
    /// outside the supported subset and `depends_on` conditions it cannot
    /// wait for.
    pub fn ignored(&self, services: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if !self.unsupported.is_empty() {
            out.push(format!(
                "ignoring top-level compose keys pixelflowctl does not support: {}",
                self.unsupported.join(", ")
            ));
        }
        for name in services {
            let Some(service) = self.services.get(name) else {
                continue;
            };
            let deploy = service
                .deploy
                .iter()
                .flat_map(|d| d.unsupported.keys())
                .map(|k| format!("deploy.{k}"));
            if !service.unsupported.is_empty()
                || service
                    .deploy
                    .as_ref()
                    .is_some_and(|d| !d.unsupported.is_empty())
            {
                let keys: Vec<String> = service.unsupported.keys().cloned().chain(deploy).collect();
                out.push(format!(
                    "{name}: ignoring compose keys pixelflowctl does not support: {}",
                    keys.join(", ")
                ));
            }
            for (dependency, condition) in &service.depends_on {
                if *condition == Condition::ServiceCompletedSuccessfully {
                    out.push(format!(
                        "{name}: depends_on {dependency} condition service_completed_successfully is not supported; waiting for {dependency} to be healthy instead"
                    ));
                }
            }
        }
        out
    }

    /// `services` less `without` and whatever depends on those, as
    /// (kept, left out).
    pub fn without(&self, services: &[String], without: &[String]) -> (Vec<String>, Vec<String>) {
        let mut out: Vec<String> = without.to_vec();
        loop {
            let more: Vec<String> = services
                .iter()
                .filter(|s| !out.contains(s))
                .filter(|s| self.services[*s].depends_on.keys().any(|d| out.contains(d)))
                .cloned()
                .collect();
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
        let kept = services
            .iter()
            .filter(|s| !out.contains(s))
            .cloned()
            .collect();
        let left: Vec<String> = services
            .iter()
            .filter(|s| out.contains(s))
            .cloned()
            .collect();
        (kept, left)
    }
}

/// How deep anchors built on anchors may nest their merge keys.
const MAX_MERGE_DEPTH: usize = 16;

/// Whether any mapping in `value` still has a merge key (`<<`).
fn has_merge_key(value: &serde_yaml::Value) -> bool {
    match value {
        serde_yaml::Value::Mapping(m) => m.contains_key("<<") || m.values().any(has_merge_key),
        serde_yaml::Value::Sequence(s) => s.iter().any(has_merge_key),
        serde_yaml::Value::Tagged(t) => has_merge_key(&t.value),
        _ => false,
    }
}

fn interpolate_all(
    value: &mut serde_yaml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), InterpolationError> {
    match value {
        serde_yaml::Value::String(s) => *s = interpolate(s, lookup)?,
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                interpolate_all(item, lookup)?;
            }
        }
        serde_yaml::Value::Mapping(m) => {
            for (_, v) in m.iter_mut() {
                interpolate_all(v, lookup)?;
            }
        }
        serde_yaml::Value::Tagged(t) => interpolate_all(&mut t.value, lookup)?,
        _ => {}
    }
    Ok(())
}

/// A digest of everything that defines the service's container, as
/// `com.docker.compose.config-hash`: `up` recreates a container whose hash
/// differs and leaves the others alone.
pub fn config_hash(service: &Service, image_id: &str) -> String {
    let json = serde_json::json!({ "service": service, "image": image_id });
    let digest = Sha256::digest(json.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Project, ComposeError> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Project::parse(Path::new("compose/docker-compose.yml"), text, &|n| {
            map.get(n).cloned()
        })
    }

    #[test]
    fn the_repository_compose_file_loads_with_its_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/docker-compose.yml");
        let project = Project::load_with(&file, &|name| {
            (name == "COMPOSE_PROJECT_NAME").then(|| "pixelflow".into())
        })
        .expect("the compose file loads");
        assert_eq!(project.name, "pixelflow");
        assert_eq!(
            project.services["postgres"].image.as_deref(),
            Some("postgres:15")
        );
        assert_eq!(
            project.services["api"].environment["KAFKA_BROKERS"],
            "kafka:9092"
        );
        assert_eq!(
            project.services["api"].environment["AUTH_SERVICE_URL"],
            "http://auth:50051"
        );
        assert!(project.services["auth"].healthcheck.is_some());
        // Every service's log rotates and every port binds loopback, the
        // Rust services' through a merge key inside a merged anchor.
        for (name, service) in &project.services {
            let logging = service.logging.as_ref();
            assert_eq!(
                logging.map(|l| (
                    l.driver.as_deref(),
                    l.options.get("max-size").map(String::as_str)
                )),
                Some((Some("json-file"), Some("10m"))),
                "{name}"
            );
            for port in &service.ports {
                assert_eq!(port.host_ip.as_deref(), Some("127.0.0.1"), "{name}");
            }
        }
        let order = start_order(&project.services).expect("no cycle");
        let position = |s: &str| order.iter().position(|level| level.iter().any(|n| n == s));
        assert!(position("postgres") < position("auth"));
        assert!(position("auth") < position("api"));
    }

    #[test]
    fn image_variables_replace_third_party_images() {
        let project = parse(
            "services:\n  db:\n    image: ${POSTGRES_IMAGE:-postgres:15}\n",
            &[("POSTGRES_IMAGE", "local/pg:15")],
        )
        .expect("parses");
        assert_eq!(project.services["db"].image.as_deref(), Some("local/pg:15"));
    }

    #[test]
    fn merge_keys_nested_in_merged_anchors_are_applied_and_own_keys_win() {
        // x-rust is built on x-log, and overrides its restart policy.
        let text = "x-log: &log\n  logging:\n    driver: json-file\n  restart: always\nx-rust: &rust\n  <<: *log\n  restart: on-failure\nservices:\n  s:\n    <<: *rust\n    image: i\n";
        let project = parse(text, &[]).expect("parses");
        let s = &project.services["s"];
        assert_eq!(
            s.logging.as_ref().and_then(|l| l.driver.as_deref()),
            Some("json-file")
        );
        assert!(
            matches!(s.restart, Some(model::RestartPolicy::OnFailure { .. })),
            "{:?}",
            s.restart
        );
        assert!(s.unsupported.is_empty(), "{:?}", s.unsupported);
    }

    #[test]
    fn merge_keys_and_extension_fields_work() {
        let text = "x-base: &base\n  restart: always\n  environment: &env\n    A: '1'\nservices:\n  s:\n    <<: *base\n    image: i\n    environment:\n      <<: *env\n      B: '2'\n";
        let project = parse(text, &[]).expect("parses");
        let s = &project.services["s"];
        assert_eq!(s.restart, Some(RestartPolicy::Always));
        assert_eq!(
            (s.environment["A"].as_str(), s.environment["B"].as_str()),
            ("1", "2")
        );
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let err = parse("services:\n  a:\n    image: [unclosed\n", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("compose/docker-compose.yml:"), "{text}");
        assert!(text.contains(":4:") || text.contains(":3:"), "{text}");
    }

    #[test]
    fn a_wrong_type_says_what_was_expected() {
        let err = parse("services:\n  a:\n    image: i\n    ports: { a: 1 }\n", &[]).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    #[test]
    fn unknown_dependencies_and_services_are_named() {
        let err = parse(
            "services:\n  a:\n    image: i\n    depends_on: [ghost]\n",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown service \"ghost\""),
            "{err}"
        );
        let project =
            parse("services:\n  a:\n    image: i\n  b:\n    image: j\n", &[]).expect("parses");
        let err = project.select(&["c".into()]).unwrap_err().to_string();
        assert!(err.contains("the services are: a, b"), "{err}");
    }

    #[test]
    fn leaving_a_service_out_leaves_out_what_depends_on_it() {
        let text = "services:\n  db:\n    image: i\n  app:\n    image: i\n    depends_on: [db]\n  ui:\n    image: i\n    depends_on: [app]\n  other:\n    image: i\n";
        let project = parse(text, &[]).expect("parses");
        let all = project.select(&[]).expect("all");
        let (kept, left) = project.without(&all, &["app".into()]);
        assert_eq!(kept, ["db", "other"]);
        assert_eq!(left, ["app", "ui"]);
    }

    #[test]
    fn ports_parse_in_every_short_form() {
        assert_eq!(
            PortMapping::parse("8080").map(|p| (p.host_port, p.container_port)),
            Ok((None, 8080))
        );
        let p = PortMapping::parse("127.0.0.1:9090:90/udp").expect("valid");
        assert_eq!(
            (
                p.host_ip.as_deref(),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            (Some("127.0.0.1"), Some(9090), 90, "udp")
        );
        assert!(PortMapping::parse("x:80").is_err());
    }

    #[test]
    fn the_config_hash_changes_with_the_config_and_the_image_only() {
        let project = parse(
            "services:\n  a:\n    image: i\n    environment: { A: '1' }\n",
            &[],
        )
        .expect("parses");
        let a = project.services["a"].clone();
        let same = config_hash(&a, "sha256:1");
        assert_eq!(same, config_hash(&a.clone(), "sha256:1"));
        assert_ne!(same, config_hash(&a, "sha256:2"));
        let mut changed = a.clone();
        changed.environment.insert("A".into(), "2".into());
        assert_ne!(same, config_hash(&changed, "sha256:1"));
    }

    #[test]
    fn dotenv_lines_read_like_compose_reads_them() {
        let env = parse_dotenv("# c\nA=1\nexport B=\"two words\"\nC='x'\n\nD=\n");
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "x");
        assert_eq!(env["D"], "");
    }

    #[test]
    fn services_with_inactive_profiles_are_left_out_by_default() {
        let text =
            "services:\n  app:\n    image: i\n  debug:\n    image: i\n    profiles: [tools]\n";
        let project = parse(text, &[]).expect("parses");
        assert_eq!(
            project.by_profile(&[]),
            (vec!["app".into()], vec!["debug".into()])
        );
        assert_eq!(project.by_profile(&["tools".into()]).0, ["app", "debug"]);
    }

    #[test]
    fn unsupported_keys_and_conditions_are_reported_not_dropped() {
        let text = "version: '3.9'\nservices:\n  db:\n    image: i\n  app:\n    image: i\n    deploy: { replicas: 2, resources: { limits: { cpus: '1' } } }\n    depends_on: { db: { condition: service_completed_successfully } }\n";
        let project = parse(text, &[]).expect("parses");
        let ignored = project.ignored(&["app".into(), "db".into()]);
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert!(
            ignored[0].contains("app: ignoring") && ignored[0].contains("deploy.resources"),
            "{ignored:?}"
        );
        assert_eq!(project.services["app"].replicas(), 2);
        assert_eq!(project.services["db"].replicas(), 1);
        assert!(ignored[1].contains("service_completed_successfully is not supported"));
        assert!(project.ignored(&["db".into()]).is_empty());
        let with_secrets = parse(
            "services:\n  a:\n    image: i\nsecrets:\n  s: { file: x }\n",
            &[],
        )
        .expect("parses");
        assert_eq!(
            with_secrets.ignored(&[]),
            ["ignoring top-level compose keys pixelflowctl does not support: secrets"]
        );
    }

    #[test]
    fn a_project_name_from_no_setting_is_marked_as_the_folders() {
        let named = parse(
            "services:\n  a:\n    image: i\n",
            &[("COMPOSE_PROJECT_NAME", "mine")],
        )
        .expect("parses");
        assert!(!named.name_from_folder);
        let by_file = parse("name: filed\nservices:\n  a:\n    image: i\n", &[]).expect("parses");
        assert!(!by_file.name_from_folder);
        assert_eq!(by_file.name, "filed");
        let by_folder = parse("services:\n  a:\n    image: i\n", &[]).expect("parses");
        assert!(by_folder.name_from_folder);
    }

    #[test]
    fn a_bad_stop_grace_period_is_named() {
        let err = parse(
            "services:\n  a:\n    image: i\n    stop_grace_period: soon\n",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("stop_grace_period"), "{err}");
    }
}
