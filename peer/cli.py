"""The `tangle` command. Flags come from the settings models (pydantic-settings' CLI), so every setting has
exactly one definition, one validation and one help text."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, create_model
from pydantic_settings import BaseSettings, CliApp, CliSubCommand, SettingsConfigDict, SettingsError
from rich.console import Console

from peer.config import ConfigError, LabSettings, PeerSettings, describe_errors, parse
from peer.plugins import commands


class LabCommand(LabSettings):
    """Run a whole experiment on this machine and write summary.json, metrics.csv, tangle.json and a plot."""

    def cli_cmd(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from peer.lab.report import print_summary, write_outputs
        from peer.lab.runner import LabInterrupted, LabResult, run_lab

        console = Console(stderr=False)
        if self.backend == "ipfs":
            from peer.lab.ipfs import peers_per_node

            nodes = min(self.ipfs_nodes, self.peers)
            console.print(
                f"IPFS testnet of {nodes} js-ipfs nodes; peer i uses node i mod {nodes}, "
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

            def on_round(record) -> None:  # type: ignore[no-untyped-def]
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
                written.update(write_outputs(result, self.out))
                progress.stop()
                print_summary(result, written, console)
                if self.linger and self.api_port is not None and result.complete:
                    console.print(f"serving the live API for {self.linger:g} s more (Ctrl-C ends it)")

            # SIGTERM (kill, a container stop) ends the run like Ctrl-C: with the outputs written
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                run_lab(self, on_round=on_round, on_finished=on_finished)
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
    """Learning Tangle: decentralized learning on a Tangle ledger over IPFS."""

    model_config = SettingsConfigDict(cli_prog_name="tangle", cli_kebab_case=True)

    lab: CliSubCommand[LabCommand]
    peer: CliSubCommand[PeerCommand]
    convert_femnist: CliSubCommand[ConvertFemnistCommand]

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def command_line() -> type[Tangle]:
    """`tangle` with the subcommands other packages register (`tangle viz`, `tangle report`)."""
    # the subcommands' types are known at run time only (entry points), hence the ignore
    extra: dict[str, Any] = {
        name: (CliSubCommand[command], ...)  # type: ignore[misc, valid-type]
        for name, command in commands().items()
    }
    if not extra:
        return Tangle
    model: type[Tangle] = create_model("Tangle", __base__=Tangle, __doc__=Tangle.__doc__, **extra)
    return model


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        CliApp.run(command_line(), cli_args=args)
    except ValidationError as error:
        env = bool(args) and args[0] == "peer"  # only `tangle peer` reads environment variables
        print(f"tangle: invalid configuration\n{describe_errors(error, env=env)}", file=sys.stderr)
        raise SystemExit(2) from None
    except SettingsError as error:
        print(f"tangle: {error}", file=sys.stderr)
        raise SystemExit(2) from None
