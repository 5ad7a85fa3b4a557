"""`site.yml` on a mixed emulated lab over real SSH: two Debian amd64 servers and two Raspberry Pi OS-like
agents under qemu-user, a 64-bit one (arm64) and a 32-bit one (armhf userland, userspace bits 32). On demand
only (``make test-qemu``, marker ``qemu``): the arm root filesystems take several minutes each to build once
(cached).

Checks what only arm hosts show: the cgroup flags on the single cmdline.txt line once each (and gone after
reset), the sysctl files, the k3s binary and the images chosen by the userland (k3s-armhf and arm images on
the armhf host), the agents joined with the first server's token and address, the stack rendered on the
first server valid against the Kubernetes schemas, and the same idempotence, token and reset checks as the
amd64 test. Then `upgrade.yml` with a new k3s in the airgap folder: servers one at a time, then the agents
one at a time. k3s is the stand-in tests/emulated/k3s_standin.py (see test_site.py): its `kubectl drain`,
`kubectl wait --for=condition=Ready` and `kubectl uncordon` only record their call and succeed, so the
upgrade test checks the order of the calls and the restarts on the new binary, not what a real cluster
would do in between.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .hosts import PI_CMDLINE, EmulatedHost, EmulatedLab, HostSpec
from .lab import LabRunner, PlaybookRun
from .test_hosts import ansible_setup

pytestmark = [pytest.mark.emulated, pytest.mark.qemu, pytest.mark.timeout(7200)]

OLD_K3S, NEW_K3S = "v1.34.1+k3s1", "v1.34.2+k3s1"
FLAGS = ("cgroup_memory=1", "cgroup_enable=memory", "cgroup_enable=cpuset")
EXPECTED = {  # host -> (k3s release file, image architecture, airgap archive)
    "server1": ("k3s", "amd64", "k3s-airgap-images-amd64.tar"),
    "server2": ("k3s", "amd64", "k3s-airgap-images-amd64.tar"),
    "pi64": ("k3s-arm64", "arm64", "k3s-airgap-images-arm64.tar"),
    "pi32": ("k3s-armhf", "arm", "k3s-airgap-images-arm.tar"),
}


@dataclass
class MixedLab:
    lab: EmulatedLab
    runner: LabRunner
    before: dict[str, set[str]]
    first: PlaybookRun
    second: PlaybookRun
    upgrade: PlaybookRun
    upgrade_started: float


def _files(host: EmulatedHost) -> set[str]:
    return {
        p for p in host.files(("/etc", "/usr/local", "/var/lib", "/opt", "/boot")) if "/.ansible" not in p
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedLab]:
    specs = [
        HostSpec("server1", groups=("server",)),
        HostSpec("server2", groups=("server",)),
        HostSpec("pi64", arch="arm64", raspberry_pi=True, groups=("agent",), user="pi"),
        HostSpec("pi32", arch="armhf", raspberry_pi=True, groups=("agent",), user="pi"),
    ]
    workdir = tmp_path_factory.mktemp("mixed")
    with EmulatedLab(specs, workdir / "lab", start_timeout=600) as lab:
        runner = LabRunner(lab, workdir)
        before = {h.name: _files(h) for h in lab.hosts}
        first = runner.playbook("site.yml", "--diff", "-v")
        second = runner.playbook("site.yml", "--diff", "-v") if first.returncode == 0 else first
        # a new k3s release in the airgap folder (the stand-in with another version), then upgrade.yml
        for binary in {b for b, _, _ in EXPECTED.values()}:
            path = runner.airgap / binary
            path.write_text(path.read_text().replace(f'VERSION = "{OLD_K3S}"', f'VERSION = "{NEW_K3S}"', 1))
        upgrade_started = time.time()
        upgrade = runner.playbook("upgrade.yml", "-v") if second.returncode == 0 else second
        yield MixedLab(lab, runner, before, first, second, upgrade, upgrade_started)


def _calls(host: EmulatedHost) -> list[dict[str, Any]]:
    return [json.loads(line) for line in host.read("/var/log/k3s-standin.jsonl").splitlines() if line]


def test_converges_and_second_run_changes_nothing(mixed: MixedLab) -> None:
    assert mixed.first.returncode == 0, mixed.first.output[-6000:]
    assert mixed.second.returncode == 0, mixed.second.output[-6000:]
    assert {h: r["changed"] for h, r in mixed.second.recap().items()} == dict.fromkeys(EXPECTED, 0)


def test_sysctls_for_many_connections(mixed: MixedLab) -> None:
    for name in EXPECTED:
        sysctl = mixed.lab[name].read("/etc/sysctl.d/90-learning-tangle.conf")
        assert "net.ipv4.neigh.default.gc_thresh3 = 16384" in sysctl, name
        assert "fs.inotify.max_user_instances = 8192" in sysctl, name
        assert "fs.file-max = 1048576" in sysctl, name


def test_stack_rendered_on_the_first_server_is_valid(mixed: MixedLab, tmp_path: Path) -> None:
    from stack.render import one

    objects = mixed.lab["server1"].stack(tmp_path)
    assert one(objects, "StatefulSet", "peer")["spec"]["replicas"] == 3
    assert not mixed.lab["server2"].exists("/var/lib/learning-tangle/stack")


def test_armhf_userland_reports_32_bits(mixed: MixedLab) -> None:
    facts = ansible_setup(mixed.runner.inventory / "hosts.yml", "pi32", "ansible_userspace_bits")
    assert facts["ansible_userspace_bits"] == "32"


def test_cmdline_flags_once_on_the_single_line(mixed: MixedLab) -> None:
    for name in ("pi64", "pi32"):
        text = mixed.lab[name].read("/boot/firmware/cmdline.txt")
        assert text.count("\n") == 1, text
        words = text.split()
        assert words[: len(PI_CMDLINE.split())] == PI_CMDLINE.split()
        for flag in FLAGS:
            assert words.count(flag) == 1, (name, text)
    assert not mixed.lab["server1"].exists("/boot/firmware/cmdline.txt")


def test_binaries_and_images_follow_the_userland(mixed: MixedLab) -> None:
    for name, (binary, arch, airgap) in EXPECTED.items():
        host = mixed.lab[name]
        assert {c["binary"] for c in _calls(host)} == {binary}, name
        images = json.loads(host.read("/var/lib/rancher/k3s/agent/containerd/standin-images.json"))
        assert {i["architecture"] for i in images.values()} == {arch}, name
        assert len(images) == 2
        assert host.exec("ls /var/lib/rancher/k3s/agent/images").stdout.split() == [airgap]


def test_agents_join_the_first_server_with_its_token(mixed: MixedLab) -> None:
    server = yaml.safe_load(mixed.lab["server1"].read("/etc/rancher/k3s/config.yaml"))
    for name in ("pi64", "pi32"):
        host = mixed.lab[name]
        agent = yaml.safe_load(host.read("/etc/rancher/k3s/config.yaml"))
        assert agent["server"] == f"https://{server['node-ip']}:6443"
        assert agent["token"] == server["token"]
        assert agent["node-name"] == name
        assert host.exec("systemctl is-active k3s-agent", check=False).stdout.strip() == "active"
        assert ["agent"] in [c["argv"] for c in _calls(host)]
    for text in (mixed.first.output, mixed.second.output, mixed.runner.log.read_text()):
        assert server["token"] not in text


def test_upgrade_servers_one_at_a_time_then_agents(mixed: MixedLab) -> None:
    assert mixed.upgrade.returncode == 0, mixed.upgrade.output[-6000:]
    events: list[tuple[float, str, str]] = []  # (time, what, node)
    for host in mixed.lab.hosts:
        for call in _calls(host):
            if call["time"] < mixed.upgrade_started:
                continue
            argv = call["argv"]
            if argv[:1] in (["server"], ["agent"]):
                events.append((call["time"], "restart", host.name))
            elif argv[:2] in (["kubectl", "drain"], ["kubectl", "uncordon"]):
                events.append((call["time"], argv[1], argv[2]))
    order = [(what, node) for _, what, node in sorted(events)]
    expected = [
        (what, node)
        for node in ("server1", "server2", "pi64", "pi32")
        for what in ("drain", "restart", "uncordon")
    ]
    assert order == expected
    for name in EXPECTED:
        version = mixed.lab[name].exec("/usr/local/bin/k3s --version").stdout
        assert NEW_K3S in version, (name, version)


def test_reset_restores_every_host(mixed: MixedLab, tmp_path: Path) -> None:
    run = mixed.runner.playbook("reset.yml", "-v")
    assert run.returncode == 0, run.output[-6000:]
    for host in mixed.lab.hosts:
        assert sorted(_files(host) - mixed.before[host.name]) == [], host.name
    for name in ("pi64", "pi32"):
        assert mixed.lab[name].read("/boot/firmware/cmdline.txt") == PI_CMDLINE
