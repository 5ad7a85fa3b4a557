"""Errors raised by the IPFS RPC client.

Everything derives from :class:`IpfsError`, so a caller that only wants "IPFS failed" catches one type,
while retry logic can tell transient transport trouble (connection, timeout) from definite answers.
"""

from __future__ import annotations

from peer.ipld import BlockVerificationError


class IpfsError(Exception):
    """Base class of every error raised by :mod:`peer.ipfs`."""


class IpfsConnectionError(IpfsError):
    """The node could not be reached, or the connection broke mid-response (transient)."""


class IpfsTimeout(IpfsError):
    """A call did not finish within its timeout (transient)."""


class IpfsApiError(IpfsError):
    """The node answered with an error body ``{"Message", "Code", "Type"}`` (definite: not retried)."""

    def __init__(self, message: str, *, code: int | None = None, type_: str = "error", status: int = 0):
        super().__init__(message)
        self.message = message
        self.code = code
        self.type = type_
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, code {self.code})"


class IpfsTooLarge(IpfsError):
    """A response exceeded the caller's ``max_bytes``; the transfer was aborted at the limit."""

    def __init__(self, limit: int, what: str = "response"):
        super().__init__(f"{what} exceeds the limit of {limit} bytes")
        self.limit = limit


class IpfsVerificationError(IpfsError, BlockVerificationError):
    """Bytes do not hash to the CID they were fetched or stored under, or the CID cannot be checked."""

    def __init__(self, message: str, reason: str = "hash_mismatch") -> None:
        BlockVerificationError.__init__(self, reason, message)
