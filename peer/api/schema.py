"""The documents of the peer API as the clients validate them (pydantic models; the peer builds the same
documents from the TypedDicts of peer/api/documents.py, and tests/visualizer/test_api_documents.py checks that
one validates as the other): what `/api/transactions`, `/api/peer` and the lab's `/api/lab`
serve (and what a lab writes to tangle.json). Clients validate what they read with these, so a document of the
wrong shape is one clear error, not a failure somewhere later."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NodeDocument(BaseModel):
    """One transaction as `/api/transactions` lists it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1)
    parents: list[str] = Field(default_factory=list)
    peer: str = ""
    height: int | None = Field(None, ge=0)
    time: int | None = Field(None, ge=0)
    created: float = Field(0.0, alias="timeCreated", allow_inf_nan=False)
    accuracy: float | None = None
    loss: float | None = None
    malicious: bool = False


class TransactionsDocument(BaseModel):
    """`/api/transactions[?since=N]`: the nodes from index N on, in the peer's insertion order."""

    model_config = ConfigDict(extra="ignore")

    peer: str = ""
    genesis: str
    count: int = Field(ge=0)
    since: int = Field(0, ge=0)
    nodes: list[NodeDocument]
    tips: list[str] = Field(default_factory=list)
    reference: list[str] = Field(default_factory=list)
    depth: int = Field(0, ge=0)


class LabHistory(BaseModel):
    """`/api/lab` of the lab's live API: the experiment's settings and every round so far."""

    model_config = ConfigDict(extra="ignore")

    config: dict[str, Any] = Field(default_factory=dict)
    malicious_peers: list[str] = Field(default_factory=list)
    round: int = 0
    rounds: int = 0
    metrics: list[dict[str, Any]] = Field(default_factory=list)  # the runner's RoundRecords
    peers: list[dict[str, Any]] = Field(default_factory=list)  # the runner's PeerRounds
