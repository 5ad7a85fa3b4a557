"""`tangle viz`: the Bokeh server with the visualizer app, started in this process."""

from __future__ import annotations

from functools import partial

from visualizer.config import VizSettings


def serve(settings: VizSettings) -> None:
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from visualizer.app import build_document
    from visualizer.sources import load_lab_run

    for folder in settings.lab:
        load_lab_run(folder)  # fail here with one line (SourceError), not with HTTP 500 in each session
    origins = [f"{name}:{settings.port}" for name in ("localhost", "127.0.0.1", settings.host)]
    origins += settings.allow_origin
    server = Server(
        {"/": Application(FunctionHandler(partial(build_document, settings=settings)))},
        address=settings.host,
        port=settings.port,
        allow_websocket_origin=sorted(set(origins)),
    )
    server.start()
    print(f"tangle viz: serving http://{_url_host(settings.host)}:{server.port}/", flush=True)
    server.io_loop.start()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
