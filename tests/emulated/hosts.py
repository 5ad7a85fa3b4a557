"""Emulated lab hosts: podman containers built from debootstrap root filesystems, reached over real SSH.

Each host is a container running a real ``sshd`` (under a booted systemd, or as ``sshd -D`` where systemd
cannot boot, e.g. under qemu), with a generated key in the lab user's ``authorized_keys``, passwordless sudo,
and port 22 published on a free 127.0.0.1 port. ``EmulatedLab.write_inventory`` writes an Ansible inventory
pointing at them (with a ``known_hosts`` file holding their real host keys, so host keys are checked), which
Fabric reads too. Raspberry Pi OS-like hosts carry a
``/boot/firmware/cmdline.txt`` and a device-tree model file (read through the ``raspberrypi_model_file``
variable, since ``/proc/device-tree`` cannot be faked in a container).

Used by the Ansible tests (``tests/emulated/``) and reusable by any test that needs lab machines::

    with EmulatedLab([HostSpec("server1")], prefix="lt-ansible-") as lab:
        lab.write_inventory(tmp_path / "hosts.yml")

Container and image names start with the prefix, so they never collide with other users of the podman store.
"""

from __future__ import annotations

import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from containers.podman import env as podman_env  # the project's podman settings, read once

REPO = Path(__file__).resolve().parents[2]
ROOTFS_SCRIPT = REPO / "scripts" / "rootfs-image.sh"

# What every emulated host has installed: sshd and python for Ansible, and the packages the roles would
# install, so a converge needs no network (the roles' apt tasks then report "ok").
ROOTFS_PACKAGES = (
    "openssh-server,python3,python3-apt,sudo,iproute2,procps,kmod,iptables,ca-certificates,curl,"
    "systemd,systemd-sysv,systemd-timesyncd,dbus,docker.io"
)
ARCHES = ("amd64", "arm64", "armhf")
# a Raspberry Pi OS Bookworm cmdline.txt as the imager writes it: one line
PI_CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait "
    "quiet splash plymouth.ignore-udev\n"
)
PI_MODELS = {"arm64": "Raspberry Pi 5 Model B Rev 1.0", "armhf": "Raspberry Pi 4 Model B Rev 1.4"}
PI_MODEL_FILE = "/etc/lt-emulated/device-tree-model"


class EmulationError(RuntimeError):
    """A host could not be built or started."""


def podman(*args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=podman_env(), input=input_text, check=False
    )
    if check and result.returncode != 0:
        raise EmulationError(f"podman {' '.join(args[:3])} failed: {result.stderr.strip()[-2000:]}")
    return result


