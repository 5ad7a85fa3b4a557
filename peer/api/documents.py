"""The HTTP API's documents as types shared by producer and consumer: the peer (daemon and lab) builds them,
the visualizer validates what it receives against the same definitions (pydantic's TypeAdapter), so a field
renamed on one side is a type error or a validation error, not a silent None.

TypedDicts, not models: `/api/transactions` of a long-running peer holds tens of thousands of nodes, and
building them costs nothing more than the dicts they already were; validation happens where data comes in.
"""

from __future__ import annotations

from pydantic import TypeAdapter
from typing_extensions import TypedDict  # pydantic validates typing_extensions TypedDicts on 3.11


class TransactionNode(TypedDict):
    """One transaction, in the original project's shape plus the fields the visualizer draws."""

    name: str  # the transaction's CID
    parents: list[str]
    peer: str  # author
    time: int  # height (the original's "time")
    timeCreated: float
    weights: str  # CID of the weights file
    height: int
    accuracy: float | None
    loss: float | None
    malicious: bool
    tag: str


class TransactionsDocument(TypedDict):
    """`/api/transactions?peer=...&since=N`: the nodes from insertion index `since` on."""

    peer: str
    genesis: str
    count: int
    since: int
    nodes: list[TransactionNode]
    tips: list[str]
    reference: list[str]
    depth: int


TRANSACTIONS_DOCUMENT = TypeAdapter(TransactionsDocument)
