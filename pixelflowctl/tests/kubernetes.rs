//! deploy/k8s checked as a cluster would take it, without a cluster: every
//! overlay rendered by `kubectl kustomize` and validated by
//! `kubernetes-validate --strict` against Kubernetes 1.32; then what a
//! schema cannot see: selectors that select, references that resolve,
//! every variable a setting its service reads (the README's table and the
//! service's own source agree), ports and probes as in the compose file,
//! and the PrometheusRule the same rules as compose/prometheus/alerts.yml.
//! That the dev overlay really runs is `tests/k8s-podman`'s to show.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.32.0";
const OVERLAYS: [&str; 2] = ["dev", "production"];
const SERVICES: [&str; 3] = ["auth", "api", "worker"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// `kubectl kustomize` of an overlay, as documents.
fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = root().join("deploy/k8s/overlays").join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl (with kustomize) is needed: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let documents = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|d| !d.is_null())
        .collect();
    (text, documents)
}

fn kind(d: &Value) -> &str {
    d["kind"].as_str().unwrap_or_default()
}

fn name(d: &Value) -> &str {
    d["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(documents: &'a [Value], wanted: &'a str) -> impl Iterator<Item = &'a Value> {
    documents.iter().filter(move |d| kind(d) == wanted)
}

fn workloads(documents: &[Value]) -> impl Iterator<Item = &Value> {
    documents
        .iter()
        .filter(|d| matches!(kind(d), "Deployment" | "StatefulSet"))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .collect()
}

/// Whether every pair of `selector` is among `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_labels(workload: &Value) -> BTreeMap<String, String> {
    labels(&workload["spec"]["template"]["metadata"]["labels"])
}

/// The container of `service`'s workload.
fn container<'a>(documents: &'a [Value], service: &str) -> &'a Value {
    let workload = workloads(documents)
        .find(|w| name(w) == service)
        .unwrap_or_else(|| panic!("a workload for {service}"));
    &workload["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn every_overlay_renders_and_passes_strict_validation_for_kubernetes_1_32() {
    for overlay in OVERLAYS {
        let (text, documents) = render(overlay);
        assert!(!documents.is_empty(), "{overlay}: nothing rendered");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), &text).expect("write");
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", KUBERNETES])
            .arg(file.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("kubernetes-validate is needed (pip install kubernetes-validate): {e}")
            });
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{overlay}: {said}");
        assert!(!said.contains("ERROR"), "{overlay}: {said}");
        // Every built-in kind passed; the custom resources (the Prometheus
        // Operator's and KEDA's) have no schema here: their content is
        // checked by the tests below.
        let custom: BTreeSet<&str> = documents
            .iter()
            .map(kind)
            .filter(|k| ["ServiceMonitor", "PrometheusRule", "ScaledObject"].contains(k))
            .collect();
        for document in &documents {
            let resource = format!("{}/{}", kind(document).to_lowercase(), name(document));
            if custom.contains(kind(document)) {
                assert!(
                    said.contains(&format!("Couldn't find schema for kind {}", kind(document))),
                    "{said}"
                );
            } else {
                assert!(
                    said.contains(&format!("passed for resource {resource}")),
                    "{overlay}: {resource} not validated: {said}"
                );
            }
        }
    }
}