def host_image(arch: str, prefix: str = "lt-ansible-") -> str:
    """Builds (once, cached by scripts/rootfs-image.sh) and names the podman image for one architecture."""
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}, not {arch!r}")
    name = f"localhost/{prefix}host:{arch}"
    result = subprocess.run(
        [str(ROOTFS_SCRIPT), name, arch, ROOTFS_PACKAGES], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise EmulationError(f"rootfs-image.sh {arch} failed: {result.stderr.strip()[-2000:]}")
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class HostSpec:
    """One lab machine: its inventory name, architecture, OS flavour and inventory groups."""

    name: str
    arch: str = "amd64"
    raspberry_pi: bool = False
    groups: tuple[str, ...] = ("server",)
    user: str = "lab"
    # "systemd": a booted systemd is PID 1 and starts sshd; "sshd": sshd -D is PID 1 (no service manager)
    init: str = "systemd"
    # podman volume specs (SRC:DEST[:ro]), e.g. this checkout's Python and kubo for a host that runs a peer
    mounts: tuple[str, ...] = ()


@dataclass
class EmulatedHost:
    spec: HostSpec
    container: str
    port: int
    address: str = "127.0.0.1"

    @property
    def name(self) -> str:
        return self.spec.name

    def exec(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs a shell command as root inside the host, bypassing SSH (for test setup and assertions)."""
        return podman("exec", self.container, "sh", "-c", command, check=check)

    def read(self, path: str) -> str:
        return self.exec(f"cat {shlex.quote(path)}").stdout

    def exists(self, path: str) -> bool:
        return self.exec(f"test -e {shlex.quote(path)}", check=False).returncode == 0

    def stack(self, workdir: Path) -> list[dict[str, Any]]:
        """The k3s stack the playbook rendered on this host, built with kustomize and validated strictly."""
        # the k3s issue's render helpers (tests/ is on sys.path under pytest's default import mode)
        import kubernetes_validate  # type: ignore[import-untyped]
        from stack.render import TARGET_KUBERNETES, build, documents, kustomize

        podman("cp", f"{self.container}:/var/lib/learning-tangle/stack", str(workdir / "stack"))
        objects = documents(build(kustomize(), workdir / "stack" / "lab"))
        for obj in objects:
            kubernetes_validate.validate(obj, TARGET_KUBERNETES, strict=True)
        return objects

    def files(
        self, roots: Sequence[str] = ("/etc", "/usr/local", "/var/lib", "/opt", "/root", "/home")
    ) -> set[str]:
        """Every path below the given roots (for before/after comparisons)."""
        quoted = " ".join(shlex.quote(r) for r in roots)
        out = self.exec(f"find {quoted} -xdev 2>/dev/null || true").stdout
        return {line for line in out.splitlines() if line}


@dataclass
class EmulatedLab:
    """Starts the hosts on enter, removes their containers on exit (also after a failure)."""

    specs: Sequence[HostSpec]
    workdir: Path
    prefix: str = "lt-ansible-"
    hosts: list[EmulatedHost] = field(default_factory=list)
    start_timeout: float = 120.0

    @property
    def key_file(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    def __enter__(self) -> EmulatedLab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "lt-emulated-lab",
                    "-f",
                    str(self.key_file),
                ],
                check=True,
            )
        try:
            for spec in self.specs:
                self.hosts.append(self._start(spec))
            for host in self.hosts:
                self._wait_for_ssh(host)
            self.known_hosts.write_text("".join(self._known_host_line(h) for h in self.hosts))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts:
            podman("rm", "-f", "-t", "2", host.container, check=False)
        self.hosts.clear()

    def __getitem__(self, name: str) -> EmulatedHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def _start(self, spec: HostSpec) -> EmulatedHost:
        image = host_image(spec.arch, self.prefix)
        container = f"{self.prefix}{spec.name}-{secrets.token_hex(3)}"
        port = free_port()
        run = ["run", "-d", "--name", container, "--hostname", spec.name, "-p", f"127.0.0.1:{port}:22"]
        for mount in spec.mounts:
            run += ["-v", mount]
        if spec.arch == "arm64":
            run += ["--arch", "arm64"]
        elif spec.arch == "armhf":
            run += ["--arch", "arm", "--variant", "v7"]
        if spec.init == "systemd":
            run += ["--systemd=always", image, "/lib/systemd/systemd"]
        else:
            run += [image, "sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e"]
        podman(*run)
        host = EmulatedHost(spec, container, port)
        host.exec(self._setup_script(spec))
        return host

    def _setup_script(self, spec: HostSpec) -> str:
        pub = self.key_file.with_suffix(".pub").read_text().strip()
        user = shlex.quote(spec.user)
        lines = [
            "set -e",
            f"id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}",
            f"install -d -m 700 -o {user} -g {user} /home/{user}/.ssh",
            f"printf '%s\\n' {shlex.quote(pub)} > /home/{user}/.ssh/authorized_keys",
            f"chown {user}:{user} /home/{user}/.ssh/authorized_keys",
            f"chmod 600 /home/{user}/.ssh/authorized_keys",
            f"printf '%s\\n' '{spec.user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-lab",
            "chmod 440 /etc/sudoers.d/90-lab",
        ]
        if spec.raspberry_pi:
            model = PI_MODELS.get(spec.arch, "Raspberry Pi 4 Model B Rev 1.4")
            lines += [
                "mkdir -p /boot/firmware /etc/lt-emulated",
                f"printf '%s' {shlex.quote(PI_CMDLINE)} > /boot/firmware/cmdline.txt",
                # device-tree strings end with a NUL byte, as /proc/device-tree/model does
                f"printf '%s\\0' {shlex.quote(model)} > {PI_MODEL_FILE}",
            ]
        return "\n".join(lines)

    def _wait_for_ssh(self, host: EmulatedHost) -> None:
        """Polls until the host's sshd accepts our key (with a deadline)."""
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            result = subprocess.run(
                [*self.ssh_command(host, strict=False), "true"], capture_output=True, text=True, check=False
            )
            if result.returncode == 0:
                return
            last = result.stderr.strip()
            time.sleep(0.5)
        raise EmulationError(
            f"{host.name}: sshd did not accept the lab key within {self.start_timeout:.0f} s: {last}"
        )

    def _known_host_line(self, host: EmulatedHost) -> str:
        key = host.read("/etc/ssh/ssh_host_ed25519_key.pub").split()
        return f"[{host.address}]:{host.port} {key[0]} {key[1]}\n"

    def ssh_options(self, strict: bool = True) -> list[str]:
        known = ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        if not strict:
            known = ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        return ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *known]

    def ssh_command(self, host: EmulatedHost, strict: bool = True) -> list[str]:
        return [
            "ssh",
            *self.ssh_options(strict),
            "-i",
            str(self.key_file),
            "-p",
            str(host.port),
            f"{host.spec.user}@{host.address}",
        ]

    def inventory(self, group_vars: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An Ansible YAML inventory of the lab: one group per HostSpec group, connection vars per host."""
        groups: dict[str, dict[str, Any]] = {}
        common = " ".join(shlex.quote(o) for o in self.ssh_options())
        for host in self.hosts:
            host_vars: dict[str, Any] = {
                "ansible_host": host.address,
                "ansible_port": host.port,
                "ansible_user": host.spec.user,
                "ansible_ssh_private_key_file": str(self.key_file),
                "ansible_ssh_common_args": common,
            }
            if host.spec.raspberry_pi:
                host_vars["raspberrypi_model_file"] = PI_MODEL_FILE
            for group in host.spec.groups:
                groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = host_vars
        return {"all": {"vars": dict(group_vars or {}), "children": groups}}

    def write_inventory(self, path: Path, group_vars: Mapping[str, Any] | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.inventory(group_vars), sort_keys=False))
        return path


def podman_available() -> str | None:
    """None when podman can run containers here, else the reason it cannot."""
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}")
    except (OSError, EmulationError) as exc:
        return f"podman is not usable: {exc}"
    return None
