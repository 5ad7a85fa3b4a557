"""Builder stages only: prints pyproject.toml's requirements, one a line, for `pip install -r` (environment
markers included: pip applies them for the image's architecture).

    python3 requirements.py pyproject.toml                          # [project] dependencies
    python3 requirements.py pyproject.toml --extras-only tflite,x   # those optional dependency groups only

Standard library only: it runs on Debian's python3 before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--extras-only"):
        print("usage: requirements.py PYPROJECT [--extras-only EXTRA,...]", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as handle:
        project = tomllib.load(handle)["project"]
    if len(argv) == 1:
        print("\n".join(project["dependencies"]))
        return 0
    groups = project.get("optional-dependencies", {})
    extras = [name.strip() for name in argv[2].split(",") if name.strip()]
    unknown = [name for name in extras if name not in groups]
    if unknown:
        print(
            f"PEER_EXTRAS: no optional dependency group {', '.join(unknown)} in {argv[0]} "
            f"(has {', '.join(groups)})",
            file=sys.stderr,
        )
        return 2
    print("\n".join(requirement for name in extras for requirement in groups[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
