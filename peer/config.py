"""Configuration: one pydantic model per command, validated once at start-up.

The learning parameters are shared by the lab and the daemon. The daemon reads them from the original
project's environment variables (NUM_OF_TIPS, ACTIVE_QUOTA, ...) and from flags; the lab reads flags only,
so that a command line alone defines an experiment and the same seed gives the same results.
Every bad value becomes one clear error that names the variable and the flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from peer.tangle.tip_selection import WalkConfig


class ConfigError(ValueError):
    pass


class LearningSettings(BaseSettings):
    """What a peer learns on and how it uses the tangle."""

    model_config = SettingsConfigDict(
        cli_kebab_case=True, case_sensitive=False, extra="ignore", validate_default=True
    )

    model: Literal["softmax", "mlp", "cnn", "fake"] = Field(
        "mlp", description="model trained by the peers (the original's no_tf is fake, femnist is cnn)"
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
        None, ge=1, description="walks per tip selection; above NUM_OF_TIPS the lowest-loss tips are kept"
    )
    num_of_sampling_round: int = Field(
        35, ge=1, description="tip samplings that decide the reference (consensus) model"
    )
    reference_top_k: int = Field(10, ge=1, description="the reference model averages the k best transactions")
    reference_loss_tolerance: float = Field(
        3.0,
        ge=1,
        description="the reference averages only models whose local loss is within this factor of the best",
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
        if self.dataset == "femnist" and self.dataset_path is None:
            raise ValueError("dataset_path is required for the femnist dataset")
        if self.partition == "writer" and self.dataset != "femnist":
            raise ValueError("partition writer needs a dataset with writers (femnist)")
        return self

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

    @model_validator(mode="after")
    def _enough_peers(self) -> LabSettings:
        if self.poison != "none" and self.malicious_fraction <= 0:
            raise ValueError("poison needs a malicious_fraction above 0")
        return self

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
