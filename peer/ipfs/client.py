"""A thin typed async client for the kubo RPC API (``/api/v0``, POST only) on ``httpx``.

It speaks the wire format of kubo >= 0.11 and is tested against kubo v0.43.1 (built from the Go module proxy
by ``scripts/build-kubo.sh``, see ``peer.ipfs.testnet``). What it relies on, checked on kubo 0.43.1:

- ``block/put`` takes the codec as ``cid-codec`` and stores the bytes as they are; the client computes the
  CID locally and the caller checks that the node named the same one. :meth:`IpfsClient.dag_put` encodes
  locally too (:func:`encode_dag_cbor`, explicit :class:`Link` values), so an object's CID never depends on
  how a node would re-encode values.
- Objects are read with :meth:`IpfsClient.block_get` and decoded locally, never with ``dag/get``: the client
  verifies that the bytes hash to the CID it asked for (:func:`verify_block`), so a node or a Bitswap peer
  handing out other bytes is caught. That check is a security property, not a workaround.
- Pinning with ``pin=true`` pins recursively, which walks the whole DAG and fetches missing children from
  the network: transaction blocks are pinned directly instead (``pin/add?recursive=false``).
- ``pubsub/sub`` streams one JSON object a line: ``from`` is the publishing node's peer id, which kubo
  verifies against the message's signature (``Pubsub.DisableSigning=false`` and strict verification are
  kubo's defaults), and ``data``/``seqno``/``topicIDs`` are multibase.
- ``cat`` with ``length`` sends ``X-Content-Length`` = min(length, file size) before the body, so a file past
  ``max_bytes`` fails before any byte is read, and a body shorter than announced is a failure kubo could only
  report in an ``X-Stream-Error`` trailer (which httpx cannot read). A CAR is checked by
  :func:`peer.ipld.parse_car`.
- ``swarm/peers`` sends ``"Peers": null`` when there are none; errors come as ``{"Message", "Code", "Type"}``,
  unknown paths as a plain-text 404. CIDs read from the node are normalised to base32
  (:func:`normalize_cid`) before they are compared.

CIDs, block checks, the strict DAG-CBOR encoder, UnixFS file CIDs and CAR parsing are pure functions in
``peer.ipld``, shared with the transactions and the memory backend.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import libipld

from peer.ipfs.errors import (
    IpfsApiError,
    IpfsConnectionError,
    IpfsError,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsVerificationError,
)
from peer.ipld import (
    CODEC_DAG_CBOR,
    BlockVerificationError,
    cid_for,
    encode_dag_cbor,
    normalize_cid,
    verify_block,
)
from peer.retry import Backoff, retry

# Error bodies are small; anything bigger is not an error body worth keeping.
_MAX_ERROR_BODY = 64 * 1024
# Pubsub lines over ~512 KiB already break common clients; 1 MiB bounds memory without refusing them.
DEFAULT_MAX_LINE_BYTES = 1024 * 1024
DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024


class _Default(enum.Enum):
    """Sentinel type: 'use the client's configured timeout' (None already means 'no timeout')."""

    TOKEN = 0


DEFAULT = _Default.TOKEN
TimeoutArg = float | None | _Default


# --------------------------------------------------------------------------------------------------
# Topics and multibase (CIDs, blocks, DAG-CBOR and CAR live in peer.ipld)
# --------------------------------------------------------------------------------------------------


