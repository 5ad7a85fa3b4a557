"""docs/peer.md's configuration table lists exactly the settings `tangle peer` has, with their flags.

After adding or changing a setting, print the table's rows with `python tests/test_peer_docs.py` and paste
them into docs/peer.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from peer.config import PeerSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "peer.md"
ORIGINAL = {
    "storage", "message_broker", "model", "timeout", "training_interval", "num_of_tips",
    "num_of_sampling_round", "active_quota", "logger", "logging_level", "connection_pruning_low",
    "connection_pruning_high", "connection_pruning_grace_period", "ipfs_datastore_storagemax",
    "ipfs_datastore_gcperiod", "ipfs_reprovider_interval",
}  # fmt: skip


def rows() -> list[str]:
    out = []
    for name, field in PeerSettings.model_fields.items():
        default = field.default
        shown = (
            "unset" if default is None or default is PydanticUndefined
            else str(default).lower() if isinstance(default, bool)
            else str(default)
        )  # fmt: skip
        shown = f"`{shown}`" if shown else "empty"
        origin = "yes" if name in ORIGINAL else ""
        flag = "--" + name.replace("_", "-")
        out.append(f"| `{name.upper()}` | `{flag}` | {shown} | {origin} | {field.description} |")
    return out


def test_every_setting_is_documented_with_its_variable_and_flag() -> None:
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \| `(--[a-z0-9-]+)` \|", DOC.read_text(), re.M)
    expected = [(name.upper(), "--" + name.replace("_", "-")) for name in PeerSettings.model_fields]
    assert sorted(documented) == sorted(expected), (
        "run `python tests/test_peer_docs.py` and update docs/peer.md"
    )


if __name__ == "__main__":
    print("\n".join(rows()))
