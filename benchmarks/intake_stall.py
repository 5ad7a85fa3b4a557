"""The reviewed intake stall (issue 14, finding 1) against two real `tangle peer`s, once per code
revision, side by side in one run: 32 announcements of 17 CIDs nobody serves, again every second, from a
third kubo node.

For each revision, the honest network of tests/adversarial (two peers, PUBLISH_RULE=always, TIMEOUT=3)
measures a no-attack window and a window under attack (12 training ticks each) and reports, per peer, its own
publications per tick and the share of the other peer's publications of the window that reached it. The peers
of a revision run that revision's `peer` package (`git archive REV peer`); the attacker and the measuring code
are the current checkout's.

    python benchmarks/intake_stall.py [--revisions main HEAD]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from adversarial.attacker import unreachable_cids  # noqa: E402
from adversarial.conftest import start_honest_network  # noqa: E402


def checkout(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "peer"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(revision: str, work: Path) -> dict[str, object]:
    code = checkout(revision, work / "code")
    network_gen = start_honest_network(work / "net", {"PYTHONPATH": str(code)})
    network = next(network_gen)
    try:
        baseline = network.baseline
        attacker = network.attacker

        async def attack(stop: threading.Event) -> None:
            while not stop.is_set():
                for _ in range(32):
                    cids = unreachable_cids(17)
                    await attacker.announce_cids(cids[0], cids[1:])
                await asyncio.sleep(1)

        attacked = network.during(attack)
    finally:
        network_gen.close()
    return {"revision": revision, "baseline": vars(baseline), "attacked": vars(attacked)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", nargs="+", default=["main", "HEAD"])
    args = parser.parse_args()
    results = []
    for revision in args.revisions:
        with tempfile.TemporaryDirectory(prefix="intake-stall-") as work:
            results.append(measure(revision, Path(work)))
    print(json.dumps({"load_average": os.getloadavg(), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