def encode_topic(topic: str) -> str:
    """Pubsub topics travel as multibase base64url without padding (``u`` prefix)."""
    return "u" + base64.urlsafe_b64encode(topic.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_multibase(value: str) -> bytes:
    try:
        return libipld.decode_multibase(value)[1]
    except ValueError as e:
        raise IpfsError(f"bad multibase value from the node: {value!r}") from e


# --------------------------------------------------------------------------------------------------
# Response types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeId:
    peer_id: str
    public_key: str
    addresses: list[str]
    agent_version: str
    protocols: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NodeVersion:
    version: str
    commit: str
    repo: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SwarmPeer:
    peer_id: str
    addr: str  # without the trailing /p2p/<peer_id>


@dataclass(frozen=True, slots=True)
class RepoStat:
    num_objects: int
    repo_size: int
    storage_max: int
    repo_path: str
    version: str


@dataclass(frozen=True, slots=True)
class PubsubMessage:
    from_peer: str  # libp2p peer id of the publishing node, verified by kubo against the message's signature
    data: bytes
    seqno: bytes
    topics: tuple[str, ...]


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


def api_base_url(api: str) -> str:
    """``http://host:port[/api/v0]`` or a multiaddr like ``/ip4/127.0.0.1/tcp/5001`` -> the /api/v0 URL."""
    if api.startswith("/"):
        parts = api.strip("/").split("/")
        if len(parts) < 4 or parts[0] not in {"ip4", "ip6", "dns", "dns4", "dns6"} or parts[2] != "tcp":
            raise ValueError(f"unsupported API multiaddr {api!r}")
        host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
        scheme = "https" if "https" in parts[4:] else "http"
        api = f"{scheme}://{host}:{parts[3]}"
    base = api.rstrip("/")
    return base if base.endswith("/api/v0") else base + "/api/v0"


class IpfsClient:
    """Async client for one IPFS node's RPC API.

    ``timeout`` (seconds, ``None`` for none) bounds every call as a whole; streaming calls
    (:meth:`dag_export`) use it as an idle timeout between chunks, and subscriptions have no read
    timeout. Idempotent reads are retried ``retries`` times on connection errors and timeouts with
    exponential backoff; writes are never retried here (the caller knows whether a repeat is safe).
    """

    def __init__(
        self,
        api_url: str = "http://127.0.0.1:5001",
        *,
        timeout: float | None = 30.0,
        retries: int = 2,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        self.base_url = api_base_url(api_url)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_json_bytes = max_json_bytes
        # trust_env=False: a proxy from the environment must never sit between a peer and its own node.
        # a short keepalive_expiry: never reuse a connection an idle node may be closing at that moment
        # (a write would then fail, and writes are not retried).
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(keepalive_expiry=2.0),
            transport=transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"IpfsClient({self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------------------

    def _timeout(self, request_timeout: TimeoutArg) -> float | None:
        return self.timeout if isinstance(request_timeout, _Default) else request_timeout

    async def _request(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, Any] | None = None,
        request_timeout: TimeoutArg = DEFAULT,
        max_bytes: int | None = None,
        idempotent: bool = False,
    ) -> tuple[bytes, httpx.Headers]:
        return await retry(
            lambda: self._request_once(path, params, files, self._timeout(request_timeout), max_bytes),
            backoff=Backoff(self.backoff, max(self.backoff, self.max_backoff)),
            retry_on=(IpfsConnectionError, IpfsTimeout),
            attempts=1 + (self.retries if idempotent else 0),
        )

    async def _request_once(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        files: Mapping[str, Any] | None,
        limit: float | None,
        max_bytes: int | None,
    ) -> tuple[bytes, httpx.Headers]:
        with _transport_errors(path, self.base_url, limit):
            # httpx's timeouts are per phase (each read); asyncio.timeout makes it a deadline for the call.
            async with (
                asyncio.timeout(limit),
                self._http.stream(
                    "POST", path, params=params, files=files, timeout=httpx.Timeout(limit)
                ) as response,
            ):
                if response.status_code != 200:
                    raise await _api_error(response)
                body = await _read_limited(response, max_bytes, path)
                return body, response.headers

    async def _json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, Any] | None = None,
        request_timeout: TimeoutArg = DEFAULT,
        idempotent: bool = False,
    ) -> Any:
        body, _ = await self._request(
            path,
            params,
            files=files,
            request_timeout=request_timeout,
            max_bytes=self.max_json_bytes,
            idempotent=idempotent,
        )
        try:
            return json.loads(body) if body.strip() else {}
        except json.JSONDecodeError:
            # Some commands answer NDJSON (one object per line); return the lines as a list.
            return _ndjson(body, path)

    # -- node --------------------------------------------------------------------------------------

    async def id(self, *, request_timeout: TimeoutArg = DEFAULT) -> NodeId:
        obj = await self._json("id", request_timeout=request_timeout, idempotent=True)
        return NodeId(
            peer_id=obj["ID"],
            public_key=obj.get("PublicKey", ""),
            addresses=list(obj.get("Addresses") or []),
            agent_version=obj.get("AgentVersion", ""),
            protocols=list(obj.get("Protocols") or []),
        )

    async def version(self, *, request_timeout: TimeoutArg = DEFAULT) -> NodeVersion:
        obj = await self._json("version", request_timeout=request_timeout, idempotent=True)
        return NodeVersion(
            version=str(obj.get("Version", "")),
            commit=str(obj.get("Commit", "")),
            repo=str(obj.get("Repo", "")),
            raw=obj,
        )

    async def repo_stat(self, *, request_timeout: TimeoutArg = DEFAULT) -> RepoStat:
        obj = await self._json("repo/stat", request_timeout=request_timeout, idempotent=True)
        return RepoStat(
            num_objects=int(obj.get("NumObjects", 0)),
            repo_size=int(obj.get("RepoSize", 0)),
            storage_max=int(obj.get("StorageMax", 0)),
            repo_path=str(obj.get("RepoPath", "")),
            version=str(obj.get("Version", "")),
        )

    async def repo_gc(self, *, request_timeout: TimeoutArg = DEFAULT) -> int:
        """Run a garbage collection now (kubo also runs it by itself with ``--enable-gc``); return how many
        blocks it removed."""
        body, _ = await self._request(
            "repo/gc", request_timeout=request_timeout, max_bytes=self.max_json_bytes
        )
        return sum(1 for entry in _ndjson(body, "repo/gc") if entry.get("Key") or entry.get("Cid"))

    async def config_get(self, key: str, *, request_timeout: TimeoutArg = DEFAULT) -> Any:
        """One value of the node's configuration (dotted key, e.g. ``Datastore.StorageMax``)."""
        obj = await self._json("config", {"arg": key}, request_timeout=request_timeout, idempotent=True)
        return obj.get("Value")

    async def config_set(self, key: str, value: Any, *, request_timeout: TimeoutArg = DEFAULT) -> None:
        """Set one configuration value (JSON); most keys act only after the daemon restarts."""
        params = {"arg": [key, json.dumps(value)], "json": True}
        await self._json("config", params, request_timeout=request_timeout)

    async def prometheus_metrics(self, *, max_bytes: int, request_timeout: TimeoutArg = DEFAULT) -> bytes:
        """kubo's own Prometheus metrics (``/debug/metrics/prometheus`` on the RPC port), at most
        ``max_bytes`` (:class:`IpfsTooLarge` past that)."""
        limit = self._timeout(request_timeout)
        url = self.base_url.removesuffix("/api/v0") + "/debug/metrics/prometheus"
        with _transport_errors("kubo metrics", url, limit):
            async with (
                asyncio.timeout(limit),
                self._http.stream("GET", url, timeout=httpx.Timeout(limit)) as response,
            ):
                if response.status_code != 200:
                    raise await _api_error(response)
                return await _read_limited(response, max_bytes, "kubo metrics")

    # -- files and blocks --------------------------------------------------------------------------

    async def add(
        self,
        data: bytes,
        *,
        pin: bool = True,
        only_hash: bool = False,
        filename: str = "data",
        request_timeout: TimeoutArg = DEFAULT,
    ) -> str:
        """Add ``data`` as a UnixFS file (CIDv1, raw leaves, sha2-256, default chunker and layout); return
        its CID in base32, which :func:`peer.ipld.unixfs_file_cid` computes without a node."""
        params = {
            "cid-version": 1,
            "raw-leaves": True,
            "hash": "sha2-256",
            "pin": pin,
            "only-hash": only_hash,
            "cid-base": "base32",  # kubo's default for CIDv1 anyway; explicit, as CIDs are compared as text
        }
        files = {"file": (filename, data, "application/octet-stream")}
        body, _ = await self._request(
            "add", params, files=files, request_timeout=request_timeout, max_bytes=1 << 20
        )
        entries = [e for e in _ndjson(body, "add") if "Hash" in e]
        if not entries:
            raise IpfsError(f"add returned no CID: {body[:200]!r}")
        return normalize_cid(entries[-1]["Hash"])

    async def cat(
        self, cid: str, *, max_bytes: int, offset: int = 0, request_timeout: TimeoutArg = DEFAULT
    ) -> bytes:
        """The content of a UnixFS file; :class:`IpfsTooLarge` as soon as it exceeds ``max_bytes``."""
        # Ask for one byte past the limit: enough to tell "too large", and the node stops there.
        params = {"arg": cid, "offset": offset, "length": max_bytes + 1}
        body, headers = await self._request(
            "cat", params, request_timeout=request_timeout, max_bytes=max_bytes, idempotent=True
        )
        expected = headers.get("x-content-length")
        if expected is not None and expected.isdigit() and offset == 0 and len(body) < int(expected):
            # kubo reports a failure mid-stream only in a trailer; a short body is how we see it.
            raise IpfsConnectionError(f"cat {cid}: got {len(body)} of {expected} bytes")
        return body

    async def has_block(self, cid: str, *, request_timeout: TimeoutArg = DEFAULT) -> bool:
        """Whether the node holds the block itself (asked offline: nothing is fetched)."""
        try:
            await self._json(
                "block/stat", {"arg": cid, "offline": True}, request_timeout=request_timeout, idempotent=True
            )
        except IpfsApiError as e:
            if "not found locally" in e.message:
                return False
            raise
        return True

    async def file_size(self, cid: str, *, request_timeout: TimeoutArg = DEFAULT) -> int:
        """Bytes of a UnixFS file's content (``files/stat``: reads only its root block)."""
        obj = await self._json(
            "files/stat", {"arg": f"/ipfs/{cid}"}, request_timeout=request_timeout, idempotent=True
        )
        return int(obj.get("Size", 0))

    async def block_get(
        self, cid: str, *, max_bytes: int, verify: bool = True, request_timeout: TimeoutArg = DEFAULT
    ) -> bytes:
        """Raw bytes of one block; by default checked to hash to ``cid`` (:func:`verify_block`)."""
        body, _ = await self._request(
            "block/get", {"arg": cid}, request_timeout=request_timeout, max_bytes=max_bytes, idempotent=True
        )
        if verify:
            try:
                verify_block(cid, body)
            except BlockVerificationError as e:
                raise IpfsVerificationError(str(e)) from e
        return body

    async def block_put(
        self,
        data: bytes,
        *,
        codec: Literal["raw", "dag-cbor", "dag-pb"] = "raw",
        pin: bool = False,
        request_timeout: TimeoutArg = DEFAULT,
    ) -> str:
        """Store ``data`` as one block (sha2-256, CIDv1) without re-encoding; return the node's CID."""
        params: dict[str, Any] = {"mhtype": "sha2-256", "pin": pin, "cid-codec": codec}
        files = {"file": ("block", data, "application/octet-stream")}
        obj = await self._json("block/put", params, files=files, request_timeout=request_timeout)
        if isinstance(obj, list):  # NDJSON, one entry per block
            obj = obj[-1]
        return normalize_cid(obj["Key"])

    async def dag_put(self, obj: Any, *, pin: bool = True, request_timeout: TimeoutArg = DEFAULT) -> str:
        """Store ``obj`` as a DAG-CBOR block with real links (:class:`Link`); return its CID.

        The CID is computed locally and must match the node's, so the caller's id for the object does
        not depend on how a node re-encodes values. With ``pin`` (recursive), the node fetches every
        linked block, so add linked objects first.
        """
        data = encode_dag_cbor(obj)
        expected = cid_for(data, CODEC_DAG_CBOR)
        got = await self.block_put(data, codec="dag-cbor", pin=pin, request_timeout=request_timeout)
        if got != expected:
            raise IpfsVerificationError(f"node stored the object as {got}, expected {expected}")
        return expected

    async def dag_export(
        self, cid: str, *, max_bytes: int | None = None, request_timeout: TimeoutArg = DEFAULT
    ) -> AsyncIterator[bytes]:
        """Stream the CAR v1 of the DAG under ``cid`` (the node fetches missing blocks from peers).

        ``request_timeout`` is the longest wait for the next chunk, not for the whole export.
        Aborts with :class:`IpfsTooLarge` once more than ``max_bytes`` arrived.
        """
        t = self._timeout(request_timeout)
        total = 0
        try:
            async with self._http.stream(
                "POST", "dag/export", params={"arg": cid}, timeout=httpx.Timeout(t)
            ) as response:
                if response.status_code != 200:
                    raise await _api_error(response)
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if max_bytes is not None and total > max_bytes:
                        raise IpfsTooLarge(max_bytes, f"CAR export of {cid}")
                    yield chunk
        except httpx.TimeoutException as e:
            raise IpfsTimeout(f"dag/export {cid}: no data for {t} s") from e
        except httpx.RequestError as e:
            raise IpfsConnectionError(f"dag/export {cid} on {self.base_url}: {e!r}") from e

    async def dag_export_to(
        self,
        cid: str,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        request_timeout: TimeoutArg = DEFAULT,
    ) -> int:
        """Write the CAR of ``cid`` to ``path`` (atomically, via a temporary file); return its size."""
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        size = 0
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in self.dag_export(cid, max_bytes=max_bytes, request_timeout=request_timeout):
                await asyncio.to_thread(handle.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
        return size

    # -- pins --------------------------------------------------------------------------------------

    async def pin_add(
        self, cid: str, *, recursive: bool = True, request_timeout: TimeoutArg = DEFAULT
    ) -> list[str]:
        return await self._pin("pin/add", cid, recursive, request_timeout)

    async def pin_rm(
        self, cid: str, *, recursive: bool = True, request_timeout: TimeoutArg = DEFAULT
    ) -> list[str]:
        return await self._pin("pin/rm", cid, recursive, request_timeout)

    async def _pin(self, command: str, cid: str, recursive: bool, request_timeout: TimeoutArg) -> list[str]:
        obj = await self._json(command, {"arg": cid, "recursive": recursive}, request_timeout=request_timeout)
        return [normalize_cid(c) for c in obj.get("Pins") or []]

    async def pin_ls(
        self,
        type: Literal["recursive", "direct", "indirect", "all"] = "recursive",
        *,
        request_timeout: TimeoutArg = DEFAULT,
    ) -> dict[str, str]:
        """Pinned CIDs (normalised, see :func:`normalize_cid`) mapped to their pin type."""
        obj = await self._json("pin/ls", {"type": type}, request_timeout=request_timeout, idempotent=True)
        if isinstance(obj, list):  # streamed form, one {"Cid", "Type"} a line
            return {normalize_cid(e["Cid"]): e["Type"] for e in obj}
        return {normalize_cid(c): info["Type"] for c, info in (obj.get("Keys") or {}).items()}

    async def is_pinned(self, cid: str, *, request_timeout: TimeoutArg = DEFAULT) -> bool:
        """Whether ``cid`` is pinned (any type), without listing every pin."""
        try:
            obj = await self._json(
                "pin/ls", {"arg": cid, "type": "all"}, request_timeout=request_timeout, idempotent=True
            )
        except IpfsApiError as e:
            if "not pinned" in e.message:  # kubo: "path '...' is not pinned"
                return False
            raise
        return bool(obj.get("Keys")) if isinstance(obj, dict) else bool(obj)

    # -- swarm -------------------------------------------------------------------------------------

    async def key_sign(self, data: bytes, *, request_timeout: TimeoutArg = DEFAULT) -> bytes:
        """The node's own key (``self``) signs ``data`` (kubo prefixes "libp2p-key signed message:")."""
        files = {"file": ("data", data, "application/octet-stream")}
        obj = await self._json("key/sign", files=files, request_timeout=request_timeout)
        return bytes(libipld.decode_multibase(obj["Signature"])[1])

    async def key_verify(
        self, peer_id: str, signature: bytes, data: bytes, *, request_timeout: TimeoutArg = DEFAULT
    ) -> bool:
        """Whether ``signature`` is ``peer_id``'s key's signature of ``data`` (the public key is inside an
        Ed25519 peer id: nothing is fetched). A malformed peer id is an :class:`IpfsApiError`."""
        params = {"key": peer_id, "signature": libipld.encode_multibase("u", signature)}
        files = {"file": ("data", data, "application/octet-stream")}
        obj = await self._json(
            "key/verify", params, files=files, request_timeout=request_timeout, idempotent=True
        )
        return obj.get("SignatureValid") is True

    async def swarm_peers(self, *, request_timeout: TimeoutArg = DEFAULT) -> list[SwarmPeer]:
        obj = await self._json("swarm/peers", request_timeout=request_timeout, idempotent=True)
        peers = []
        for entry in obj.get("Peers") or []:  # kubo: null when there are none
            peer_id, addr = entry["Peer"], entry.get("Addr", "")
            suffix = f"/p2p/{peer_id}"
            peers.append(SwarmPeer(peer_id=peer_id, addr=addr.removesuffix(suffix)))
        return peers

    async def swarm_connect(self, multiaddr: str, *, request_timeout: TimeoutArg = DEFAULT) -> None:
        await self._json("swarm/connect", {"arg": multiaddr}, request_timeout=request_timeout)

    # -- pubsub ------------------------------------------------------------------------------------

    async def pubsub_pub(self, topic: str, data: bytes, *, request_timeout: TimeoutArg = DEFAULT) -> None:
        """Publish ``data`` on ``topic``. Keep it small (announce CIDs, never weights)."""
        files = {"file": ("data", data, "application/octet-stream")}
        await self._request(
            "pubsub/pub", {"arg": encode_topic(topic)}, files=files, request_timeout=request_timeout
        )

    def pubsub_sub(self, topic: str, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Subscription:
        """A subscription to ``topic``: ``async with client.pubsub_sub(t) as sub: async for msg in sub``.

        Entering the context waits until the node accepted the subscription; iterating without it
        subscribes lazily on the first ``__anext__``.
        """
        return Subscription(self, topic, max_line_bytes=max_line_bytes)

    async def pubsub_peers(self, topic: str, *, request_timeout: TimeoutArg = DEFAULT) -> list[str]:
        obj = await self._json(
            "pubsub/peers", {"arg": encode_topic(topic)}, request_timeout=request_timeout, idempotent=True
        )
        return list(obj.get("Strings") or [])

    async def pubsub_ls(self, *, request_timeout: TimeoutArg = DEFAULT) -> list[str]:
        obj = await self._json("pubsub/ls", request_timeout=request_timeout, idempotent=True)
        return [_decode_multibase(t).decode("utf-8", "replace") for t in obj.get("Strings") or []]


class Subscription:
    """A live ``pubsub/sub`` stream. Not safe for concurrent iteration; close it with :meth:`aclose`.

    The stream never ends on its own: if the node closes it (stopped, restarted) iteration raises
    :class:`IpfsConnectionError`, so the caller can resubscribe.
    """

    def __init__(self, client: IpfsClient, topic: str, *, max_line_bytes: int) -> None:
        self.topic = topic
        self._client = client
        self._max_line_bytes = max_line_bytes
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._buffer = bytearray()
        self._closed = False

    async def start(self) -> Self:
        """Send the request and wait for the node to accept it (bounded by the client's timeout)."""
        if self._response is not None:
            return self
        if self._closed:
            raise IpfsError("subscription is closed")
        client = self._client
        t = client.timeout
        # No read timeout: a quiet topic is normal. Connecting and the answer's headers are bounded.
        request = client._http.build_request(
            "POST",
            "pubsub/sub",
            params={"arg": encode_topic(self.topic)},
            timeout=httpx.Timeout(t, read=None),
        )
        with _transport_errors(f"pubsub/sub {self.topic!r}", client.base_url, t):
            async with asyncio.timeout(t):
                response = await client._http.send(request, stream=True)
        if response.status_code != 200:
            try:
                raise await _api_error(response)
            finally:
                await response.aclose()
        self._response = response
        self._chunks = response.aiter_bytes()
        return self

    async def aclose(self) -> None:
        self._closed = True
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            await response.aclose()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> PubsubMessage:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        while True:
            line = await self._next_line()
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise IpfsError(f"bad pubsub line: {line[:200]!r}") from e
            return PubsubMessage(
                from_peer=str(obj.get("from", "")),
                data=_decode_multibase(obj["data"]) if obj.get("data") else b"",
                seqno=_decode_multibase(obj["seqno"]) if obj.get("seqno") else b"",
                topics=tuple(
                    _decode_multibase(t).decode("utf-8", "replace") for t in obj.get("topicIDs") or []
                ),
            )

    async def _next_line(self) -> bytes:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            if len(self._buffer) > self._max_line_bytes:
                await self.aclose()
                raise IpfsTooLarge(self._max_line_bytes, "pubsub message line")
            if self._chunks is None:
                raise IpfsConnectionError(f"subscription to {self.topic!r} was not started")
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                await self.aclose()
                raise IpfsConnectionError(f"subscription to {self.topic!r} was closed by the node") from None
            except httpx.RequestError as e:
                await self.aclose()
                raise IpfsConnectionError(f"subscription to {self.topic!r} broke: {e!r}") from e
            self._buffer += chunk


# --------------------------------------------------------------------------------------------------
# Response helpers
# --------------------------------------------------------------------------------------------------


async def _read_limited(response: httpx.Response, max_bytes: int | None, what: str) -> bytes:
    """Read the body, aborting as soon as it grows past ``max_bytes`` (never buffering beyond it)."""
    if max_bytes is not None:
        # A declared size past the limit fails before any body byte is read (X-Content-Length: kubo cat).
        for header in ("content-length", "x-content-length"):
            declared = response.headers.get(header)
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise IpfsTooLarge(max_bytes, what)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if max_bytes is not None and len(body) > max_bytes:
            raise IpfsTooLarge(max_bytes, what)
    return bytes(body)


@contextlib.contextmanager
def _transport_errors(what: str, where: str, limit: float | None) -> Iterator[None]:
    """httpx's and asyncio's failures as this client's transient errors: a deadline or an httpx timeout is
    IpfsTimeout, any other request failure IpfsConnectionError (both retried by idempotent calls)."""
    try:
        yield
    except TimeoutError as e:
        raise IpfsTimeout(f"{what} did not finish within {limit} s") from e
    except httpx.TimeoutException as e:
        raise IpfsTimeout(f"{what} timed out: {e!r}") from e
    except httpx.RequestError as e:
        raise IpfsConnectionError(f"{what} on {where}: {e!r}") from e


async def _api_error(response: httpx.Response) -> IpfsApiError:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= _MAX_ERROR_BODY:
            break
    text = bytes(body[:_MAX_ERROR_BODY]).decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
        message, code, type_ = str(obj["Message"]), obj.get("Code"), str(obj.get("Type", "error"))
    except (json.JSONDecodeError, KeyError, TypeError):
        # kubo answers unknown paths with a plain-text 404; keep whatever it said.
        message, code, type_ = text or response.reason_phrase, None, "error"
    return IpfsApiError(
        message, code=code if isinstance(code, int) else None, type_=type_, status=response.status_code
    )


def _ndjson(body: bytes, what: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise IpfsError(f"{what}: unreadable response {body[:200]!r}") from e
