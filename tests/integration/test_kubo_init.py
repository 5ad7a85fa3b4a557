"""docker/kubo/container-init.d/050-learning-tangle.sh on a real kubo repository.

The script is what the ipfs/kubo image runs from /container-init.d on every start; `tangle peer
--print-kubo-config` prints the same settings. Both are run here on the same variables: the script's `ipfs
config` calls must equal the printed lines, kubo must start with the result, and bad values must be refused
by both before kubo is touched.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from peer.ipfs.testnet import kubo_binary

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "kubo" / "container-init.d" / "050-learning-tangle.sh"
VARIABLES = (
    "CONNECTION_PRUNING_LOW",
    "CONNECTION_PRUNING_HIGH",
    "CONNECTION_PRUNING_GRACE_PERIOD",
    "IPFS_DATASTORE_STORAGEMAX",
    "IPFS_DATASTORE_GCPERIOD",
    "IPFS_REPROVIDER_INTERVAL",
    "IPFS_API_LISTEN",
    "IPFS_GATEWAY_LISTEN",
)
# every variable away from its default, with the blanks and leading zeros both sides accept
CUSTOM = {
    "CONNECTION_PRUNING_LOW": "012",
    "CONNECTION_PRUNING_HIGH": " 99",
    "CONNECTION_PRUNING_GRACE_PERIOD": "15",
    "IPFS_DATASTORE_STORAGEMAX": "1.5 GiB",
    "IPFS_DATASTORE_GCPERIOD": "1m30s",
    "IPFS_REPROVIDER_INTERVAL": "6h",
    # port 0: a test must not take 5001/8080 from anyone on this machine
    "IPFS_API_LISTEN": "/ip4/127.0.0.1/tcp/0",
    "IPFS_GATEWAY_LISTEN": "/ip4/127.0.0.1/tcp/0",
}
BAD = [
    ("IPFS_DATASTORE_STORAGEMAX", "lots"),
    ("IPFS_DATASTORE_STORAGEMAX", "10gb"),
    ("IPFS_DATASTORE_GCPERIOD", "1 hour"),
    ("IPFS_DATASTORE_GCPERIOD", "1h\n2h"),
    ("IPFS_REPROVIDER_INTERVAL", "-1h"),
    ("CONNECTION_PRUNING_LOW", "-1"),
    ("CONNECTION_PRUNING_LOW", "4_0"),
    ("CONNECTION_PRUNING_HIGH", "0"),
    ("CONNECTION_PRUNING_LOW", "80"),  # above the default HIGH of 70
    ("CONNECTION_PRUNING_GRACE_PERIOD", "1m"),
    ("IPFS_API_LISTEN", "0.0.0.0:5001"),
    ("IPFS_GATEWAY_LISTEN", "/ip4/127.0.0.1/tcp/8080; rm -rf /"),
]


def _clean_env(tmp_path: Path, variables: dict[str, str]) -> dict[str, str]:
    """The environment of the image's init: IPFS_PATH, `ipfs` on PATH (recording its calls), the variables."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        wrapper = bin_dir / "ipfs"
        wrapper.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path / "calls"}\nexec {kubo_binary()} "$@"\n'
        )
        wrapper.chmod(0o755)
    return {
        **env,
        **variables,
        "IPFS_PATH": str(tmp_path / "repo"),
        "PATH": f"{bin_dir}:{env['PATH']}",
        "GOMAXPROCS": "1",
    }


def _init_repo(env: dict[str, str]) -> None:
    subprocess.run(
        [str(kubo_binary()), "init", "--profile", "test"], env=env, capture_output=True, check=True
    )


def _run_script(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "calls").unlink(missing_ok=True)
    return subprocess.run(["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, check=False)


def _calls(tmp_path: Path) -> list[tuple[str, Any]]:
    path = tmp_path / "calls"
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for line in lines:
        parts = line.split(" ", 3)
        assert parts[:2] == ["config", "--json"], line
        out.append((parts[2], json.loads(parts[3])))
    return out


def _printed(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(variables, STORAGE="memory", MESSAGE_BROKER="memory")
    return subprocess.run(
        [sys.executable, "-m", "peer", "peer", "--print-kubo-config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _printed_settings(variables: dict[str, str]) -> list[tuple[str, Any]]:
    result = _printed(variables)
    assert result.returncode == 0, result.stderr
    out = []
    for line in result.stdout.splitlines():
        words = shlex.split(line)
        assert words[:3] == ["ipfs", "config", "--json"], line
        out.append((words[3], json.loads(words[4])))
    return out


def _config_value(config: dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value[part]
    return value


def _config_show(env: dict[str, str]) -> dict[str, Any]:
    shown = subprocess.run(
        [str(kubo_binary()), "config", "show"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(shown.stdout)


@pytest.mark.integration
def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("variables", [{}, CUSTOM], ids=["defaults", "custom"])
def test_script_applies_what_print_kubo_config_prints(tmp_path: Path, variables: dict[str, str]) -> None:
    env = _clean_env(tmp_path, variables)
    _init_repo(env)
    result = _run_script(tmp_path, env)
    assert result.returncode == 0, result.stderr
    applied = _calls(tmp_path)
    assert applied == _printed_settings(variables)  # same keys, same JSON values, same order
    config = _config_show(env)
    for key, value in applied:
        assert _config_value(config, key) == value, key


@pytest.mark.integration
def test_kubo_starts_with_the_variables_applied(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, CUSTOM)
    _init_repo(env)
    assert _run_script(tmp_path, env).returncode == 0
    config = _config_show(env)
    assert config["Swarm"]["ConnMgr"] == {"LowWater": 12, "HighWater": 99, "GracePeriod": "15s"}
    assert config["Datastore"]["StorageMax"] == "1.5GiB"
    assert config["Datastore"]["GCPeriod"] == "1m30s"
    assert config["Provide"]["DHT"]["Interval"] == "6h"
    assert config["Reprovider"] == {}  # kubo >= 0.38 refuses to start with any Reprovider.* key
    assert config["Pubsub"]["Enabled"] is True
    assert config["Addresses"]["API"] == CUSTOM["IPFS_API_LISTEN"]

    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [str(kubo_binary()), "daemon", "--enable-gc"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        api_file = tmp_path / "repo" / "api"
        deadline = time.monotonic() + 60
        while not api_file.exists():
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "kubo did not start"
            time.sleep(0.1)
        port = api_file.read_text().strip().rsplit("/", 1)[-1]
        api = f"http://127.0.0.1:{port}/api/v0"
        stat = httpx.post(f"{api}/repo/stat", timeout=10).json()
        assert stat["StorageMax"] == int(1.5 * 1024**3)  # kubo parsed and uses the size
        running = httpx.post(f"{api}/config/show", timeout=10).json()
        assert running["Datastore"]["GCPeriod"] == "1m30s"
        assert "Daemon is ready" in (tmp_path / "daemon.log").read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()


@pytest.mark.integration
@pytest.mark.parametrize(("variable", "value"), BAD, ids=[f"{v}={x!r}" for v, x in BAD])
def test_bad_values_are_refused_before_kubo_is_touched(tmp_path: Path, variable: str, value: str) -> None:
    env = _clean_env(tmp_path, {variable: value})
    _init_repo(env)
    config = tmp_path / "repo" / "config"
    before = config.read_bytes()
    result = _run_script(tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0], result.stderr
    assert _calls(tmp_path) == []  # `ipfs` never ran
    assert config.read_bytes() == before

    printed = _printed({variable: value})
    assert printed.returncode == 2
    assert printed.stdout == ""
    assert variable in printed.stderr, printed.stderr
