"""IPLD without I/O: CIDs, block verification, strict DAG-CBOR with explicit links, UnixFS file CIDs, CAR.

One module for what the IPFS client, the transactions and the in-memory storage all need, so that an id
computed here is exactly the CID an IPFS node gives the same block:

- :func:`encode_dag_cbor` is strict: links are :class:`Link` values and ``bytes`` always stay byte strings.
  libipld's own encoder turns any ``bytes`` that merely parse as a CID into a link, which would silently
  corrupt binary fields; its decoder cannot tell a link from a byte string, so decoders here re-encode
  what they read and compare (see ``peer.tangle.transaction``).
- :func:`unixfs_file_cid` is the CID ``ipfs add --cid-version=1 --raw-leaves`` gives a file with the
  default chunker (256 KiB) and balanced layout (174 links a node), kubo's defaults: weights
  are added as UnixFS files, and their CIDs must be computable without a node (the deterministic genesis,
  the memory backend) and checkable after a ``cat`` (:func:`verify_file`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import libipld

# Multicodec and multihash codes we need by number.
CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
CODEC_DAG_CBOR = 0x71
MH_IDENTITY = 0x00
MH_SHA2_256 = 0x12

# kubo's UnixFS importer defaults (size-262144 chunker, balanced DAG builder).
UNIXFS_CHUNK = 262_144
UNIXFS_MAX_LINKS = 174
_MAX_DAG_DEPTH = 64


class BlockVerificationError(ValueError):
    """Bytes do not hash to the CID they were fetched under, or the CID cannot be checked.

    ``reason`` is a short stable label: ``bad_cid``, ``unsupported_hash`` or ``hash_mismatch``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# CIDs
# --------------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """Unsigned LEB128, as multiformats and protobuf use it."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 varint at ``pos``; return (value, next position)."""
    value = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("varint longer than 10 bytes")


def _b32(data: bytes) -> str:
    return "b" + base64.b32encode(data).decode("ascii").rstrip("=").lower()


def cid_to_bytes(cid: str | bytes) -> bytes:
    """Binary form of a CID given as text (any multibase, or CIDv0) or as bytes."""
    try:
        info = libipld.decode_cid(cid)
    except (ValueError, TypeError) as e:
        raise ValueError(f"invalid CID {cid!r:.100}: {e}") from e
    mh = info["hash"]
    multihash = varint(mh["code"]) + varint(mh["size"]) + mh["digest"]
    if info["version"] == 0:
        return multihash
    return varint(1) + varint(info["codec"]) + multihash


def normalize_cid(cid: str | bytes) -> str:
    """Canonical text of a CID: CIDv1 in base32 (what kubo prints); a CIDv0 stays as it is.

    CIDs may be printed in any multibase (base58btc, base32, ...), so they are compared only after this.
    """
    raw = cid_to_bytes(cid)
    if raw[:2] == b"\x12\x20" and len(raw) == 34:
        return libipld.encode_cid(raw)
    return _b32(raw)


