"""Helpers of the visualizer tests: synthetic tangles, lab output folders, ports, waiting for servers."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from viz_synthetic import SyntheticApi, lab_like_tangle

from peer.api.schema import NodeDocument, TransactionsDocument
from peer.api.transactions import transactions_document

REPO = Path(__file__).resolve().parents[2]


def tangle_nodes(transactions: int, **kwargs: Any) -> list[NodeDocument]:
    """`/api/transactions` node documents of a synthetic lab-like tangle."""
    return transactions_document(lab_like_tangle(transactions, **kwargs), peer="x").nodes


class SteeredApi(SyntheticApi):
    """A synthetic peer API whose reference the test chooses (every peer answers with the same one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reference: list[str] | None = None  # None: SyntheticApi's own (a recent tip per peer)

    def grow(self, count: int, reference: list[str] | None = None) -> None:
        """Add transactions and set the reference in one step (no answer sees one without the other);
        `reference=None` makes it every tip, whose past cone is the whole tangle."""
        with self.lock:
            self.builder.grow(count)
            self.reference = list(reference if reference is not None else self.builder.tangle.tips)

    def transactions(self, peer: str | None, since: int) -> TransactionsDocument:
        name = self._check(peer)
        with self.lock:
            tangle = self.builder.tangle
            own = [tangle.tips[self.names.index(name) % len(tangle.tips)]]
            reference = own if self.reference is None else self.reference
            return transactions_document(tangle, peer=name, since=since, reference=reference)

    def edges(self) -> list[tuple[str, str]]:
        nodes = self.transactions(None, 0).nodes
        return [(n.name, p) for n in nodes for p in n.parents]


def write_lab_folder(folder: Path, transactions: int = 60, peers: int = 5) -> Path:
    """A lab output folder as `tangle lab` writes it (tangle.json, metrics.csv, summary.json)."""
    tangle = lab_like_tangle(transactions, peers=peers)
    doc = transactions_document(tangle, peer="peer-000", reference=tangle.tips[:2])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tangle.json").write_bytes(doc.json_bytes())
    rounds = int(max(n.created for n in doc.nodes))
    with (folder / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["round", "transactions", "tips", "tangle_accuracy", "fedavg_accuracy"]
        )
        writer.writeheader()
        for r in range(1, rounds + 1):
            count = sum(1 for n in doc.nodes if n.created <= r)
            writer.writerow(
                {"round": r, "transactions": count, "tips": peers, "tangle_accuracy": r / (rounds + 1),
                 "fedavg_accuracy": min(1.0, 1.2 * r / (rounds + 1))}
            )  # fmt: skip
    (folder / "summary.json").write_text(
        json.dumps({"config": {"peers": peers, "rounds": rounds, "seed": 0}})
    )
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str,
    ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
    timeout: float = 60,
    process: subprocess.Popen[bytes] | None = None,
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=5)
            if ok(response):
                return response
            last = response.status_code
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s (last: {last})")
