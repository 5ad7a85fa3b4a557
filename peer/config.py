"""Configuration: one pydantic model per command, validated once at start-up.

The learning parameters are shared by the lab and the daemon. The daemon reads them from the original
project's environment variables (NUM_OF_TIPS, ACTIVE_QUOTA, ...) and from flags; the lab reads flags only,
so that a command line alone defines an experiment and the same seed gives the same results.
Every bad value becomes one clear error that names the variable and the flag.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, CliImplicitFlag, PydanticBaseSettingsSource, SettingsConfigDict

from peer.models import Model, create_model
from peer.models.fake import LEAF_CNN_PARAMS
from peer.tangle.tip_selection import WalkConfig


class ConfigError(ValueError):
    pass


class LearningSettings(BaseSettings):
    """What a peer learns on and how it uses the tangle."""

    model_config = SettingsConfigDict(
        cli_kebab_case=True, case_sensitive=False, extra="ignore", validate_default=True
    )

    model: Literal["softmax", "mlp", "cnn", "femnist-cnn", "fake", "tflite"] = Field(
        "mlp",
        description="model trained by the peers (the original's no_tf is fake, femnist is cnn); tflite: "
        "the TFLITE_ARCH layout on a TensorFlow Lite runtime",
    )
    tflite_arch: Literal["softmax", "mlp", "cnn", "femnist-cnn"] = Field(
        "mlp", description="with MODEL=tflite: the numpy model whose layout (and tangle) the .tflite shares"
    )
    tflite_path: Path | None = Field(
        None, description="with MODEL=tflite: a .tflite file to use instead of the packaged one"
    )
    fake_params: int = Field(
        LEAF_CNN_PARAMS, ge=1, description="parameters of the fake model (default: the LEAF CNN's count)"
    )
    dataset: Literal["digits", "femnist"] = Field("digits", description="dataset the peers learn on")
    dataset_path: Path | None = Field(
        None, description="LEAF FEMNIST JSON file or folder, or a converted .npz"
    )
    partition: Literal["iid", "dirichlet", "writer"] = Field(
        "dirichlet", description="how the dataset is split into peers"
    )
    dirichlet_alpha: float = Field(
        0.5, gt=0, description="label skew of the dirichlet partition (smaller: more)"
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of a peer's data kept for local tests")
    seed: int = Field(
        0, ge=0, description="seed of the data split, the genesis model and every random choice"
    )

    num_of_tips: int = Field(2, ge=1, le=8, description="tips a new transaction approves")
    tip_sample_size: int | None = Field(
        4, ge=1, description="walks per tip selection; above NUM_OF_TIPS the lowest-loss tips are kept"
    )
    num_of_sampling_round: int = Field(
        35, ge=1, description="tip samplings that decide the reference (consensus) model"
    )
    reference_top_k: int = Field(10, ge=1, description="the reference model averages the k best transactions")
    reference_candidates: int = Field(
        30,
        ge=1,
        description="the reference averages the k lowest-loss of this many best-scored transactions",
    )
    reference_depth: int | None = Field(
        None,
        ge=1,
        description="the reference counts confidence within this many heights below the highest usable tip "
        "(default: the walk window, PARTICLE_DEPTH_MAX)",
    )
    plausible_loss_factor: float = Field(
        4.0,
        ge=1,
        description="never build on a model whose local loss exceeds this multiple of the genesis model's",
    )
    plausible_margin: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="build only on models that beat the untrained genesis model on the peer's own data by "
        "this much: accuracy higher by it, or loss lower by this share (0: no bar)",
    )
    tip_selector: Literal["weighted", "accuracy"] = Field(
        "weighted", description="IOTA weighted random walk, or the accuracy-biased walk"
    )
    alpha: float = Field(0.001, ge=0, description="randomness of the weighted walk (0: uniform)")
    accuracy_alpha: float = Field(
        10.0, ge=0, description="strength of the accuracy bias of the accuracy walk"
    )
    entry: Literal["particles", "genesis"] = Field(
        "particles", description="where walks start: particles a few heights below the tips, or genesis"
    )
    particle_depth_min: int = Field(10, ge=0, description="particles lie at least this many heights deep")
    particle_depth_max: int = Field(20, ge=1, description="particles lie at most this many heights deep")
    publish_rule: Literal["reference", "parents", "always"] = Field(
        "reference",
        description="publish a model only if its local loss beats the reference's or the parents'",
    )
    reference_rule: Literal["confidence"] = Field(
        "confidence",
        description="how the reference model is chosen: confidence x approvals ranks, local loss picks",
    )

    learning_rate: float = Field(0.1, gt=0, description="SGD learning rate of local training")
    batch_size: int = Field(10, ge=1, description="minibatch size of local training")
    local_epochs: int = Field(1, ge=1, description="epochs of local training per round")
    active_quota: float = Field(1.0, gt=0, le=1, description="probability that a peer trains in a round")

    poison: Literal["none", "random", "labelflip"] = Field(
        "none", description="behaviour of the malicious peers in an experiment"
    )
    malicious_fraction: float = Field(0.0, ge=0, lt=1, description="share of peers that are malicious")
    poison_from: int = Field(0, ge=0, description="round from which the malicious peers attack")

    @field_validator("model", mode="before")
    @classmethod
    def _original_model_names(cls, value: object) -> object:
        # the 2020 prototype's MODEL values keep working
        return {"no_tf": "fake", "femnist": "cnn"}.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> LearningSettings:
        if self.particle_depth_min > self.particle_depth_max:
            raise ValueError("particle_depth_min must not exceed particle_depth_max")
        if self.reference_depth is not None and self.reference_depth > self.particle_depth_max:
            raise ValueError("reference_depth must not exceed particle_depth_max (the walk window)")
        if self.dataset == "femnist" and self.dataset_path is None:
            raise ValueError("dataset_path is required for the femnist dataset")
        if self.partition == "writer" and self.dataset != "femnist":
            raise ValueError("partition writer needs a dataset with writers (femnist)")
        return self

    def create_model(self, input_shape: tuple[int, ...], num_classes: int, *, tflite: bool = True) -> Model:
        """The configured model for a dataset's shape; with MODEL=tflite and `tflite` false, its numpy twin
        (same layout, same tangle). Raises ModelError for an unusable .tflite file or a missing runtime."""
        if self.model == "tflite" and not tflite:
            return create_model(self.tflite_arch, input_shape, num_classes)
        return create_model(
            self.model,
            input_shape,
            num_classes,
            fake_params=self.fake_params,
            tflite_arch=self.tflite_arch,
            tflite_path=self.tflite_path,
            batch_size=self.batch_size,
        )

    def walk_config(self) -> WalkConfig:
        return WalkConfig(
            kind=self.tip_selector,
            alpha=self.alpha,
            accuracy_alpha=self.accuracy_alpha,
            entry=self.entry,
            particle_depth_min=self.particle_depth_min,
            particle_depth_max=self.particle_depth_max,
        )

    @property
    def weight_horizon(self) -> int | None:
        """Cumulative weights must be exact wherever a walk may go: the whole tangle for genesis walks."""
        return None if self.entry == "genesis" else 2 * self.particle_depth_max + 2


class LabSettings(LearningSettings):
    """`tangle lab`: a whole experiment on one machine."""

    model_config = SettingsConfigDict(cli_prog_name="tangle lab")

    peers: int = Field(10, ge=1, le=1000, description="number of peers")
    rounds: int = Field(30, ge=1, description="training rounds")
    out: Path = Field(
        Path("runs/lab"), description="output folder (summary.json, metrics.csv, tangle.json, plot)"
    )
    baseline: Literal["fedavg", "none"] = Field("fedavg", description="baseline trained side by side")
    evaluate_peers: Literal["active", "all"] = Field(
        "active",
        description="whose reference model is evaluated (the tangle's accuracy) each round: the round's "
        "active peers and every peer in the last round, or every peer every round",
    )
    workers: int = Field(2, ge=1, le=64, description="worker processes the peers are spread over")
    progress: bool = Field(True, description="show a progress bar")
    api_port: int | None = Field(
        None, ge=1, le=65535, description="serve every lab peer's /api/transactions live on this port"
    )
    api_host: str = Field("127.0.0.1", description="address the live API binds to")
    round_delay: float = Field(0.0, ge=0, description="seconds to pause after each round (to watch it live)")
    linger: float = Field(0.0, ge=0, description="seconds to keep serving the live API after the last round")
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve every lab peer's Prometheus metrics at /metrics on this port (may equal api_port)",
    )
    backend: Literal["memory", "ipfs"] = Field(
        "memory",
        description="in-process storage and broker, or a local IPFS testnet (kubo) started for the run",
    )
    ipfs_nodes: int = Field(
        3,
        ge=1,
        le=16,
        description="IPFS nodes of the testnet with --backend ipfs (peers share them round-robin)",
    )
    ipfs_apis: list[str] = Field(
        default_factory=list, description="(set by the lab itself) RPC addresses of the testnet's nodes"
    )
    watch: list[str] | None = Field(
        None,
        description="confusion-matrix cells TRUE:PREDICTED whose rates are reported, e.g. 3:8 "
        "(default: the attack's own, 3:8 for labelflip)",
    )
    tflite_fraction: float = Field(
        1.0,
        ge=0,
        le=1,
        description="with --model tflite: share of peers on TensorFlow Lite, spread evenly; the others "
        "train the numpy model of the same layout in the same tangle",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @field_validator("watch")
    @classmethod
    def _cells(cls, value: list[str] | None) -> list[str] | None:
        for cell in value or []:
            parts = cell.split(":")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"a watched cell is TRUE:PREDICTED, two class numbers, got {cell!r}")
        return value

    @property
    def watched(self) -> list[tuple[int, int]]:
        """The confusion-matrix cells reported in summary.json: --watch, else the attack's own."""
        if self.watch is None:
            from peer.learning.poisoning import poisoning_for

            return list(poisoning_for(self.poison).watch)
        return [(int(t), int(p)) for t, p in (cell.split(":") for cell in self.watch)]

    @model_validator(mode="after")
    def _enough_peers(self) -> LabSettings:
        if self.poison != "none" and self.malicious_fraction <= 0:
            raise ValueError("poison needs a malicious_fraction above 0")
        return self

    def on_tflite(self, index: int) -> bool:
        """Whether lab peer `index` runs TensorFlow Lite (every peer whose share crosses a whole number)."""
        f = self.tflite_fraction
        return self.model == "tflite" and int((index + 1) * f + 1e-9) > int(index * f + 1e-9)

    @property
    def malicious_peers(self) -> list[int]:
        """The last peers are the malicious ones: a fixed, documented choice that keeps runs comparable."""
        count = round(self.peers * self.malicious_fraction) if self.poison != "none" else 0
        return list(range(self.peers - count, self.peers))


