"""A time-compressed long run on real kubo: does storage stay bounded, does learning keep going? Prints JSON.

    .venv/bin/python benchmarks/soak.py [--peers 6] [--target 3000] [--training-interval 3]
        [--gc-period 1m] [--storage-max 24MB] [--max-minutes 90] [--out soak.json] [--workdir DIR]

`--peers` `tangle peer` processes (MLP on digits), each on its own kubo v0.43.1 node started with
`--enable-gc`, `Datastore.GCPeriod` of `--gc-period` and a `Datastore.StorageMax` small enough that kubo's GC
really runs (it collects once the repo passes 90% of StorageMax). They train every `--training-interval`
seconds and publish every model (`PUBLISH_RULE=always`, so the transaction rate is what the schedule gives)
until `--target` transactions exist (or `--max-minutes` pass). Once three quarters of the target exist, a late
joiner starts on a fresh node: it must rebuild the whole tangle from re-announced tips (transaction blocks
stay pinned everywhere, weights only within the pinning window) and train.

Sampled every `--sample-every` seconds: transactions, each kubo repo's size on disk, the peers' pinned bytes,
weights fetch failures (failed `cat`s), unusable weights, failed training rounds, peer and kubo RSS, the
peers' decoded-weights cache, reference accuracy, and how long the late joiner took to hold as many
transactions as existed when it started (its log is at INFO; `--workdir` keeps logs and repositories).
The JSON reports the rates and growth per quarter and the checks of issue 8: last-quarter rate >= 80% of
the first's, last-quarter repo growth <= 10% of the first's, zero fetch failures, peer RSS growth <= 20%
(first- to last-quarter mean), the late joiner's tangle equal to the others'.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from peer.ipfs.testnet import IpfsNode, IpfsTestnet  # noqa: E402
from tests.integration.peers import PeerProcess, wait_for  # noqa: E402


def rss_bytes(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def repo_bytes(node: IpfsNode) -> int:
    total = 0
    for root, _dirs, files in os.walk(node.repo):
        for name in files:
            with contextlib.suppress(OSError):  # GC removed it while we walked
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def high_water_growth(series: list[tuple[float, list[int]]], start: float, end: float) -> float:
    """How much higher the repositories got within [start, end] than before it (mean over the nodes).

    kubo's GC turns a repository's size into a saw-tooth (up to 90% of StorageMax, then down to what is
    pinned) whose period depends on the traffic, so sizes at two instants say little; the high-water mark
    does not.
    """
    nodes = len(series[0][1])
    grown = []
    for node in range(nodes):
        before = [sizes[node] for t, sizes in series if t < start] or [series[0][1][node]]
        within = [sizes[node] for t, sizes in series if start <= t <= end] or before
        grown.append(max(within) - max(before))
    return statistics.fmean(grown)


def metric_sum(text: str, family: str, **labels: str) -> float:
    total = 0.0
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class Soak:
    def __init__(self, args: argparse.Namespace, directory: Path) -> None:
        self.args = args
        self.directory = directory
        self.net = IpfsTestnet(
            directory / "ipfs",
            args.peers + 1,
            enable_gc=True,
            config={"Datastore.GCPeriod": args.gc_period, "Datastore.StorageMax": args.storage_max},
        )
        self.peers: list[PeerProcess] = []
        self.late: PeerProcess | None = None
        self.samples: list[dict[str, Any]] = []
        self.started = 0.0
        self.late_started_at: float | None = None
        self.late_target = 0  # transactions when the late joiner started
        self.late_caught_up_at: float | None = None  # first sample where it held at least that many

    def peer(self, index: int) -> PeerProcess:
        env = {
            "IPFS_API": self.net[index].api_url,
            "PEER_INDEX": str(index),
            "PEERS": str(self.args.peers + 1),
            "MODEL": "mlp",
            "TRAINING_INTERVAL": str(self.args.training_interval),
            "PUBLISH_RULE": "always",
            "TIMEOUT": "10",
            "REANNOUNCE_INTERVAL": "10",
            # the late joiner's rebuild is what a soak most often has to explain afterwards
            "LOGGING_LEVEL": "info" if index == self.args.peers else "warning",
        }
        return PeerProcess(self.directory / f"peer-{index}", env, name=f"peer-{index}")

    def sample(self) -> dict[str, Any]:
        everyone = [*self.peers, *([self.late] if self.late else [])]
        row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1), "peers": []}
        for peer in everyone:
            try:
                info = peer.info()
                text = peer.get("/metrics")
            except (httpx.HTTPError, ValueError):
                continue
            row["peers"].append(
                {
                    "name": peer.name,
                    "transactions": info["transactions"],
                    "published": info["published"],
                    "trainings": info["trainings"],
                    "referenceAccuracy": info["referenceAccuracy"],
                    "unusableWeights": len(info["unusableWeights"]),
                    "pinned_bytes": metric_sum(text, "learning_tangle_pinned_bytes"),
                    "cat_failures": metric_sum(
                        text, "learning_tangle_ipfs_request_errors_total", operation="cat"
                    ),
                    "training_failures": metric_sum(text, "learning_tangle_training_failures_total"),
                    "rss": rss_bytes(peer.process.pid if peer.process else None),
                    "weights_cache_bytes": info["weightsCache"]["cachedBytes"],
                    "depth": info["depth"],
                    "unresolved": info["unresolved"],
                }
            )
        row["repo_bytes"] = [repo_bytes(node) for node in self.net]
        row["kubo_rss"] = [rss_bytes(node.pid) for node in self.net]
        row["transactions"] = max((p["transactions"] for p in row["peers"]), default=0)
        self.samples.append(row)
        return row

    async def run(self) -> dict[str, Any]:
        args = self.args
        await self.net.start_all()
        late_node = args.peers
        # the late joiner's node stays out of the swarm until it starts, so it has nothing in advance
        await self.net.stop(late_node)
        self.peers = [self.peer(i).start() for i in range(args.peers)]
        for peer in self.peers:
            peer.wait_ready(timeout=120)
        self.started = time.monotonic()
        deadline = self.started + args.max_minutes * 60
        while True:
            row = await asyncio.to_thread(self.sample)
            late_row = next((p for p in row["peers"] if self.late and p["name"] == self.late.name), None)
            print(
                f"[{row['t']:7.1f} s] {row['transactions']} transactions, repos "
                f"{[round(b / 1e6, 1) for b in row['repo_bytes']]} MB, peer RSS "
                f"{[round(p['rss'] / 1e6) for p in row['peers']]} MB, caches "
                f"{[round(p['weights_cache_bytes'] / 1e6, 1) for p in row['peers']]} MB"
                + (f", late joiner {late_row['transactions']}" if late_row else ""),
                file=sys.stderr,
                flush=True,
            )
            if self.late is None and row["transactions"] >= 0.75 * args.target:
                await self.net.start(late_node)
                self.late = self.peer(late_node).start()
                self.late_started_at = row["t"]
                self.late_target = row["transactions"]
                await asyncio.to_thread(self.late.wait_ready, 120)
            if late_row and self.late_caught_up_at is None and late_row["transactions"] >= self.late_target:
                self.late_caught_up_at = row["t"]
            if row["transactions"] >= args.target or time.monotonic() > deadline:
                break
            await asyncio.sleep(args.sample_every)
        late = await asyncio.to_thread(self.check_late_joiner)
        self.final = await asyncio.to_thread(self.sample)
        return self.report(late)

    def check_late_joiner(self) -> dict[str, Any]:
        """The late joiner holds what an original peer held a moment ago, and vice versa."""
        if self.late is None:
            return {"started": False}
        late, reference = self.late, self.peers[0]
        before_late = set(late.transactions())
        before_reference = set(reference.transactions())
        missing: set[str] = set()

        def caught_up() -> bool:
            nonlocal missing
            missing = (before_reference - set(late.transactions())) | (
                before_late - set(reference.transactions())
            )
            return not missing

        try:
            wait_for("the late joiner to hold the whole tangle", caught_up, timeout=180, interval=2)
            equal = True
        except AssertionError:
            equal = False
        info = late.info()
        return {
            "started": True,
            "started_at_s": self.late_started_at,
            "transactions_at_start": self.late_target,
            # from its start until a sample saw it hold as many transactions as existed then
            "rebuild_s": None
            if self.late_caught_up_at is None or self.late_started_at is None
            else round(self.late_caught_up_at - self.late_started_at, 1),
            "tangle_equal": equal,
            "compared_transactions": len(before_reference),
            "missing": len(missing),
            "trainings": info["trainings"],
            "published": info["published"],
            "reference_accuracy": info["referenceAccuracy"],
        }

    def report(self, late: dict[str, Any]) -> dict[str, Any]:
        rows = self.samples[:-1]  # the final sample is taken after the late-joiner check
        duration = rows[-1]["t"]
        quarter = duration / 4

        def at(t: float) -> dict[str, Any]:
            return min(rows, key=lambda r: abs(r["t"] - t))

        def rate(a: float, b: float) -> float:
            ra, rb = at(a), at(b)
            return (rb["transactions"] - ra["transactions"]) / max(rb["t"] - ra["t"], 1e-9) * 60

        def peer_mean(row: dict[str, Any], key: str) -> float:
            late_name = self.late.name if self.late else None
            values = [p[key] for p in row["peers"] if p["name"] != late_name and p[key] is not None]
            return statistics.fmean(values) if values else 0.0

        def quarter_rows(q: int) -> list[dict[str, Any]]:
            return [r for r in rows if q * quarter <= r["t"] <= (q + 1) * quarter]

        first_rate, last_rate = rate(0, quarter), rate(3 * quarter, duration)
        series = [(r["t"], r["repo_bytes"][: self.args.peers]) for r in rows]
        first_growth = high_water_growth(series, 0, quarter)
        last_growth = high_water_growth(series, 3 * quarter, duration)
        rss_first = statistics.fmean(peer_mean(r, "rss") for r in quarter_rows(0))
        rss_last = statistics.fmean(peer_mean(r, "rss") for r in quarter_rows(3))
        last = rows[-1]
        fetch_failures = sum(p["cat_failures"] for p in self.final["peers"])
        unusable = sum(p["unusableWeights"] for p in self.final["peers"])
        repo_max = [max(r["repo_bytes"][i] for r in rows) for i in range(self.args.peers)]
        return {
            "ipfs": f"{self.net.implementation}, --enable-gc",
            "settings": {
                "peers": self.args.peers,
                "model": "mlp",
                "training_interval_s": self.args.training_interval,
                "publish_rule": "always",
                "gc_period": self.args.gc_period,
                "storage_max": self.args.storage_max,
                "target_transactions": self.args.target,
            },
            "duration_s": round(duration, 1),
            "transactions": last["transactions"],
            "transactions_per_minute": {
                "first_quarter": round(first_rate, 1),
                "last_quarter": round(last_rate, 1),
            },
            "repo_high_water_growth_bytes": {
                "first_quarter": round(first_growth),
                "last_quarter": round(last_growth),
            },
            "repo_bytes_max_per_node": repo_max,
            "repo_bytes_over_time": [
                {"t": r["t"], "transactions": r["transactions"], "repo_bytes": r["repo_bytes"]} for r in rows
            ],
            "pinned_bytes": {
                "start": peer_mean(rows[0], "pinned_bytes"),
                "end": peer_mean(last, "pinned_bytes"),
            },
            "weights_fetch_failures": fetch_failures,
            "unusable_weights": unusable,
            "training_failures": sum(p["training_failures"] for p in self.final["peers"]),
            "peer_rss_bytes": {
                "start": peer_mean(rows[0], "rss"),
                "end": peer_mean(last, "rss"),
                "first_quarter_mean": rss_first,
                "last_quarter_mean": rss_last,
            },
            # decoded weights held per peer (the daemon forgets what left the walk window)
            "weights_cache_bytes": {
                "first_quarter_mean": statistics.fmean(
                    peer_mean(r, "weights_cache_bytes") for r in quarter_rows(0)
                ),
                "last_quarter_mean": statistics.fmean(
                    peer_mean(r, "weights_cache_bytes") for r in quarter_rows(3)
                ),
            },
            "peer_rss_over_time": [
                {"t": r["t"], "transactions": r["transactions"], "rss": round(peer_mean(r, "rss"))}
                for r in rows
            ],
            "kubo_rss_bytes": {
                "start": statistics.fmean(rows[0]["kubo_rss"][: self.args.peers]),
                "end": statistics.fmean(last["kubo_rss"][: self.args.peers]),
            },
            "reference_accuracy_over_time": [
                {
                    "t": r["t"],
                    "transactions": r["transactions"],
                    "accuracy": round(peer_mean(r, "referenceAccuracy"), 4),
                }
                for r in rows
            ],
            "late_joiner": late,
            "checks": {
                "no_stall (last-quarter rate >= 0.8 x first)": last_rate >= 0.8 * first_rate,
                "repo flat (last-quarter high-water growth <= 0.1 x first)": last_growth
                <= 0.1 * first_growth,
                "zero fetch failures": fetch_failures == 0,
                "peer RSS growth <= 20%": rss_last <= 1.2 * rss_first,
                "late joiner's tangle equals the others'": bool(late.get("tangle_equal")),
                "reached target": last["transactions"] >= self.args.target,
            },
        }

    async def close(self) -> None:
        for peer in [*self.peers, *([self.late] if self.late else [])]:
            await asyncio.to_thread(peer.stop)
        await self.net.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM or SIGINT (also when started in the background, where SIGINT is ignored) stops the peers and
    # the kubo nodes before exiting
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        soak = Soak(args, args.workdir or Path(directory))
        try:
            return await soak.run()
        finally:
            await soak.close()


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--peers", type=int, default=6)
    parser.add_argument("--target", type=int, default=3000, help="stop once this many transactions exist")
    parser.add_argument("--training-interval", type=float, default=3.0)
    parser.add_argument("--gc-period", default="1m")
    parser.add_argument("--storage-max", default="24MB")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--max-minutes", type=float, default=90.0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--workdir", type=Path, help="keep the repositories and logs here (default: a temporary one)"
    )
    arguments = parser.parse_args()
    text = json.dumps(asyncio.run(main(arguments)), indent=2)
    if arguments.out:
        arguments.out.write_text(text)
    print(text)
