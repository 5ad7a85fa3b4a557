"""Running the repository's playbooks against an emulated lab: the inventory folder, the airgap folder with
the k3s stand-in, small per-arch image archives, a vault password, and ansible-playbook runs."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .hosts import REPO, EmulatedLab

STANDIN = Path(__file__).with_name("k3s_standin.py")
# release file name -> the architecture the test's image archives are labelled with
K3S_BINARIES = {"amd64": "k3s", "arm64": "k3s-arm64", "armv7": "k3s-armhf"}
K3S_AIRGAP_IMAGES = {"amd64": "amd64", "arm64": "arm64", "armv7": "arm"}
IMAGE_ARCH = {"amd64": "amd64", "arm64": "arm64", "armv7": "arm"}
IMAGE_NAMES = ("peer", "visualizer")
VERSION = "0.1.0"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        return {
            host: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
            for host, ok, ch, un, fa in RECAP.findall(self.output)
        }


def image_archive(path: Path, name: str, arch: str) -> None:
    """A minimal docker-archive (manifest.json, config, one empty layer) as `docker save` writes it, labelled
    with its architecture; small stand-ins for the images issue's archives (which take minutes to build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": [f"learning-tangle/{name}:{VERSION}"], "Layers": []}]
    )
    with tarfile.open(path, "w") as tar:
        for member, text in (("manifest.json", manifest), ("config.json", config)):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class LabRunner:
    """The controller side of one emulated lab: its folders, and ansible-playbook runs against it."""

    def __init__(self, lab: EmulatedLab, workdir: Path, stack_repo: Path = REPO) -> None:
        self.lab = lab
        self.workdir = workdir
        self.inventory = workdir / "inventory"
        self.airgap = workdir / "airgap"
        self.images = workdir / "images"
        self.kubeconfig = workdir / "kubeconfig.yaml"
        self.secrets_file = workdir / "inventory" / "stack-secrets.vault.yml"
        self.vault_password = workdir / "vault-password"
        self.log = workdir / "ansible.log"
        self.stack_repo = stack_repo
        shutil.copytree(REPO / "inventories" / "test", self.inventory, dirs_exist_ok=True)
        lab.write_inventory(self.inventory / "hosts.yml")
        self.airgap.mkdir(parents=True, exist_ok=True)
        for arch, binary in K3S_BINARIES.items():
            text = STANDIN.read_text().replace('STANDIN_NAME = "k3s"', f'STANDIN_NAME = "{binary}"', 1)
            (self.airgap / binary).write_text(text)
            (self.airgap / binary).chmod(0o755)
            image_archive(self.airgap / f"k3s-airgap-images-{K3S_AIRGAP_IMAGES[arch]}.tar", "pause", arch)
            for name in IMAGE_NAMES:
                image_archive(
                    self.images / arch / f"learning-tangle-{name}-{VERSION}.tar", name, IMAGE_ARCH[arch]
                )
        self.vault_password.write_text("emulated-lab-vault-password\n")
        self.vault_password.chmod(0o600)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_VAULT_PASSWORD_FILE=str(self.vault_password),
            ANSIBLE_LOG_PATH=str(self.log),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_LOCAL_TEMP=str(self.workdir / "ansible-tmp"),
            PATH=f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}",
        )
        return env

    def playbook(self, playbook: str, *extra: str) -> PlaybookRun:
        extra_vars = {
            "k3s_install_airgap_dir": str(self.airgap),
            "k3s_server_kubeconfig_dest": str(self.kubeconfig),
            "images_archive_dir": str(self.images),
            "stack_secrets_file": str(self.secrets_file),
            "stack_repo_dir": str(self.stack_repo),
        }
        command = [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(self.inventory / "hosts.yml"),
            "-e",
            json.dumps(extra_vars),
            *extra,
            str(REPO / playbook),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env(), cwd=REPO, check=False
        )
        return PlaybookRun(result.returncode, result.stdout + result.stderr)