def describe_errors(error: ValidationError, *, env: bool) -> str:
    """One line per bad value, naming the variable (and flag) it came from."""
    lines = []
    for item in error.errors():
        names = [str(part) for part in item["loc"] if isinstance(part, str)]
        if names:
            field = names[-1]
            where = (
                f"{field.upper()} (--{field.replace('_', '-')})" if env else f"--{field.replace('_', '-')}"
            )
        else:
            where = "configuration"
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{where}: {message}{shown}")
    return "\n".join(lines)


def parse(settings_cls: type[BaseSettings], *, env: bool, **values: Any) -> Any:
    """Build settings from keyword values (and the environment where `env`), or raise ConfigError."""
    try:
        return settings_cls(**values)
    except ValidationError as error:
        raise ConfigError(describe_errors(error, env=env)) from None


# --- `tangle peer`: the daemon ---------------------------------------------------------------------------
# The IPFS variables' formats; docker/kubo/container-init.d/050-learning-tangle.sh checks the same ones in sh
# (tests/integration/test_kubo_init.py runs both on the same values). Blanks are spaces and tabs only.
_SIZE = r"^[ \t]*[0-9]+(\.[0-9]+)?[ \t]*([KMGT]i?)?B[ \t]*$"  # kubo's datastore sizes: 10GB, 512MiB
_DURATION = r"^[ \t]*([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+[ \t]*$"  # Go durations: 1h, 90s, 1h30m
_WHOLE = re.compile(r"[ \t]*[0-9]{1,7}[ \t]*")
_LISTEN = r"^/ip[46]/[0-9A-Fa-f.:]+/tcp/[0-9]{1,5}$"  # kubo's API/gateway address: /ip4/127.0.0.1/tcp/5001
_MAX_CONNECTIONS = 9_999_999
_LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR"}


