"""Where tangles come from: peers' HTTP APIs (given as URLs or found through DNS) and lab output folders.

Peers are polled with `since=N`, N being how many nodes the visualizer already holds, so every poll carries
only what is new. A base URL may serve one peer (a real peer) or many (the lab's live API): `/api/peers`
says which, and each (URL, peer) pair becomes one entry of the page's peer selector.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from peer.api.schema import PEER_INFO, LabHistory, NodeDocument, PeerInfo, TransactionsDocument


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
    nodes: list[NodeDocument]
    tips: list[str]
    reference: list[str]
    depth: int
    info: PeerInfo | None = None  # None: the peer serves no (valid) /api/peer

    @classmethod
    def from_json(cls, doc: Any, info: Any = None) -> Page:
        try:
            parsed = TransactionsDocument.model_validate(doc)
        except ValidationError as error:
            raise SourceError(f"not an /api/transactions document: {_first_error(error)}") from None
        try:  # the tangle is what the page shows: a peer info of the wrong shape only loses the extras
            peer_info = PEER_INFO.validate_python(info) if info is not None else None
        except ValidationError:
            peer_info = None
        return cls(
            peer=parsed.peer,
            genesis=parsed.genesis,
            count=parsed.count,
            since=parsed.since,
            nodes=parsed.nodes,
            tips=parsed.tips,
            reference=parsed.reference,
            depth=parsed.depth,
            info=peer_info,
        )


def _first_error(error: ValidationError) -> str:
    """One line: where the first problem is and what it is."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


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
        unnamed: list[str | None] = [None]  # a URL that does not answer /api/peers is one entry
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
        info: Any = None
        if info_response.status_code == 200:
            try:
                info = info_response.json()
            except ValueError:
                info = None
        return Page.from_json(doc, info)

    async def lab_history(self, entry: Entry) -> LabHistory | None:
        """The lab's settings and rounds so far (`/api/lab`), or None when the URL serves no lab."""
        try:
            response = await self.client.get(f"{entry.url}/api/lab")
            if response.status_code != 200:
                return None
            return LabHistory.model_validate(response.json())
        except (httpx.HTTPError, ValueError, ValidationError):
            return None

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
    """A lab output folder: the reporting peer's tangle, the per-round (and per-peer) metrics, the summary."""

    folder: Path
    tangle: TransactionsDocument
    metrics: list[dict[str, float | None]]
    summary: dict[str, Any]
    peers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.resolve().name or str(self.folder)

    @property
    def config(self) -> dict[str, Any]:
        config = self.summary.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def complete(self) -> bool:
        return self.summary.get("complete", True) is not False

    @property
    def rounds(self) -> int:
        by_metrics = int(max((m["round"] or 0) for m in self.metrics)) if self.metrics else 0
        by_nodes = int(max((n.created for n in self.tangle.nodes), default=0))
        return max(by_metrics, by_nodes)

    def prefix(self, round_index: float) -> int:
        """How many nodes, in insertion order, had arrived by the end of `round_index` (lab time is rounds).

        Always a prefix, so it holds every parent of what it holds."""
        latest = float("-inf")
        for count, node in enumerate(self.tangle.nodes):
            latest = max(latest, node.created)
            if latest > round_index:
                return count
        return len(self.tangle.nodes)

    def history(self) -> LabHistory:
        """The same shape as the live lab's `/api/lab`, so the run view draws both alike."""
        rounds = int(self.config.get("rounds") or self.rounds)
        return LabHistory(
            config=self.config,
            malicious_peers=[str(p) for p in self.summary.get("malicious_peers", [])],
            round=len(self.metrics),
            rounds=rounds,
            metrics=self.metrics,
            peers=self.peers,
        )


def load_lab_run(folder: Path) -> LabRun:
    """Read a lab output folder; a missing, truncated or misshapen file is one SourceError line."""
    folder = Path(folder)
    path = folder / "tangle.json"
    try:
        text = path.read_text()
    except OSError as error:
        raise SourceError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        doc = json.loads(text)
    except ValueError as error:
        raise SourceError(f"{path} is not valid JSON (truncated?): {error}") from None
    try:
        tangle = TransactionsDocument.model_validate(doc)
    except ValidationError as error:
        raise SourceError(f"{path} is not an /api/transactions document: {_first_error(error)}") from None
    summary: dict[str, Any] = {}
    summary_path = folder / "summary.json"
    if summary_path.is_file():
        try:
            loaded = json.loads(summary_path.read_text())
        except (OSError, ValueError) as error:
            raise SourceError(f"{summary_path} is not valid JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise SourceError(f"{summary_path} is not a JSON object")
        summary = loaded
    metrics = [
        {k: _float(v) for k, v in row.items()} for row in _csv_rows(folder / "metrics.csv", needs="round")
    ]
    peers: list[dict[str, Any]] = [
        {
            "round": _float(row.get("round")),
            "peer": row.get("peer") or "",
            "malicious": row.get("malicious") == "True",
            **{k: _float(row.get(k)) for k in ("accuracy", "loss", "misclassification_3_as_8")},
        }
        for row in _csv_rows(folder / "peers.csv", needs="peer")
    ]
    return LabRun(folder=folder, tangle=tangle, metrics=metrics, summary=summary, peers=peers)


def _csv_rows(path: Path, *, needs: str) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as error:
        raise SourceError(f"{path} is not readable CSV: {error}") from None
    if rows and needs not in rows[0]:
        raise SourceError(f"{path} has no {needs} column")
    return rows


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
