"""The documents of the peer API, one definition for producer and consumer: the peer (daemon and lab) builds
these models, the HTTP app serialises them, the visualizer (and a lab's tangle.json reader) validates what
it receives with the same models. A field renamed here is renamed on both sides; a document of the wrong shape
is one clear validation error on the reading side, not a silent None somewhere later.

Python names are snake_case, the wire is camelCase (the original project's `timeCreated`, the peer's
`referenceAccuracy`): `serialize_by_alias` writes the wire names, `validate_by_name` lets the producer build a
model by its Python names. Readers ignore fields they do not know, so a newer peer still reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel


class Document(BaseModel):
    """Base of every API document: camelCase on the wire, unknown fields ignored when reading."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        serialize_by_alias=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    def json_bytes(self) -> bytes:
        """What the HTTP API sends and a lab writes (JSON has no NaN: a non-finite float becomes null)."""
        return self.model_dump_json().encode()


# --- /api/transactions --------------------------------------------------------------------------------------


class NodeDocument(Document):
    """One transaction: the original project's shape (name, parents, peer, time, timeCreated) plus what the
    visualizer draws. Defaults let it read documents of the original project, which lack the later fields."""

    name: str = Field(min_length=1)  # the transaction's CID
    parents: list[str] = Field(default_factory=list)
    peer: str = ""  # author
    height: int | None = Field(None, ge=0)
    time: int | None = Field(None, ge=0)  # the original's name for the height
    created: float = Field(0.0, alias="timeCreated", allow_inf_nan=False)
    weights: str = ""  # CID of the weights file
    accuracy: float | None = None
    loss: float | None = None
    malicious: bool = False
    tag: str = ""


class TransactionsDocument(Document):
    """`/api/transactions[?peer=NAME&since=N]`: the nodes from insertion index N on, in the peer's insertion
    order (which never changes, so an index is a stable cursor); a lab's tangle.json holds the same."""

    peer: str = ""
    genesis: str
    count: int = Field(ge=0)
    since: int = Field(0, ge=0)
    nodes: list[NodeDocument]
    tips: list[str] = Field(default_factory=list)
    reference: list[str] = Field(default_factory=list)
    depth: int = Field(0, ge=0)


# --- /api/peer ----------------------------------------------------------------------------------------------


class PeerInfo(Document):
    """`/api/peer[?peer=NAME]`: what every peer (daemon or lab) says of itself; the visualizer reads this."""

    peer: str
    transactions: int = Field(0, ge=0)
    tips: int = Field(0, ge=0)
    reference: list[str] = Field(default_factory=list)
    reference_accuracy: float | None = None


class LabPeerInfo(PeerInfo):
    """A lab peer (the lab's live API): where the synchronous rounds are."""

    lab: Literal[True]  # required: what tells a lab peer's document from a daemon's
    round: int = Field(0, ge=0)
    rounds: int = Field(0, ge=0)
    malicious: bool = False


# what a client reads from /api/peer: a lab peer's document when it says `lab`, else the common part
PEER_INFO: TypeAdapter[LabPeerInfo | PeerInfo] = TypeAdapter(
    Annotated[LabPeerInfo | PeerInfo, Field(union_mode="left_to_right")]
)


class WeightsCacheInfo(Document):
    hits: int
    misses: int
    fetched_bytes: int
    cached_bytes: int  # decoded weights held now (the soak samples it)


class PubsubInfo(Document):
    connected: bool
    reconnects: int


class SettingsInfo(Document):
    """The settings of a daemon that shape what it publishes (PeerSettings' names, camelCase)."""

    storage: str
    message_broker: str
    timeout: float | None  # None: no timeout
    training_interval: float
    num_of_tips: int
    num_of_sampling_round: int
    active_quota: float
    tip_selector: str
    publish_rule: str
    malicious: bool


class RoundInfo(Document):
    """The daemon's last training round: its outcome, or the error that ended it."""

    tick: int
    seconds: float | None = None
    tips: list[str] = Field(default_factory=list)
    published: str | None = None  # the transaction it published, if any
    reason: str = ""  # why it published or not
    accuracy: float | None = None
    reference_accuracy: float | None = None
    error: str | None = None


class DaemonPeerInfo(PeerInfo):
    """A peer daemon: its counters, caches and settings (the Fabric `tangle` task prints them)."""

    peer_index: int
    model: str
    genesis: str
    topic: str
    depth: int
    published: int
    ticks: int
    trainings: int
    last_round: RoundInfo | None
    recent_rounds: list[RoundInfo] = Field(default_factory=list)  # the last 100, oldest first
    received: int
    rejected: dict[str, int]
    unresolved: int
    weights_cache: WeightsCacheInfo
    pinned_weights: int
    unusable_weights: dict[str, str]  # weights id: why it is unusable
    pubsub: PubsubInfo
    settings: SettingsInfo


# --- /healthz -----------------------------------------------------------------------------------------------


class Health(Document):
    """`/healthz`: `ok` decides the status (200 or 503); the rest says why."""

    ok: bool


class LabHealth(Health):
    round: int = Field(0, ge=0)


class PubsubHealth(Document):
    connected: bool
    reconnects: int
    last_error: str
    # seconds in the current state ("for" on the wire: a Python keyword, so the alias is spelled out)
    for_seconds: float = Field(validation_alias="for", serialization_alias="for")


class IntakeHealth(Document):
    """The intake under hostile senders (docs/peer.md, "Defences against hostile peers: network intake")."""

    starved: bool
    reasons: list[str]  # why it is starved: every slot busy for long, or fetches timing out
    busy: int  # announcements being resolved now
    slots: int
    waiting: float  # seconds the intake has waited for a free slot (0: not waiting)
    timeouts: int  # fetches that missed their deadline in the last minute
    skipped_unreachable: int  # announcements of a CID remembered as unreachable (cost nothing)


class DaemonHealth(Health):
    """Ready when the peer has started and its PubSub subscription is up (k3s restarts it after long).
    `status` is "degraded" (still 200) while the intake is starved: a restart would not help."""

    peer: str
    started: bool
    uptime: float
    pubsub: PubsubHealth
    status: Literal["ok", "degraded", "down"]
    intake: IntakeHealth


# --- /api/lab -----------------------------------------------------------------------------------------------


class LabHistory(Document):
    """`/api/lab` of the lab's live API: the experiment's settings and every round so far (snake_case on the
    wire, as the lab's CSV columns and summary.json)."""

    model_config = ConfigDict(alias_generator=None)

    config: dict[str, Any] = Field(default_factory=dict)
    malicious_peers: list[str] = Field(default_factory=list)
    round: int = 0
    rounds: int = 0
    metrics: list[dict[str, Any]] = Field(default_factory=list)  # the runner's RoundRecords
    peers: list[dict[str, Any]] = Field(default_factory=list)  # the runner's PeerRounds
