"""`site.yml` on an emulated Debian amd64 lab host over real SSH: it converges, a second run changes nothing,
the result is what the roles promise, the token never shows, and `reset.yml` leaves no file of ours behind.

The host is a podman container with a booted systemd and a real sshd (tests/emulated/hosts.py). What cannot
run here, said plainly: k3s itself (no binary can be obtained) is the stand-in tests/emulated/k3s_standin.py,
installed from the airgap folder; it records its arguments and writes the files k3s would. The inventory
switches off what a container cannot do (inventories/test/README.md);
test_what_the_emulated_lab_does_not_apply lists those tasks.
One check-mode run, one converge, one idempotence run and one reset.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .hosts import REPO, EmulatedHost, EmulatedLab
from .lab import LabRunner, PlaybookRun

# one check run, two converges and a reset over SSH: minutes, more on a busy machine
pytestmark = [pytest.mark.emulated, pytest.mark.timeout(2400)]

# Tasks the test inventory turns off, by the variable that does it (inventories/test/README.md)
NOT_APPLIED_HERE = {
    "common : Load the kernel modules now": "common_apply_kernel_settings",
    "docker : Enable and start Docker": "docker_manage_service",
    "common : Keep time with systemd-timesyncd": "a container keeps the host's clock",
}


@dataclass
class Converged:
    runner: LabRunner
    host: EmulatedHost
    before: set[str]
    after_check: set[str]
    check: PlaybookRun
    first: PlaybookRun
    second: PlaybookRun


def files_of_ours(host: EmulatedHost) -> set[str]:
    return {p for p in host.files() if "/.ansible" not in p}


@pytest.fixture(scope="module")
def converged(emulated_amd64: EmulatedLab, tmp_path_factory: pytest.TempPathFactory) -> Converged:
    if not (REPO / "k3s" / "generate-secrets.sh").exists():
        pytest.fail("k3s/ (the k3s issue's manifests and generate-secrets.sh) is missing from the checkout")
    runner = LabRunner(emulated_amd64, tmp_path_factory.mktemp("site"))
    host = emulated_amd64["server1"]
    before = files_of_ours(host)
    # check mode on the clean host first: it must not fail (a recurring problem of such playbooks)
    check = runner.playbook("site.yml", "--check", "--diff", "-v")
    after_check = files_of_ours(host)
    first = runner.playbook("site.yml", "--diff", "-v")
    second = runner.playbook("site.yml", "--diff", "-v") if first.returncode == 0 else first
    return Converged(runner, host, before, after_check, check, first, second)


def test_check_mode_on_a_clean_host(converged: Converged) -> None:
    """`site.yml --check` before anything is installed runs through and changes nothing on the host."""
    assert converged.check.returncode == 0, converged.check.output[-5000:]
    assert converged.check.recap()["server1"]["failed"] == 0
    assert converged.check.recap()["server1"]["changed"] > 0  # it reports what it would do
    assert sorted(converged.after_check ^ converged.before) == []


def test_site_converges(converged: Converged) -> None:
    assert converged.first.returncode == 0, converged.first.output[-5000:]
    assert converged.first.recap()["server1"]["failed"] == 0


def test_second_run_changes_nothing(converged: Converged) -> None:
    assert converged.second.returncode == 0, converged.second.output[-5000:]
    recap = converged.second.recap()
    assert recap["server1"]["changed"] == 0, _changed_tasks(converged.second.output)


def test_what_the_emulated_lab_does_not_apply(converged: Converged) -> None:
    """The tasks a container cannot run are skipped, and only those: each is named here and in the README."""
    skipped = _skipped_tasks(converged.first.output)
    for task in NOT_APPLIED_HERE:
        assert task in skipped, f"{task} was expected to be skipped in the emulated lab"
    readme = (REPO / "inventories" / "test" / "README.md").read_text()
    for variable in ("common_apply_kernel_settings", "docker_manage_service", "raspberrypi_reboot"):
        assert variable in readme


def test_kernel_settings_files(converged: Converged) -> None:
    sysctl = converged.host.read("/etc/sysctl.d/90-learning-tangle.conf")
    assert "net.ipv4.neigh.default.gc_thresh3 = 16384" in sysctl
    assert "fs.inotify.max_user_instances = 8192" in sysctl
    assert "fs.file-max = 1048576" in sysctl
    modules = converged.host.read("/etc/modules-load.d/learning-tangle.conf").split()
    assert {"overlay", "br_netfilter"} <= set(modules)


def test_k3s_config_and_service(converged: Converged) -> None:
    host = converged.host
    config = yaml.safe_load(host.read("/etc/rancher/k3s/config.yaml"))
    address = host.exec(
        "ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1"
    ).stdout.strip()
    assert config["node-ip"] == address
    assert config["node-name"] == "server1"
    assert config["tls-san"] == [address]
    assert config["prefer-bundled-bin"] is True
    assert len(config["token"]) == 48
    assert host.exec("stat -c %a /etc/rancher/k3s/config.yaml").stdout.strip() == "600"
    # the real systemd runs the unit the role wrote, with the stand-in as its binary
    assert host.exec("systemctl is-active k3s", check=False).stdout.strip() == "active"
    assert "ExecStart=/usr/local/bin/k3s server" in host.read("/etc/systemd/system/k3s.service")
    calls = _standin_calls(host)
    assert {"binary": "k3s", "argv": ["server"]} in [
        {"binary": c["binary"], "argv": c["argv"]} for c in calls
    ]


def test_token_never_in_any_log(converged: Converged) -> None:
    token = yaml.safe_load(converged.host.read("/etc/rancher/k3s/config.yaml"))["token"]
    logs = {
        "first run": converged.first.output,
        "second run": converged.second.output,
        "ansible.log": converged.runner.log.read_text(),
        "stand-in calls": converged.host.read("/var/log/k3s-standin.jsonl"),
        "journal": converged.host.exec("journalctl --no-pager -o cat", check=False).stdout,
    }
    for name, text in logs.items():
        assert text, f"{name} is empty: nothing was checked"
        assert token not in text, f"the k3s token appears in the {name}"


def test_kubeconfig_fetched_to_the_controller(converged: Converged) -> None:
    kubeconfig = converged.runner.kubeconfig
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(kubeconfig.read_text())
    address = yaml.safe_load(converged.host.read("/etc/rancher/k3s/config.yaml"))["node-ip"]
    assert config["clusters"][0]["cluster"]["server"] == f"https://{address}:6443"


def test_images_imported_for_the_right_arch(converged: Converged) -> None:
    host = converged.host
    images = json.loads(host.read("/var/lib/rancher/k3s/agent/containerd/standin-images.json"))
    for name in ("peer", "visualizer"):
        image = images[f"docker.io/learning-tangle/{name}:0.1.0"]
        assert image["architecture"] == "amd64"
        assert image["archive"] == f"/var/lib/learning-tangle/images/learning-tangle-{name}-0.1.0.tar"
    airgap = host.exec("ls /var/lib/rancher/k3s/agent/images").stdout.split()
    assert airgap == ["k3s-airgap-images-amd64.tar"]
    imports = [c for c in _standin_calls(host) if c["argv"][:3] == ["ctr", "images", "import"]]
    assert len(imports) == 2  # once each, not again on the second run


def test_stack_rendered_with_the_inventory_values_and_valid(converged: Converged, tmp_path: Path) -> None:
    from stack.render import one

    objects = converged.host.stack(tmp_path)
    peers = one(objects, "StatefulSet", "peer")
    assert peers["spec"]["replicas"] == 3
    peer = next(c for c in peers["spec"]["template"]["spec"]["containers"] if c["name"] == "peer")
    assert {"name": "PEERS", "value": "3"} in peer["env"]
    assert peer["resources"]["limits"]["memory"] == "640Mi"
    config = one(objects, "ConfigMap", "peer-config")["data"]
    assert config["TRAINING_INTERVAL"] == "30"
    assert config["NUM_OF_SAMPLING_ROUND"] == "20"
    assert config["CONNECTION_PRUNING_HIGH"] == "40"
    # the Secrets come from the Vault file, which is encrypted on the controller
    vault = converged.runner.secrets_file.read_text()
    assert vault.startswith("$ANSIBLE_VAULT;")
    plain = subprocess.run(
        [str(REPO / ".venv/bin/ansible-vault"), "view", str(converged.runner.secrets_file)],
        capture_output=True,
        text=True,
        env=converged.runner.env(),
        check=True,
    ).stdout
    secrets = yaml.safe_load(plain)["stack_secrets"]
    assert secrets["grafana-admin-password"] not in vault
    grafana = one(objects, "Secret", "grafana-admin")["data"]["password"]
    assert base64.b64decode(grafana).decode() == secrets["grafana-admin-password"]
    applied = [c["argv"] for c in _standin_calls(converged.host) if c["argv"][:2] == ["kubectl", "apply"]]
    assert applied == [["kubectl", "apply", "-k", "/var/lib/learning-tangle/stack/lab"]]


def test_urls_printed(converged: Converged) -> None:
    assert "Visualizer (the live tangle): http://" in converged.first.output
    assert ":3000/" in converged.first.output


def test_reset_leaves_no_file_of_ours_behind(converged: Converged) -> None:
    run = converged.runner.playbook("reset.yml", "-v")
    assert run.returncode == 0, run.output[-5000:]
    after = files_of_ours(converged.host)
    assert sorted(after - converged.before) == []
    assert not converged.runner.kubeconfig.exists()
    assert converged.host.exec("systemctl is-active k3s", check=False).stdout.strip() != "active"


def _standin_calls(host: EmulatedHost) -> list[dict[str, Any]]:
    return [json.loads(line) for line in host.read("/var/log/k3s-standin.jsonl").splitlines() if line]


def _task_results(output: str) -> Iterator[tuple[str, str]]:
    task = ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith(("ok:", "changed:", "skipping:", "fatal:")):
            yield task, line.split(":", 1)[0]


def _changed_tasks(output: str) -> list[str]:
    return sorted({task for task, status in _task_results(output) if status == "changed"})


def _skipped_tasks(output: str) -> set[str]:
    return {task for task, status in _task_results(output) if status == "skipping"}
