"""`tangle --version` and the containers' health check, without containers."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from learning_tangle.cli import main
from peer.healthcheck import check

VERSION = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]


def test_version_prints_the_project_version(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"tangle {VERSION}"


@pytest.fixture
def server() -> Iterator[tuple[int, dict[str, int]]]:
    status = {"/healthz": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(status.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], status
    httpd.shutdown()


def test_healthcheck_follows_the_status(
    server: tuple[int, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, status = server
    monkeypatch.setenv("HTTP_PORT", str(port))
    assert check() == 0
    status["/healthz"] = 503
    assert check() == 1
    assert check("/missing") == 1
    monkeypatch.setenv("VIZ_PORT", str(port))
    status["/static/js/bokeh.min.js"] = 200
    assert check("/static/js/bokeh.min.js", "VIZ_PORT", "9000") == 0