#[test]
fn selectors_select_and_references_resolve() {
    for overlay in OVERLAYS {
        let (_, documents) = render(overlay);
        for workload in workloads(&documents) {
            let selector = labels(&workload["spec"]["selector"]["matchLabels"]);
            assert!(
                selects(&selector, &pod_labels(workload)),
                "{overlay}: {} selects not its own pods",
                name(workload)
            );
            if kind(workload) == "StatefulSet" {
                let service = workload["spec"]["serviceName"].as_str().unwrap_or_default();
                assert!(
                    of_kind(&documents, "Service").any(|s| name(s) == service),
                    "{overlay}: {}'s serviceName {service} is no Service",
                    name(workload)
                );
            }
        }
        for selecting in
            of_kind(&documents, "Service").chain(of_kind(&documents, "PodDisruptionBudget"))
        {
            let selector = match kind(selecting) {
                "Service" => labels(&selecting["spec"]["selector"]),
                _ => labels(&selecting["spec"]["selector"]["matchLabels"]),
            };
            assert!(
                workloads(&documents).any(|w| selects(&selector, &pod_labels(w))),
                "{overlay}: {} {} selects no pods",
                kind(selecting),
                name(selecting)
            );
            // A Service's target ports are ports its pods declare.
            for port in selecting["spec"]["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let target = &port["targetPort"];
                let declared = workloads(&documents)
                    .filter(|w| selects(&selector, &pod_labels(w)))
                    .flat_map(|w| {
                        w["spec"]["template"]["spec"]["containers"]
                            .as_sequence()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .flat_map(|c| c["ports"].as_sequence().cloned().unwrap_or_default())
                    .any(|p| &p["name"] == target || &p["containerPort"] == target);
                assert!(
                    declared,
                    "{overlay}: Service {} targets {target:?}, which its pods do not declare",
                    name(selecting)
                );
            }
        }
        for scaler in of_kind(&documents, "HorizontalPodAutoscaler")
            .chain(of_kind(&documents, "ScaledObject"))
        {
            let target = &scaler["spec"]["scaleTargetRef"];
            assert!(
                workloads(&documents).any(|w| Some(kind(w)) == target["kind"].as_str()
                    && Some(name(w)) == target["name"].as_str()),
                "{overlay}: {} {} scales nothing: {target:?}",
                kind(scaler),
                name(scaler)
            );
        }
        // Every ConfigMap and Secret a pod reads exists (with the hash
        // suffix kustomize gave it), and has the keys read from it.
        let secrets: Vec<&Value> = of_kind(&documents, "Secret").collect();
        for workload in workloads(&documents) {
            let spec = &workload["spec"]["template"]["spec"];
            for c in spec["containers"].as_sequence().into_iter().flatten() {
                for from in c["envFrom"].as_sequence().into_iter().flatten() {
                    let wanted = from["configMapRef"]["name"].as_str().expect("configMapRef");
                    assert!(
                        of_kind(&documents, "ConfigMap").any(|m| name(m) == wanted),
                        "{overlay}: {} reads ConfigMap {wanted}, which is not rendered",
                        name(workload)
                    );
                }
                for var in c["env"].as_sequence().into_iter().flatten() {
                    let Some(reference) = var["valueFrom"]["secretKeyRef"].as_mapping() else {
                        continue;
                    };
                    let (secret, key) = (
                        reference
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        reference
                            .get("key")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                    // Production's Secret is made by hand (the overlay says
                    // how); the dev overlay's must have every key.
                    if overlay == "dev" {
                        assert!(
                            secrets
                                .iter()
                                .any(|s| name(s) == secret && s["data"].get(key).is_some()),
                            "{overlay}: {} reads {key} of Secret {secret}, which has none",
                            name(workload)
                        );
                    } else {
                        assert!(secret.starts_with("pixelflow-secrets"), "{secret}");
                    }
                }
            }
            for volume in spec["volumes"].as_sequence().into_iter().flatten() {
                if let Some(map) = volume["configMap"]["name"].as_str() {
                    assert!(
                        of_kind(&documents, "ConfigMap").any(|m| name(m) == map),
                        "{overlay}: {} mounts ConfigMap {map}, which is not rendered",
                        name(workload)
                    );
                }
            }
        }
    }
}

/// The README's configuration table: variable → the services that read it.
fn readme_settings() -> BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let variable = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let services = cells.get(2)?;
            Some((
                variable.to_string(),
                services.split(',').map(|s| s.trim().to_string()).collect(),
            ))
        })
        .collect()
}

/// Whether `service`'s source (or common's, which every service reads its
/// shared settings through) names `variable`.
fn source_reads(service: &str, variable: &str) -> bool {
    let quoted = format!("\"{variable}\"");
    [service, "common"].iter().any(|crate_dir| {
        let mut stack = vec![root().join("services").join(crate_dir).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&quoted)) {
                    return true;
                }
            }
        }
        false
    })
}

