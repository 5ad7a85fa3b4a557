"""SSH to one lab host with Fabric, and run the node probe (`labops/probe.py`) there.

Connections never prompt: keys or an agent only (no password prompt mid-run), `sudo -n` on the node, a connect
timeout, and every failure is turned into a `HostError` with one line that says what is missing.
"""

from __future__ import annotations

import base64
import json
import shlex
import socket
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from invoke.exceptions import UnexpectedExit

from labops.inventory import LabHost

PROBE_B64 = base64.b64encode(Path(__file__).with_name("probe.py").read_bytes()).decode("ascii")
CONNECT_TIMEOUT = 15


class HostError(Exception):
    """One line about one host: unreachable, or a component missing there."""


def connect(host: LabHost) -> Connection:
    kwargs: dict[str, Any] = {"allow_agent": True, "look_for_keys": host.key_file is None}
    if host.key_file:
        kwargs["key_filename"] = [str(Path(host.key_file).expanduser())]
    return Connection(
        host=host.address,
        port=host.port,
        user=host.user,
        connect_timeout=CONNECT_TIMEOUT,
        connect_kwargs=kwargs,
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, paramiko.AuthenticationException):
        return (
            "SSH authentication failed (keys only, no password prompts: check ansible_ssh_private_key_file)"
        )
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "unreachable: SSH connection timed out"
    if isinstance(error, (ConnectionError, OSError, paramiko.SSHException)):
        return f"unreachable: {error.strerror if isinstance(error, OSError) and error.strerror else error}"
    return f"{type(error).__name__}: {error}"


def run(conn: Connection, host: LabHost, command: str, **kwargs: Any) -> str:
    """Run a shell command on the host and return its standard output; a failure becomes a HostError."""
    try:
        result = conn.run(command, hide=True, warn=False, in_stream=False, **kwargs)
    except UnexpectedExit as error:
        stderr = (error.result.stderr or error.result.stdout).strip().splitlines()
        raise HostError(
            stderr[-1] if stderr else f"{command.split()[0]} exited {error.result.exited}"
        ) from None
    except Exception as error:
        raise HostError(_reason(error)) from None
    return str(result.stdout)


def probe(conn: Connection, host: LabHost, *args: str) -> dict[str, Any]:
    """Run the node probe with python3 on the host; its JSON document."""
    env = {"LT_PEER_URL": host.peer_url or "", "LT_KUBO_API": host.kubo_api or ""}
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # The script travels in the command line, not on stdin: nothing waits for an end of input.
    loader = f"import base64; exec(compile(base64.b64decode({PROBE_B64!r}), 'labops-probe', 'exec'))"
    command = f"env {prefix} python3 -c {shlex.quote(loader)} {' '.join(shlex.quote(a) for a in args)}"
    try:
        result = conn.run(command, hide=True, warn=True, in_stream=False)
    except Exception as error:
        raise HostError(_reason(error)) from None
    if result.exited == 127:
        raise HostError("python3 is not installed on this host (Ansible's prepare playbook installs it)")
    if result.exited != 0:
        lines = result.stderr.strip().splitlines()
        raise HostError(f"node probe failed: {lines[-1] if lines else result.exited}")
    document: dict[str, Any] = json.loads(result.stdout)
    return document