class CidRejected(ValueError):
    """A CID outside the one canonical form the tangle accepts; ``reason`` is a stable label
    (``bad_cid``, ``unsupported_hash``, ``bad_codec``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


TRANSACTION_CODECS = frozenset({CODEC_DAG_CBOR})
WEIGHTS_CODECS = frozenset({CODEC_RAW, CODEC_DAG_PB})


def canonical_cid(cid: str | bytes, codecs: frozenset[int]) -> str:
    """The one spelling of ``cid`` peers compare: CIDv1, sha2-256, base32, with a codec from ``codecs``.

    The same block can be named in many ways (base58btc or base32 text, CIDv0, the raw or dag-json codec
    over the same multihash: ``block/get`` ignores the codec), so every CID from the network goes through
    this before any lookup; anything outside the form is refused, not translated.
    """
    try:
        info = libipld.decode_cid(cid)
    except (ValueError, TypeError) as e:
        raise CidRejected("bad_cid", f"not a CID: {cid!r:.100}") from e
    mh = info["hash"]
    if mh["code"] != MH_SHA2_256 or mh["size"] != 32:
        raise CidRejected("unsupported_hash", f"multihash 0x{mh['code']:x} in {cid!r:.100} (only sha2-256)")
    if info["version"] != 1 or info["codec"] not in codecs:
        raise CidRejected("bad_codec", f"{cid!r:.100} is not a CIDv1 of codec {sorted(codecs)}")
    return _b32(_cid_prefix(info["codec"]) + mh["digest"])


def _cid_prefix(codec: int) -> bytes:
    return varint(1) + varint(codec) + varint(MH_SHA2_256) + varint(32)


def cid_codec(cid: str) -> int:
    """The multicodec of a CID (raw, dag-pb, dag-cbor, ...)."""
    return int(libipld.decode_cid(cid)["codec"])


def _cid_bytes_for(data: bytes | memoryview, codec: int) -> bytes:
    digest = hashlib.sha256(data).digest()
    return varint(1) + varint(codec) + varint(MH_SHA2_256) + varint(len(digest)) + digest


def cid_for(data: bytes, codec: int = CODEC_RAW) -> str:
    """The CIDv1 (sha2-256, base32) of a block with the given codec."""
    return _b32(_cid_bytes_for(data, codec))


def verify_block(cid: str | bytes, data: bytes) -> None:
    """Raise :class:`BlockVerificationError` unless ``data`` hashes to the multihash inside ``cid``.

    Supports sha2-256 (what every node here uses by default) and identity multihashes; anything else
    is refused rather than trusted unchecked.
    """
    try:
        mh = libipld.decode_cid(cid)["hash"]
    except (ValueError, TypeError) as e:
        raise BlockVerificationError("bad_cid", f"cannot verify against invalid CID {cid!r:.100}") from e
    if mh["code"] == MH_SHA2_256:
        ok = mh["size"] == 32 and hashlib.sha256(data).digest() == mh["digest"]
    elif mh["code"] == MH_IDENTITY:
        ok = data == mh["digest"]
    else:
        raise BlockVerificationError("unsupported_hash", f"unsupported multihash 0x{mh['code']:x} in {cid!r}")
    if not ok:
        raise BlockVerificationError("hash_mismatch", f"block of {len(data)} bytes does not hash to {cid!r}")


# --------------------------------------------------------------------------------------------------
# Strict DAG-CBOR
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """An IPLD link (DAG-CBOR tag 42) to ``cid``. Use it in objects given to :func:`encode_dag_cbor`."""

    cid: str

    def __post_init__(self) -> None:
        cid_to_bytes(self.cid)  # fail early on a malformed CID, not at publish time


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 1 << 8:
        return bytes([major << 5 | 24, n])
    if n < 1 << 16:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes([major << 5 | 26]) + n.to_bytes(4, "big")
    if n < 1 << 64:
        return bytes([major << 5 | 27]) + n.to_bytes(8, "big")
    raise ValueError(f"integer {n} out of the 64-bit range of DAG-CBOR")


def _link_target(value: Any) -> str | None:
    if isinstance(value, Link):
        return value.cid
    # dag-json's link form {"/": "<cid>"} is accepted too, as the node's dag-json codec would read it.
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get("/"), str):
        return value["/"]
    return None


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > _MAX_DAG_DEPTH:
        raise ValueError("object nested too deeply for DAG-CBOR encoding")
    target = _link_target(value)
    if target is not None:
        raw = b"\x00" + cid_to_bytes(target)  # the leading 0x00 is the identity multibase prefix
        out += b"\xd8\x2a" + _head(2, len(raw)) + raw
    elif value is None:
        out += b"\xf6"
    elif value is True:
        out += b"\xf5"
    elif value is False:
        out += b"\xf4"
    elif isinstance(value, int):
        out += _head(0, value) if value >= 0 else _head(1, -1 - value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("DAG-CBOR cannot hold NaN or infinity")
        # Always 64-bit, as DAG-CBOR requires; -0.0 as 0.0, like libipld, so both give the same CID.
        out += b"\xfb" + struct.pack(">d", value if value != 0.0 else 0.0)
    elif isinstance(value, str):
        encoded = value.encode("utf-8")
        out += _head(3, len(encoded)) + encoded
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out += _head(2, len(data)) + data
    elif isinstance(value, list | tuple):
        out += _head(4, len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, Mapping):
        keys: list[tuple[bytes, Any]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"DAG-CBOR map keys must be strings, got {type(key).__name__}")
            keys.append((key.encode("utf-8"), item))
        # Canonical DAG-CBOR order: shorter keys first, then bytewise.
        keys.sort(key=lambda kv: (len(kv[0]), kv[0]))
        out += _head(5, len(keys))
        for encoded_key, item in keys:
            out += _head(3, len(encoded_key)) + encoded_key
            _encode(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as DAG-CBOR")


def encode_dag_cbor(obj: Any) -> bytes:
    """Strict DAG-CBOR encoding with explicit links (:class:`Link` or dag-json ``{"/": cid}``)."""
    out = bytearray()
    _encode(obj, out, 0)
    return bytes(out)


# --------------------------------------------------------------------------------------------------
# UnixFS files (what `ipfs add --cid-version=1 --raw-leaves` stores)
# --------------------------------------------------------------------------------------------------


def _pb_bytes(field: int, data: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(data)) + data


def _pb_uint(field: int, n: int) -> bytes:
    return varint(field << 3) + varint(n)


@dataclass(frozen=True, slots=True)
class _Node:
    cid: bytes  # binary CID
    file_size: int  # bytes of file content below this node
    tsize: int  # bytes of this block and every block below it (dag-pb's Tsize)


def _file_node(children: list[_Node]) -> tuple[_Node, bytes]:
    file_size = sum(c.file_size for c in children)
    unixfs = _pb_uint(1, 2) + _pb_uint(3, file_size)  # Type=File, filesize
    unixfs += b"".join(_pb_uint(4, c.file_size) for c in children)  # blocksizes, not packed
    # dag-pb canonical form: Links (field 2) before Data (field 1); the importers write Name "".
    links = b"".join(
        _pb_bytes(2, _pb_bytes(1, c.cid) + _pb_bytes(2, b"") + _pb_uint(3, c.tsize)) for c in children
    )
    block = links + _pb_bytes(1, unixfs)
    cid = _cid_bytes_for(block, CODEC_DAG_PB)
    return _Node(cid, file_size, len(block) + sum(c.tsize for c in children)), block


def unixfs_file_blocks(data: bytes) -> tuple[str, dict[str, bytes]]:
    """Root CID and every block (CID -> bytes) of ``data`` imported as a UnixFS file, like ``ipfs add``.

    One chunk is a raw block (the file's CID is the raw leaf's); more become a balanced tree of dag-pb
    nodes over raw leaves, each node holding up to 174 links.
    """
    blocks: dict[str, bytes] = {}
    return _unixfs(data, blocks), blocks


def unixfs_file_cid(data: bytes) -> str:
    """The CID ``ipfs add --cid-version=1 --raw-leaves`` (default chunker and layout) gives ``data``."""
    return _unixfs(data, None)


def _unixfs(data: bytes, blocks: dict[str, bytes] | None) -> str:
    view = memoryview(data)  # hashing slices of a view copies nothing (weights are tens of MB)
    level: list[_Node] = []
    for start in range(0, max(len(view), 1), UNIXFS_CHUNK):
        chunk = view[start : start + UNIXFS_CHUNK]
        cid = _cid_bytes_for(chunk, CODEC_RAW)
        if blocks is not None:
            blocks[_b32(cid)] = bytes(chunk)
        level.append(_Node(cid, len(chunk), len(chunk)))
    while len(level) > 1:
        parents = []
        for start in range(0, len(level), UNIXFS_MAX_LINKS):
            node, block = _file_node(level[start : start + UNIXFS_MAX_LINKS])
            if blocks is not None:
                blocks[_b32(node.cid)] = block
            parents.append(node)
        level = parents
    return _b32(level[0].cid)


def verify_file(cid: str, data: bytes) -> None:
    """Check that ``data`` (from ``cat``) is the UnixFS file ``cid`` names, as :func:`unixfs_file_cid`
    would store it; files chunked otherwise cannot be checked and are refused."""
    try:
        expected = normalize_cid(cid)
    except ValueError as e:
        raise BlockVerificationError("bad_cid", str(e)) from e
    if unixfs_file_cid(data) != expected:
        raise BlockVerificationError("hash_mismatch", f"{len(data)} bytes are not the file {cid}")


# --------------------------------------------------------------------------------------------------
# CAR v1
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Car:
    """A parsed CAR v1: its roots and its blocks by (normalised) CID, in file order."""

    roots: list[str]
    blocks: dict[str, bytes]


def parse_car(data: bytes, *, verify: bool = True) -> Car:
    """Parse a CAR v1 file (any block codecs) and, by default, verify every block against its CID.

    libipld's ``decode_car`` accepts only dag-cbor blocks, and a CAR of an experiment holds raw leaves
    and dag-pb nodes (weights).
    """
    view = memoryview(data)
    header_len, pos = read_varint(view, 0)
    if pos + header_len > len(view):
        raise ValueError("truncated CAR header")
    header = libipld.decode_dag_cbor(bytes(view[pos : pos + header_len]))
    pos += header_len
    if not isinstance(header, dict) or header.get("version") != 1:
        raise ValueError(f"not a CAR v1 header: {header!r:.200}")
    roots = [normalize_cid(bytes(root)) for root in header.get("roots", [])]
    blocks: dict[str, bytes] = {}
    while pos < len(view):
        section_len, start = read_varint(view, pos)
        end = start + section_len
        if end > len(view):
            raise ValueError("truncated CAR block section")
        if view[start] == 0x12 and view[start + 1] == 0x20:  # CIDv0: a bare sha2-256 multihash
            cid_end = start + 34
        else:
            cursor = start
            for _ in range(3):  # version, codec, multihash code
                _, cursor = read_varint(view, cursor)
            size, cursor = read_varint(view, cursor)
            cid_end = cursor + size
        if cid_end > end:
            raise ValueError("CAR block CID runs past its section")
        cid = normalize_cid(bytes(view[start:cid_end]))
        block = bytes(view[cid_end:end])
        if verify:
            verify_block(cid, block)
        blocks[cid] = block
        pos = end
    return Car(roots=roots, blocks=blocks)
