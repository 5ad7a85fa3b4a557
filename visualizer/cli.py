"""`tangle viz` and `tangle report`, registered as `tangle` subcommands through the `learning_tangle.commands`
entry point (pyproject.toml): `peer` never imports the visualizer. No Bokeh is imported here, so `tangle`
still starts where the `viz` extra is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, CliPositionalArg, SettingsConfigDict

from visualizer.config import VizSettings


class VizCommand(VizSettings):
    """Serve the live tangle visualizer (a Bokeh app) from peers' APIs, a DNS name or lab output folders
    (one folder: its run view and tangle; several: the runs compared)."""

    def cli_cmd(self) -> None:
        from visualizer.server import serve
        from visualizer.sources import SourceError

        # a subcommand is parsed from flags only: build it again so VIZ_* variables fill what flags left unset
        try:
            serve(VizSettings(**self.model_dump(exclude_unset=True)))
        except SourceError as error:
            print(f"tangle viz: --lab {error}", file=sys.stderr)
            raise SystemExit(2) from None


class ReportCommand(BaseSettings):
    """Write one self-contained HTML file: one lab run's report, or several runs compared (curves
    overlaid, the settings that differ, the final metrics)."""

    model_config = SettingsConfigDict(cli_kebab_case=True)

    runs: CliPositionalArg[list[Path]] = Field(description="lab output folders (tangle lab --out)")
    out: Path = Field(
        Path("report.html"),
        validation_alias=AliasChoices("o", "out"),
        description="the HTML file to write",
    )

    def cli_cmd(self) -> None:
        try:
            from visualizer.report import write_report
        except ImportError:
            print("tangle report: needs Bokeh (pip install 'learning-tangle[viz]')", file=sys.stderr)
            raise SystemExit(2) from None
        from visualizer.sources import SourceError

        try:
            written = write_report(self.runs, self.out)
        except SourceError as error:
            print(f"tangle report: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"wrote {written}")
