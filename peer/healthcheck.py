"""The containers' HEALTHCHECK: `python3 -m peer.healthcheck [PATH] [PORT_VARIABLE] [DEFAULT_PORT]`.

Standard library only, so a check costs a few milliseconds of a Pi's CPU instead of importing the peer.
Exits 0 when http://127.0.0.1:<port><path> answers 2xx, 1 otherwise (the peer's /healthz answers 503 while
its PubSub subscription is down).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(path: str = "/healthz", port_variable: str = "HTTP_PORT", default_port: str = "8000") -> int:
    port = os.environ.get(port_variable, default_port)
    url = f"http://127.0.0.1:{port}{path}"
    request = urllib.request.Request(url, method="HEAD")  # the status is enough; skips large bodies
    try:
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310 (a fixed loopback URL)
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(check(*sys.argv[1:4]))
