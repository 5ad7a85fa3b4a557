# `python -m peer` still runs the `tangle` command: an entry point only, imported by no module of `peer`
from learning_tangle.cli import main

main()
