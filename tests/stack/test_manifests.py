"""The k3s stack as rendered by kustomize: valid for the targeted Kubernetes, and the policies of docs/k3s.md.

Every overlay is rendered from a copy of k3s/ with secrets from k3s/generate-secrets.sh; the objects are
validated with kubernetes-validate --strict (the schemas of the targeted and the oldest supported version)
and checked one policy per test, so a failure names the rule and the object.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from peer.config import PeerSettings, parse

from .render import (
    NAMESPACE,
    OLDEST_KUBERNETES,
    OVERLAYS,
    ROOT,
    TARGET_KUBERNETES,
    Manifest,
    build,
    containers,
    documents,
    env_of,
    one,
    pod_specs,
    set_peers,
)

KUBO_IMAGE = "docker.io/ipfs/kubo:v0.43.1"
OUR_IMAGES = {"learning-tangle/peer:0.1.0", "learning-tangle/visualizer:0.1.0"}
RPC_PORT = 5001


@functools.cache
def _errors(document: str, version: str) -> str | None:
    """kubernetes-validate --strict on one object (JSON), once per distinct object and version."""
    try:
        kubernetes_validate.validate(json.loads(document), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{error.message} at {list(error.path)}"
    return None


def _validate(objects: list[Manifest], version: str) -> list[str]:
    errors = []
    for o in objects:
        error = _errors(json.dumps(o, sort_keys=True), version)
        if error is not None:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {error}")
    return errors


# --- rendering and schemas -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", [TARGET_KUBERNETES, OLDEST_KUBERNETES])
def test_every_overlay_validates_strictly(rendered: dict[str, list[Manifest]], version: str) -> None:
    for overlay, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert {"StatefulSet", "Deployment", "DaemonSet", "Job", "Secret", "NetworkPolicy"} <= kinds, overlay
        assert _validate(objects, version) == [], overlay


def test_strict_validation_rejects_a_misspelled_field(rendered: dict[str, list[Manifest]]) -> None:
    # the validator must be able to fail: a typo in a pod spec is caught only in strict mode
    sts = yaml.safe_load(yaml.safe_dump(one(rendered["x64"], "StatefulSet", "peer")))
    sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert _validate([sts], TARGET_KUBERNETES)
    kubernetes_validate.validate(sts, TARGET_KUBERNETES, strict=False)


def test_everything_is_in_the_namespace(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        for o in objects:
            if o["kind"] != "Namespace":
                assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"
        assert one(objects, "Namespace", NAMESPACE)


def test_kubectl_renders_the_same(stack: Path, rendered_text: dict[str, str]) -> None:
    """What a user runs (`kubectl apply -k`) renders what the tests check, where kubectl is installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the tests render with the same kustomize, built from source)")
    for overlay, text in rendered_text.items():
        result = subprocess.run(
            [kubectl, "kustomize", str(stack / "overlays" / overlay)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert documents(result.stdout) == documents(text), overlay


# --- the number of peers -------------------------------------------------------------------------------
def _peer_env(objects: list[Manifest]) -> dict[str, Any]:
    sts = one(objects, "StatefulSet", "peer")
    (peer,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "peer"]
    return {v["name"]: v for v in peer["env"]}


@pytest.mark.parametrize("peers", [3, 30, 300])
def test_renders_for_3_30_300_peers_validate(stack: Path, kustomize_binary: str, peers: int) -> None:
    for overlay in ("x64", "pi-lab"):
        set_peers(stack / "overlays" / overlay, peers)
    try:
        for overlay in OVERLAYS:
            objects = documents(build(kustomize_binary, stack / "overlays" / overlay))
            assert one(objects, "StatefulSet", "peer")["spec"]["replicas"] == peers
            assert _peer_env(objects)["PEERS"]["value"] == str(peers)
            assert _validate(objects, TARGET_KUBERNETES) == []
    finally:
        set_peers(stack / "overlays" / "x64", 10)
        set_peers(stack / "overlays" / "pi-lab", 6)


def test_peers_equals_replicas_and_the_ordinal_is_the_shard(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        replicas = one(objects, "StatefulSet", "peer")["spec"]["replicas"]
        env = _peer_env(objects)
        assert env["PEERS"]["value"] == str(replicas)
        assert env["PEER_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['apps.kubernetes.io/pod-index']"
        )


# --- the peer's configuration --------------------------------------------------------------------------
def _documented_variables() -> set[str]:
    table = (ROOT / "docs" / "peer.md").read_text().split("## Configuration", 1)[1]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE))


def test_every_peer_variable_is_set_and_valid(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # flags that make `tangle peer` do something else, and settings whose default is "unset"
    not_set = {
        "CREATE_GENESIS",
        "PRINT_KUBO_CONFIG",
        "DATASET_PATH",
        "PIN_WINDOW",
        "REFERENCE_DEPTH",
        "TFLITE_PATH",
    }
    for overlay, objects in rendered.items():
        sts = one(objects, "StatefulSet", "peer")
        (peer,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "peer"]
        env = env_of(peer, objects)
        env["PEER_INDEX"] = str(sts["spec"]["replicas"] - 1)  # what the downward API gives the last pod
        assert set(env) >= _documented_variables() - not_set, overlay
        for name in list(os.environ):
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = parse(PeerSettings, env=True)
        assert settings.peers == sts["spec"]["replicas"]
        assert settings.http_host == "0.0.0.0"
        assert settings.ipfs_api == f"http://127.0.0.1:{RPC_PORT}"
        assert settings.ipfs_api_listen == f"/ip4/127.0.0.1/tcp/{RPC_PORT}"


def test_kubo_gets_the_ipfs_variables_and_a_storage_max_below_its_volume(
    rendered: dict[str, list[Manifest]],
) -> None:
    units = {"GB": 10**9, "GiB": 2**30, "MB": 10**6}
    for overlay, objects in rendered.items():
        sts = one(objects, "StatefulSet", "peer")
        (kubo,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "kubo"]
        env = env_of(kubo, objects)
        number, unit = re.fullmatch(r"(\d+)([A-Za-z]+)", env["IPFS_DATASTORE_STORAGEMAX"]).groups()  # type: ignore[union-attr]
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        size, size_unit = re.fullmatch(
            r"(\d+)(Gi)", claim["spec"]["resources"]["requests"]["storage"]
        ).groups()  # type: ignore[union-attr]
        # GC starts at 90% of StorageMax (Datastore.StorageGCWatermark); the volume leaves room above it
        assert int(number) * units[unit] < int(size) * units[size_unit + "B"], overlay
        limit = kubo["resources"]["limits"]["memory"]
        assert env["GOMEMLIMIT"].endswith("MiB")
        assert limit.endswith("Mi")
        assert int(env["GOMEMLIMIT"][:-3]) <= 0.85 * int(limit[:-2]), overlay


# --- policies on every pod -------------------------------------------------------------------------------
def test_no_latest_tag_and_the_fixed_image_names(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        images = set()
        for workload, _, spec in pod_specs(objects):
            for c in containers(spec):
                image = c["image"]
                name, _, tag = image.rpartition(":")
                where = f"{workload['metadata']['name']}: {image}"
                assert name, where
                assert "/" not in tag, where
                assert tag != "latest", where
                images.add(image)
        assert OUR_IMAGES | {KUBO_IMAGE} <= images


def test_every_container_has_requests_and_limits(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        for workload, _, spec in pod_specs(objects):
            for c in containers(spec):
                where = f"{workload['metadata']['name']}/{c['name']}"
                for kind in ("requests", "limits"):
                    assert set(c.get("resources", {}).get(kind, {})) >= {"cpu", "memory"}, f"{where} {kind}"


def test_every_container_runs_non_root_read_only_without_capabilities(
    rendered: dict[str, list[Manifest]],
) -> None:
    for objects in rendered.values():
        for workload, _, spec in pod_specs(objects):
            pod = spec.get("securityContext", {})
            assert pod.get("runAsNonRoot") is True, workload["metadata"]["name"]
            assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            assert spec.get("automountServiceAccountToken", True) is False or (
                spec.get("serviceAccountName") == "prometheus"  # it reads pods for discovery
            )
            for c in containers(spec):
                where = f"{workload['metadata']['name']}/{c['name']}"
                security = c.get("securityContext", {})
                user = security.get("runAsUser", pod.get("runAsUser"))
                assert isinstance(user, int), where
                assert user > 0, where
                assert security.get("readOnlyRootFilesystem") is True, where
                assert security.get("allowPrivilegeEscalation") is False, where
                assert security.get("capabilities", {}).get("drop") == ["ALL"], where
                assert "add" not in security.get("capabilities", {}), where
                assert security.get("privileged") is not True, where


def test_only_node_exporter_uses_the_host(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        for workload, _, spec in pod_specs(objects):
            host = {k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)}
            host_paths = {v["name"] for v in spec.get("volumes", []) if "hostPath" in v}
            if workload["metadata"]["name"] == "node-exporter":
                assert host == {"hostNetwork", "hostPID"}
                mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
                assert all(mounts[name].get("readOnly") for name in host_paths)
            else:
                assert not host, workload["metadata"]["name"]
                assert not host_paths, workload["metadata"]["name"]


def test_probes_on_healthz(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        sts = one(objects, "StatefulSet", "peer")
        (peer,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "peer"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert peer[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
        assert {"name": "http", "containerPort": 8000} in peer["ports"]


def test_env_never_shadows_the_config_map(rendered: dict[str, list[Manifest]]) -> None:
    """Kubernetes lets `env` win over `envFrom`, podman 4.3 the other way round: never depend on either."""
    for objects in rendered.values():
        for workload, _, spec in pod_specs(objects):
            for c in containers(spec):
                from_config: set[str] = set()
                for source in c.get("envFrom", []):
                    from_config |= set(
                        one(objects, "ConfigMap", source["configMapRef"]["name"].rsplit("-", 1)[0])["data"]
                    )
                shadowed = {v["name"] for v in c.get("env", [])} & from_config
                assert not shadowed, f"{workload['metadata']['name']}/{c['name']}: {shadowed}"


def test_kubo_outlives_the_peers_shutdown(rendered: dict[str, list[Manifest]]) -> None:
    """On SIGTERM the peer finishes its round and publishes (SHUTDOWN_GRACE): its kubo must still run then."""
    for objects in rendered.values():
        sts = one(objects, "StatefulSet", "peer")
        spec = sts["spec"]["template"]["spec"]
        (peer,) = [c for c in spec["containers"] if c["name"] == "peer"]
        (kubo,) = [c for c in spec["containers"] if c["name"] == "kubo"]
        grace = float(env_of(peer, objects)["SHUTDOWN_GRACE"])
        command = kubo["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        assert grace < float(command[1]) < spec["terminationGracePeriodSeconds"]


def test_topology_spread_max_skew_one(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        spec = one(objects, "StatefulSet", "peer")["spec"]["template"]["spec"]
        (spread,) = spec["topologySpreadConstraints"]
        assert spread["maxSkew"] == 1
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["whenUnsatisfiable"] == "DoNotSchedule"
        assert spread["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "peer"}


# --- kubo ------------------------------------------------------------------------------------------------
def _kubo_containers(objects: list[Manifest]) -> list[tuple[Manifest, Manifest, Manifest]]:
    return [
        (w, spec, c)
        for w, _, spec in pod_specs(objects)
        for c in containers(spec)
        if c["image"] == KUBO_IMAGE
    ]


def test_kubo_runs_with_gc_and_our_init_scripts(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        kubos = _kubo_containers(objects)
        assert {w["metadata"]["name"] for w, _, _ in kubos} == {"peer", "bootstrap"}
        for workload, spec, kubo in kubos:
            assert kubo["args"] == ["daemon", "--migrate=true", "--enable-gc"]
            assert "command" not in kubo  # the image's entrypoint runs /container-init.d
            (mount,) = [m for m in kubo["volumeMounts"] if m["mountPath"] == "/container-init.d"]
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            assert volume["configMap"]["defaultMode"] == 0o755
            config_map = one(objects, "ConfigMap", "kubo-init")
            assert volume["configMap"]["name"] == config_map["metadata"]["name"]
            assert set(config_map["data"]) == {
                "010-bootstrap-identity.sh",
                "050-learning-tangle.sh",
                "060-k3s.sh",
            }
            # only the bootstrap node takes its identity from the Secret
            env = {v["name"] for v in kubo.get("env", [])}
            assert ("BOOTSTRAP_IDENTITY_DIR" in env) == (workload["metadata"]["name"] == "bootstrap")


def test_the_kubo_init_script_is_the_images_one(rendered: dict[str, list[Manifest]]) -> None:
    script = (ROOT / "docker" / "kubo" / "container-init.d" / "050-learning-tangle.sh").read_text()
    for objects in rendered.values():
        assert one(objects, "ConfigMap", "kubo-init")["data"]["050-learning-tangle.sh"] == script


def test_the_rpc_port_is_in_no_service_port_or_policy(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        for o in objects:
            if o["kind"] == "Service":
                ports = {p["port"] for p in o["spec"]["ports"]} | {
                    p.get("targetPort") for p in o["spec"]["ports"]
                }
                assert RPC_PORT not in ports, o["metadata"]["name"]
            if o["kind"] == "NetworkPolicy":
                for rule in o["spec"].get("ingress", []):
                    assert rule.get("ports"), f"{o['metadata']['name']} admits every port"
                    assert all(p["port"] != RPC_PORT for p in rule["ports"])
        for workload, _, spec in pod_specs(objects):
            for c in containers(spec):
                assert all(p["containerPort"] != RPC_PORT for p in c.get("ports", [])), workload["metadata"][
                    "name"
                ]


def test_private_swarm_only_where_asked(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, objects in rendered.items():
        for workload, spec, kubo in _kubo_containers(objects):
            env = {v["name"]: v.get("value") for v in kubo.get("env", [])}
            secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
            private = any(name.startswith("swarm-key-") for name in secrets)
            assert private == (overlay == "pi-lab-private") == ("SWARM_KEY_FILE" in env), workload
            assert (env.get("LIBP2P_FORCE_PNET") == "1") == private
            assert (env.get("IPFS_PROFILE") == "lowpower") == overlay.startswith("pi-lab")


def test_network_policies_deny_by_default(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        deny = one(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
        peer = one(objects, "NetworkPolicy", "peer")["spec"]
        swarm, http = peer["ingress"]
        assert {p["port"] for p in swarm["ports"]} == {4001}
        assert {s["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for s in swarm["from"]} == {
            "peer",
            "bootstrap",
        }
        assert {p["port"] for p in http["ports"]} == {8000}


# --- monitoring ------------------------------------------------------------------------------------------
SCRAPE = "learning-tangle.io/scrape-"


def test_prometheus_annotations_on_peers_only(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        annotated = {
            w["metadata"]["name"]: {k for k in meta.get("annotations", {}) if k.startswith(SCRAPE)}
            for w, meta, _ in pod_specs(objects)
        }
        assert annotated.pop("peer") == {SCRAPE + "peer", SCRAPE + "kubo"}  # kubo: through the peer
        assert annotated.pop("node-exporter") == {SCRAPE + "node-exporter"}
        assert not any(annotated.values()), annotated


def _prometheus_config(objects: list[Manifest]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        one(objects, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    )
    return config


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' keep and replace relabelling (enough for our configs); None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "replace" and match:
            labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$", "\\"))
    return labels


def _discovered(meta: Manifest) -> dict[str, str]:
    """The labels Kubernetes pod discovery gives a running pod with this template's metadata."""
    labels = {"__meta_kubernetes_pod_ip": "10.42.0.7", "__meta_kubernetes_pod_phase": "Running"}
    for key, value in meta.get("annotations", {}).items():
        labels["__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return labels


def test_prometheus_scrapes_peers_and_kubo_through_the_peer_port(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        jobs = {job["job_name"]: job for job in _prometheus_config(objects)["scrape_configs"]}
        for name in ("peer", "kubo", "node-exporter"):
            (sd,) = jobs[name]["kubernetes_sd_configs"]
            assert sd["role"] == "pod"
            assert sd["namespaces"]["names"] == [NAMESPACE]
        scraped: dict[str, set[tuple[str, str]]] = {}
        for workload, meta, _ in pod_specs(objects):
            for name in ("peer", "kubo", "node-exporter"):
                target = _relabel(jobs[name]["relabel_configs"], _discovered(meta))
                if target is not None:
                    path = jobs[name].get("metrics_path", "/metrics")
                    scraped.setdefault(workload["metadata"]["name"], set()).add((target["__address__"], path))
        # kubo's metrics come through the peer's read-only pass-through, never from its RPC port
        assert scraped.pop("peer") == {("10.42.0.7:8000", "/metrics"), ("10.42.0.7:8000", "/metrics/ipfs")}
        assert scraped.pop("node-exporter") == {("10.42.0.7:9100", "/metrics")}
        assert scraped == {}


def test_promtool_checks_the_stacks_prometheus_config(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: scripts/install-test-deps.sh installs Debian's prometheus")
        pytest.skip("promtool is missing (Debian's prometheus package)")
    for overlay, objects in rendered.items():
        config = _prometheus_config(objects)
        # Debian's promtool is built without Kubernetes discovery: swap it for empty static configs
        swapped = 0
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = []
                swapped += 1
        assert swapped == 3
        rules = one(objects, "ConfigMap", "prometheus-rules")["data"]
        (tmp_path / overlay / "rules").mkdir(parents=True)
        for name, text in rules.items():
            (tmp_path / overlay / "rules" / name).write_text(text)
        assert config["rule_files"] == ["rules/*.yml"]  # relative to the config, as mounted in the pod
        (tmp_path / overlay / "prometheus.yml").write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [promtool, "check", "config", str(tmp_path / overlay / "prometheus.yml")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{len(rules)} rule files found" in result.stdout + result.stderr


def test_prometheus_mounts_match_its_config(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        deployment = one(objects, "Deployment", "prometheus")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "--config.file=/etc/prometheus/prometheus.yml" in container["args"]
        assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/rules"} <= mounts
        role = one(objects, "Role", "prometheus")
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
        ]
        assert not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_grafana_is_provisioned_from_the_monitoring_files(rendered: dict[str, list[Manifest]]) -> None:
    monitoring = ROOT / "k3s" / "monitoring"
    for objects in rendered.values():
        dashboards = one(objects, "ConfigMap", "grafana-dashboards")["data"]
        assert dashboards == {
            p.name: p.read_text() for p in (monitoring / "grafana" / "dashboards").glob("*.json")
        }
        providers = yaml.safe_load(
            one(objects, "ConfigMap", "grafana-dashboard-providers")["data"]["learning-tangle.yml"]
        )
        datasources = yaml.safe_load(
            one(objects, "ConfigMap", "grafana-datasources")["data"]["prometheus.yml"]
        )
        (container,) = one(objects, "Deployment", "grafana")["spec"]["template"]["spec"]["containers"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert providers["providers"][0]["options"]["path"] in mounts
        assert {"/etc/grafana/provisioning/datasources", "/etc/grafana/provisioning/dashboards"} <= mounts
        # the datasource's host is the Prometheus Service
        assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
        assert one(objects, "Service", "prometheus")["spec"]["ports"][0]["port"] == 9090
        env = {v["name"]: v["value"] for v in container["env"]}
        assert "GF_SECURITY_ADMIN_PASSWORD" not in env
        assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/etc/grafana-admin/")
        # kubectl apply keeps a copy of each object in an annotation of at most 256 KiB
        for o in objects:
            if o["kind"] == "ConfigMap":
                assert len(yaml.safe_dump(o)) < 200_000, o["metadata"]["name"]


def test_services_and_ports(rendered: dict[str, list[Manifest]]) -> None:
    for objects in rendered.values():
        services = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
        assert services["peers"]["clusterIP"] == "None"
        assert [p["port"] for p in services["peers"]["ports"]] == [8000]
        assert one(objects, "StatefulSet", "peer")["spec"]["serviceName"] == "peers"
        assert services["visualizer"]["type"] == "LoadBalancer"
        assert services["visualizer"]["ports"][0]["port"] == 9000
        assert services["grafana"]["type"] == "LoadBalancer"
        assert services["grafana"]["ports"][0]["port"] == 3000
        assert services["prometheus"].get("type", "ClusterIP") == "ClusterIP"
        assert {p["port"] for p in services["bootstrap"]["ports"]} == {4001}
        (viz,) = one(objects, "Deployment", "visualizer")["spec"]["template"]["spec"]["containers"]
        assert {"name": "VIZ_DNS", "value": "peers"} in viz["env"]


# --- secrets ---------------------------------------------------------------------------------------------
def _tracked_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / n for n in names.decode().split("\0") if n and (ROOT / n).is_file()]


def test_no_secret_in_the_repository(rendered: dict[str, list[Manifest]], stack: Path) -> None:
    values: list[str] = []
    for objects in rendered.values():
        for o in objects:
            if o["kind"] == "Secret":
                values += [base64.b64decode(v).decode().strip() for v in o["data"].values()]
    assert len(values) == 4 * len(rendered)
    tracked = _tracked_files()
    for path in tracked:
        text = path.read_text(errors="replace")
        assert not any(value in text for value in values), path
        if path.suffix in {".yaml", ".yml"} and "k3s" in path.parts:
            for doc in yaml.safe_load_all(text):
                assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path
    # the files the script writes into k3s/secrets are ignored by git
    names = [
        p.name for p in (stack / "secrets").iterdir() if p.name not in {"kustomization.yaml", ".gitignore"}
    ]
    assert len(names) == 4
    ignored = subprocess.run(
        ["git", "check-ignore", *[f"k3s/secrets/{n}" for n in names]],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert sorted(ignored.stdout.split()) == sorted(f"k3s/secrets/{n}" for n in names)


def test_generate_secrets(tmp_path: Path) -> None:
    script = ROOT / "k3s" / "generate-secrets.sh"
    target = tmp_path / "secrets"
    first = subprocess.run([script, target], capture_output=True, text=True, check=True)
    files = {p.name: p for p in target.iterdir()}
    assert set(files) == {"bootstrap-peer-id", "bootstrap-private-key", "grafana-admin-password", "swarm.key"}
    assert target.stat().st_mode & 0o777 == 0o700
    values = {name: p.read_text() for name, p in files.items()}
    for name, path in files.items():
        assert path.stat().st_mode & 0o777 == 0o600, name
        assert values[name].strip() not in first.stdout + first.stderr, name
    assert re.fullmatch(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}", values["bootstrap-peer-id"])
    key = base64.b64decode(values["bootstrap-private-key"])
    assert key[:4] == b"\x08\x01\x12\x40"
    assert len(key) == 68
    assert re.fullmatch(r"/key/swarm/psk/1\.0\.0/\n/base16/\n[0-9a-f]{64}\n", values["swarm.key"])
    assert len(values["grafana-admin-password"]) == 32
    # again: everything kept; --force: everything new
    again = subprocess.run([script, target], capture_output=True, text=True, check=True)
    assert again.stdout.count("kept ") == 4
    assert {name: p.read_text() for name, p in files.items()} == values
    subprocess.run([script, "--force", target], capture_output=True, check=True)
    assert all(files[name].read_text() != value for name, value in values.items())


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "usage:"), (["a", "b"], "usage:"), (["--bogus", "x"], "usage:")],
)
def test_generate_secrets_bad_usage(args: list[str], message: str) -> None:
    result = subprocess.run([ROOT / "k3s" / "generate-secrets.sh", *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr


def test_generate_secrets_refuses_a_malformed_file(tmp_path: Path) -> None:
    script = ROOT / "k3s" / "generate-secrets.sh"
    subprocess.run([script, tmp_path], capture_output=True, check=True)
    (tmp_path / "bootstrap-peer-id").write_text("not a peer id")
    result = subprocess.run([script, tmp_path], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"generate-secrets: {tmp_path}/bootstrap-peer-id is malformed (remove it or pass --force)"
    )
    (tmp_path / "bootstrap-peer-id").unlink()
    result = subprocess.run([script, tmp_path], capture_output=True, text=True)
    assert result.returncode == 1
    assert "only one of bootstrap-peer-id and bootstrap-private-key" in result.stderr


def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    scripts = [
        ROOT / "k3s" / "generate-secrets.sh",
        ROOT / "scripts" / "build-kustomize.sh",
        *sorted((ROOT / "k3s" / "base" / "kubo").glob("*.sh")),
    ]
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