#[test]
fn every_variable_a_service_gets_is_a_setting_it_reads() {
    let table = readme_settings();
    assert!(table.len() > 20, "the README's settings table: {table:?}");
    for overlay in OVERLAYS {
        let (_, documents) = render(overlay);
        for service in SERVICES {
            let c = container(&documents, service);
            let mut variables: Vec<String> = c["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect();
            for from in c["envFrom"].as_sequence().into_iter().flatten() {
                let map = from["configMapRef"]["name"].as_str().unwrap_or_default();
                let data = of_kind(&documents, "ConfigMap")
                    .find(|m| name(m) == map)
                    .map(|m| m["data"].clone())
                    .unwrap_or(Value::Null);
                variables.extend(labels(&data).into_keys());
                // Keys whose values are not strings would be dropped by
                // `labels`: there must be none.
                assert_eq!(
                    data.as_mapping().map_or(0, |m| m.len()),
                    labels(&data).len(),
                    "{overlay}: {map}"
                );
            }
            assert!(
                !variables.is_empty(),
                "{overlay}: {service} gets no settings"
            );
            for variable in variables {
                let readers = table.get(&variable).unwrap_or_else(|| {
                    panic!("{overlay}: {service} gets {variable}, which README's settings table does not list")
                });
                assert!(
                    readers.iter().any(|r| r == "all" || r == service),
                    "{overlay}: {service} gets {variable}, which the README says only {readers:?} read"
                );
                assert!(
                    source_reads(service, &variable),
                    "{overlay}: {service} gets {variable}, which its source never names"
                );
            }
        }
    }
}

#[test]
fn ports_and_probes_agree_with_the_compose_file() {
    let compose: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("compose/docker-compose.yml")).expect("compose file"),
    )
    .expect("YAML");
    for overlay in OVERLAYS {
        let (_, documents) = render(overlay);
        for service in SERVICES {
            let c = container(&documents, service);
            let port = c["ports"][0]["containerPort"]
                .as_u64()
                .expect("a container port");
            let mapping = compose["services"][service]["ports"][0]
                .as_str()
                .expect("compose publishes a port");
            let compose_port: u64 = mapping
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a container port in compose");
            assert_eq!(port, compose_port, "{overlay}: {service}'s port");
            let health = compose["services"][service]["healthcheck"]["test"]
                .as_sequence()
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            assert!(
                health.contains(&format!(":{port}/ready")),
                "{service}: compose's healthcheck {health:?}"
            );
            let port_name = c["ports"][0]["name"].as_str().expect("a named port");
            for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
                let get = &c[probe]["httpGet"];
                assert_eq!(
                    get["path"].as_str(),
                    Some(path),
                    "{overlay}: {service} {probe}"
                );
                assert_eq!(
                    get["port"].as_str(),
                    Some(port_name),
                    "{overlay}: {service} {probe}"
                );
            }
            assert!(
                c["resources"]["requests"].is_mapping() && c["resources"]["limits"].is_mapping(),
                "{overlay}: {service} without resources"
            );
        }
    }
}

#[test]
fn the_worker_is_a_stateful_set_whose_pod_names_are_its_static_member_ids() {
    for overlay in OVERLAYS {
        let (_, documents) = render(overlay);
        let worker = workloads(&documents)
            .find(|w| name(w) == "worker")
            .expect("worker");
        assert_eq!(kind(worker), "StatefulSet");
        let settings = of_kind(&documents, "ConfigMap")
            .find(|m| name(m).starts_with("worker-settings"))
            .expect("worker settings");
        assert_eq!(
            settings["data"]["KAFKA_GROUP_INSTANCE_ID"].as_str(),
            Some("{hostname}")
        );
    }
}

#[test]
fn the_prometheus_rule_holds_the_same_rules_as_compose() {
    let alerts: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("compose/prometheus/alerts.yml")).expect("alerts.yml"),
    )
    .expect("YAML");
    let (_, documents) = render("production");
    let rule = of_kind(&documents, "PrometheusRule")
        .next()
        .expect("a PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "deploy/k8s/components/monitoring/prometheus-rule.yaml is behind compose/prometheus/alerts.yml: run deploy/k8s/components/monitoring/generate"
    );
    let monitor = of_kind(&documents, "ServiceMonitor")
        .next()
        .expect("a ServiceMonitor");
    let selected: Vec<&str> = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(selected, SERVICES);
    // Its endpoints name ports the Services have.
    for endpoint in monitor["spec"]["endpoints"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let port = endpoint["port"].as_str().expect("a port name");
        assert!(of_kind(&documents, "Service").any(|s| s["spec"]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|p| p["name"].as_str() == Some(port))));
    }
    // The dev overlay's Prometheus loads the same file.
    let (_, dev) = render("dev");
    let rules = of_kind(&dev, "ConfigMap")
        .find(|m| name(m).starts_with("prometheus-rules"))
        .expect("the dev overlay's rules");
    let loaded: Value =
        serde_yaml::from_str(rules["data"]["alerts.yml"].as_str().expect("alerts.yml"))
            .expect("YAML");
    assert_eq!(loaded, alerts);
}
