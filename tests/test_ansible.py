"""The cluster automation's static checks and its pure logic, without any lab host: yamllint, ansible-lint
(production profile, offline), --syntax-check against both example inventories, every role variable declared
in meta/argument_specs.yml and documented in the inventories, and two roles run on localhost against files in
a temporary folder (the architecture choice and the Raspberry Pi kernel command line)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
ANSIBLE_TREE = ["site.yml", "reset.yml", "upgrade.yml", "playbooks", "roles", "inventories", ".ansible-lint"]
CHOICE = "{{ node_arch_name }} {{ node_arch_k3s_binary }} {{ node_arch_debian }}"
# plays on localhost run with this venv's python (interpreter discovery could pick another one)
LOCAL = (
    str(BIN / "ansible-playbook"),
    "-i",
    "localhost,",
    "-c",
    "local",
    "-e",
    f"ansible_python_interpreter={BIN / 'python'}",
)
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir())


def run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, check=False)


def test_yamllint() -> None:
    result = run(str(BIN / "yamllint"), "-s", *ANSIBLE_TREE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile() -> None:
    result = run(str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


@pytest.mark.parametrize("inventory", ["pi-lab", "x64"])
@pytest.mark.parametrize("playbook", ["site.yml", "reset.yml", "upgrade.yml"])
def test_syntax_check(inventory: str, playbook: str) -> None:
    result = run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", f"inventories/{inventory}", playbook)
    assert result.returncode == 0, result.stdout + result.stderr


def _defaults(role: str) -> dict[str, object]:
    path = REPO / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


@pytest.mark.parametrize("role", ROLES)
def test_every_role_variable_is_declared_prefixed_and_documented(role: str) -> None:
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"].get("options", {})
    defaults = _defaults(role)
    assert set(defaults) == set(options), f"{role}: defaults and argument_specs differ"
    for name in defaults:
        assert name.startswith(f"{role}_"), f"{role}: {name} lacks the role prefix"
        for inventory in ("pi-lab", "x64"):
            text = (REPO / "inventories" / inventory / "group_vars" / "all.yml").read_text()
            assert re.search(rf"^#? ?{name}:", text, re.MULTILINE), f"{name} is not documented in {inventory}"


def _play(tmp_path: Path, role: str, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"Run {role} on localhost",
                    "hosts": "localhost",
                    "gather_facts": True,
                    "roles": [{"role": role}],
                    "vars": variables,
                }
            ]
        )
    )
    return run(*LOCAL, str(playbook))


@pytest.mark.parametrize(
    ("machine", "bits", "expected"),
    [
        ("x86_64", "64", "amd64 k3s amd64"),
        ("aarch64", "64", "arm64 k3s-arm64 arm64"),
        # 32-bit Raspberry Pi OS on a Pi 4/5: a 64-bit kernel, an armhf userland
        ("aarch64", "32", "armv7 k3s-armhf armhf"),
        ("armv7l", "32", "armv7 k3s-armhf armhf"),
    ],
)
def test_node_arch_follows_the_userland(tmp_path: Path, machine: str, bits: str, expected: str) -> None:
    out = tmp_path / "arch.txt"
    playbook = tmp_path / "arch.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Architecture",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {"node_arch_machine": machine, "node_arch_userspace_bits": bits},
                    "roles": [{"role": "node_arch"}],
                    "post_tasks": [
                        {
                            "name": "Write the choice",
                            "ansible.builtin.copy": {
                                "content": CHOICE,
                                "dest": str(out),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    result = run(*LOCAL, str(playbook))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_text() == expected


def test_node_arch_refuses_32_bit_x86(tmp_path: Path) -> None:
    playbook = tmp_path / "arch.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Architecture",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {"node_arch_machine": "i686", "node_arch_userspace_bits": "32"},
                    "roles": [{"role": "node_arch"}],
                }
            ]
        )
    )
    result = run(*LOCAL, str(playbook))
    assert result.returncode != 0
    assert "node_arch_machine=i686" in result.stdout


def test_raspberrypi_cmdline_flags_once_and_idempotent(tmp_path: Path) -> None:
    """The role edits the single line of cmdline.txt: flags appended once, nothing else touched, a second run
    changes nothing; a board that is not a Pi is left alone."""
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    cmdline = tmp_path / "cmdline.txt"
    original = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootwait cgroup_enable=cpuset\n"
    cmdline.write_text(original)
    variables = {
        "raspberrypi_model_file": str(model),
        "raspberrypi_cmdline_files": [str(tmp_path / "missing.txt"), str(cmdline)],
        "raspberrypi_reboot": False,
    }
    first = _play(tmp_path, "raspberrypi", variables)
    assert first.returncode == 0, first.stdout + first.stderr
    text = cmdline.read_text()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    words = text.split()
    assert words[: len(original.split())] == original.split()
    for flag in ("cgroup_memory=1", "cgroup_enable=memory", "cgroup_enable=cpuset"):
        assert words.count(flag) == 1, text
    assert "a reboot" in first.stdout  # raspberrypi_reboot false: says so instead of rebooting
    second = _play(tmp_path, "raspberrypi", variables)
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s", second.stdout), second.stdout
    assert cmdline.read_text() == text

    model.write_bytes(b"Generic x86 board\0")
    cmdline.write_text(original)
    third = _play(tmp_path, "raspberrypi", variables)
    assert third.returncode == 0, third.stdout
    assert cmdline.read_text() == original
