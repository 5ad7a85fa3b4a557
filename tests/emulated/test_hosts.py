"""The emulated hosts themselves: real sshd, host keys checked, the facts a Pi role relies on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .hosts import REPO, EmulatedLab


def ansible_setup(inventory: Path, host: str, filter_: str) -> dict[str, object]:
    result = subprocess.run(
        [
            str(REPO / ".venv/bin/ansible"),
            "-i",
            str(inventory),
            host,
            "-m",
            "ansible.builtin.setup",
            "-a",
            f"filter={filter_}",
            "-o",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])["ansible_facts"]


def test_ansible_reaches_amd64_host_over_ssh(emulated_amd64: EmulatedLab, tmp_path: Path) -> None:
    inventory = emulated_amd64.write_inventory(tmp_path / "hosts.yml")
    facts = ansible_setup(inventory, "server1", "ansible_*")
    assert facts["ansible_architecture"] == "x86_64"
    assert facts["ansible_userspace_bits"] == "64"
    assert facts["ansible_distribution"] == "Debian"
    assert facts["ansible_service_mgr"] == "systemd"


def test_host_key_is_checked(emulated_amd64: EmulatedLab, tmp_path: Path) -> None:
    host = emulated_amd64["server1"]
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(
        f"[{host.address}]:{host.port} " + " ".join(Path(f"{other}.pub").read_text().split()[:2])
    )
    ok = subprocess.run([*emulated_amd64.ssh_command(host), "true"], capture_output=True, check=False)
    assert ok.returncode == 0, ok.stderr
    cmd = [c.replace(str(emulated_amd64.known_hosts), str(wrong)) for c in emulated_amd64.ssh_command(host)]
    bad = subprocess.run([*cmd, "true"], capture_output=True, check=False)
    assert bad.returncode != 0
