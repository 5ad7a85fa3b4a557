"""The HTTP API of a peer (port 8000) and of the lab's live server: one Starlette app for both.

`/api/transactions[?peer=NAME&since=N]`, `/api/peers`, `/api/peer[?peer=NAME]`, `/healthz`, `/metrics`, and
on a peer with an IPFS node `/metrics/ipfs`: kubo's own metrics passed through, so Prometheus never needs
kubo's RPC port (an admin API).
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from peer.api.schema import Document, Health, PeerInfo, TransactionsDocument


class ApiSource(Protocol):
    """What a peer (the daemon's one, the lab's many) serves: the documents of peer.api.schema."""

    def peers(self) -> list[str]: ...

    def transactions(self, peer: str | None, since: int) -> TransactionsDocument: ...

    def peer_info(self, peer: str | None) -> PeerInfo: ...

    def health(self) -> Health: ...


class UnknownPeer(KeyError):
    pass


def resolve_peer(peer: str | None, names: list[str]) -> str:
    """The peer a request names (the first one when it names none), or UnknownPeer."""
    if peer is None:
        return names[0]
    if peer not in names:
        raise UnknownPeer(peer)
    return peer


# kubo's exposition is about 120 KB; a scrape must finish within Prometheus' scrape_timeout (10 s on k3s)
IPFS_METRICS_MAX_BYTES = 4 * 1024 * 1024
IPFS_METRICS_TIMEOUT = 5.0
IPFS_METRICS_CONCURRENCY = 2
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

IpfsMetrics = Callable[[int, float], Awaitable[bytes]]


def document_response(document: Document, status_code: int = 200) -> Response:
    return Response(document.json_bytes(), status_code=status_code, media_type="application/json")


def ipfs_metrics_route(fetch: IpfsMetrics) -> Route:
    """GET /metrics/ipfs: kubo's `/debug/metrics/prometheus` and nothing else of its RPC, at most
    IPFS_METRICS_MAX_BYTES within IPFS_METRICS_TIMEOUT s, at most IPFS_METRICS_CONCURRENCY at a time.
    502 when kubo is down or answers badly, 504 when it is too slow."""
    from peer.ipfs.errors import IpfsError, IpfsTimeout, IpfsTooLarge

    slots = asyncio.Semaphore(IPFS_METRICS_CONCURRENCY)

    async def endpoint(_request: Request) -> Response:
        try:
            async with asyncio.timeout(IPFS_METRICS_TIMEOUT):
                async with slots:
                    body = await fetch(IPFS_METRICS_MAX_BYTES, IPFS_METRICS_TIMEOUT)
        except (TimeoutError, IpfsTimeout):
            message, status = f"kubo's metrics did not arrive within {IPFS_METRICS_TIMEOUT:g} s", 504
        except IpfsTooLarge:
            message, status = f"kubo's metrics exceed {IPFS_METRICS_MAX_BYTES} bytes", 502
        except IpfsError as error:
            message, status = f"kubo is unreachable or failed: {type(error).__name__}: {error}", 502
        else:
            return Response(body, media_type=PROMETHEUS_TEXT)
        return Response(message + "\n", status_code=status, media_type="text/plain; charset=utf-8")

    return Route("/metrics/ipfs", endpoint, methods=["GET"])


def host_allowed(host: str) -> bool:
    """Whether a request's Host names this API the way a client of it does: an IP address, `localhost`, or a
    single-label name (a compose service, a Kubernetes pod's short name). A DNS-rebinding page reaches a
    private address under a public, dotted name of its own; that Host is refused."""
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name == "localhost" or ("." not in name.rstrip(".") and name.replace("-", "").isalnum())


class HostCheck:
    """ASGI middleware: 421 Misdirected Request for a Host that :func:`host_allowed` refuses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not host_allowed(host):
                response = JSONResponse({"error": "Host not allowed"}, status_code=421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    source: ApiSource, *, metrics: Any | None = None, ipfs_metrics: IpfsMetrics | None = None
) -> Starlette:
    """`metrics` is a prometheus_client registry (or None: no /metrics route); `ipfs_metrics(max_bytes,
    timeout)` fetches the IPFS node's own metrics (or None: no /metrics/ipfs route)."""

    def _peer(request: Request) -> str | None:
        return request.query_params.get("peer") or None

    async def transactions(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
            if since < 0:
                raise ValueError
        except ValueError:
            return JSONResponse({"error": "since must be a non-negative integer"}, status_code=400)
        try:
            return document_response(source.transactions(_peer(request), since))
        except UnknownPeer as error:
            return JSONResponse({"error": f"unknown peer {error}"}, status_code=404)

    async def peers(_request: Request) -> Response:
        return JSONResponse({"peers": source.peers()})

    async def peer(request: Request) -> Response:
        try:
            return document_response(source.peer_info(_peer(request)))
        except UnknownPeer as error:
            return JSONResponse({"error": f"unknown peer {error}"}, status_code=404)

    async def healthz(_request: Request) -> Response:
        health = source.health()
        return document_response(health, status_code=200 if health.ok else 503)

    routes = [
        Route("/api/transactions", transactions),
        Route("/api/peers", peers),
        Route("/api/peer", peer),
        Route("/healthz", healthz),
    ]
    history = getattr(source, "lab_history", None)
    if history is not None:  # the lab's live API: its settings and per-round metrics so far

        async def lab(_request: Request) -> Response:
            return document_response(history())

        routes.append(Route("/api/lab", lab))
    if metrics is not None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics_endpoint(_request: Request) -> Response:
            return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

        routes.append(Route("/metrics", metrics_endpoint))
    if ipfs_metrics is not None:
        routes.append(ipfs_metrics_route(ipfs_metrics))
    return Starlette(routes=routes, middleware=[Middleware(HostCheck)])


class BackgroundServer:
    """Serves an app from a thread (the lab's runner is busy driving rounds on the main thread)."""

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 8000) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"http-{port}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.02)
        if not self.server.started:
            raise RuntimeError("the HTTP server did not start (is the port in use?)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
