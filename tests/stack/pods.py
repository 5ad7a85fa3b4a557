"""The rendered stack's pod templates as documents `podman kube play` (podman 4.3) runs.

What is converted, and why (each is a limit of podman kube play, not a change to what k3s runs):
- the StatefulSet's and the bootstrap Deployment's pod templates become Pods (podman plays no StatefulSet);
  the pod-index label the StatefulSet controller sets is set by hand;
- the PVC template becomes a podman volume the test creates (no PVC binding in podman);
- Secrets become ConfigMaps of the same keys and values, and secret volumes and secretKeyRefs refer to them:
  podman 4.3 mounts no Secret volumes and cannot read Secrets it played (containers/podman#17071);
- BOOTSTRAP_ADDR names the bootstrap pod's address instead of the Service's DNS name (podman has no Services);
- containerPorts are left out: podman 4.3 publishes each on the same port of the host, where Kubernetes only
  documents them (pods reach each other by pod IP either way, as the test does).
Everything else (containers, commands, environment, ConfigMaps, probes as data, security contexts, limits) is
played as rendered.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import yaml

from .render import Manifest


def _secret_as_config_map(secret: Manifest) -> Manifest:
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": secret["metadata"]["name"]},
        "data": data,
    }


def _without_secrets(spec: Manifest) -> None:
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            secret = volume.pop("secret")
            volume["configMap"] = {
                "name": secret["secretName"],
                "defaultMode": secret.get("defaultMode", 0o644),
            }
    for container in spec["containers"]:
        container.pop("ports", None)
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).pop("secretKeyRef", None)
            if ref is not None:
                variable["valueFrom"]["configMapKeyRef"] = ref


def _set_env(spec: Manifest, container: str, name: str, value: str) -> None:
    (c,) = [c for c in spec["containers"] if c["name"] == container]
    (variable,) = [v for v in c["env"] if v["name"] == name]
    variable.clear()
    variable.update(name=name, value=value)


def pod_document(
    workload: Manifest,
    objects: list[Manifest],
    *,
    name: str,
    labels: dict[str, str] | None = None,
    volumes: dict[str, str] | None = None,
    bootstrap_addr: str | None = None,
) -> str:
    """YAML for `podman kube play`: the workload's pod template as Pod `name`, with the ConfigMaps it uses.

    `volumes` maps a volumeClaimTemplate's name to the podman volume standing in for the claim.
    """
    template = copy.deepcopy(workload["spec"]["template"])
    spec: dict[str, Any] = template["spec"]
    for claim, volume in (volumes or {}).items():
        spec.setdefault("volumes", []).append({"name": claim, "persistentVolumeClaim": {"claimName": volume}})
    _without_secrets(spec)
    if bootstrap_addr is not None:
        _set_env(spec, "kubo", "BOOTSTRAP_ADDR", bootstrap_addr)
    metadata = {"name": name, "labels": {**template["metadata"].get("labels", {}), **(labels or {})}}
    if template["metadata"].get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    used = {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    for c in spec["containers"]:
        used |= {s["configMapRef"]["name"] for s in c.get("envFrom", [])}
        used |= {
            v["valueFrom"]["configMapKeyRef"]["name"]
            for v in c.get("env", [])
            if "configMapKeyRef" in v.get("valueFrom", {})
        }
    documents = []
    for o in objects:
        if o["metadata"]["name"] in used and o["kind"] == "ConfigMap":
            documents.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": o["metadata"]["name"]},
                    "data": o["data"],
                }
            )
        elif o["metadata"]["name"] in used and o["kind"] == "Secret":
            documents.append(_secret_as_config_map(o))
    assert {d["metadata"]["name"] for d in documents} == used, "a referenced ConfigMap or Secret is missing"
    return yaml.safe_dump_all([*documents, pod], sort_keys=False)
