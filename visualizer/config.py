"""Settings of the visualizer: `tangle viz` flags, `bokeh serve visualizer --args ...`, or VIZ_* variables.

This module imports no Bokeh, so `learning_tangle.cli` can offer the `viz` command without the `viz` extra
installed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PEER = "http://127.0.0.1:8000"


class VizSettings(BaseSettings):
    """Where the tangle comes from and where the page is served."""

    # environment variables (VIZ_PEERS, VIZ_DNS, ...) configure the k3s deployment; flags win over them
    model_config = SettingsConfigDict(
        cli_prog_name="tangle viz", cli_kebab_case=True, env_prefix="VIZ_", extra="ignore"
    )

    peers: list[str] = Field(
        default_factory=list,
        description=f"peer base URLs serving /api/transactions (default {DEFAULT_PEER} without a source)",
    )
    dns: str | None = Field(
        None, description="DNS name of the peers' headless Service: one peer URL per A record"
    )
    dns_port: int = Field(8000, ge=1, le=65535, description="HTTP port of the peers found through --dns")
    dns_interval: float = Field(10.0, gt=0, description="seconds between DNS look-ups for new peers")
    lab: Path | None = Field(None, description="lab output folder to replay (tangle.json, metrics.csv)")
    host: str = Field("127.0.0.1", description="address the page is served on")
    port: int = Field(9000, ge=1, le=65535, description="port the page is served on")
    allow_origin: list[str] = Field(
        default_factory=list,
        description="extra host[:port] the page may be opened as (e.g. a k3s node name); * allows any",
    )
    webgl: bool = Field(
        True,
        description="draw the tangle with WebGL (fast with a GPU; software GL in headless browsers is not)",
    )
    poll_interval: float = Field(1.0, gt=0, description="seconds between polls of the selected peer")
    timeout: float = Field(10.0, gt=0, description="HTTP timeout of a poll in seconds")

    @field_validator("peers", mode="after")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        cleaned = []
        for url in urls:
            url = url.strip().rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"peer URL {url!r} must start with http:// or https://")
            cleaned.append(url)
        return cleaned

    @model_validator(mode="after")
    def _one_kind_of_source(self) -> VizSettings:
        if self.lab is not None:
            if self.peers or self.dns:
                raise ValueError("--lab replays a folder: do not combine it with --peers or --dns")
            if not (self.lab / "tangle.json").is_file():
                raise ValueError(f"{self.lab} holds no tangle.json (is it a lab output folder?)")
        return self

    @property
    def peer_urls(self) -> list[str]:
        """The peers to poll: the given ones, or the local peer's port when no source is given at all."""
        if self.peers or self.dns or self.lab is not None:
            return list(self.peers)
        return [DEFAULT_PEER]
