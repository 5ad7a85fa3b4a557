"""Entry point of `bokeh serve visualizer [--args --peers URL ...]`: one document per browser session.

Options come after `--args` with the same names as `tangle viz` (or from VIZ_* variables).
"""

from __future__ import annotations

import sys

from bokeh.io import curdoc

from visualizer.app import build_document
from visualizer.config import VizSettings

build_document(curdoc(), VizSettings(_cli_parse_args=sys.argv[1:]))  # type: ignore[call-arg]
