"""Settings of the visualizer: `tangle viz` flags, `bokeh serve visualizer --args ...`, or VIZ_* variables.

This module imports no Bokeh, so `tangle` can offer the `viz` command without the `viz` extra installed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
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
    lab: list[Path] = Field(
        default_factory=list,
        description="lab output folder to replay (tangle.json, metrics.csv); give it again to compare runs",
    )
    host: str = Field("127.0.0.1", description="address the page is served on")
    port: int = Field(9000, ge=1, le=65535, description="port the page is served on")
    allow_origin: list[str] = Field(
        default_factory=list,
        description="extra host[:port] the page may be opened as (e.g. a k3s node name); * allows any",
    )
    webgl: bool = Field(
        False,
        description="draw the tangle with WebGL instead of a 2D canvas (the level of detail keeps the glyphs "
        "few enough for a canvas; WebGL copies its canvas once per layer and paint, slow without a GPU)",
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

    @field_validator("lab", mode="after")
    @classmethod
    def _lab_folders(cls, folders: list[Path], info: ValidationInfo) -> list[Path]:
        # a field validator (not a model one), so the error names --lab; peers and dns are validated before
        if folders and (info.data.get("peers") or info.data.get("dns")):
            raise ValueError("replays lab folders: do not combine it with --peers or --dns")
        for folder in folders:
            if not (folder / "tangle.json").is_file():
                raise ValueError(f"{folder} holds no tangle.json (is it a lab output folder?)")
        return folders

    @property
    def peer_urls(self) -> list[str]:
        """The peers to poll: the given ones, or the local peer's port when no source is given at all."""
        if self.peers or self.dns or self.lab:
            return list(self.peers)
        return [DEFAULT_PEER]
