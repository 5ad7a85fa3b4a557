"""The `tangle` command. Flags come from the settings models (pydantic-settings' CLI), so every setting has
exactly one definition, one validation and one help text."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, CliApp, CliSubCommand, SettingsConfigDict, SettingsError
from rich.console import Console

from peer.config import ConfigError, LabSettings, PeerSettings, describe_errors, parse
from peer.models import ModelError
from visualizer.cli import ReportCommand, VizCommand


def missing_extra(command: str, extra: str, modules: tuple[str, ...]) -> str | None:
    """A command's optional dependencies, checked before it does any work: one line naming the extra."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"tangle {command}: {' and '.join(missing)} not installed: pip install 'learning-tangle[{extra}]'"


class LabCommand(LabSettings):
    """Run a whole experiment on this machine and write summary.json, metrics.csv, tangle.json and a plot."""

    def cli_cmd(self) -> None:
        # without the lab extra a lab still runs (the peer image has no plotting): said before any work,
        # and only the plot and report.html are left out
        if (line := missing_extra("lab", "lab", ("matplotlib", "bokeh"))) is not None:
            print(f"{line} (accuracy.png and report.html will be left out)", file=sys.stderr)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from peer.data import DataError
        from peer.lab.report import print_summary, write_outputs
        from peer.lab.runner import LabError, LabInterrupted, LabResult, RoundRecord, run_lab
        from visualizer.report import write_lab_report

        console = Console(stderr=False)
        if self.backend == "ipfs":
            from peer.lab.ipfs import peers_per_node

            nodes = min(self.ipfs_nodes, self.peers)
            console.print(
                f"IPFS testnet of {nodes} kubo nodes; peer i uses node i mod {nodes}, "
                f"peers per node: {peers_per_node(self.peers, nodes)}"
            )
        columns = (
            TextColumn("[bold]lab[/] round"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("tangle {task.fields[tangle]}  fedavg {task.fields[fedavg]}  tx {task.fields[tx]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, disable=not self.progress, transient=False) as progress:
            task = progress.add_task("rounds", total=self.rounds, tangle="-", fedavg="-", tx=0)

            def on_round(record: RoundRecord) -> None:
                fedavg = "-" if record.fedavg_accuracy is None else f"{record.fedavg_accuracy:.3f}"
                progress.update(
                    task,
                    advance=1,
                    tangle=f"{record.tangle_accuracy:.3f}",
                    fedavg=fedavg,
                    tx=record.transactions,
                )

            written: dict[str, Path] = {}

            def on_finished(result: LabResult) -> None:  # before --linger: a finished run is never lost
                written.update(write_outputs(result, self.out, {"report": write_lab_report}))
                progress.stop()
                print_summary(result, written, console)
                if self.linger and self.api_port is not None and result.complete:
                    console.print(f"serving the live API for {self.linger:g} s more (Ctrl-C ends it)")

            # SIGTERM (kill, a container stop) ends the run like Ctrl-C: with the outputs written
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                run_lab(self, on_round=on_round, on_finished=on_finished)
            except (LabError, DataError) as error:
                progress.stop()
                print(f"tangle lab: {error}", file=sys.stderr)
                raise SystemExit(1) from None
            except ModelError as error:
                progress.stop()
                print(f"tangle lab: {error}", file=sys.stderr)
                raise SystemExit(2) from None
            except LabInterrupted as stop:
                where = "while lingering" if stop.lingering else f"after {len(stop.result.rounds)} rounds"
                state = "complete" if stop.result.complete else "incomplete (summary.json: complete false)"
                print(f"tangle lab: interrupted {where}; outputs in {self.out} are {state}", file=sys.stderr)
                raise SystemExit(130) from None
            except KeyboardInterrupt:
                print(
                    "tangle lab: interrupted before the first round started; nothing written", file=sys.stderr
                )
                raise SystemExit(130) from None


class PeerCommand(PeerSettings):
    """Run one peer beside its IPFS node: train, publish, serve /api and /metrics (see docs/peer.md)."""

    def cli_cmd(self) -> None:
        import json
        import shlex

        # parsed from flags only: build it again so the environment fills what flags left unset
        try:
            settings = parse(PeerSettings, env=True, **self.model_dump(exclude_unset=True))
            if settings.print_kubo_config:
                # a shell script for the kubo container's init (/container-init.d), one setting a line
                for key, value in settings.kubo_config().items():
                    print(f"ipfs config --json {key} {shlex.quote(json.dumps(value))}")
                return
            from peer.node.daemon import run_daemon

            code = run_daemon(settings)
        except ConfigError as error:
            print(f"tangle peer: invalid configuration\n{error}", file=sys.stderr)
            raise SystemExit(2) from None
        except ModelError as error:
            print(f"tangle peer: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        raise SystemExit(code)


class ConvertFemnistCommand(BaseSettings):
    """Convert LEAF FEMNIST JSON (a file or a folder of them) once into a compact .npz a Pi can load."""

    model_config = SettingsConfigDict(cli_kebab_case=True)

    source: Path = Field(description="a LEAF JSON file or a folder of them")
    out: Path = Field(description="the .npz to write (or a folder for femnist.npz)")

    def cli_cmd(self) -> None:
        from peer.data import DataError
        from peer.data.femnist import convert_leaf

        try:
            written = convert_leaf(self.source, self.out)
        except DataError as error:
            print(f"tangle convert-femnist: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"wrote {written}")


class Tangle(BaseSettings):
    """Learning Tangle: decentralized learning on a Tangle ledger over IPFS (`tangle --version`)."""

    model_config = SettingsConfigDict(cli_prog_name="tangle", cli_kebab_case=True)

    lab: CliSubCommand[LabCommand]
    peer: CliSubCommand[PeerCommand]
    viz: CliSubCommand[VizCommand]
    report: CliSubCommand[ReportCommand]
    convert_femnist: CliSubCommand[ConvertFemnistCommand]

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def installed_version() -> str:
    """The version of the installed package (pyproject's `version`): images are tagged with it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("learning-tangle")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        print(f"tangle {installed_version()}")
        return
    try:
        CliApp.run(Tangle, cli_args=args)
    except ValidationError as error:
        env = bool(args) and args[0] == "peer"  # only `tangle peer` reads environment variables
        print(f"tangle: invalid configuration\n{describe_errors(error, env=env)}", file=sys.stderr)
        raise SystemExit(2) from None
    except SettingsError as error:
        print(f"tangle: {error}", file=sys.stderr)
        raise SystemExit(2) from None
