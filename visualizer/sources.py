"""Where tangles come from: peers' HTTP APIs (given as URLs or found through DNS) and lab output folders.

Peers are polled with `since=N`, N being how many nodes the visualizer already holds, so every poll carries
only what is new. A base URL may serve one peer (a real peer) or many (the lab's live API): `/api/peers`
says which, and each (URL, peer) pair becomes one entry of the page's peer selector.
"""

from __future__ import annotations

import asyncio
import csv
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from peer.api.documents import TRANSACTIONS_DOCUMENT, TransactionNode


class SourceError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    """One tangle the page can show: a peer, as served at a base URL."""

    label: str
    url: str
    peer: str | None  # None: the URL's default peer (it did not answer /api/peers)


@dataclass(slots=True)
class Page:
    """One answer of `/api/transactions` (plus the peer's `/api/peer` info when it has one)."""

    peer: str
    genesis: str
    count: int
    since: int
    nodes: list[TransactionNode]
    tips: list[str]
    reference: list[str]
    depth: int
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: object, info: dict[str, Any] | None = None) -> Page:
        """Validated against the type the peer's API builds it from (peer/api/documents.py)."""
        try:
            valid = TRANSACTIONS_DOCUMENT.validate_python(doc)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise SourceError(f"not an /api/transactions document: {where}: {first['msg']}") from None
        return cls(
            peer=valid["peer"],
            genesis=valid["genesis"],
            count=valid["count"],
            since=valid["since"],
            nodes=valid["nodes"],
            tips=valid["tips"],
            reference=valid["reference"],
            depth=valid["depth"],
            info=info or {},
        )


async def resolve_peer_urls(name: str, port: int, scheme: str = "http") -> list[str]:
    """One URL per A record of `name` (a headless Service resolves to every ready pod's address)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except OSError as error:
        raise SourceError(f"cannot resolve {name}: {error}") from error
    addresses = sorted({str(info[4][0]) for info in infos}, key=socket.inet_aton)
    return [f"{scheme}://{address}:{port}" for address in addresses]


class ApiSource:
    """Peers reached over HTTP: fixed URLs, plus those a DNS name resolves to (looked up again and again)."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        dns: str | None = None,
        dns_port: int = 8000,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.dns = dns
        self.dns_port = dns_port
        self.client = client or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def base_urls(self) -> list[str]:
        urls = list(self.urls)
        if self.dns:
            urls += [u for u in await resolve_peer_urls(self.dns, self.dns_port) if u not in urls]
        return urls

    async def entries(self) -> list[Entry]:
        urls = await self.base_urls()
        names = await asyncio.gather(*(self._peer_names(u) for u in urls))
        unnamed: list[str | None] = [None]
        pairs = [(url, name) for url, found in zip(urls, names, strict=True) for name in found or unnamed]
        # the bare peer name when it is unique (the usual case), else name @ host:port
        counts: dict[str | None, int] = {}
        for _url, name in pairs:
            counts[name] = counts.get(name, 0) + 1
        entries = []
        for url, name in pairs:
            host = urlsplit(url).netloc
            unique = name is not None and counts[name] == 1
            label = host if name is None else name if unique else f"{name} @ {host}"
            entries.append(Entry(label=label, url=url, peer=name))
        return entries

    async def fetch(self, entry: Entry, since: int) -> Page:
        params: dict[str, Any] = {"since": since}
        if entry.peer is not None:
            params["peer"] = entry.peer
        try:
            # both at once: the page shows the tangle and the peer's own view of its reference accuracy
            tx_response, info_response = await asyncio.gather(
                self.client.get(f"{entry.url}/api/transactions", params=params),
                self.client.get(f"{entry.url}/api/peer", params={"peer": entry.peer} if entry.peer else None),
            )
            tx_response.raise_for_status()
            doc = tx_response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise SourceError(f"{entry.url}: {error}") from error
        info: dict[str, Any] = {}
        if info_response.status_code == 200:
            try:
                info = info_response.json()
            except ValueError:
                info = {}
        return Page.from_json(doc, info if isinstance(info, dict) else {})

    async def _peer_names(self, url: str) -> list[str] | None:
        try:
            response = await self.client.get(f"{url}/api/peers")
            response.raise_for_status()
            peers = response.json()["peers"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return [str(p) for p in peers] or None


@dataclass(slots=True)
class LabRun:
    """A finished lab run: the reporting peer's tangle and the per-round metrics."""

    folder: Path
    tangle: dict[str, Any]
    metrics: list[dict[str, float | None]]
    summary: dict[str, Any]

    @property
    def rounds(self) -> int:
        by_metrics = int(max((m["round"] or 0) for m in self.metrics)) if self.metrics else 0
        by_nodes = int(max((n.get("timeCreated") or 0) for n in self.tangle["nodes"]))
        return max(by_metrics, by_nodes)

    def prefix(self, round_index: float) -> int:
        """How many nodes, in insertion order, had arrived by the end of `round_index` (lab time is rounds).

        Always a prefix, so it holds every parent of what it holds."""
        latest = float("-inf")
        for count, node in enumerate(self.tangle["nodes"]):
            latest = max(latest, float(node.get("timeCreated") or 0))
            if latest > round_index:
                return count
        return len(self.tangle["nodes"])

    def metrics_until(self, round_index: float) -> list[dict[str, float | None]]:
        return [m for m in self.metrics if (m["round"] or 0) <= round_index]

    def samples(self) -> list[dict[str, float | None]]:
        """One summary-strip sample a round: size, tips, depth, tangle and FedAvg accuracy."""
        samples = []
        nodes = self.tangle["nodes"]
        for m in self.metrics:
            prefix = nodes[: self.prefix(m["round"] or 0)]
            samples.append(
                {
                    "t": m["round"],
                    "size": m.get("transactions"),
                    "tips": m.get("tips"),
                    "depth": max((int(n.get("height", 0)) for n in prefix), default=0),
                    "accuracy": m.get("tangle_accuracy"),
                    "fedavg": m.get("fedavg_accuracy"),
                }
            )
        return samples


def load_lab_run(folder: Path) -> LabRun:
    folder = Path(folder)
    try:
        tangle = json.loads((folder / "tangle.json").read_text())
    except (OSError, ValueError) as error:
        raise SourceError(f"{folder}: no readable tangle.json ({error})") from error
    if not isinstance(tangle, dict) or not isinstance(tangle.get("nodes"), list):
        raise SourceError(f"{folder}/tangle.json is not an /api/transactions document")
    metrics: list[dict[str, float | None]] = []
    metrics_path = folder / "metrics.csv"
    if metrics_path.is_file():
        with metrics_path.open(newline="") as handle:
            metrics = [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return LabRun(folder=folder, tangle=tangle, metrics=metrics, summary=summary)


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None