class PeerSettings(LearningSettings):
    """`tangle peer`: one long-running peer on its own IPFS node.

    Every field is an environment variable of the same name in capitals (the 2020 prototype's names where it
    had one) and a flag; flags win over variables.
    """

    model_config = SettingsConfigDict(cli_prog_name="tangle peer")

    # the 2020 prototype's variables
    storage: Literal["ipfs", "memory"] = Field(
        "ipfs", description="where weights and transactions are stored (memory: a standalone test peer)"
    )
    message_broker: Literal["ipfs", "memory"] = Field(
        "ipfs", description="how announcements travel (memory: a standalone test peer)"
    )
    timeout: float | None = Field(
        30.0, gt=0, description="seconds every IPFS RPC call may take ('none': no limit)"
    )
    training_interval: float = Field(60.0, gt=0, description="seconds between training ticks")
    logger: Literal["print", "file"] = Field("print", description="log to standard output or to LOG_FILE")
    log_file: Path = Field(Path("peer.log"), description="log file used with LOGGER=file")
    logging_level: Literal["debug", "info", "warn", "warning", "error"] = Field(
        "info", description="log verbosity"
    )
    connection_pruning_low: int = Field(
        40, ge=0, le=_MAX_CONNECTIONS, description="kubo Swarm.ConnMgr.LowWater"
    )
    connection_pruning_high: int = Field(
        70, ge=1, le=_MAX_CONNECTIONS, description="kubo Swarm.ConnMgr.HighWater"
    )
    connection_pruning_grace_period: int = Field(
        60, ge=0, le=_MAX_CONNECTIONS, description="kubo Swarm.ConnMgr.GracePeriod, in seconds"
    )
    ipfs_datastore_storagemax: str = Field(
        "10GB", pattern=_SIZE, description="kubo Datastore.StorageMax (GC keeps the repo under it)"
    )
    ipfs_datastore_gcperiod: str = Field("1h", pattern=_DURATION, description="kubo Datastore.GCPeriod")
    ipfs_reprovider_interval: str = Field(
        "22h", pattern=_DURATION, description="kubo Provide.DHT.Interval (formerly Reprovider.Interval)"
    )

    ipfs_api_listen: str = Field(
        "/ip4/127.0.0.1/tcp/5001",
        pattern=_LISTEN,
        description="kubo Addresses.API: where kubo serves its RPC (an admin API: keep it inside the pod)",
    )
    ipfs_gateway_listen: str = Field(
        "/ip4/127.0.0.1/tcp/8080", pattern=_LISTEN, description="kubo Addresses.Gateway"
    )

    # added by this design
    ipfs_api: str = Field("http://127.0.0.1:5001", description="RPC address of the peer's own IPFS node")
    peer_index: int | None = Field(
        None, ge=0, description="this peer's data shard (default: the StatefulSet ordinal in HOSTNAME)"
    )
    peers: int = Field(
        10, ge=1, le=10_000, description="number of data shards (peers) the dataset is split in"
    )
    http_host: str = Field("127.0.0.1", description="address the HTTP API binds to")
    http_port: int = Field(8000, ge=0, le=65535, description="port of the HTTP API (0: any free port)")
    pin_window: int | None = Field(
        None,
        ge=1,
        description="weights of transactions this many heights below the highest usable tip stay pinned "
        "(default: twice the walk window; all with ENTRY=genesis)",
    )
    reannounce_interval: float = Field(
        30.0, gt=0, description="seconds between announcements of this peer's current tips"
    )
    weights_cache_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="bytes of decoded weights kept in the LRU cache"
    )
    malicious: bool = Field(False, description="this peer runs the POISON behaviour (experiments only)")
    tag: str = Field("", max_length=64, description="experiment tag written into every transaction")
    shutdown_grace: float = Field(
        30.0, ge=0, description="seconds SIGTERM waits for a running training round to finish and publish"
    )
    create_genesis: CliImplicitFlag[bool] = Field(
        False, description="publish the genesis transaction, print its CID and exit"
    )
    print_kubo_config: CliImplicitFlag[bool] = Field(
        False, description="print the `ipfs config` commands the IPFS variables stand for and exit"
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _none_timeout(cls, value: object) -> object:
        # the original accepted "none"; 0 meant the same
        if isinstance(value, str) and value.strip().lower() in {"none", "", "0"}:
            return None
        return value

    @field_validator(
        "connection_pruning_low", "connection_pruning_high", "connection_pruning_grace_period", mode="before"
    )
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # digits only, as kubo's init script accepts them: no signs, underscores or fractions
        if isinstance(value, str) and not _WHOLE.fullmatch(value):
            raise ValueError(f"a whole number from 0 to {_MAX_CONNECTIONS} is needed")
        return value

    @field_validator("logging_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _peer_consistent(self) -> PeerSettings:
        if self.connection_pruning_low > self.connection_pruning_high:
            raise ValueError(
                "CONNECTION_PRUNING_LOW (--connection-pruning-low) must not exceed CONNECTION_PRUNING_HIGH"
            )
        if self.peer_index is not None and self.peer_index >= self.peers:
            raise ValueError(f"peer_index must be below peers ({self.peers})")
        if self.poison != "none" and not self.malicious:
            raise ValueError("poison applies to malicious peers only: set malicious as well")
        return self

    @property
    def log_level(self) -> str:
        return _LOG_LEVELS[self.logging_level]

    @property
    def pin_depth(self) -> int | None:
        """Heights below the highest tip whose weights stay pinned (None: all)."""
        if self.pin_window is not None:
            return self.pin_window
        depth = self.walk_config().window_depth
        return None if depth is None else 2 * depth

    def resolved_peer_index(self, hostname: str | None) -> int:
        """PEER_INDEX, else the ordinal a StatefulSet puts at the end of the pod's host name."""
        if self.peer_index is not None:
            return self.peer_index
        tail = (hostname or "").rsplit("-", 1)[-1]
        if tail.isdigit() and "-" in (hostname or "") and int(tail) < self.peers:
            return int(tail)
        raise ConfigError(
            f"PEER_INDEX (--peer-index): not set, and the host name {hostname!r} ends in no ordinal below "
            f"PEERS={self.peers}"
        )

    def kubo_config(self) -> dict[str, Any]:
        """The kubo configuration the IPFS variables stand for (the deployment applies it to the node).

        docker/kubo/container-init.d/050-learning-tangle.sh applies the same keys and values in the same
        order; tests/integration/test_kubo_init.py checks that on a real kubo repository.
        """

        def squeeze(value: str) -> str:
            return value.replace(" ", "").replace("\t", "")

        return {
            "Swarm.ConnMgr.LowWater": self.connection_pruning_low,
            "Swarm.ConnMgr.HighWater": self.connection_pruning_high,
            "Swarm.ConnMgr.GracePeriod": f"{self.connection_pruning_grace_period}s",
            "Datastore.StorageMax": squeeze(self.ipfs_datastore_storagemax),
            "Datastore.GCPeriod": squeeze(self.ipfs_datastore_gcperiod),
            "Provide.DHT.Interval": squeeze(self.ipfs_reprovider_interval),
            # kubo >= 0.38 refuses to start with any Reprovider.* key set: clear what an old repo may hold
            "Reprovider": {},
            # announcements travel over PubSub, which kubo enables only on request
            "Pubsub.Enabled": True,
            "Addresses.API": self.ipfs_api_listen,
            "Addresses.Gateway": self.ipfs_gateway_listen,
        }
