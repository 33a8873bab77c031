#!/usr/bin/env python3
"""Turns rendered Kubernetes manifests into what podman 4.3's `kube play`
runs, changing what it cannot take and nothing else:
- a StatefulSet becomes a Deployment of the same pod template and replicas
  (its volumeClaimTemplates become PersistentVolumeClaims, which podman
  makes named volumes): podman has no StatefulSet;
- Services, PodDisruptionBudgets and HorizontalPodAutoscalers are dropped:
  podman has none (pods find each other by pod name);
- each Secret is written out as a JSON object of base64 values for
  `podman secret create`, which its secretKeyRef can read (a played
  `kind: Secret` cannot be read back by podman 4.3).
Usage: play.py RENDERED.yaml OUT.yaml SECRETS_DIR"""
import json
import pathlib
import sys

import yaml

source, out, secrets = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
secrets.mkdir(parents=True, exist_ok=True)
played = []
for doc in yaml.safe_load_all(open(source)):
    if not doc:
        continue
    kind = doc["kind"]
    if kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        continue
    if kind == "Secret":
        data = {k: "".join(v.split()) for k, v in doc.get("data", {}).items()}
        (secrets / doc["metadata"]["name"]).write_text(json.dumps(data))
        continue
    if kind == "StatefulSet":
        spec = doc["spec"]
        name = doc["metadata"]["name"]
        volumes = spec["template"]["spec"].setdefault("volumes", [])
        for claim in spec.pop("volumeClaimTemplates", []):
            claim_name = f"{claim['metadata']['name']}-{name}"
            played.append({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim_name},
                "spec": claim["spec"],
            })
            volumes.append({"name": claim["metadata"]["name"],
                            "persistentVolumeClaim": {"claimName": claim_name}})
        for key in ("serviceName", "podManagementPolicy", "updateStrategy"):
            spec.pop(key, None)
        doc["kind"] = "Deployment"
    played.append(doc)
out.write_text(yaml.safe_dump_all(played, sort_keys=False))
print(f"{len(played)} objects for podman kube play")
